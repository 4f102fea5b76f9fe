"""What parsed JSON may hold before the rest of the package sees it. Pure.

``json`` accepts a lone surrogate escape (``"\\ud800"``) and any depth of nesting; the first
crashes later when the text is encoded, the second with a ``RecursionError``. Case files and
state files reject both at the line that holds them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

SURROGATE = re.compile("[\ud800-\udfff]")


def structure_problem(
    value: Any,
    *,
    max_depth: int,
    other: Callable[[Any], str | None] | None = None,
    parts: tuple[Any, ...] = (),
    depth: int = 1,
) -> tuple[list[Any], str] | None:
    """The first lone surrogate, too-deep nesting (or what ``other`` objects to) in ``value``:
    (the field path, the message); None when there is none."""
    if isinstance(value, str):
        found = SURROGATE.search(value)
        if found:
            return list(parts), (
                f"contains a lone surrogate (U+{ord(found.group()):04X}, e.g. an escaped"
                " '\\ud800' without its pair), which is not Unicode text"
            )
        return None
    if isinstance(value, (dict, list)):
        if depth > max_depth:
            return list(parts), f"nested deeper than {max_depth} levels of arrays and objects"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and SURROGATE.search(key):
                return [*parts, key], "the key contains a lone surrogate, which is not Unicode text"
            problem = structure_problem(
                item, max_depth=max_depth, other=other, parts=(*parts, key), depth=depth + 1
            )
            if problem is not None:
                return problem
        return None
    message = other(value) if other is not None else None
    return (list(parts), message) if message else None
