"""Shared validation, result base and small helpers of the statistics package."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any, Literal

Alternative = Literal["two-sided", "greater", "less"]
Direction = Literal["higher", "lower"]
Recommendation = Literal["ship", "no_ship", "inconclusive"]

_ALTERNATIVES = ("two-sided", "greater", "less")
_CI_METHODS = ("wilson", "clopper-pearson")
_DIRECTIONS = ("higher", "lower")


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def _rate(name: str, value: object) -> float:
    result = _real(name, value)
    if not 0.0 <= result <= 1.0:
        raise ValueError(f"{name} must be a rate in [0, 1], got {value!r}")
    return result


def _open_unit(name: str, value: object) -> float:
    result = _real(name, value)
    if not 0.0 < result < 1.0:
        raise ValueError(f"{name} must be strictly between 0 and 1, got {value!r}")
    return result


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer count, got {value!r}")
    result = int(value)
    if result < 0:
        raise ValueError(f"{name} must be >= 0, got {result}")
    return result


def _size(name: str, value: object) -> int:
    result = _count(name, value)
    if result <= 0:
        raise ValueError(f"{name} must be > 0 (a sample needs at least one unit), got {result}")
    return result


def _successes(name: str, value: object, n_name: str, n: int) -> int:
    result = _count(name, value)
    if result > n:
        raise ValueError(f"{name} must be <= {n_name} ({n}), got {result}")
    return result


def _alternative(value: object) -> Alternative:
    if value == "two-sided":
        return "two-sided"
    if value == "greater":
        return "greater"
    if value == "less":
        return "less"
    raise ValueError(f"alternative must be one of {', '.join(_ALTERNATIVES)}; got {value!r}")


def _direction(name: str, value: object) -> Direction:
    if value == "higher":
        return "higher"
    if value == "lower":
        return "lower"
    raise ValueError(f"{name} must be 'higher' or 'lower' (which way is better), got {value!r}")


def _json_safe(value: Any) -> Any:
    """Plain builtins with non-finite floats as ``None`` (JSON has no inf/nan)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _critical(level: float) -> float:
    """The two-sided standard-normal quantile ``z_{1-(1-level)/2}``.

    ``statistics.NormalDist.inv_cdf`` implements Wichura's AS 241 (accurate to about 1e-16), so
    intervals need no scipy import (which costs over a second at the end of every run).
    """
    from statistics import NormalDist

    return NormalDist().inv_cdf(1.0 - (1.0 - level) / 2.0)


class _Result:
    """Base of the result dataclasses: ``to_dict()`` gives plain, JSON-safe builtins."""

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _json_safe(dataclasses.asdict(self))  # type: ignore[call-overload]
        return result
