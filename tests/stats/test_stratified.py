"""pytest_llmeval.stats.stratified: CMH across cases (against statsmodels), run-level dispersion."""

from __future__ import annotations

import numpy as np
import numpy_reference as ref
import pytest
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
    ones = np.ones((10, 300), dtype=int).tolist()
    phis = [stats.run_dispersion(rng.binomial(1, p, (10, 300)).tolist(), ones).phi
            for _ in range(200)]  # fmt: skip
    assert np.mean(phis) == pytest.approx(1.0, abs=0.05)
    drift = rng.normal(0, 0.05, (10, 1))  # a bad day moves every case
    runs = rng.binomial(1, np.clip(p[None, :] + drift, 0, 1))
    assert stats.run_dispersion(runs.tolist(), ones).phi > 3


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


@pytest.mark.parametrize("seed", range(6))
def test_cmh_sums_are_the_numpy_version(seed: int) -> None:
    # a gate's strata: thousands of cases with a few distinct tables, some uninformative
    rng = np.random.default_rng(seed)
    n = rng.integers(0, 31, 5000)
    m = rng.integers(0, 4, 5000)
    p = np.where(rng.random(5000) < 0.7, 0.97, rng.uniform(0.2, 0.8, 5000))
    k, x = rng.binomial(n, p), rng.binomial(m, p)
    args = [v.tolist() for v in (k, n, x, m)]
    got = stats.cmh_drop_test(*args, dispersion=1.7)
    informative, observed, expected, variance = ref.cmh_sums(*args)
    assert (got.strata, got.informative, got.observed) == (5000, informative, observed)
    assert got.expected == pytest.approx(expected, rel=1e-12)
    assert got.variance == pytest.approx(variance, rel=1e-12)
    diff = observed - expected
    diff = min(diff + 0.5, 0.0) if diff < 0 else max(diff - 0.5, 0.0)
    assert got.z == pytest.approx(diff / np.sqrt(1.7 * variance), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_dispersion_is_the_numpy_version(seed: int) -> None:
    # runs of a suite with repeats, errored cells (0 samples) and a drifting day
    rng = np.random.default_rng(seed)
    p = np.where(rng.random(3000) < 0.7, 0.97, rng.uniform(0.2, 0.8, 3000))
    s = rng.choice([0, 3, 3, 3], (6, 3000))
    day = rng.normal(0, 0.03, (6, 1))
    y = rng.binomial(s, np.clip(p[None, :] + day, 0, 1))
    got = stats.run_dispersion(y.tolist(), s.tolist())
    phi, chi2, df = ref.run_dispersion(y.tolist(), s.tolist())
    assert got.df == df == 5
    assert got.chi2 == pytest.approx(chi2, rel=1e-10)
    assert got.phi == pytest.approx(phi, rel=1e-10)


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="equally long"):
        stats.cmh_drop_test([1], [2], [1], [1, 1])
    with pytest.raises(ValueError, match="equally long"):
        stats.cmh_drop_test([[1]], [[2]], [[1]], [[1]])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=">= 0"):
        stats.cmh_drop_test([1], [-2], [1], [1])
    with pytest.raises(ValueError, match="exceed"):
        stats.cmh_drop_test([1], [2], [2], [1])
    with pytest.raises(ValueError, match="equally shaped"):
        stats.run_dispersion([[1, 0], [1]], [[1, 1], [1, 1]])
    with pytest.raises(ValueError, match="0 <= passes <= samples"):
        stats.run_dispersion([[1, 2], [1, 0]], [[1, 1], [1, 1]])
