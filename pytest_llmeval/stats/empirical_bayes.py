"""Empirical Bayes for pass rates: a beta-binomial prior fitted across a suite's cases.

Each case ``i`` passed ``k_i`` of its ``n_i`` recorded samples. The cases' own pass probabilities
are modelled as draws from one ``Beta(a, b)`` prior, so ``k_i ~ BetaBinomial(n_i, a, b)``
(Skellam, *J. R. Stat. Soc. B* 10, 1948). ``a`` and ``b`` are the marginal maximum-likelihood
estimates over the suite (Griffiths, *Biometrics* 29, 1973; Williams, *Biometrics* 31, 1975),
and each case's posterior is ``Beta(a + k_i, b + n_i - k_i)`` (Robbins 1956; Efron & Morris,
*JASA* 70, 1975). A quiet suite (no failures anywhere) drives the prior to all its mass at 1, so a
single failure becomes improbable; a noisy suite spreads the prior, so it does not.

The posterior predictive of ``m`` new samples of a case is ``BetaBinomial(m, a + k, b + n - k)``;
its lower tail ``P[X <= x]`` is the case's p-value for "``x`` passes now is a drop".

What a gate run needs (:func:`fit_grid_prior`, :func:`grid_predictive_cdf_rows`) is plain Python
over lists: importing numpy would add about 0.1 s and 15 MiB to every run with history, for a
fit over a few dozen distinct ``(k, n)`` rows. The beta-binomial functions, which the gate does
not use, import numpy and scipy where they run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add, mul, truediv
from typing import TYPE_CHECKING, Any

from pytest_llmeval.stats._common import _count, _Result, _size, _successes

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "DEFAULT_GRID",
    "BetaBinomialFit",
    "GridPrior",
    "beta_binomial_cdf",
    "fit_beta_binomial",
    "fit_grid_prior",
    "grid_predictive_cdf_rows",
    "grid_predictive_cdf_table",
    "predictive_cdf_table",
]

# log(a + b) stays inside these: below, the prior is a pair of spikes at 0 and 1; above, every
# case has the same rate (the binomial limit) and the fit gains nothing by going further.
_LOG_PRECISION_MIN = math.log(1e-3)
_LOG_PRECISION_MAX = math.log(1e7)


@dataclass(frozen=True)
class BetaBinomialFit(_Result):
    """A fitted ``Beta(a, b)`` prior of per-case pass probabilities.

    ``degenerate`` is ``"all_pass"`` when no recorded sample failed (the prior is a point mass at
    1: ``a = inf``, ``b = 0``), ``"all_fail"`` when none passed (``a = 0``, ``b = inf``), else
    ``None``. ``mean = a / (a + b)``; ``rho = 1 / (a + b + 1)`` is the intra-case correlation
    (0: every case has the same rate; 1: each case always passes or always fails).
    """

    a: float
    b: float
    mean: float
    rho: float
    cases: int
    samples: int
    failures: int
    log_likelihood: float
    degenerate: str | None

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict()


def _loglik_grad(
    theta: NDArray[np.float64], k: NDArray[np.float64], n: NDArray[np.float64]
) -> tuple[float, NDArray[np.float64]]:
    import numpy as np
    from scipy.special import betaln, digamma, expit

    mu = float(expit(theta[0]))
    s = math.exp(theta[1])
    a, b = mu * s, (1.0 - mu) * s
    ll = float(np.sum(betaln(k + a, n - k + b)) - k.size * betaln(a, b))
    dab = digamma(n + s)
    da = float(np.sum(digamma(k + a) - dab)) - k.size * (float(digamma(a)) - float(digamma(s)))
    db = float(np.sum(digamma(n - k + b) - dab)) - k.size * (float(digamma(b)) - float(digamma(s)))
    g0 = (da - db) * s * mu * (1.0 - mu)
    g1 = da * a + db * b
    return -ll, -np.array([g0, g1])


def fit_beta_binomial(successes: Sequence[int], trials: Sequence[int]) -> BetaBinomialFit:
    """Marginal maximum-likelihood ``Beta(a, b)`` prior for per-case pass counts.

    Maximises ``Σ_i [ln B(k_i + a, n_i - k_i + b) - ln B(a, b)]`` over ``a, b > 0``
    (Griffiths 1973; Williams 1975) with L-BFGS-B on ``(logit(a/(a+b)), log(a+b))`` from the
    method-of-moments start (Kleinman, *Biometrics* 29, 1973). Cases with ``n_i = 0`` carry no
    information and are left out. ``log(a + b)`` is kept within ``[ln 1e-3, ln 1e7]``.
    Deterministic: the same counts always give the same fit.
    """
    if len(successes) != len(trials):
        raise ValueError(f"successes has {len(successes)} entries but trials has {len(trials)}")
    ks: list[int] = []
    ns: list[int] = []
    for i, (k_raw, n_raw) in enumerate(zip(successes, trials, strict=True)):
        n_i = _count(f"trials[{i}]", n_raw)
        k_i = _successes(f"successes[{i}]", k_raw, f"trials[{i}]", n_i)
        if n_i > 0:
            ks.append(k_i)
            ns.append(n_i)
    cases = len(ns)
    total = sum(ns)
    passed = sum(ks)
    failures = total - passed
    if cases == 0:
        raise ValueError("fit_beta_binomial needs at least one case with trials > 0")
    if failures == 0:
        return BetaBinomialFit(math.inf, 0.0, 1.0, 0.0, cases, total, 0, 0.0, "all_pass")
    if passed == 0:
        return BetaBinomialFit(0.0, math.inf, 0.0, 0.0, cases, total, failures, 0.0, "all_fail")
    import numpy as np
    from scipy.optimize import minimize
    from scipy.special import logit

    k = np.asarray(ks, dtype=np.float64)
    n = np.asarray(ns, dtype=np.float64)
    mu0 = passed / total
    rates = k / n
    # Method of moments (Kleinman 1973): var(rates) ≈ mu(1-mu)[rho + (1 - rho) E(1/n)].
    var = float(np.var(rates))
    inv_n = float(np.mean(1.0 / n))
    base = mu0 * (1.0 - mu0)
    rho0 = (var / base - inv_n) / (1.0 - inv_n) if inv_n < 1.0 else 0.5
    rho0 = min(max(rho0, 1e-3), 0.999)
    s0 = 1.0 / rho0 - 1.0
    start = np.array(
        [
            float(logit(min(max(mu0, 1e-9), 1 - 1e-9))),
            min(max(math.log(s0), _LOG_PRECISION_MIN), _LOG_PRECISION_MAX),
        ]
    )
    res = minimize(
        _loglik_grad,
        start,
        args=(k, n),
        jac=True,
        method="L-BFGS-B",
        bounds=[(-40.0, 40.0), (_LOG_PRECISION_MIN, _LOG_PRECISION_MAX)],
    )
    from scipy.special import expit

    mu = float(expit(res.x[0]))
    s = math.exp(float(res.x[1]))
    return BetaBinomialFit(
        a=mu * s,
        b=(1.0 - mu) * s,
        mean=mu,
        rho=1.0 / (s + 1.0),
        cases=cases,
        samples=total,
        failures=failures,
        log_likelihood=-float(res.fun),
        degenerate=None,
    )


def beta_binomial_cdf(x: int, n: int, a: float, b: float) -> float:
    """``P[X <= x]`` for ``X ~ BetaBinomial(n, a, b)`` (scipy's ``betabinom``).

    The limits of a degenerate prior are handled: ``b = 0`` (every sample passes) gives
    ``1`` only for ``x >= n``; ``a = 0`` (every sample fails) gives ``1`` for every ``x >= 0``.
    """
    n_ = _size("n", n)
    if isinstance(x, bool) or not isinstance(x, int):
        raise ValueError(f"x must be an integer, got {x!r}")
    if x < 0:
        return 0.0
    if x >= n_:
        return 1.0
    if b == 0.0:
        return 0.0
    if a == 0.0:
        return 1.0
    from scipy.stats import betabinom

    return min(1.0, float(betabinom.cdf(x, n_, a, b)))


def predictive_cdf_table(
    successes: Sequence[int], trials: Sequence[int], m: int, fit: BetaBinomialFit
) -> NDArray[np.float64]:
    """Posterior-predictive lower tails of ``m`` new samples, one row per case.

    Row ``i`` holds ``P[X <= x]`` for ``x = 0..m`` with
    ``X ~ BetaBinomial(m, a + k_i, b + n_i - k_i)`` (the case's posterior under the fitted prior;
    Efron & Morris 1975). Vectorised over cases with ``ln Γ``; a degenerate all-pass prior gives
    0 below ``x = m`` (no failure has ever been seen in the suite).
    """
    import numpy as np

    m_ = _size("m", m)
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    out = np.ones((k.size, m_ + 1), dtype=np.float64)
    if fit.degenerate == "all_pass":
        out[:, :m_] = 0.0
        return out
    if fit.degenerate == "all_fail":
        return out
    from scipy.special import betaln, gammaln

    alpha = (fit.a + k)[:, None]
    beta = (fit.b + n - k)[:, None]
    x = np.arange(m_ + 1, dtype=np.float64)[None, :]
    log_choose = gammaln(m_ + 1.0) - gammaln(x + 1.0) - gammaln(m_ - x + 1.0)
    log_pmf = log_choose + betaln(x + alpha, m_ - x + beta) - betaln(alpha, beta)
    cdf = np.cumsum(np.exp(log_pmf), axis=1)
    out = np.minimum(cdf, 1.0)
    out[:, m_] = 1.0
    return np.asarray(out, dtype=np.float64)


#: The default support of :func:`fit_grid_prior`: steps of 0.01, and finer steps towards 1
#: (between 0.95 and 0.9999), where the rates of stable cases lie; 0 and 1 included.
DEFAULT_GRID: tuple[float, ...] = tuple(
    sorted(
        {round(i / 100, 10) for i in range(101)}
        | {round(1.0 - 10.0 ** (-4.0 + 2.7 * j / 14), 12) for j in range(15)}
    )
)


@dataclass(frozen=True)
class GridPrior(_Result):
    """A nonparametric prior of per-case pass probabilities: ``weights`` on ``support``.

    ``degenerate`` as in :class:`BetaBinomialFit` (``"all_pass"``: all mass at 1).
    """

    support: tuple[float, ...]
    weights: tuple[float, ...]
    mean: float
    cases: int
    samples: int
    failures: int
    iterations: int
    log_likelihood: float
    degenerate: str | None


def _log_grid(support: Sequence[float]) -> tuple[list[float], list[float]]:
    """``ln g`` and ``ln(1 - g)`` at each grid point, ``-inf`` at 0 and 1."""
    return (
        [math.log(v) if v > 0.0 else -math.inf for v in support],
        [math.log1p(-v) if v < 1.0 else -math.inf for v in support],
    )


def _binomial_log_lik(k: int, n: int, log_g: list[float], log_h: list[float]) -> list[float]:
    """``ln P[k | n, g]`` at each grid point, ``-inf`` where impossible (``0 ln 0 = 0``).

    ``math.lgamma`` rather than scipy.special, whose import costs 0.7 s of every gate run."""
    choose = math.lgamma(n + 1.0) - math.lgamma(k + 1.0) - math.lgamma(n - k + 1.0)
    rest = n - k
    return [
        choose + (0.0 if k == 0 else k * a) + (0.0 if rest == 0 else rest * b)
        for a, b in zip(log_g, log_h, strict=True)
    ]


def _pooled_counts(successes: Sequence[int], trials: Sequence[int]) -> dict[tuple[int, int], int]:
    """How many cases have each ``(k, n)`` with ``n > 0``, the counts checked.

    Plain ints (what the gate passes, 10,000 cases and more) are pooled first and each distinct
    pair checked once; anything else is checked case by case, so an error names its index."""
    rows: dict[tuple[int, int], int] = {}
    if all(type(v) is int for v in successes) and all(type(v) is int for v in trials):
        for pair in zip(successes, trials, strict=True):
            rows[pair] = rows.get(pair, 0) + 1
        if all(0 <= k <= n for k, n in rows):
            return {pair: c for pair, c in rows.items() if pair[1] > 0}
        rows = {}
    for i, (k_raw, n_raw) in enumerate(zip(successes, trials, strict=True)):
        n_i = _count(f"trials[{i}]", n_raw)
        k_i = _successes(f"successes[{i}]", k_raw, f"trials[{i}]", n_i)
        if n_i > 0:
            rows[(k_i, n_i)] = rows.get((k_i, n_i), 0) + 1
    return rows


# Up to this many distinct (k, n) rows the EM runs in plain Python, beyond it with numpy: plain
# Python costs about 3.5 ms of CPU a row for 500 iterations, importing numpy about 0.1 s (and
# 15 MiB), so they break even near 30 rows (bench: 29 rows 97 ms plain). A history of 10 runs
# has about 11 distinct rows, one of 100 runs about 80. Either way the same iteration.
_PLAIN_EM_ROWS = 24


def _em_plain(
    lik: list[list[float]], top: list[float], c: list[float], max_iter: int, tol: float
) -> tuple[list[float], int]:
    """Laird's EM from uniform weights: ``(weights, iterations)``; lists and C-speed maps."""
    cols = [list(col) for col in zip(*lik, strict=True)]
    log = math.log
    w = [1.0 / len(cols)] * len(cols)
    prev = -math.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        mix = [sum(map(mul, row, w)) for row in lik]
        ll = sum(map(mul, c, map(add, map(log, mix), top)))
        ratio = list(map(truediv, c, mix))
        w = list(map(mul, w, [sum(map(mul, ratio, col)) for col in cols]))
        w = list(map(truediv, w, repeat(sum(w))))
        if ll - prev < tol:
            break
        prev = ll
    return w, it


def _em_numpy(
    lik: list[list[float]], top: list[float], c: list[float], max_iter: int, tol: float
) -> tuple[list[float], int]:
    """:func:`_em_plain` with numpy (many distinct rows, or numpy already imported)."""
    import numpy as np

    lik_a = np.asarray(lik, dtype=np.float64)
    top_a = np.asarray(top, dtype=np.float64)
    c_a = np.asarray(c, dtype=np.float64)
    w = np.full(lik_a.shape[1], 1.0 / lik_a.shape[1])
    prev = -math.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 (the count is reported)
        mix = lik_a @ w
        ll = float(c_a @ (np.log(mix) + top_a))
        w = w * ((c_a / mix) @ lik_a)
        w = w / w.sum()
        if ll - prev < tol:
            break
        prev = ll
    return [float(v) for v in w], it


def fit_grid_prior(
    successes: Sequence[int],
    trials: Sequence[int],
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    max_iter: int = 500,
    tol: float = 1e-10,
) -> GridPrior:
    """Nonparametric maximum-likelihood prior of per-case pass probabilities on a grid.

    Maximises ``Σ_i ln Σ_g w_g Binomial(k_i; n_i, p_g)`` over the weights ``w`` (Kiefer &
    Wolfowitz, *Ann. Math. Statist.* 27, 1956) by the EM fixed point
    ``w_g <- w_g · mean_i[L_ig / Σ_h w_h L_ih]`` (Laird, *JASA* 73, 1978), from uniform
    weights, until the log-likelihood gains less than ``tol`` per case or ``max_iter``
    iterations; cases with the same ``(k, n)`` are pooled. Unlike one beta prior it can be
    bimodal (many stable cases near 1, some noisy ones spread out), which a single
    beta-binomial fit turns into a prior that is too sure of cases that never failed (Koenker &
    Mizera, *JASA* 109, 2014, for NPMLE empirical Bayes). Deterministic.

    Up to ``_PLAIN_EM_ROWS`` distinct rows (a history of a few dozen runs) in plain Python, so
    a gate run imports no numpy: each iteration is two products of the (distinct rows x grid)
    likelihood matrix with a vector, one ``sum(map(mul, ...))`` (a C loop) per row and per
    column, about 0.1 s of CPU for 28 rows, 116 grid points and 500 iterations; beyond that
    with numpy, the same iteration (the fits agree to 1e-12). The iteration and stopping rule
    are the ones the gate's error rates in ``benchmarks/bench_gate_noise.py`` were measured
    with: it usually stops at ``max_iter``, short of convergence (EM is slow here), and an
    accelerated or converged fit is a different, spikier prior with other p-values.
    """
    if len(successes) != len(trials):
        raise ValueError(f"successes has {len(successes)} entries but trials has {len(trials)}")
    rows = _pooled_counts(successes, trials)
    if not rows:
        raise ValueError("fit_grid_prior needs at least one case with trials > 0")
    cases = sum(rows.values())
    total = sum(n * c for (_, n), c in rows.items())
    passed = sum(k * c for (k, _), c in rows.items())
    failures = total - passed
    g = sorted({float(v) for v in grid})
    if not g or g[0] < 0.0 or g[-1] > 1.0:
        raise ValueError("grid must hold pass probabilities in [0, 1]")
    if failures == 0 or passed == 0:
        point = 1.0 if failures == 0 else 0.0
        return GridPrior(
            (point,), (1.0,), point, cases, total, failures, 0, 0.0,
            "all_pass" if failures == 0 else "all_fail",
        )  # fmt: skip
    keys = sorted(rows)
    c = [rows[r] / cases for r in keys]
    log_g, log_h = _log_grid(g)
    lik: list[list[float]] = []
    top: list[float] = []
    for k, n in keys:
        log_l = _binomial_log_lik(k, n, log_g, log_h)
        peak = max(log_l)
        top.append(peak)
        lik.append([math.exp(v - peak) for v in log_l])
    if len(keys) > _PLAIN_EM_ROWS:
        w, it = _em_numpy(lik, top, c, max_iter, tol)
    else:
        w, it = _em_plain(lik, top, c, max_iter, tol)
    log = math.log
    ll = sum(map(mul, c, map(add, (log(sum(map(mul, row, w))) for row in lik), top)))
    keep = [i for i, v in enumerate(w) if v > 1e-12]
    kept = sum(w[i] for i in keep)
    weights = tuple(w[i] / kept for i in keep)
    support = tuple(g[i] for i in keep)
    return GridPrior(
        support=support,
        weights=weights,
        mean=sum(map(mul, support, weights)),
        cases=cases,
        samples=total,
        failures=failures,
        iterations=it,
        log_likelihood=ll * cases,
        degenerate=None,
    )


def grid_predictive_cdf_rows(
    successes: Sequence[int], trials: Sequence[int], m: int, prior: GridPrior
) -> list[tuple[float, ...]]:
    """Posterior-predictive lower tails ``P[X <= x]``, ``x = 0..m``, under a grid prior.

    Row ``i``: the case's posterior on the grid is ``∝ w_g Binomial(k_i; n_i, p_g)``
    (Robbins 1956), and ``X | p ~ Binomial(m, p)``, so
    ``P[X <= x] = Σ_g post_ig · BinomCDF(x; m, p_g)``. Computed once per distinct
    ``(k, n)``: cases with the same counts share one tuple (a suite of 10,000 cases has a few
    dozen).
    """
    m_ = _size("m", m)
    if len(successes) != len(trials):
        raise ValueError(f"successes has {len(successes)} entries but trials has {len(trials)}")
    from pytest_llmeval.stats.exact import binom_cdf

    g = prior.support
    log_w = [math.log(v) if v > 0.0 else -math.inf for v in prior.weights]
    log_g, log_h = _log_grid(g)
    # one list per x of BinomCDF(x; m, p_g) over the grid; x = m is 1
    tails = [[binom_cdf(x, m_, p) for p in g] for x in range(m_)]
    exp = math.exp
    memo: dict[tuple[int, int], tuple[float, ...]] = {}
    out: list[tuple[float, ...]] = []
    for i, pair in enumerate(zip(successes, trials, strict=True)):
        row = memo.get(pair)
        if row is None:
            n_i = _count(f"trials[{i}]", pair[1])
            k_i = _successes(f"successes[{i}]", pair[0], f"trials[{i}]", n_i)
            log_post = list(map(add, log_w, _binomial_log_lik(k_i, n_i, log_g, log_h)))
            peak = max(log_post)
            post = [exp(v - peak) for v in log_post]
            post = list(map(truediv, post, repeat(sum(post))))
            row = memo[pair] = (*(min(sum(map(mul, post, t)), 1.0) for t in tails), 1.0)
        out.append(row)
    return out


def grid_predictive_cdf_table(
    successes: Sequence[int], trials: Sequence[int], m: int, prior: GridPrior
) -> NDArray[np.float64]:
    """:func:`grid_predictive_cdf_rows` as a ``(cases, m + 1)`` numpy array (imports numpy)."""
    import numpy as np

    rows = grid_predictive_cdf_rows(successes, trials, m, prior)
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), _size("m", m) + 1)
