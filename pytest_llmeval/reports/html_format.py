"""Reading the report's plain values and formatting numbers for the HTML page.

The readers never invent a number: a null, a non-number or a NaN is None, shown as "—". The
formatters are the page's Jinja filters (:func:`FILTERS`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def num(value: Any) -> float | None:
    """A finite float, or None for null/non-numeric/NaN (never invent a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def text(value: Any) -> str:
    return "" if value is None else str(value)


def pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        lo, hi = num(value[0]), num(value[1])
        if lo is not None and hi is not None:
            return (lo, hi)
    return None


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
        return tuple(str(v) for v in value)
    return ()


def pct(value: Any, digits: int = 1) -> str:
    number = num(value)
    return "—" if number is None else f"{number * 100:.{digits}f}%"


def fmt(value: Any, digits: int = 2) -> str:
    number = num(value)
    return "—" if number is None else f"{number:.{digits}f}"


def count(value: Any) -> str:
    number = integer(value)
    return "—" if number is None else f"{number:,}"


def usd(value: Any) -> str:
    number = num(value)
    if number is None:
        return "unknown"
    return f"${number:,.4f}" if 0 < number < 1 else f"${number:,.2f}"


def seconds(value: Any) -> str:
    number = num(value)
    if number is None:
        return "—"
    return f"{number * 1000:.0f} ms" if number < 1 else f"{number:.2f} s"


def sortnum(value: Any) -> str:
    """A number as a sort key for the case table's script ("" sorts last)."""
    number = num(value)
    return "" if number is None else repr(number)


FILTERS = {"pct": pct, "fmt": fmt, "count": count, "usd": usd, "seconds": seconds,
           "sortnum": sortnum}  # fmt: skip
