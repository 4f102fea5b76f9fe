"""Helpers of the stats tests: independent closed forms and a JSON-shape check."""

from __future__ import annotations

import math
from typing import Any

REL = 1e-9


def close(actual: float, expected: float, rel: float = REL, abs_: float = 1e-15) -> bool:
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_)


def normal_two_sided(z: float) -> float:
    """2·Φ(-|z|) from math.erfc alone (independent of scipy)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def hypergeom_lower_tail(k2: int, n2: int, k1: int, n1: int) -> float:
    """P[X <= k2] for X = successes in arm 2 given the margins (one-sided Fisher, "less")."""
    total = k1 + k2
    denom = math.comb(n1 + n2, total)
    return (
        sum(math.comb(n2, x) * math.comb(n1, total - x) for x in range(max(0, total - n1), k2 + 1))
        / denom
    )


def plain_builtins(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_builtins(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_builtins(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)
