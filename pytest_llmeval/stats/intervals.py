"""Confidence intervals for proportions: Wilson, Clopper-Pearson, Newcombe paired."""

from __future__ import annotations

import math

from pytest_llmeval.stats._common import (
    _count,
    _critical,
    _open_unit,
    _size,
    _successes,
)

_CI_METHODS = ("wilson", "clopper-pearson")


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
