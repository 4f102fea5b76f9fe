"""Writing reports: the JSON report and the files rendered from it, and GitHub's step summary.

Renderers (:mod:`pytest_llmeval.reports`) return text; this module writes it, atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_llmeval.engine.store import atomic_write


def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` as JSON, HTML or Markdown, chosen by the file suffix."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    elif suffix in (".html", ".htm"):
        from pytest_llmeval.reports.html import render_html

        data = render_html(report)
    elif suffix in (".md", ".markdown"):
        from pytest_llmeval.reports.markdown import render_markdown

        data = render_markdown(report)
    else:
        raise ValueError(f"unknown report type {suffix!r}: use .json, .html or .md")
    atomic_write(path, data.encode("utf-8"))


def write_step_summary(path: Path, report: Mapping[str, Any]) -> None:
    """Append the Markdown summary to GitHub's step summary file."""
    from pytest_llmeval.reports.markdown import render_markdown

    with open(path, "a", encoding="utf-8") as fh:
        fh.write(render_markdown(report) + "\n")
