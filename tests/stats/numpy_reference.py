"""The numpy implementations the gate used before it went plain Python (commit a3488a9).

Kept verbatim (types aside) as the reference the plain-Python versions are checked against: the
grid prior's EM, its predictive table, the discrete Bonferroni threshold, the CMH sums and the
run dispersion; and :func:`history_counts`, the history table of ``GateContext.build``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from pytest_llmeval.stats import DEFAULT_GRID, GridPrior
from pytest_llmeval.stats.exact import binom_cdf

Array = NDArray[np.float64]


def binomial_log_lik(k: Array, n: Array, g: Array) -> Array:
    lgamma = np.vectorize(math.lgamma, otypes=[np.float64])
    choose = lgamma(n + 1.0) - lgamma(k + 1.0) - lgamma(n - k + 1.0)
    kk, rest = k[:, None], (n - k)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.where(kk == 0.0, 0.0, kk * np.log(g[None, :]))
        misses = np.where(rest == 0.0, 0.0, rest * np.log1p(-g[None, :]))
    return np.asarray(choose[:, None] + hits + misses, dtype=np.float64)


def fit_grid_prior(
    successes: Sequence[int],
    trials: Sequence[int],
    *,
    grid: Sequence[float] = DEFAULT_GRID,
    max_iter: int = 500,
    tol: float = 1e-10,
) -> GridPrior:
    rows: dict[tuple[int, int], int] = {}
    for k_i, n_i in zip(successes, trials, strict=True):
        if n_i > 0:
            rows[(k_i, n_i)] = rows.get((k_i, n_i), 0) + 1
    cases = sum(rows.values())
    total = sum(n * c for (_, n), c in rows.items())
    passed = sum(k * c for (k, _), c in rows.items())
    failures = total - passed
    g = np.asarray(sorted({float(v) for v in grid}), dtype=np.float64)
    if failures == 0 or passed == 0:
        point = 1.0 if failures == 0 else 0.0
        degenerate = "all_pass" if failures == 0 else "all_fail"
        return GridPrior((point,), (1.0,), point, cases, total, failures, 0, 0.0, degenerate)
    keys = sorted(rows)
    k = np.asarray([r[0] for r in keys], dtype=np.float64)
    n = np.asarray([r[1] for r in keys], dtype=np.float64)
    c = np.asarray([rows[r] for r in keys], dtype=np.float64) / cases
    log_l = binomial_log_lik(k, n, g)
    top = log_l.max(axis=1, keepdims=True)
    lik = np.exp(log_l - top)
    w = np.full(g.size, 1.0 / g.size)
    prev = -math.inf
    ll = -math.inf
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007
        mix = lik @ w
        ll = float(c @ (np.log(mix) + top[:, 0]))
        w = w * ((c / mix) @ lik)
        w = w / w.sum()
        if ll - prev < tol:
            break
        prev = ll
    ll = float(c @ (np.log(lik @ w) + top[:, 0]))
    keep = w > 1e-12
    weights_arr = w[keep] / w[keep].sum()
    return GridPrior(
        support=tuple(float(v) for v in g[keep]),
        weights=tuple(float(v) for v in weights_arr),
        mean=float(np.dot(g[keep], weights_arr)),
        cases=cases,
        samples=total,
        failures=failures,
        iterations=it,
        log_likelihood=ll * cases,
        degenerate=None,
    )


def grid_predictive_cdf_table(
    successes: Sequence[int], trials: Sequence[int], m: int, prior: GridPrior
) -> Array:
    k = np.asarray(successes, dtype=np.float64).reshape(-1)
    n = np.asarray(trials, dtype=np.float64).reshape(-1)
    g = np.asarray(prior.support, dtype=np.float64)
    log_post = np.log(np.asarray(prior.weights))[None, :] + binomial_log_lik(k, n, g)
    log_post -= log_post.max(axis=1, keepdims=True)
    post = np.exp(log_post)
    post /= post.sum(axis=1, keepdims=True)
    x = np.arange(m + 1, dtype=np.float64)
    cdf = np.array([[binom_cdf(int(xi), m, float(gi)) for gi in g] for xi in x])
    out = np.minimum(post @ cdf.T, 1.0)
    out[:, m] = 1.0
    return np.asarray(out, dtype=np.float64)


def discrete_bonferroni(
    attainable: Sequence[Sequence[float]], alpha: float
) -> tuple[float, float, int]:
    """``(threshold, spent, testable)``."""
    width = max((len(r) for r in attainable), default=0)
    if not attainable or width == 0:
        return alpha, 0.0, 0
    table = np.full((len(attainable), width), np.inf)
    for i, row in enumerate(attainable):
        table[i, : len(row)] = row
    candidates = np.unique(table[np.isfinite(table)])

    def cost(t: float) -> float:
        return float(np.where(table <= t, table, 0.0).max(axis=1).sum())

    lo, hi = 0, candidates.size - 1
    best = -1
    while lo <= hi:
        mid = (lo + hi) // 2
        if cost(float(candidates[mid])) <= alpha * (1.0 + 1e-12):
            best = mid
            lo = mid + 1
        else:
            hi = mid - 1
    threshold = float(candidates[best]) if best >= 0 else 0.0
    spent = cost(threshold) if best >= 0 else 0.0
    testable = int(np.sum(np.any(table <= threshold, axis=1))) if best >= 0 else 0
    return threshold, spent, testable


def cmh_sums(
    k_: Sequence[int], n_: Sequence[int], x_: Sequence[int], m_: Sequence[int]
) -> tuple[int, float, float, float]:
    """``(informative, observed, expected, variance)``."""
    k, n, x, m = (np.asarray(v, dtype=np.float64) for v in (k_, n_, x_, m_))
    total = n + m
    passes = k + x
    informative = (n > 0) & (m > 0) & (passes > 0) & (passes < total)
    n_i, m_i, t_i, tot = n[informative], m[informative], passes[informative], total[informative]
    observed = float(np.sum(x[informative]))
    expected = float(np.sum(m_i * t_i / tot))
    variance = float(np.sum(n_i * m_i * t_i * (tot - t_i) / (tot * tot * (tot - 1.0))))
    return int(np.sum(informative)), observed, expected, variance


def run_dispersion(
    passes: Sequence[Sequence[int]], samples: Sequence[Sequence[int]]
) -> tuple[float, float, int]:
    """``(phi, chi2, df)``."""
    y = np.asarray(passes, dtype=np.float64)
    s = np.asarray(samples, dtype=np.float64)
    if y.size == 0 or y.shape[0] < 2:
        return 1.0, 0.0, 0
    n = s.sum(axis=0)
    k = y.sum(axis=0)
    ok = n > 1
    p = np.divide(k, n, out=np.zeros_like(k), where=n > 0)
    base = np.where(ok, p * (1.0 - p) * n / np.where(ok, n - 1.0, 1.0), 0.0)
    dev = (y - s * p[None, :]).sum(axis=1)
    var = (s * base[None, :]).sum(axis=1)
    used = var > 0
    df = int(np.sum(used)) - 1
    if df < 1:
        return 1.0, 0.0, 0
    chi2 = float(np.sum(dev[used] ** 2 / var[used]))
    return chi2 / df, chi2, df


def history_counts(
    lines: Sequence[Mapping[str, Any]], keys: Sequence[str]
) -> tuple[Array, Array, Array, Array, Array]:
    """``(k_all, n_all, runs_all, y_tab, s_tab)`` of lines that each cover every key."""
    index = {k: i for i, k in enumerate(keys)}
    used_y, used_s = [], []
    for line in lines:
        common = int(line.get("samples") or 1)
        y = np.full(len(keys), float(common))
        s = np.full(len(keys), float(common))
        for key in line["failed"]:
            y[index[key]] = 0.0
        sample_passes = line.get("sample_passes")
        if isinstance(sample_passes, Mapping):
            for key, pair in sample_passes.items():
                if key in index:
                    y[index[key]], s[index[key]] = float(pair[0]), float(pair[1])
        for key in line.get("errored") or ():
            if key in index:
                y[index[key]] = s[index[key]] = 0.0
        used_y.append(y)
        used_s.append(s)
    y_tab, s_tab = np.vstack(used_y), np.vstack(used_s)
    return (
        y_tab.sum(axis=0),
        s_tab.sum(axis=0),
        (s_tab > 0).sum(axis=0).astype(np.float64),
        y_tab,
        s_tab,
    )
