"""History gate helpers: mean - k·sd bounds and the prediction bound."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pytest_llmeval.stats._common import (
    _json_safe,
    _open_unit,
    _rate,
    _real,
    _Result,
)

# ---------------------------------------------------------------------------
# history gate helpers
# ---------------------------------------------------------------------------


class HistoryBounds(NamedTuple):
    """``(mean, sample_std, lower_bound)`` of recorded pass rates; unpacks like a tuple."""

    mean: float
    sample_std: float
    lower_bound: float

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _json_safe(self._asdict())
        return result


def history_bounds(pass_rates: Sequence[float], k: float) -> HistoryBounds:
    """Mean, sample standard deviation and ``mean - k·std`` of the recorded pass rates.

    ``std = sqrt(Σ (x_i - x̄)² / (m - 1))`` (:func:`statistics.stdev`, Bessel-corrected), so it
    needs at least two points: a spread is never invented from one run.
    """
    rates = [_rate(f"pass_rates[{i}]", r) for i, r in enumerate(pass_rates)]
    k_ = _real("k", k)
    if k_ < 0.0:
        raise ValueError(f"k must be >= 0 (standard deviations below the mean), got {k!r}")
    if len(rates) < 2:
        raise ValueError(f"pass_rates needs at least 2 points for a sample std, got {len(rates)}")
    mean = statistics.fmean(rates)
    std = statistics.stdev(rates)
    return HistoryBounds(mean=mean, sample_std=std, lower_bound=mean - k_ * std)


@dataclass(frozen=True)
class PredictionBound(_Result):
    """One-sided lower prediction bound for the next run's pass rate."""

    points: int
    mean: float
    sd: float
    t: float
    lower: float
    alpha: float


def prediction_bound(values: Sequence[float], alpha: float = 0.05) -> PredictionBound:
    """Lower ``1 - alpha`` prediction bound for one future observation of the same process.

    ::

        lower = x̄ - t_{H-1, 1-alpha} · s · sqrt(1 + 1/H)

    with ``H`` recorded values, their mean ``x̄`` and sample standard deviation ``s``: a new
    independent normal observation falls below it with probability exactly ``alpha`` whatever
    ``H`` (Hahn & Meeker, *Statistical Intervals*, 1991, §4.7; Hahn, Meeker & Escobar, 2nd ed.
    2017, §4.6). The fixed ``x̄ - 2s`` rule ignores that ``x̄`` and ``s`` are estimates, so its
    false-alarm rate is far above 5% for short histories. Needs at least two values. Equals the
    ``obs_ci_lower`` of an intercept-only OLS prediction in statsmodels at ``2·alpha``.
    """
    xs = [_real(f"values[{i}]", v) for i, v in enumerate(values)]
    alpha_ = _open_unit("alpha", alpha)
    h = len(xs)
    if h < 2:
        raise ValueError(f"values needs at least 2 points for a prediction bound, got {h}")
    from pytest_llmeval.stats.exact import student_t_ppf

    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs)
    tq = student_t_ppf(1.0 - alpha_, h - 1)
    return PredictionBound(h, mean, sd, tq, mean - tq * sd * math.sqrt(1.0 + 1.0 / h), alpha_)
