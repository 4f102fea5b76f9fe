"""Empirical-Bayes priors of per-case pass rates, checked against scipy."""

from __future__ import annotations

import math

import numpy as np
import numpy_reference as ref
import pytest
from scipy.optimize import minimize
from scipy.stats import betabinom, binom

from pytest_llmeval import stats


def suite(seed: int, m: int = 400, n: int = 10) -> tuple[list[int], list[int]]:
    """The issue's noisy suite: 70% of cases at 0.97, 30% uniform on (0.2, 0.8)."""
    rng = np.random.default_rng(seed)
    p = np.where(rng.random(m) < 0.7, 0.97, rng.uniform(0.2, 0.8, m))
    return rng.binomial(n, p).tolist(), [n] * m


def test_beta_binomial_fit_is_the_maximum_likelihood() -> None:
    rng = np.random.default_rng(7)
    n = rng.integers(3, 15, 300)
    k = rng.binomial(n, rng.beta(2.0, 0.6, 300))
    fit = stats.fit_beta_binomial(k.tolist(), n.tolist())

    def nll(theta: np.ndarray) -> float:
        return -float(betabinom.logpmf(k, n, math.exp(theta[0]), math.exp(theta[1])).sum())

    ref = minimize(nll, [0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12})
    assert fit.a == pytest.approx(math.exp(ref.x[0]), rel=1e-4)
    assert fit.b == pytest.approx(math.exp(ref.x[1]), rel=1e-4)
    # the reported log-likelihood leaves out the binomial coefficients, a constant
    const = float(np.sum([math.lgamma(ni + 1) - math.lgamma(ki + 1) - math.lgamma(ni - ki + 1)
                          for ki, ni in zip(k, n, strict=True)]))  # fmt: skip
    assert fit.log_likelihood + const == pytest.approx(-ref.fun, rel=1e-9)
    assert fit.mean == pytest.approx(fit.a / (fit.a + fit.b))
    assert fit.rho == pytest.approx(1 / (fit.a + fit.b + 1))


def test_beta_binomial_recovers_its_parameters_on_a_large_suite() -> None:
    rng = np.random.default_rng(11)
    k = rng.binomial(20, rng.beta(3.0, 1.0, 20_000))
    fit = stats.fit_beta_binomial(k.tolist(), [20] * k.size)
    assert fit.a == pytest.approx(3.0, rel=0.05)
    assert fit.b == pytest.approx(1.0, rel=0.05)


def test_degenerate_suites() -> None:
    quiet = stats.fit_beta_binomial([10, 10, 5], [10, 10, 5])
    assert quiet.degenerate == "all_pass" and quiet.b == 0.0 and quiet.mean == 1.0
    table = stats.predictive_cdf_table([10], [10], 3, quiet)
    assert table.tolist() == [[0.0, 0.0, 0.0, 1.0]]
    broken = stats.fit_beta_binomial([0, 0], [4, 4])
    assert broken.degenerate == "all_fail"
    grid = stats.fit_grid_prior([3, 3], [3, 3])
    assert grid.degenerate == "all_pass" and grid.support == (1.0,)
    assert stats.grid_predictive_cdf_table([3], [3], 2, grid).tolist() == [[0.0, 0.0, 1.0]]


def test_predictive_table_is_scipys_beta_binomial() -> None:
    fit = stats.fit_beta_binomial(*suite(1))
    table = stats.predictive_cdf_table([10, 7, 0], [10, 10, 10], 5, fit)
    for row, k in zip(table, (10, 7, 0), strict=True):
        expected = betabinom.cdf(np.arange(6), 5, fit.a + k, fit.b + 10 - k)
        np.testing.assert_allclose(row, expected, rtol=1e-10, atol=1e-15)
    assert stats.beta_binomial_cdf(2, 5, 1.5, 0.5) == pytest.approx(betabinom.cdf(2, 5, 1.5, 0.5))
    assert stats.beta_binomial_cdf(5, 5, 1.5, 0.5) == 1.0
    assert stats.beta_binomial_cdf(-1, 5, 1.5, 0.5) == 0.0
    assert stats.beta_binomial_cdf(2, 5, math.inf, 0.0) == 0.0


