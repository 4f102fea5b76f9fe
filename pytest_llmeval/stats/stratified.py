"""Stratified tests: Cochran-Mantel-Haenszel across cases, and run-level overdispersion.

Each case is a stratum with a 2x2 table (reference samples vs now, passed vs failed). Pooling the
strata finds a broad drop that no single case shows, while each case is compared only with
itself (a hard case failing is no evidence). Run-to-run drift (a judge or provider having a bad
day) moves all cases together and makes the hypergeometric variance too small; the dispersion
factor estimated from the recorded runs widens it.

Plain Python over lists (a gate run does not import numpy): the strata of a suite of 10,000
cases are a few dozen distinct tables, and the CMH sums run over those.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from operator import gt, mul, sub

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
    columns = (ref_passes, ref_samples, now_passes, now_samples)
    if len({len(v) for v in columns}) != 1:
        raise ValueError("cmh_drop_test needs four equally long sequences of counts")
    # identical strata are pooled: (k, n, x, m) -> how many
    tables: dict[tuple[int, int, int, int], int] = {}
    try:
        for row in zip(*columns, strict=True):
            tables[row] = tables.get(row, 0) + 1
    except TypeError:  # unhashable: not counts
        raise ValueError("cmh_drop_test needs four equally long sequences of counts") from None
    for key in tables:
        if not all(isinstance(v, numbers.Real) for v in key):
            raise ValueError("cmh_drop_test needs four equally long sequences of counts")
        if min(key) < 0:
            raise ValueError("cmh_drop_test: counts must be >= 0")
        if key[0] > key[1] or key[2] > key[3]:
            raise ValueError("cmh_drop_test: passes must not exceed samples")
    phi = _real("dispersion", dispersion)
    if phi <= 0.0:
        raise ValueError(f"dispersion must be > 0, got {dispersion!r}")
    observed_terms: list[float] = []
    expected_terms: list[float] = []
    variance_terms: list[float] = []
    informative = 0
    for (k, n, x, m), count in tables.items():
        total = n + m
        passes = k + x
        if n > 0 and m > 0 and 0 < passes < total:
            informative += count
            observed_terms.append(count * x)
            expected_terms.append(count * (m * passes / total))
            variance_terms.append(
                count * (n * m * passes * (total - passes) / (total * total * (total - 1.0)))
            )
    observed = math.fsum(observed_terms)
    expected = math.fsum(expected_terms)
    variance = math.fsum(variance_terms)
    strata = len(ref_passes)
    if variance <= 0.0:
        return CMHResult(strata, 0, observed, expected, 0.0, phi, 0.0, 1.0, correction)
    diff = observed - expected
    if correction:
        diff = min(diff + 0.5, 0.0) if diff < 0 else max(diff - 0.5, 0.0)
    z = diff / math.sqrt(phi * variance)
    from pytest_llmeval.stats.exact import normal_cdf

    return CMHResult(
        strata=strata,
        informative=informative,
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
    y = [list(run) for run in passes]
    s = [list(run) for run in samples]
    width = len(y[0]) if y else 0
    if len(y) != len(s) or any(
        len(a) != width or len(b) != width for a, b in zip(y, s, strict=True)
    ):
        raise ValueError("run_dispersion needs two equally shaped runs x cases tables")
    if width == 0 or len(y) < 2:
        return Dispersion(1.0, 0.0, 0)
    for a, b in zip(y, s, strict=True):
        if min(b) < 0 or min(a) < 0 or any(map(gt, a, b)):
            raise ValueError("run_dispersion: 0 <= passes <= samples in every cell")
    n = [math.fsum(col) for col in zip(*s, strict=True)]
    k = [math.fsum(col) for col in zip(*y, strict=True)]
    p = [ki / ni if ni > 0 else 0.0 for ki, ni in zip(k, n, strict=True)]
    base = [
        pi * (1.0 - pi) * ni / (ni - 1.0) if ni > 1 else 0.0 for pi, ni in zip(p, n, strict=True)
    ]
    chi2_terms: list[float] = []
    for a, b in zip(y, s, strict=True):
        var = math.fsum(map(mul, b, base))
        if var > 0:
            dev = math.fsum(map(sub, a, map(mul, b, p)))
            chi2_terms.append(dev * dev / var)
    df = len(chi2_terms) - 1
    if df < 1:
        return Dispersion(1.0, 0.0, 0)
    chi2 = math.fsum(chi2_terms)
    return Dispersion(chi2 / df, chi2, df)
