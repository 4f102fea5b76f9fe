"""Stratified tests: Cochran-Mantel-Haenszel across cases, and run-level overdispersion.

Each case is a stratum with a 2x2 table (reference samples vs now, passed vs failed). Pooling the
strata finds a broad drop that no single case shows, while each case is compared only with
itself (a hard case failing is no evidence). Run-to-run drift (a judge or provider having a bad
day) moves all cases together and makes the hypergeometric variance too small; the dispersion
factor estimated from the recorded runs widens it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pytest_llmeval.stats._common import _real, _Result

__all__ = ["CMHResult", "Dispersion", "cmh_drop_test", "run_dispersion"]


@dataclass(frozen=True)
class CMHResult(_Result):
    """One-sided Cochran-Mantel-Haenszel test that the current pass rate is lower.

    ``observed`` and ``expected`` are the current passes summed over the informative strata
    (those with both a pass and a failure in their table), ``variance`` the summed
    hypergeometric variance before the ``dispersion`` factor.
    """

    strata: int
    informative: int
    observed: float
    expected: float
    variance: float
    dispersion: float
    z: float
    p_value: float
    correction: bool


def cmh_drop_test(
    ref_passes: Sequence[int],
    ref_samples: Sequence[int],
    now_passes: Sequence[int],
    now_samples: Sequence[int],
    *,
    dispersion: float = 1.0,
    correction: bool = True,
) -> CMHResult:
    """CMH test across strata (Cochran, *Biometrics* 10, 1954; Mantel & Haenszel, *JNCI* 22, 1959).

    Stratum ``i``: reference ``k_i`` of ``n_i`` passed, now ``x_i`` of ``m_i``; with
    ``N_i = n_i + m_i`` and ``t_i = k_i + x_i`` passes in all, under H0 (same pass probability)
    ``x_i`` is hypergeometric::

        E_i = m_i t_i / N_i,   V_i = n_i m_i t_i (N_i - t_i) / (N_i² (N_i - 1))
        z = (Σ x_i - Σ E_i + c) / sqrt(φ Σ V_i),   p = Φ(z)   (H1: lower now)

    with the continuity correction ``c = 1/2`` (``correction``) and the overdispersion factor
    ``φ = dispersion >= 1`` (quasi-likelihood scaling; McCullagh & Nelder, *Generalized Linear
    Models*, 2nd ed. 1989, §4.5). Without informative strata ``z = 0, p = 1``. With ``φ = 1``
    the two-sided version is ``statsmodels``' ``StratifiedTable.test_null_odds``.
    """
    arrays = [np.asarray(v, dtype=np.float64) for v in (ref_passes, ref_samples, now_passes,
                                                         now_samples)]  # fmt: skip
    k, n, x, m = arrays
    if not (k.shape == n.shape == x.shape == m.shape) or k.ndim != 1:
        raise ValueError("cmh_drop_test needs four equally long sequences of counts")
    if np.any(n < 0) or np.any(m < 0) or np.any(k < 0) or np.any(x < 0):
        raise ValueError("cmh_drop_test: counts must be >= 0")
    if np.any(k > n) or np.any(x > m):
        raise ValueError("cmh_drop_test: passes must not exceed samples")
    phi = _real("dispersion", dispersion)
    if phi <= 0.0:
        raise ValueError(f"dispersion must be > 0, got {dispersion!r}")
    total = n + m
    passes = k + x
    informative = (n > 0) & (m > 0) & (passes > 0) & (passes < total)
    n_i, m_i, t_i, tot = n[informative], m[informative], passes[informative], total[informative]
    observed = float(np.sum(x[informative]))
    expected = float(np.sum(m_i * t_i / tot))
    variance = float(np.sum(n_i * m_i * t_i * (tot - t_i) / (tot * tot * (tot - 1.0))))
    if variance <= 0.0:
        return CMHResult(k.size, 0, observed, expected, 0.0, phi, 0.0, 1.0, correction)
    diff = observed - expected
    if correction:
        diff = min(diff + 0.5, 0.0) if diff < 0 else max(diff - 0.5, 0.0)
    z = diff / math.sqrt(phi * variance)
    from pytest_llmeval.stats.exact import normal_cdf

    return CMHResult(
        strata=k.size,
        informative=int(np.sum(informative)),
        observed=observed,
        expected=expected,
        variance=variance,
        dispersion=phi,
        z=z,
        p_value=normal_cdf(z),
        correction=correction,
    )


@dataclass(frozen=True)
class Dispersion(_Result):
    """Run-level dispersion of recorded runs: ``phi = chi2 / df`` (1 means binomial noise)."""

    phi: float
    chi2: float
    df: int


def run_dispersion(passes: Sequence[Sequence[int]], samples: Sequence[Sequence[int]]) -> Dispersion:
    """How much more the runs' totals vary than independent cases would make them vary.

    ``passes[j][i]`` of ``samples[j][i]`` samples of case ``i`` passed in run ``j`` (0 samples:
    absent). With ``p̂_i`` the case's pooled rate and ``n_i`` its pooled samples, run ``j``'s
    deviation ``D_j = Σ_i (y_ji - s_ji p̂_i)`` is compared with the binomial variance of the run
    ``V_j = Σ_i s_ji p̂_i (1 - p̂_i) n_i/(n_i - 1)`` (``p̂(1 - p̂) n/(n - 1)`` is unbiased for
    ``p(1 - p)``), and::

        X² = Σ_j D_j² / V_j,   df = runs - 1,   phi = X² / df

    (the deviations sum to 0, hence ``runs - 1`` degrees of freedom)

    the Pearson dispersion statistic (McCullagh & Nelder 1989, §4.5; Williams, *Appl. Statist.*
    31, 1982). Fewer than 2 runs, or no varying case, give ``phi = 1, df = 0``.
    """
    y = np.asarray(passes, dtype=np.float64)
    s = np.asarray(samples, dtype=np.float64)
    if y.shape != s.shape or (y.size and y.ndim != 2):
        raise ValueError("run_dispersion needs two equally shaped runs x cases tables")
    if y.size == 0 or y.shape[0] < 2:
        return Dispersion(1.0, 0.0, 0)
    if np.any(s < 0) or np.any(y < 0) or np.any(y > s):
        raise ValueError("run_dispersion: 0 <= passes <= samples in every cell")
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
        return Dispersion(1.0, 0.0, 0)
    chi2 = float(np.sum(dev[used] ** 2 / var[used]))
    return Dispersion(chi2 / df, chi2, df)
