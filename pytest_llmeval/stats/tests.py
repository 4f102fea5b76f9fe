"""Hypothesis tests on proportions: two-proportion z, McNemar, sign, Fisher exact."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

from pytest_llmeval.stats._common import (
    Alternative,
    _alternative,
    _count,
    _critical,
    _open_unit,
    _Result,
    _size,
    _successes,
)
from pytest_llmeval.stats.intervals import _wilson

# ---------------------------------------------------------------------------
# two independent proportions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoProportionResult(_Result):
    """Two-proportion z-test of arm 2 against arm 1.

    ``diff = p2 - p1`` with its Newcombe interval ``[ci_low, ci_high]`` at ``ci_level``;
    ``relative_lift = diff / p1`` (``None`` when ``p1 == 0``: a lift over nothing is undefined).
    """

    n1: int
    p1: float
    n2: int
    p2: float
    diff: float
    ci_low: float
    ci_high: float
    ci_level: float
    relative_lift: float | None
    z: float
    p_value: float
    alternative: str

    def significant(self, alpha: float = 0.05) -> bool:
        """Whether the null is rejected at level ``alpha`` (``p_value <= alpha``)."""
        return self.p_value <= _open_unit("alpha", alpha)


def _two_proportion(
    n1: int, p1: float, n2: int, p2: float, alternative: Alternative, level: float
) -> TwoProportionResult:
    from pytest_llmeval.stats.exact import normal_cdf, normal_sf

    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    diff = p2 - p1
    if se == 0.0:
        # Both arms all-0 or all-1: identical data, no evidence of any difference (an exact test
        # gives p = 1 here too).
        z, p_value = 0.0, 1.0
    else:
        z = diff / se
        if alternative == "two-sided":
            p_value = min(1.0, 2.0 * normal_sf(abs(z)))
        elif alternative == "greater":
            p_value = normal_sf(z)
        else:
            p_value = normal_cdf(z)
    crit = _critical(level)
    l1, u1 = _wilson(p1, float(n1), crit)
    l2, u2 = _wilson(p2, float(n2), crit)
    # Newcombe (1998) method 10 for p2 - p1: combine each arm's Wilson distances.
    ci_low = diff - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    ci_high = diff + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return TwoProportionResult(
        n1=n1,
        p1=p1,
        n2=n2,
        p2=p2,
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        ci_level=level,
        relative_lift=None if p1 == 0.0 else diff / p1,
        z=z,
        p_value=p_value,
        alternative=alternative,
    )


def two_proportion_test(
    n1: int,
    k1: int,
    n2: int,
    k2: int,
    *,
    alternative: str = "two-sided",
    level: float = 0.95,
) -> TwoProportionResult:
    """Pooled two-proportion z-test of ``k2/n2`` against ``k1/n1``.

    ::

        p̂ = (k1 + k2)/(n1 + n2),  se = sqrt(p̂(1-p̂)(1/n1 + 1/n2)),  z = (p2 - p1)/se
        p = 2·Φ(-|z|) (two-sided),  Φ(-z) ("greater"),  Φ(z) ("less")

    ``z`` is positive when arm 2 is higher. When both arms are all-0 or all-1 the standard error
    is 0 and the result is ``z = 0, p = 1``. The difference's interval is Newcombe's hybrid
    score interval (method 10), which stays inside [-1, 1] and behaves at 0/n.

    References: Fleiss, Levin & Paik (2003) §3.3 (z-test); Newcombe, *Statistics in Medicine*
    17 (1998) 873-890 (interval). Matches ``statsmodels...proportions_ztest`` and
    ``confint_proportions_2indep(method="newcomb")``.
    """
    n1_ = _size("n1", n1)
    k1_ = _successes("k1", k1, "n1", n1_)
    n2_ = _size("n2", n2)
    k2_ = _successes("k2", k2, "n2", n2_)
    alt = _alternative(alternative)
    level_ = _open_unit("level", level)
    return _two_proportion(n1_, k1_ / n1_, n2_, k2_ / n2_, alt, level_)


def binomial_drop_test(
    history_passed: int, history_total: int, now_passed: int, now_total: int
) -> TwoProportionResult:
    """One-sided test that the current pass rate is below the pooled history rate.

    ``two_proportion_test(history_total, history_passed, now_total, now_passed,
    alternative="less")``: the history runs are pooled into one reference proportion and the
    current run is arm 2, so a 3-point drop is significant on a 2,000-case suite and not on a
    30-case one. Reference: Fleiss, Levin & Paik (2003) §3.3.
    """
    return two_proportion_test(
        history_total, history_passed, now_total, now_passed, alternative="less"
    )


# ---------------------------------------------------------------------------
# paired and exact tests
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemarResult(_Result):
    """McNemar's test on the discordant pairs of a paired pass/fail comparison.

    ``b`` passed before and fails now (regressions), ``c`` failed before and passes now
    (improvements). ``statistic`` is ``min(b, c)`` for the exact test and the corrected
    chi-square otherwise.
    """

    b: int
    c: int
    statistic: float
    p_value: float
    exact: bool


def _binomial_two_sided_half(k: int, n: int) -> float:
    """Exact two-sided binomial p-value for ``k`` of ``n`` under p = 1/2 (1 when n = 0)."""
    if n == 0:
        return 1.0
    from pytest_llmeval.stats.exact import binom_cdf

    # Symmetric null: the two-sided p-value is twice the smaller tail, capped at 1.
    return min(1.0, 2.0 * binom_cdf(min(k, n - k), n, 0.5))


def mcnemar(b: int, c: int, *, exact: bool = True) -> McNemarResult:
    """McNemar's test for paired proportions (McNemar, *Psychometrika* 12, 1947).

    Exact (default): under H0 the ``b + c`` discordant pairs split Binomial(b + c, 1/2)::

        p = min(1, 2 · P[X <= min(b, c)]),   X ~ Binomial(b + c, 1/2)

    Otherwise the chi-square with Edwards' continuity correction (Edwards, *Psychometrika* 13,
    1948)::

        X² = max(|b - c| - 1, 0)² / (b + c),   p = P[χ²₁ >= X²]

    (the ``max`` keeps ``b == c`` at p = 1 instead of a spurious positive statistic). ``b + c = 0``
    gives ``p = 1``. Symmetric in ``b`` and ``c``.
    """
    b_ = _count("b", b)
    c_ = _count("c", c)
    n = b_ + c_
    if exact:
        p_value = _binomial_two_sided_half(b_, n)
        return McNemarResult(b=b_, c=c_, statistic=float(min(b_, c_)), p_value=p_value, exact=True)
    if n == 0:
        return McNemarResult(b=b_, c=c_, statistic=0.0, p_value=1.0, exact=False)
    from scipy.stats import chi2

    stat = max(abs(b_ - c_) - 1, 0) ** 2 / n
    return McNemarResult(b=b_, c=c_, statistic=stat, p_value=float(chi2.sf(stat, 1)), exact=False)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: are wins and losses equally likely? (ties excluded).

    ``p = min(1, 2 · P[X <= min(wins, losses)])`` with ``X ~ Binomial(wins + losses, 1/2)``;
    ``p = 1`` when there are no decisive comparisons. Reference: Conover, *Practical
    Nonparametric Statistics*, 3rd ed. (1999), §3.4.
    """
    w = _count("wins", wins)
    lost = _count("losses", losses)
    return _binomial_two_sided_half(w, w + lost)


