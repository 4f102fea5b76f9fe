"""A/B and version-comparison statistics on scipy.

Pure functions: no pytest, no I/O. Every p-value and quantile comes from scipy's exact
distribution functions (no hard-coded z values, no bucketed p-values). Each function documents
its formula and a reference. Results are frozen dataclasses with ``to_dict()`` returning plain
builtins (non-finite floats become ``None`` so the output is valid JSON).

Conventions shared by every function here:

* "arm 1" is the reference (control, baseline, history) and "arm 2" the new one (treatment,
  candidate, current run). Differences are ``p2 - p1`` and ``z`` is positive when arm 2 is
  higher.
* ``alternative`` is ``"two-sided"``, ``"greater"`` (H1: arm 2 is higher) or ``"less"``
  (H1: arm 2 is lower), the names scipy uses.
* A result is significant when ``p_value <= alpha`` (reject at level alpha).
* Out-of-range input raises :class:`ValueError` naming the argument and the reason.

scipy is imported inside the functions so that importing this module (from the plugin or the
``llmeval`` command) stays cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, overload

__all__ = [
    "LOWER_IS_BETTER",
    "ABTestDesigner",
    "ExperimentAnalysis",
    "FisherResult",
    "GuardrailResult",
    "HistoryBounds",
    "McNemarResult",
    "SRMResult",
    "TwoProportionResult",
    "analyze_experiment",
    "assign_variant",
    "binomial_drop_test",
    "fisher_exact",
    "history_bounds",
    "mcnemar",
    "proportion_ci",
    "repeat_drop_test",
    "sample_size",
    "sign_test",
    "srm_check",
    "two_proportion_test",
]

Alternative = Literal["two-sided", "greater", "less"]
Direction = Literal["higher", "lower"]
Recommendation = Literal["ship", "no_ship", "inconclusive"]

_ALTERNATIVES = ("two-sided", "greater", "less")
_CI_METHODS = ("wilson", "clopper-pearson")
_DIRECTIONS = ("higher", "lower")

#: Metric names whose direction is known when guardrails are given as a plain list of names:
#: for all of these a *rise* in the treatment arm is the harm a guardrail watches for.
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "thumbs_down",
        "thumbs_down_rate",
        "error",
        "errors",
        "error_rate",
        "rephrase_rate",
        "rephrase_retry_rate",
    }
)


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


# ---------------------------------------------------------------------------
# sample size
# ---------------------------------------------------------------------------


def sample_size(
    baseline_rate: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.80,
    relative: bool = True,
    alternative: str = "two-sided",
) -> int:
    """Units needed per arm to detect ``mde`` with a two-proportion z-test.

    Pooled variance under the null, unpooled under the alternative, equal arms::

        p1 = baseline_rate;  p2 = p1 * (1 + mde) if relative else p1 + mde
        p̄  = (p1 + p2) / 2
        n  = ceil( (z_a * sqrt(2 p̄ (1 - p̄)) + z_b * sqrt(p1 (1 - p1) + p2 (1 - p2)))^2
                   / (p2 - p1)^2 )

    with ``z_a = Φ⁻¹(1 - alpha/2)`` (two-sided) or ``Φ⁻¹(1 - alpha)`` (one-sided) and
    ``z_b = Φ⁻¹(power)``, both exact from scipy. Reference: Fleiss, Levin & Paik, *Statistical
    Methods for Rates and Proportions*, 3rd ed. (2003), §4.2, eq. 4.14 (without continuity
    correction); Chow, Shao & Wang, *Sample Size Calculations in Clinical Research* (2008),
    §4.2. Matches ``statsmodels.stats.proportion.samplesize_proportions_2indep_onetail``.

    Example: 12% baseline, 15% relative MDE -> 5443 per arm (alpha 0.01 -> 8099).

    ``alternative="greater"``/``"less"`` are one-sided and require the MDE to point that way.
    """
    p1 = _rate("baseline_rate", baseline_rate)
    effect = _real("mde", mde)
    alpha_ = _open_unit("alpha", alpha)
    power_ = _open_unit("power", power)
    alt = _alternative(alternative)
    if effect == 0.0:
        raise ValueError("mde must be non-zero (a zero effect needs infinitely many units)")
    if relative and p1 == 0.0:
        raise ValueError("baseline_rate must be > 0 for a relative mde (0 * (1 + mde) is 0)")
    p2 = p1 * (1.0 + effect) if relative else p1 + effect
    if not 0.0 < p2 < 1.0:
        kind = "relative" if relative else "absolute"
        raise ValueError(
            f"mde {effect!r} ({kind}) puts the treatment rate at {p2!r}, outside (0, 1)"
        )
    if alt == "greater" and p2 < p1:
        raise ValueError("alternative='greater' needs a positive mde (treatment rate higher)")
    if alt == "less" and p2 > p1:
        raise ValueError("alternative='less' needs a negative mde (treatment rate lower)")

    from scipy.stats import norm

    tail = alpha_ / 2.0 if alt == "two-sided" else alpha_
    z_a = float(norm.isf(tail))
    z_b = float(norm.ppf(power_))
    p_bar = (p1 + p2) / 2.0
    root = z_a * math.sqrt(2.0 * p_bar * (1.0 - p_bar)) + z_b * math.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    return math.ceil(root * root / ((p2 - p1) ** 2))


# ---------------------------------------------------------------------------
# confidence intervals
# ---------------------------------------------------------------------------


def _wilson_lower(p_hat: float, n: float, z: float) -> float:
    # Product of the two Wilson roots is p̂²/(1 + z²/n), so the lower root can be taken from the
    # upper one without the cancellation of ``centre - half`` when p̂ is tiny; exactly 0 at p̂ = 0.
    if p_hat <= 0.0:
        return 0.0
    z2n = z * z / n
    centre = p_hat + z2n / 2.0
    half = z * math.sqrt(p_hat * (1.0 - p_hat) / n + z2n / (4.0 * n))
    return (p_hat * p_hat) / (centre + half)


def _wilson(p_hat: float, n: float, z: float) -> tuple[float, float]:
    lower = _wilson_lower(p_hat, n, z)
    upper = 1.0 - _wilson_lower(1.0 - p_hat, n, z)
    return lower, upper


def proportion_ci(
    k: int, n: int, *, method: str = "wilson", level: float = 0.95
) -> tuple[float, float]:
    """Confidence interval for a binomial proportion ``k / n``.

    ``method="wilson"`` (score interval; Wilson, *JASA* 22, 1927)::

        z = Φ⁻¹(1 - (1 - level)/2),  p̂ = k/n
        (p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n)

    ``method="clopper-pearson"`` (exact; Clopper & Pearson, *Biometrika* 26, 1934)::

        lower = Beta⁻¹((1-level)/2; k, n-k+1)     (0 when k = 0)
        upper = Beta⁻¹(1-(1-level)/2; k+1, n-k)   (1 when k = n)

    Both contain ``k / n``. Matches ``statsmodels...proportion_confint`` (``"wilson"``,
    ``"beta"``).
    """
    n_ = _size("n", n)
    k_ = _successes("k", k, "n", n_)
    level_ = _open_unit("level", level)
    if method == "wilson":
        return _wilson(k_ / n_, float(n_), _critical(level_))
    if method == "clopper-pearson":
        from scipy.stats import beta

        tail = (1.0 - level_) / 2.0
        lower = 0.0 if k_ == 0 else float(beta.ppf(tail, k_, n_ - k_ + 1))
        upper = 1.0 if k_ == n_ else float(beta.isf(tail, k_ + 1, n_ - k_))
        return lower, upper
    raise ValueError(f"method must be one of {', '.join(_CI_METHODS)}; got {method!r}")


# ---------------------------------------------------------------------------
# two independent proportions
# ---------------------------------------------------------------------------


class _Result:
    """Base of the result dataclasses: ``to_dict()`` gives plain, JSON-safe builtins."""

    def to_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = _json_safe(dataclasses.asdict(self))  # type: ignore[call-overload]
        return result


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
    from scipy.stats import norm

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
            p_value = min(1.0, 2.0 * float(norm.sf(abs(z))))
        elif alternative == "greater":
            p_value = float(norm.sf(z))
        else:
            p_value = float(norm.cdf(z))
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
    from scipy.stats import binom

    # Symmetric null: the two-sided p-value is twice the smaller tail, capped at 1.
    return min(1.0, 2.0 * float(binom.cdf(min(k, n - k), n, 0.5)))


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


# ---------------------------------------------------------------------------
# sample-ratio mismatch and assignment
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SRMResult(_Result):
    """Chi-square goodness-of-fit of the observed arm sizes to the planned split."""

    observed: tuple[int, ...]
    expected_ratios: tuple[float, ...]
    expected_counts: tuple[float, ...]
    statistic: float
    df: int
    p_value: float
    threshold: float
    mismatch: bool


def srm_check(
    observed_counts: Sequence[int],
    expected_ratios: Sequence[float],
    *,
    threshold: float = 0.001,
) -> SRMResult:
    """Sample-ratio mismatch check (Pearson's chi-square goodness of fit).

    ::

        E_i = N · r_i / Σr,   X² = Σ (O_i - E_i)² / E_i,   p = P[χ²_{g-1} >= X²]

    ``mismatch`` is ``p < threshold``; the strict default 0.001 follows Kohavi, Tang & Xu,
    *Trustworthy Online Controlled Experiments* (2020), ch. 21, since an SRM check runs on every
    experiment. Ratios are normalised by their sum, so ``[1, 1]`` and ``[0.5, 0.5]`` are the same.
    Reference: Pearson, *Phil. Mag.* 50 (1900); Fabijan et al., KDD 2019 (SRM in practice).
    """
    observed = tuple(_count(f"observed_counts[{i}]", v) for i, v in enumerate(observed_counts))
    ratios = tuple(_real(f"expected_ratios[{i}]", v) for i, v in enumerate(expected_ratios))
    threshold_ = _open_unit("threshold", threshold)
    if len(observed) < 2:
        raise ValueError(f"observed_counts needs at least 2 arms, got {len(observed)}")
    if len(ratios) != len(observed):
        raise ValueError(
            f"expected_ratios has {len(ratios)} entries but observed_counts has {len(observed)}"
        )
    for i, r in enumerate(ratios):
        if r <= 0.0:
            raise ValueError(f"expected_ratios[{i}] must be > 0, got {r!r}")
    total = sum(observed)
    if total == 0:
        raise ValueError("observed_counts must not all be 0")
    ratio_sum = sum(ratios)
    shares = tuple(r / ratio_sum for r in ratios)
    expected = tuple(total * s for s in shares)
    from scipy.stats import chi2

    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    df = len(observed) - 1
    p_value = float(chi2.sf(stat, df))
    return SRMResult(
        observed=observed,
        expected_ratios=shares,
        expected_counts=expected,
        statistic=float(stat),
        df=df,
        p_value=p_value,
        threshold=threshold_,
        mismatch=p_value < threshold_,
    )


_DEFAULT_WEIGHTS: Mapping[str, float] = {"control": 0.5, "treatment": 0.5}


def _bucket(user_id: str | int, experiment_id: str) -> float:
    """A uniform number in [0, 1) from sha256 of the length-prefixed experiment id + user id."""
    salt = str(experiment_id).encode("utf-8", "surrogatepass")
    # The length prefix makes ("ab", "c") and ("a", "bc") different inputs.
    payload = (
        str(len(salt)).encode("ascii")
        + b":"
        + salt
        + b":"
        + str(user_id).encode("utf-8", "surrogatepass")
    )
    digest = hashlib.sha256(payload).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_variant(
    user_id: str | int,
    experiment_id: str,
    *,
    weights: Mapping[str, float] = _DEFAULT_WEIGHTS,
) -> str:
    """Sticky, salted assignment of a user to a variant.

    ``u = int(sha256(f"{len(e)}:{e}:{user_id}")[:8 bytes], big-endian) / 2**64`` with ``e`` the
    UTF-8 experiment id; variants are taken in sorted name order, each owning a slice of [0, 1)
    proportional to its weight, and the user gets the variant whose slice holds ``u``. sha256
    (not Python's ``hash``) makes it identical in every process, machine and Python version; the
    experiment id salts it so assignments of different experiments are independent. Weights are
    normalised by their sum; a zero weight gets no users. With the default two variants, raising
    the treatment weight only moves control users into treatment (ramp-ups stay sticky).
    Reference: Kohavi, Tang & Xu (2020), ch. 4 (randomization unit and hashing).
    """
    if not isinstance(experiment_id, str) or not experiment_id:
        raise ValueError(f"experiment_id must be a non-empty string, got {experiment_id!r}")
    if not weights:
        raise ValueError("weights must name at least one variant")
    items: list[tuple[str, float]] = []
    for name in sorted(weights):
        if not isinstance(name, str) or not name:
            raise ValueError(f"weights keys must be non-empty variant names, got {name!r}")
        w = _real(f"weights[{name!r}]", weights[name])
        if w < 0.0:
            raise ValueError(f"weights[{name!r}] must be >= 0, got {w!r}")
        items.append((name, w))
    total = sum(w for _, w in items)
    if total <= 0.0:
        raise ValueError("weights must not all be 0")
    u = _bucket(user_id, experiment_id)
    cumulative = 0.0
    for name, w in items:
        cumulative += w / total
        if w > 0.0 and u < cumulative:
            return name
    # Rounding can leave the cumulative sum a hair below 1: the last live variant owns the rest.
    return next(name for name, w in reversed(items) if w > 0.0)


# ---------------------------------------------------------------------------
# experiment analysis
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailResult(_Result):
    """One guardrail metric: one-sided test that the treatment is worse."""

    name: str
    direction: str
    control_rate: float
    treatment_rate: float
    test: TwoProportionResult
    worse: bool


@dataclass(frozen=True)
class ExperimentAnalysis(_Result):
    """The outcome of :func:`analyze_experiment`.

    ``mde_absolute`` is the smallest worthwhile improvement in rate points (``None`` without an
    MDE); ``practically_significant`` says whether the observed improvement reaches it (``None``
    without an MDE). ``reasons`` explain the recommendation in plain words.
    """

    metric: str
    direction: str
    control_n: int
    control_rate: float
    treatment_n: int
    treatment_rate: float
    alpha: float
    test: TwoProportionResult
    mde: float | None
    mde_relative: bool
    mde_absolute: float | None
    practically_significant: bool | None
    guardrails: tuple[GuardrailResult, ...]
    recommendation: Recommendation
    reasons: tuple[str, ...]


def _arm_rate(arm: Mapping[str, Any], arm_name: str, metric: str) -> tuple[int, float]:
    if "n" not in arm:
        raise ValueError(f"{arm_name} has no 'n' (number of units in the arm)")
    n = _size(f"{arm_name}['n']", arm["n"])
    if metric not in arm:
        raise ValueError(f"{arm_name} has no metric {metric!r}")
    value = arm[metric]
    label = f"{arm_name}[{metric!r}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{label} must be a count (int) or a rate (float), got {value!r}")
    if isinstance(value, numbers.Integral):
        return n, _successes(label, value, f"{arm_name}['n']", n) / n
    return n, _rate(label, value)


def _guardrail_directions(
    guardrails: Mapping[str, str] | Iterable[str] | None,
) -> list[tuple[str, Direction]]:
    if guardrails is None:
        return []
    if isinstance(guardrails, str):
        raise ValueError("guardrails must be a mapping or a list of metric names, not a string")
    if isinstance(guardrails, Mapping):
        return [(name, _direction(f"guardrails[{name!r}]", d)) for name, d in guardrails.items()]
    result: list[tuple[str, Direction]] = []
    for name in guardrails:
        if name not in LOWER_IS_BETTER:
            raise ValueError(
                f"guardrail {name!r} has no known direction; pass a mapping such as "
                f"{{{name!r}: 'lower'}} (lower is better) or {{{name!r}: 'higher'}}"
            )
        result.append((name, "lower"))
    return result


def analyze_experiment(
    control: Mapping[str, Any],
    treatment: Mapping[str, Any],
    *,
    metric: str,
    mde: float | None = None,
    relative: bool = True,
    guardrails: Mapping[str, str] | Iterable[str] | None = None,
    alpha: float = 0.05,
    direction: str = "higher",
) -> ExperimentAnalysis:
    """Analyse a finished A/B test and recommend ``ship``, ``no_ship`` or ``inconclusive``.

    Input shape: each arm is a mapping with ``"n"`` (units in the arm) and one entry per metric,
    either an ``int`` count of units with the event (``{"n": 1000, "thumbs_up": 120}``) or a
    ``float`` rate (``{"n": 1000, "thumbs_up_rate": 0.12}``). ``metric`` names the primary
    metric, ``direction`` says whether higher (default) or lower is better for it.
    ``guardrails`` maps metric names to the better direction (``{"error_rate": "lower"}``); a
    plain list is accepted for names in :data:`LOWER_IS_BETTER`.

    Rules, in order:

    1. Primary metric: two-sided two-proportion z-test (:func:`two_proportion_test`).
    2. Each guardrail: one-sided z-test that the treatment is *worse*; ``p <= alpha`` marks it
       worse. A worse guardrail means ``no_ship`` whatever the primary metric says. (No
       multiplicity correction: that would make guardrails easier to pass.)
    3. Primary significantly worse -> ``no_ship``; not significant -> ``inconclusive``.
    4. Significantly better: with ``mde`` (relative to the control rate by default, else in rate
       points) the observed improvement must reach it, otherwise ``no_ship`` (statistically
       but not practically significant, Kohavi, Tang & Xu 2020, ch. 2); without ``mde`` ->
       ``ship``.
    """
    alpha_ = _open_unit("alpha", alpha)
    primary_direction = _direction("direction", direction)
    if not isinstance(metric, str) or not metric or metric == "n":
        raise ValueError(f"metric must name a metric other than 'n', got {metric!r}")
    n1, p1 = _arm_rate(control, "control", metric)
    n2, p2 = _arm_rate(treatment, "treatment", metric)
    mde_abs: float | None = None
    mde_: float | None = None
    if mde is not None:
        mde_ = _real("mde", mde)
        if mde_ <= 0.0:
            raise ValueError(
                f"mde must be > 0 (the smallest improvement worth shipping), got {mde}"
            )
        mde_abs = mde_ * p1 if relative else mde_

    test = _two_proportion(n1, p1, n2, p2, "two-sided", 0.95)
    guardrail_results: list[GuardrailResult] = []
    for name, better in _guardrail_directions(guardrails):
        if name == metric:
            raise ValueError(f"guardrail {name!r} is also the primary metric")
        g1, r1 = _arm_rate(control, "control", name)
        g2, r2 = _arm_rate(treatment, "treatment", name)
        harm: Alternative = "greater" if better == "lower" else "less"
        g_test = _two_proportion(g1, r1, g2, r2, harm, 0.95)
        guardrail_results.append(
            GuardrailResult(
                name=name,
                direction=better,
                control_rate=r1,
                treatment_rate=r2,
                test=g_test,
                worse=g_test.p_value <= alpha_,
            )
        )

    improvement = test.diff if primary_direction == "higher" else -test.diff
    significant = test.p_value <= alpha_
    practical: bool | None = None
    if mde_abs is not None:
        # isclose: an improvement equal to the MDE (e.g. 0.12 -> 0.138 for 15%) must not fail on
        # the last bit of a float product.
        practical = improvement >= mde_abs or math.isclose(improvement, mde_abs, rel_tol=1e-9)

    reasons: list[str] = []
    recommendation: Recommendation
    worse_guardrails = [g for g in guardrail_results if g.worse]
    for g in worse_guardrails:
        reasons.append(
            f"guardrail {g.name} is significantly worse ({g.control_rate:.4g} -> "
            f"{g.treatment_rate:.4g}, one-sided p = {g.test.p_value:.3g})"
        )
    if significant and improvement < 0:
        reasons.append(f"{metric} is significantly worse (p = {test.p_value:.3g})")
        recommendation = "no_ship"
    elif not significant:
        reasons.append(f"{metric}: no significant difference (p = {test.p_value:.3g} > {alpha_})")
        recommendation = "inconclusive"
    elif practical is False:
        reasons.append(
            f"{metric} improved significantly (p = {test.p_value:.3g}) but by "
            f"{improvement:.4g}, less than the minimum worthwhile effect {mde_abs:.4g}"
        )
        recommendation = "no_ship"
    else:
        reasons.append(f"{metric} improved significantly (p = {test.p_value:.3g})")
        recommendation = "ship"
    if worse_guardrails:
        recommendation = "no_ship"
    return ExperimentAnalysis(
        metric=metric,
        direction=primary_direction,
        control_n=n1,
        control_rate=p1,
        treatment_n=n2,
        treatment_rate=p2,
        alpha=alpha_,
        test=test,
        mde=mde_,
        mde_relative=relative,
        mde_absolute=mde_abs,
        practically_significant=practical,
        guardrails=tuple(guardrail_results),
        recommendation=recommendation,
        reasons=tuple(reasons),
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


# ---------------------------------------------------------------------------
# the seed-compatible object behind the ``llmeval_ab`` fixture
# ---------------------------------------------------------------------------


class ABTestDesigner:
    """The seed's ``ABTestDesigner`` method names with exact statistics.

    Drop-in for code written against the seed, with these deliberate differences:

    * alpha and power are honoured (exact quantiles, not 1.96/0.842), p-values are exact;
    * ``z_score`` is positive when the treatment (arm 2) is higher, like
      :func:`two_proportion_test` (the seed computed ``(p1 - p2)/se``, the opposite sign);
    * ``direction`` is ``"no_difference"`` for equal rates, ``relative_lift`` is ``None`` when
      the control rate is 0, and invalid input raises ``ValueError`` instead of returning a
      made-up "not significant";
    * ``assign_variant`` hashes with salted sha256 instead of md5 mod 1000.

    Every module function is also available as a method (``designer.sample_size(...)``,
    ``designer.mcnemar(...)``, ...). ``designer.analyze(...)`` is :func:`analyze_experiment`.
    """

    sample_size = staticmethod(sample_size)
    two_proportion_test = staticmethod(two_proportion_test)
    proportion_ci = staticmethod(proportion_ci)
    mcnemar = staticmethod(mcnemar)
    fisher_exact = staticmethod(fisher_exact)
    repeat_drop_test = staticmethod(repeat_drop_test)
    srm_check = staticmethod(srm_check)
    sign_test = staticmethod(sign_test)
    history_bounds = staticmethod(history_bounds)
    binomial_drop_test = staticmethod(binomial_drop_test)
    analyze = staticmethod(analyze_experiment)

    @staticmethod
    def compute_required_sample_size(
        baseline_rate: float,
        minimum_detectable_effect: float,
        alpha: float = 0.05,
        power: float = 0.80,
    ) -> int:
        """Units per variant; ``minimum_detectable_effect`` is relative. See :func:`sample_size`.

        >>> ABTestDesigner.compute_required_sample_size(0.12, 0.15)
        5443
        """
        return sample_size(baseline_rate, minimum_detectable_effect, alpha=alpha, power=power)

    @staticmethod
    def assign_variant(
        user_id: str | int,
        experiment_id: str,
        traffic_fraction: float = 0.5,
        *,
        weights: Mapping[str, float] | None = None,
    ) -> str:
        """``"treatment"`` for a ``traffic_fraction`` share of users, else ``"control"``.

        With ``weights`` it is :func:`assign_variant` with any number of variants (then
        ``traffic_fraction`` must be left at its default).
        """
        if weights is not None:
            if traffic_fraction != 0.5:
                raise ValueError("pass either traffic_fraction or weights, not both")
            return assign_variant(user_id, experiment_id, weights=weights)
        fraction = _rate("traffic_fraction", traffic_fraction)
        return assign_variant(
            user_id, experiment_id, weights={"control": 1.0 - fraction, "treatment": fraction}
        )

    @staticmethod
    def two_proportion_z_test(
        n1: int, p1: float, n2: int, p2: float, *, alpha: float = 0.05
    ) -> dict[str, Any]:
        """The seed's dict (``z_score``, ``p_value``, ``significant``, ``direction``,
        ``relative_lift``) from observed rates; ``z_score > 0`` when ``p2 > p1``.

        Extra keys: ``diff``, ``ci_low``, ``ci_high`` (Newcombe 95% interval of ``p2 - p1``).
        """
        n1_ = _size("n1", n1)
        n2_ = _size("n2", n2)
        res = _two_proportion(n1_, _rate("p1", p1), n2_, _rate("p2", p2), "two-sided", 0.95)
        return _seed_test_dict(res, _open_unit("alpha", alpha))

    @staticmethod
    def analyze_experiment(
        control_metrics: Mapping[str, Any],
        treatment_metrics: Mapping[str, Any],
        metric_name: str = "thumbs_up_rate",
        *,
        mde: float | None = None,
        relative: bool = True,
        guardrails: Mapping[str, str] | Iterable[str] | None = None,
        alpha: float = 0.05,
        direction: str = "higher",
    ) -> dict[str, Any]:
        """The seed's dict (``metric``, ``control``, ``treatment``, ``statistical_test``,
        ``recommendation`` in ``ship_treatment``/``no_ship``/``inconclusive``).

        Runs :func:`analyze_experiment`, so ``mde`` and ``guardrails`` work here too; extra keys
        ``reasons``, ``practically_significant`` and ``guardrails`` explain the decision. A
        missing metric raises ``ValueError`` (the seed silently used 0).
        """
        analysis = analyze_experiment(
            control_metrics,
            treatment_metrics,
            metric=metric_name,
            mde=mde,
            relative=relative,
            guardrails=guardrails,
            alpha=alpha,
            direction=direction,
        )
        recommendation = (
            "ship_treatment" if analysis.recommendation == "ship" else analysis.recommendation
        )
        return {
            "metric": analysis.metric,
            "control": {"n": analysis.control_n, "rate": analysis.control_rate},
            "treatment": {"n": analysis.treatment_n, "rate": analysis.treatment_rate},
            "statistical_test": _seed_test_dict(analysis.test, analysis.alpha),
            "recommendation": recommendation,
            "reasons": list(analysis.reasons),
            "practically_significant": analysis.practically_significant,
            "guardrails": [g.to_dict() for g in analysis.guardrails],
        }


def _seed_test_dict(res: TwoProportionResult, alpha: float) -> dict[str, Any]:
    if res.p2 > res.p1:
        direction = "treatment_better"
    elif res.p2 < res.p1:
        direction = "control_better"
    else:
        direction = "no_difference"
    return {
        "z_score": res.z,
        "p_value": res.p_value,
        "significant": res.p_value <= alpha,
        "direction": direction,
        "relative_lift": res.relative_lift,
        "diff": res.diff,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
    }


# ---------------------------------------------------------------------------
# paired difference (version comparison)
# ---------------------------------------------------------------------------


def paired_difference_ci(
    both: int, only_first: int, only_second: int, neither: int, *, level: float = 0.95
) -> tuple[float, float]:
    """Interval for ``p2 - p1`` of paired proportions: Newcombe's method 10.

    Newcombe R.G. (1998), "Improved confidence intervals for the difference between binomial
    proportions based on paired data", *Statistics in Medicine* 17(22), 2635-2650.

    The 2x2 paired table: ``both`` pass under 1 and 2 (a), ``only_first`` pass under 1 only (b),
    ``only_second`` pass under 2 only (c), ``neither`` (d); ``n = a + b + c + d``,
    ``p1 = (a + b)/n``, ``p2 = (a + c)/n``, ``D = p2 - p1 = (c - b)/n``. With Wilson limits
    ``(l1, u1)``, ``(l2, u2)`` and ``phi = (ad - bc)/sqrt((a+b)(c+d)(a+c)(b+d))`` (0 when any
    margin is empty)::

        L = D - sqrt((p2 - l2)² - 2·phi·(p2 - l2)(u1 - p1) + (u1 - p1)²)
        U = D + sqrt((u2 - p2)² - 2·phi·(u2 - p2)(p1 - l1) + (p1 - l1)²)

    Used for non-inferiority: the candidate (2) is not worse than the baseline (1) by more than
    a margin ``m`` at one-sided level alpha when ``L > -m`` with ``level = 1 - 2·alpha``.
    """
    a = _count("both", both)
    b = _count("only_first", only_first)
    c = _count("only_second", only_second)
    d = _count("neither", neither)
    n = a + b + c + d
    if n <= 0:
        raise ValueError("paired_difference_ci: the table is empty (n = 0)")
    z = _critical(_open_unit("level", level))
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = _wilson(p1, n, z)
    l2, u2 = _wilson(p2, n, z)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denom) if denom > 0 else 0.0
    diff = p2 - p1
    lower = diff - math.sqrt(
        max((p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2, 0.0)
    )
    upper = diff + math.sqrt(
        max((u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2, 0.0)
    )
    return max(lower, -1.0), min(upper, 1.0)