def test_grid_prior_is_a_fixed_point_of_em_and_beats_one_beta() -> None:
    k, n = suite(3)
    prior = stats.fit_grid_prior(k, n, max_iter=5000, tol=1e-13)
    assert sum(prior.weights) == pytest.approx(1.0)
    g = np.asarray(prior.support)
    w = np.asarray(prior.weights)
    lik = binom.pmf(np.asarray(k)[:, None], 10, g[None, :])
    step = w * ((1 / (lik @ w)) @ lik) / len(k)  # one more EM step changes nothing
    np.testing.assert_allclose(step, w, atol=1e-5)
    loglik = float(np.sum(np.log(lik @ w)))
    assert prior.log_likelihood == pytest.approx(loglik, rel=1e-9)
    beta = stats.fit_beta_binomial(k, n)
    const = float(np.sum(binom.logpmf(k, 10, 0.5))) - len(k) * 10 * math.log(0.5)
    assert loglik > beta.log_likelihood + const  # the NPMLE maximises over all priors


def test_grid_predictive_matches_the_true_posterior_on_the_issues_model() -> None:
    # a case that never failed in 90 samples, in the issue's suite: the truth is near
    # 0.03^3 (it is almost surely a 0.97 case); one beta prior is far too sure of it
    k, n = suite(5, m=1000, n=90)
    grid = stats.fit_grid_prior(k, n)
    beta = stats.fit_beta_binomial(k, n)
    ps = np.concatenate([[0.97], np.linspace(0.2, 0.8, 601)])
    w = np.concatenate([[0.7], np.full(601, 0.3 / 601)])
    post = w * binom.pmf(90, 90, ps)
    truth = float(post @ (1 - ps) ** 3 / post.sum())
    got = float(stats.grid_predictive_cdf_table([90], [90], 3, grid)[0, 0])
    one_beta = float(stats.predictive_cdf_table([90], [90], 3, beta)[0, 0])
    assert got == pytest.approx(truth, rel=0.5)
    assert one_beta < truth / 5


