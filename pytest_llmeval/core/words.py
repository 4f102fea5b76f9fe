"""Counted words, so every output says "1 case" and "2 cases"."""

from __future__ import annotations


def plural(n: int, one: str, many: str | None = None) -> str:
    """``1 case``, ``2 cases`` (``many`` for irregular plurals)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"