@dataclass(frozen=True)
class FisherResult(_Result):
    """Fisher's exact test on a 2x2 table.

    ``odds_ratio`` is the table's sample odds ratio ``(a·d)/(b·c)`` (may be ``inf`` or ``nan``;
    ``None`` in :meth:`to_dict`).
    """

    table: tuple[tuple[int, int], tuple[int, int]]
    odds_ratio: float
    p_value: float
    alternative: str


@overload
def fisher_exact(
    table: Sequence[Sequence[int]], /, *, alternative: str = "two-sided"
) -> FisherResult: ...


@overload
def fisher_exact(
    n1: int, k1: int, n2: int, k2: int, /, *, alternative: str = "two-sided"
) -> FisherResult: ...


def fisher_exact(
    table_or_n1: Sequence[Sequence[int]] | int,
    k1: int | None = None,
    n2: int | None = None,
    k2: int | None = None,
    /,
    *,
    alternative: str = "two-sided",
) -> FisherResult:
    """Fisher's exact test (Fisher, *J. R. Stat. Soc.* 85, 1922; via ``scipy.stats``).

    Call with a 2x2 table ``[[a, b], [c, d]]`` (``alternative`` then refers to its odds ratio
    ``(a·d)/(b·c)``, as in scipy), or with counts ``(n1, k1, n2, k2)`` like
    :func:`two_proportion_test`. Counts are laid out as ``[[k2, n2-k2], [k1, n1-k1]]`` (arm 2
    first) so that ``odds_ratio > 1`` and ``alternative="greater"`` both mean arm 2 is higher.
    P-values sum the hypergeometric probabilities of tables at least as extreme (two-sided:
    no more probable than the observed one).
    """
    alt = _alternative(alternative)
    cells: tuple[tuple[int, int], tuple[int, int]]
    if isinstance(table_or_n1, Sequence):
        if k1 is not None or n2 is not None or k2 is not None:
            raise ValueError("fisher_exact takes either a 2x2 table or four counts, not both")
        rows = list(table_or_n1)
        if len(rows) != 2 or any(not isinstance(row, Sequence) or len(row) != 2 for row in rows):
            raise ValueError(f"table must be 2x2 ([[a, b], [c, d]]), got {table_or_n1!r}")
        cells = (
            (_count("table[0][0]", rows[0][0]), _count("table[0][1]", rows[0][1])),
            (_count("table[1][0]", rows[1][0]), _count("table[1][1]", rows[1][1])),
        )
    else:
        if k1 is None or n2 is None or k2 is None:
            raise ValueError("fisher_exact counts form needs all of n1, k1, n2, k2")
        n1_ = _size("n1", table_or_n1)
        k1_ = _successes("k1", k1, "n1", n1_)
        n2_ = _size("n2", n2)
        k2_ = _successes("k2", k2, "n2", n2_)
        cells = ((k2_, n2_ - k2_), (k1_, n1_ - k1_))
    from scipy.stats import fisher_exact as _scipy_fisher

    res = _scipy_fisher([list(cells[0]), list(cells[1])], alternative=alt)
    return FisherResult(
        table=cells,
        odds_ratio=float(res.statistic),
        p_value=min(1.0, float(res.pvalue)),
        alternative=alt,
    )