def test_grid_predictive_by_hand() -> None:
    prior = stats.GridPrior((0.5, 0.9), (0.25, 0.75), 0.8, 2, 20, 4, 1, 0.0, None)
    post = np.array([0.25 * binom.pmf(8, 10, 0.5), 0.75 * binom.pmf(8, 10, 0.9)])
    post /= post.sum()
    expected = post @ np.array([binom.cdf(np.arange(4), 3, p) for p in (0.5, 0.9)])
    got = stats.grid_predictive_cdf_table([8], [10], 3, prior)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def realistic(name: str) -> tuple[list[int], list[int]]:
    """Per-case (passes, samples) a gate sees: ``bench_run`` is benchmarks/bench_run.py's noisy
    app (2,000 cases, the fill run and 5 recorded runs, 2% of answers wrong in each); ``H/N``
    is bench_gate_noise's noisy suite of 1,000 cases over H runs of N samples; ``errored``
    the same with some samples lost to errors (several n); ``quiet`` a deterministic suite with
    one failure."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "bench_run":
        return (6 - rng.binomial(6, 0.02, 2000)).tolist(), [6] * 2000
    if name == "quiet":
        return [10] * 499 + [9], [10] * 500
    p = np.where(rng.random(1000) < 0.7, 0.97, rng.uniform(0.2, 0.8, 1000))
    if name == "errored":
        n = 10 - rng.binomial(10, 0.03, 1000)
        return rng.binomial(n, p).tolist(), n.tolist()
    h, samples = (int(v) for v in name.split("/"))
    return rng.binomial(h * samples, p).tolist(), [h * samples] * 1000


REALISTIC = ["bench_run", "3/1", "10/1", "10/3", "30/1", "100/1", "errored", "quiet"]


@pytest.mark.parametrize("name", REALISTIC)
def test_grid_prior_is_the_numpy_em(name: str) -> None:
    # the same iteration and stopping rule as the numpy version the gate's figures were
    # measured with: the same iterations, support and weights up to rounding
    k, n = realistic(name)
    got = stats.fit_grid_prior(k, n)
    want = ref.fit_grid_prior(k, n)
    assert got.iterations == want.iterations
    assert got.support == want.support
    np.testing.assert_allclose(got.weights, want.weights, rtol=1e-9, atol=1e-13)
    assert got.mean == pytest.approx(want.mean, rel=1e-12)
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=1e-12)
    assert (got.cases, got.samples, got.failures) == (want.cases, want.samples, want.failures)


@pytest.mark.parametrize("name", ["10/3", "30/1", "100/1"])
def test_the_plain_and_the_numpy_em_are_one_fit(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # few distinct rows run the EM in plain Python, many with numpy: the same fit either way
    from pytest_llmeval.stats import empirical_bayes

    k, n = realistic(name)
    monkeypatch.setattr(empirical_bayes, "_PLAIN_EM_ROWS", 10**6)
    plain = stats.fit_grid_prior(k, n)
    monkeypatch.setattr(empirical_bayes, "_PLAIN_EM_ROWS", 0)
    vector = stats.fit_grid_prior(k, n)
    assert plain.iterations == vector.iterations and plain.support == vector.support
    np.testing.assert_allclose(plain.weights, vector.weights, rtol=1e-9, atol=1e-13)
    assert plain.log_likelihood == pytest.approx(vector.log_likelihood, rel=1e-12)


def test_many_distinct_rows_take_numpy_few_do_not() -> None:
    from pytest_llmeval.stats import empirical_bayes

    few = len({(a, b) for a, b in zip(*realistic("10/1"), strict=True)})
    many = len({(a, b) for a, b in zip(*realistic("100/1"), strict=True)})
    assert few <= empirical_bayes._PLAIN_EM_ROWS < many


@pytest.mark.parametrize("name", ["bench_run", "10/1", "10/3", "errored"])
@pytest.mark.parametrize("m", [1, 3])
def test_grid_predictive_rows_are_the_numpy_table(name: str, m: int) -> None:
    k, n = realistic(name)
    prior = ref.fit_grid_prior(k, n)
    rows = stats.grid_predictive_cdf_rows(k, n, m, prior)
    want = ref.grid_predictive_cdf_table(k, n, m, prior)
    np.testing.assert_allclose(np.asarray(rows), want, rtol=1e-12, atol=1e-15)
    table = stats.grid_predictive_cdf_table(k, n, m, prior)
    assert table.shape == (len(k), m + 1) and table.tolist() == [list(r) for r in rows]
    # cases with the same counts share one row
    first = {(ki, ni): row for ki, ni, row in zip(k, n, rows, strict=True)}
    assert all(row is first[(ki, ni)] for ki, ni, row in zip(k, n, rows, strict=True))


def test_grid_predictive_rows_check_their_counts() -> None:
    prior = stats.fit_grid_prior([3, 2], [3, 3])
    with pytest.raises(ValueError, match=r"successes\[1\]"):
        stats.grid_predictive_cdf_rows([1, 4], [3, 3], 1, prior)
    with pytest.raises(ValueError, match="trials has 1"):
        stats.grid_predictive_cdf_rows([1, 2], [3], 1, prior)
    assert stats.grid_predictive_cdf_rows([], [], 2, prior) == []
    assert stats.grid_predictive_cdf_table([], [], 2, prior).shape == (0, 3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: stats.fit_beta_binomial([1], [0]), "successes"),
        (lambda: stats.fit_beta_binomial([1, 2], [3]), "trials has 1"),
        (lambda: stats.fit_beta_binomial([0], [0]), "at least one case"),
        (lambda: stats.fit_grid_prior([0], [0]), "at least one case"),
        (lambda: stats.fit_grid_prior([1], [2], grid=[0.5, 1.5]), "grid"),
        (lambda: stats.beta_binomial_cdf(1, 0, 1.0, 1.0), "n"),
    ],
)
def test_invalid_input_names_the_argument(call: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()  # type: ignore[operator]
