"""Holm, Benjamini-Hochberg (against statsmodels), Tarone and the discrete Bonferroni."""

from __future__ import annotations

import itertools

import numpy as np
import numpy_reference as ref
import pytest
from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]

from pytest_llmeval import stats


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_match_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.round(rng.uniform(size=25) ** 3, 3)  # rounding makes ties
    np.testing.assert_allclose(stats.holm(p.tolist()), multipletests(p, method="holm")[1],
                               atol=1e-15)  # fmt: skip
    np.testing.assert_allclose(
        stats.benjamini_hochberg(p.tolist()), multipletests(p, method="fdr_bh")[1], atol=1e-15
    )


def test_empty_families() -> None:
    assert stats.holm([]) == [] and stats.benjamini_hochberg([]) == []
    d = stats.discrete_bonferroni([], 0.05)
    assert (d.threshold, d.spent, d.testable) == (0.05, 0.0, 0)


def brute_tarone(mins: list[float], alpha: float) -> float:
    for k in itertools.count(1):
        if sum(1 for p in mins if p <= alpha / k) <= k:
            return alpha / k
    raise AssertionError


@pytest.mark.parametrize("seed", range(6))
def test_tarone_matches_its_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mins = (rng.uniform(size=40) ** 4).tolist()
    got = stats.tarone(mins, 0.05)
    assert got.threshold == pytest.approx(brute_tarone(mins, 0.05))
    assert got.testable == sum(1 for p in mins if p <= got.threshold)
    assert got.spent <= 0.05 + 1e-15


def test_tarone_ignores_tests_that_cannot_reject() -> None:
    # 3 cases can reach p = 0.001, 97 never go below 0.2: Bonferroni would use 0.05/100
    got = stats.tarone([0.001] * 3 + [0.2] * 97, 0.05)
    assert got.threshold == pytest.approx(0.05 / 3) and got.testable == 3


@pytest.mark.parametrize("seed", range(6))
def test_discrete_bonferroni_is_the_largest_affordable_threshold(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = [sorted((rng.uniform(size=int(rng.integers(1, 4))) ** 5).tolist()) for _ in range(60)]

    def cost(t: float) -> float:
        return sum(max([p for p in row if p <= t], default=0.0) for row in rows)

    got = stats.discrete_bonferroni(rows, 0.05)
    assert got.spent == pytest.approx(cost(got.threshold)) and got.spent <= 0.05
    larger = sorted(p for row in rows for p in row if p > got.threshold)
    assert not larger or cost(larger[0]) > 0.05
    # never stricter than Tarone on the smallest attainable values
    assert got.threshold >= stats.tarone([row[0] for row in rows], 0.05).threshold * (1 - 1e-12)


def test_discrete_bonferroni_counts_impossible_rejections_as_free() -> None:
    got = stats.discrete_bonferroni([[0.0, 0.5]] * 1000, 0.05)
    assert got.threshold == 0.0 and got.spent == 0.0 and got.testable == 1000


def test_discrete_bonferroni_controls_the_family_wise_rate() -> None:
    # 200 binomial tests with discrete exact p-values: P[any p <= threshold] <= alpha
    from scipy.stats import binom

    rng = np.random.default_rng(3)
    probs = rng.uniform(0.5, 0.99, 200)
    attainable = [binom.cdf(np.arange(6), 5, p).tolist() for p in probs]
    family = stats.discrete_bonferroni(attainable, 0.05)
    x = rng.binomial(5, probs, size=(20_000, 200))
    pvals = np.take_along_axis(np.asarray(attainable)[None, :, :], x[:, :, None], 2)[:, :, 0]
    fwer = float(np.mean(np.any(pvals <= family.threshold, axis=1)))
    assert fwer <= family.spent + 3 * np.sqrt(family.spent / 20_000) and family.spent <= 0.05


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: stats.holm([0.5, 1.5]), r"p_values\[1\]"),
        (lambda: stats.tarone([0.1], alpha=0.0), "alpha"),
        (lambda: stats.discrete_bonferroni([[0.1, -0.1]]), r"attainable\[0\]\[1\]"),
    ],
)
def test_invalid_input_names_the_argument(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]


@pytest.mark.parametrize("seed", range(8))
def test_discrete_bonferroni_is_the_numpy_version(seed: int) -> None:
    # a gate's family: thousands of cases, a few dozen distinct rows, some of several values
    rng = np.random.default_rng(seed)
    distinct = [sorted(rng.uniform(0, 0.05, rng.integers(0, 4)) ** 2) for _ in range(30)]
    distinct += [[0.0, 0.2], [], [0.0]]
    rows = [distinct[i] for i in rng.integers(0, len(distinct), 3000)]
    for alpha in (0.02, 0.05):
        got = stats.discrete_bonferroni(rows, alpha)
        threshold, spent, testable = ref.discrete_bonferroni(rows, alpha)
        assert (got.threshold, got.testable, got.tests) == (threshold, testable, len(rows))
        assert got.spent == pytest.approx(spent, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_tarone_is_its_numpy_version(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mins = np.round(rng.uniform(size=200) ** 4, 4)  # ties
    k = 1
    while k <= mins.size and int(np.searchsorted(np.sort(mins), 0.05 / k, side="right")) > k:
        k += 1
    got = stats.tarone(mins.tolist(), 0.05)
    assert got.threshold == 0.05 / k
    assert got.testable == int(np.sum(mins <= 0.05 / k))