def repeat_drop_test(base_passes: int, base_n: int, now_passes: int, now_n: int) -> float:
    """One-sided Fisher exact p-value that the pass fraction dropped from base to now.

    ``fisher_exact(base_n, base_passes, now_n, now_passes, alternative="less").p_value``:
    H1 is "the current pass probability is lower". For repeated sampling of one case, e.g.
    2/3 -> 1/3 gives p = 0.5 (a wobble), 5/5 -> 0/5 gives p = 1/252.
    """
    return fisher_exact(base_n, base_passes, now_n, now_passes, alternative="less").p_value


def flip_count_test(regressions: int, improvements: int) -> float:
    """One-sided exact count test that cases flip to failing more often than to passing.

    Of the ``b + c`` cases whose verdict changed against the baseline, ``b`` went from pass to
    fail and ``c`` from fail to pass. If the baseline run and this run are two independent runs
    of the same application, each change is equally likely either way, so
    ``p = P[X >= b]`` with ``X ~ Binomial(b + c, 1/2)`` (the one-sided exact McNemar test;
    McNemar 1947). ``p = 1`` when nothing changed. Matches
    ``scipy.stats.binomtest(b, b + c, 0.5, alternative="greater")``.
    """
    b = _count("regressions", regressions)
    c = _count("improvements", improvements)
    if b + c == 0:
        return 1.0
    from pytest_llmeval.stats.exact import binom_sf

    return min(1.0, binom_sf(b - 1, b + c, 0.5))
