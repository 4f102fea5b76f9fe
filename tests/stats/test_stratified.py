"""CMH across cases (against statsmodels), run-level dispersion, flip count and prediction bound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm  # type: ignore[import-untyped]
from scipy.stats import binomtest
from scipy.stats import t as student_t
from statsmodels.stats.contingency_tables import StratifiedTable  # type: ignore[import-untyped]

from pytest_llmeval import stats


def strata(seed: int) -> tuple[list[int], list[int], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    n = rng.integers(3, 20, 40)
    m = rng.integers(1, 6, 40)
    p = rng.uniform(0.2, 0.95, 40)
    return (rng.binomial(n, p).tolist(), n.tolist(), rng.binomial(m, p).tolist(), m.tolist())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("correction", [True, False])
def test_cmh_matches_statsmodels(seed: int, correction: bool) -> None:
    k, n, x, m = strata(seed)
    got = stats.cmh_drop_test(k, n, x, m, correction=correction)
    rows = zip(k, n, x, m, strict=True)
    tables = [np.array([[xi, mi - xi], [ki, ni - ki]]) for ki, ni, xi, mi in rows]
    ref = StratifiedTable(tables).test_null_odds(correction=correction)
    assert got.z**2 == pytest.approx(ref.statistic, rel=1e-10)
    two_sided = 2 * min(got.p_value, 1 - got.p_value)
    assert two_sided == pytest.approx(ref.pvalue, rel=1e-8)


def test_cmh_is_one_sided_and_scaled_by_the_dispersion() -> None:
    worse = stats.cmh_drop_test([9] * 20, [10] * 20, [0] * 20, [1] * 20)
    assert worse.z < 0 and worse.p_value < 1e-6
    better = stats.cmh_drop_test([5] * 20, [10] * 20, [1] * 20, [1] * 20)
    assert better.p_value > 0.99
    wide = stats.cmh_drop_test([9] * 20, [10] * 20, [0] * 20, [1] * 20, dispersion=4.0)
    assert wide.z == pytest.approx(worse.z / 2)


def test_cmh_without_varying_strata() -> None:
    res = stats.cmh_drop_test([10, 10], [10, 10], [1, 1], [1, 1])
    assert (res.informative, res.z, res.p_value) == (0, 0.0, 1.0)


def test_dispersion_is_one_for_binomial_noise_and_more_with_drift() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.3, 0.99, 300)
    phis = [stats.run_dispersion(rng.binomial(1, p, (10, 300)), np.ones((10, 300))).phi
            for _ in range(200)]  # fmt: skip
    assert np.mean(phis) == pytest.approx(1.0, abs=0.05)
    drift = rng.normal(0, 0.05, (10, 1))  # a bad day moves every case
    runs = rng.binomial(1, np.clip(p[None, :] + drift, 0, 1))
    assert stats.run_dispersion(runs, np.ones((10, 300))).phi > 3


def test_dispersion_by_hand() -> None:
    y = [[1, 1], [0, 1], [1, 0]]
    s = [[1, 1], [1, 1], [1, 1]]
    got = stats.run_dispersion(y, s)
    p = np.array([2 / 3, 2 / 3])
    base = p * (1 - p) * 3 / 2
    dev = np.array([2 - 4 / 3, 1 - 4 / 3, 1 - 4 / 3])
    var = np.full(3, base.sum())
    assert got.df == 2 and got.chi2 == pytest.approx(float((dev**2 / var).sum()))
    assert stats.run_dispersion([[1, 0]], [[1, 1]]).df == 0


@pytest.mark.parametrize(("b", "c"), [(0, 0), (8, 2), (2, 8), (15, 10), (1, 0)])
def test_flip_count_test_is_scipys_binomtest(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert stats.flip_count_test(b, c) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.025])
def test_prediction_bound_is_statsmodels_ols_prediction(alpha: float) -> None:
    y = np.array([0.81, 0.84, 0.79, 0.83, 0.86, 0.8])
    got = stats.prediction_bound(y.tolist(), alpha)
    frame = sm.OLS(y, np.ones((y.size, 1))).fit().get_prediction(np.ones((1, 1)))
    assert got.lower == pytest.approx(frame.summary_frame(alpha=2 * alpha)["obs_ci_lower"][0])
    assert got.t == pytest.approx(student_t.ppf(1 - alpha, y.size - 1))
    sd = float(np.std(y, ddof=1))
    assert got.lower == pytest.approx(y.mean() - got.t * sd * math.sqrt(1 + 1 / y.size))


@pytest.mark.parametrize("h", [3, 10])
def test_prediction_bound_has_its_nominal_false_alarm_rate(h: int) -> None:
    rng = np.random.default_rng(h)
    runs = rng.normal(0.85, 0.02, (4000, h + 1))
    below = [row[-1] < stats.prediction_bound(row[:-1].tolist(), 0.05).lower for row in runs]
    assert np.mean(below) == pytest.approx(0.05, abs=0.012)


def test_prediction_bound_needs_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        stats.prediction_bound([0.9])
    with pytest.raises(ValueError, match="alpha"):
        stats.prediction_bound([0.9, 0.8], 1.0)
