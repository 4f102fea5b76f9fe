"""Exact distribution functions on the standard library, for the statistics a gate run needs.

A run with recorded history computes a grid prior, posterior-predictive tails, a prediction
bound, a CMH test and a flip count test. With scipy those import ``scipy.stats`` (1-2 s and
about 90 MiB on a 2-core CI machine) for a handful of values; the functions here compute the
same values from ``math``:

* :func:`normal_cdf` / :func:`normal_sf`: ``erfc`` (no cancellation in either tail);
* :func:`binom_cdf` / :func:`binom_sf`: the sum of the binomial probabilities of the requested
  tail (``math.fsum``; each term the exact integer coefficient times the two powers, or the
  exponential of their logarithms where a float would overflow or underflow), so a tiny tail
  keeps its relative accuracy and no tail is ``1 -`` the other;
* :func:`student_t_ppf`: the Student-t quantile for integer degrees of freedom, by bisection on
  the closed-form CDF of Abramowitz & Stegun, *Handbook of Mathematical Functions* (1964),
  26.7.3 (odd) and 26.7.4 (even), in ``theta = atan(t / sqrt(df))``.

``tests/stats/test_exact.py`` checks each against scipy (a runtime dependency, still used by
the A/B analysis and the intervals that need more): to a relative 1e-12, and 1e-10 for binomial
tails over more than 1,000 trials (where the exponent itself is large, its rounding is
amplified by ``exp``).
"""

from __future__ import annotations

import math

__all__ = [
    "binom_cdf",
    "binom_sf",
    "normal_cdf",
    "normal_sf",
    "student_t_ppf",
]

_SQRT2 = math.sqrt(2.0)


def normal_cdf(z: float) -> float:
    """``P[Z <= z]`` for a standard normal ``Z``."""
    return 0.5 * math.erfc(-z / _SQRT2)


def normal_sf(z: float) -> float:
    """``P[Z > z]`` for a standard normal ``Z``."""
    return 0.5 * math.erfc(z / _SQRT2)


def _tail_sum(lo: int, hi: int, n: int, p: float) -> float:
    """``P[lo <= X <= hi]``: each term is the exact integer coefficient (kept exact from term to
    term) times the two powers, in logarithms where a power or the coefficient leaves the float
    range; summed by ``math.fsum``."""
    if p <= 0.0 or p >= 1.0:  # all the mass on x = 0 or x = n
        at = 0 if p <= 0.0 else n
        return 1.0 if lo <= at <= hi else 0.0
    q = 1.0 - p
    log_p, log_q = math.log(p), math.log1p(-p)
    coefficient = math.comb(n, lo)
    terms = []
    for x in range(lo, hi + 1):
        if x > lo:
            coefficient = coefficient * (n - x + 1) // x
        hit, miss = p**x, q ** (n - x)
        if n <= 1000 and hit > 1e-290 and miss > 1e-290:  # floats all the way: 3 roundings
            terms.append(coefficient * hit * miss)
        else:
            terms.append(math.exp(math.log(coefficient) + x * log_p + (n - x) * log_q))
    return math.fsum(terms)


def binom_cdf(k: int, n: int, p: float) -> float:
    """``P[X <= k]`` for ``X ~ Binomial(n, p)``."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    return min(1.0, _tail_sum(0, k, n, p))


def binom_sf(k: int, n: int, p: float) -> float:
    """``P[X > k]`` for ``X ~ Binomial(n, p)``."""
    if k < 0:
        return 1.0
    if k >= n:
        return 0.0
    return min(1.0, _tail_sum(k + 1, n, n, p))


def _t_central(theta: float, df: int) -> float:
    """``P[|T| <= sqrt(df) tan(theta)]`` for ``T ~ t(df)`` (A&S 26.7.3 / 26.7.4)."""
    c, s = math.cos(theta), math.sin(theta)
    c2 = c * c
    if df % 2:  # odd
        if df == 1:
            return 2.0 * theta / math.pi
        term, total = c, c
        for j in range(1, (df - 3) // 2 + 1):
            term *= c2 * (2 * j) / (2 * j + 1)
            total += term
        return 2.0 / math.pi * (theta + s * total)
    term, total = 1.0, 1.0  # even
    for j in range(1, (df - 2) // 2 + 1):
        term *= c2 * (2 * j - 1) / (2 * j)
        total += term
    return s * total


def student_t_ppf(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` (a positive integer) degrees of freedom."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -student_t_ppf(1.0 - q, df)
    target = 2.0 * q - 1.0  # P[|T| <= t]
    lo, hi = 0.0, math.pi / 2.0
    while True:
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_central(mid, df) < target:
            lo = mid
        else:
            hi = mid
    return math.sqrt(df) * math.tan(0.5 * (lo + hi))
