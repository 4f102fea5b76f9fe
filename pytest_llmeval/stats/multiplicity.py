"""Multiple testing: Holm, Benjamini-Hochberg, and Tarone's correction for discrete tests.

Holm and Benjamini-Hochberg need every p-value at once. Tarone's procedure and its discrete
Bonferroni refinement need only what each test *could* attain, so a per-case threshold can be
fixed before any case runs (each case is then decided on its own, in any order, on any worker).
Plain Python (a gate run does not import numpy): a family of 10,000 cases has a few dozen
distinct rows of attainable p-values, and the discrete Bonferroni works on those.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_llmeval.stats._common import _open_unit, _rate, _Result

__all__ = [
    "DiscreteBonferroni",
    "benjamini_hochberg",
    "discrete_bonferroni",
    "holm",
    "tarone",
]


def _p_values(p_values: Sequence[float]) -> list[float]:
    return [_rate(f"p_values[{i}]", p) for i, p in enumerate(p_values)]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm, *Scand. J. Statist.* 6, 1979).

    With ``p_(1) <= ... <= p_(m)``: ``adj_(i) = max_{j <= i} min(1, (m - j + 1)·p_(j))``, in the
    input order. Rejecting ``adj <= alpha`` controls the family-wise error rate at ``alpha``
    under any dependence. Matches ``statsmodels...multipletests(method="holm")``.
    """
    ps = _p_values(p_values)
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg step-up adjusted p-values (Benjamini & Hochberg, *JRSS B* 57, 1995).

    ``adj_(i) = min_{j >= i} min(1, m·p_(j)/j)``; rejecting ``adj <= q`` controls the false
    discovery rate at ``q`` for independent or positively dependent tests. Matches
    ``statsmodels...multipletests(method="fdr_bh")``.
    """
    ps = _p_values(p_values)
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    out = [0.0] * m
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, min(1.0, m * ps[i] / (rank + 1)))
        out[i] = running
    return out


@dataclass(frozen=True)
class DiscreteBonferroni(_Result):
    """A per-test threshold fixed before the data: reject test ``i`` when ``p_i <= threshold``.

    ``spent`` bounds the family-wise error rate actually used (the sum over tests of the largest
    p-value each can attain at or below ``threshold``); ``testable`` counts the tests that can
    reach the threshold at all, ``tests`` all of them.
    """

    threshold: float
    spent: float
    alpha: float
    testable: int
    tests: int
    method: str


def tarone(min_p_values: Sequence[float], alpha: float = 0.05) -> DiscreteBonferroni:
    """Tarone's modified Bonferroni for discrete tests (Tarone, *Biometrics* 46, 1990).

    A test whose smallest attainable p-value exceeds the threshold can never reject, so it need
    not be counted. With ``m(t) = #{i : min_p_i <= t}``, ``K`` is the smallest ``k >= 1`` with
    ``m(alpha/k) <= k``; the threshold is ``alpha/K`` and the family-wise error rate stays
    ``<= alpha``.
    """
    alpha_ = _open_unit("alpha", alpha)
    mins = sorted(_p_values(min_p_values))
    m = len(mins)
    k = 1
    while k <= m:
        if bisect_right(mins, alpha_ / k) <= k:
            break
        k += 1
    threshold = alpha_ / k
    testable = bisect_right(mins, threshold)
    return DiscreteBonferroni(threshold, testable * threshold, alpha_, testable, m, "tarone")


def discrete_bonferroni(
    attainable: Sequence[Sequence[float]], alpha: float = 0.05
) -> DiscreteBonferroni:
    """The largest common threshold whose exact family-wise size stays within ``alpha``.

    Test ``i`` can attain the p-values ``attainable[i]``; at threshold ``t`` it rejects with
    null probability at most ``a_i(t) = max{p in attainable[i] : p <= t}`` (0 if none), so the
    Bonferroni inequality gives ``FWER <= S(t) = Σ_i a_i(t)``. The threshold is the largest
    attainable ``t`` with ``S(t) <= alpha``. This refines Tarone (1990): it counts each test by
    what it can actually reject rather than by ``t`` (Hommel & Krummenauer, *Biometrics* 54,
    1998; Westfall & Wolfinger, *Am. Stat.* 51, 1997). Tests attaining only 0 (impossible under
    the null) cost nothing. ``threshold`` is 0 when even the smallest attainable value is too
    costly, so only a p-value of exactly 0 rejects.
    """
    alpha_ = _open_unit("alpha", alpha)
    # identical rows (cases with the same history counts) are pooled: row -> how many
    pooled: dict[tuple[float, ...], int] = {}
    tests = 0
    for i, raw in enumerate(attainable):
        tests += 1
        key = tuple(raw)
        try:
            seen = pooled.get(key, 0)
        except TypeError:  # not numbers: the check below names the value
            seen = 0
        if not seen:
            for j, p in enumerate(key):
                _rate(f"attainable[{i}][{j}]", p)
        pooled[key] = seen + 1
    rows = [(tuple(sorted(float(p) for p in row)), count) for row, count in pooled.items()]
    if not any(row for row, _ in rows):
        return DiscreteBonferroni(alpha_, 0.0, alpha_, 0, tests, "discrete_bonferroni")
    candidates = sorted({p for row, _ in rows for p in row})

    def cost(t: float) -> float:
        # each row's largest attainable value at or below t (sorted rows: bisect)
        return math.fsum(
            count * row[at - 1] for row, count in rows if (at := bisect_right(row, t)) > 0
        )

    lo, hi = 0, len(candidates) - 1
    best = -1
    while lo <= hi:  # S(t) is non-decreasing in t: bisect over the attainable values
        mid = (lo + hi) // 2
        if cost(candidates[mid]) <= alpha_ * (1.0 + 1e-12):
            best = mid
            lo = mid + 1
        else:
            hi = mid - 1
    if best < 0:
        return DiscreteBonferroni(0.0, 0.0, alpha_, 0, tests, "discrete_bonferroni")
    threshold = candidates[best]
    testable = sum(count for row, count in rows if row and row[0] <= threshold)
    return DiscreteBonferroni(
        threshold, cost(threshold), alpha_, testable, tests, "discrete_bonferroni"
    )
