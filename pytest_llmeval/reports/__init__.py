"""Renderers of a run's decision: the JSON model, terminal lines, HTML and Markdown.

They format; they never decide, recompute a number, or write a file."""
