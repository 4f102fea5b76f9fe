"""The standard-library distribution functions agree with scipy's (issue #13: a gate run with
history no longer imports scipy)."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import binom, norm, t

from pytest_llmeval.stats.exact import (
    binom_cdf,
    binom_sf,
    normal_cdf,
    normal_sf,
    student_t_ppf,
)


def _close(a: float, b: float, rel: float) -> bool:
    # below 1e-250 scipy's own binomial tails underflow to 0 where these keep a value
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-250)


@pytest.mark.parametrize("z", [-38.0, -8.0, -3.2, -1.0, 0.0, 0.4, 1.96, 8.0, 38.0])
def test_normal_tails_match_scipy_in_both_tails(z: float) -> None:
    assert _close(normal_cdf(z), float(norm.cdf(z)), 1e-12)
    assert _close(normal_sf(z), float(norm.sf(z)), 1e-12)


def test_binomial_tails_match_scipy() -> None:
    rng = random.Random(7)
    checked = 0
    for _ in range(400):
        n = rng.choice([1, 2, 3, 7, 20, 100, 999, 1000, 1001, 2500])
        k = rng.randint(-1, n + 1)
        p = rng.choice([0.0, 1.0, 0.5, 0.01, 0.3, 0.99, rng.random()])
        rel = 1e-12 if n <= 1000 else 1e-10
        for mine, theirs in ((binom_cdf, binom.cdf), (binom_sf, binom.sf)):
            want = float(theirs(k, n, p))
            assert _close(mine(k, n, p), want, rel), (mine.__name__, k, n, p)
            checked += 1
    assert checked == 800


def test_fair_coin_tails_are_exact() -> None:
    assert binom_sf(1, 3, 0.5) == 0.5  # P[X >= 2] of 3 fair flips
    assert binom_cdf(0, 2, 0.5) == 0.25
    assert binom_cdf(1, 2, 1.0) == 0.0 and binom_sf(0, 2, 0.0) == 0.0  # all mass at one end


@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 6, 9, 10, 29, 30, 101, 1000])
@pytest.mark.parametrize("q", [0.001, 0.05, 0.3, 0.6, 0.9, 0.95, 0.975, 0.99, 0.999999])
def test_student_t_quantile_matches_scipy(df: int, q: float) -> None:
    assert _close(student_t_ppf(q, df), float(t.ppf(q, df)), 1e-10)


def test_student_t_quantile_rejects_what_it_cannot_compute() -> None:
    assert student_t_ppf(0.5, 7) == 0.0
    for bad_df in (0, 2.5, True):
        with pytest.raises(ValueError, match="df must be a positive integer"):
            student_t_ppf(0.9, bad_df)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="q must be in"):
        student_t_ppf(1.0, 3)
