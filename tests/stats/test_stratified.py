"""pytest_llmeval.stats.stratified: CMH across cases (against statsmodels), run-level dispersion."""

from __future__ import annotations

import numpy as np
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
