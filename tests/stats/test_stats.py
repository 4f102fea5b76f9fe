"""Unit tests for pytest_llmeval.stats against independently computed values.

References: statsmodels (test-only dependency), closed forms evaluated here with ``math`` only,
and published tables (Newcombe 1998a/b).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.contingency_tables import (  # type: ignore[import-untyped]
    mcnemar as sm_mcnemar,
)
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
    samplesize_proportions_2indep_onetail,
)

from pytest_llmeval import stats
from pytest_llmeval.stats import ABTestDesigner

REL = 1e-9


def close(actual: float, expected: float, rel: float = REL, abs_: float = 1e-15) -> bool:
    return math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_)


def normal_two_sided(z: float) -> float:
    """2·Φ(-|z|) from math.erfc alone (independent of scipy)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


def hypergeom_lower_tail(k2: int, n2: int, k1: int, n1: int) -> float:
    """P[X <= k2] for X = successes in arm 2 given the margins (one-sided Fisher, "less")."""
    total = k1 + k2
    denom = math.comb(n1 + n2, total)
    return (
        sum(math.comb(n2, x) * math.comb(n1, total - x) for x in range(max(0, total - n1), k2 + 1))
        / denom
    )


def plain_builtins(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_builtins(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_builtins(v) for v in value)
    return value is None or type(value) in (bool, int, float, str)


# ---------------------------------------------------------------------------
# sample_size
# ---------------------------------------------------------------------------


def test_sample_size_issue_values() -> None:
    assert stats.sample_size(0.12, 0.15) == 5443
    assert stats.sample_size(0.12, 0.15, alpha=0.01) == 8099


def test_sample_size_closed_form_with_math_only() -> None:
    # z values from the inverse normal are the only scipy dependency; check the formula with
    # the seed's textbook quantiles replaced by statistics.NormalDist (stdlib).
    from statistics import NormalDist

    p1, p2 = 0.12, 0.12 * 1.15
    z_a = NormalDist().inv_cdf(1 - 0.05 / 2)
    z_b = NormalDist().inv_cdf(0.80)
    p_bar = (p1 + p2) / 2
    n = (
        z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    assert stats.sample_size(0.12, 0.15) == math.ceil(n)


@pytest.mark.parametrize(
    ("baseline", "mde", "relative", "alpha", "power", "alternative"),
    [
        (0.12, 0.15, True, 0.05, 0.80, "two-sided"),
        (0.12, 0.15, True, 0.01, 0.80, "two-sided"),
        (0.12, 0.10, True, 0.05, 0.90, "two-sided"),
        (0.50, 0.02, False, 0.05, 0.80, "two-sided"),
        (0.30, -0.05, False, 0.10, 0.95, "two-sided"),
        (0.05, 0.20, True, 0.05, 0.80, "greater"),
        (0.80, -0.10, True, 0.05, 0.80, "less"),
        (0.02, 0.005, False, 0.025, 0.85, "two-sided"),
    ],
)
def test_sample_size_matches_statsmodels(
    baseline: float, mde: float, relative: bool, alpha: float, power: float, alternative: str
) -> None:
    p2 = baseline * (1 + mde) if relative else baseline + mde
    sm_alt = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}[alternative]
    expected = samplesize_proportions_2indep_onetail(
        p2 - baseline, baseline, power, alpha=alpha, alternative=sm_alt
    )
    got = stats.sample_size(
        baseline, mde, alpha=alpha, power=power, relative=relative, alternative=alternative
    )
    assert isinstance(got, int)
    assert got == math.ceil(expected)


def test_sample_size_relative_equals_absolute() -> None:
    assert stats.sample_size(0.2, 0.25) == stats.sample_size(0.2, 0.05, relative=False)


@settings(max_examples=60, deadline=None)
@given(
    baseline=st.floats(0.02, 0.9),
    mde=st.floats(0.01, 0.1),
    bigger=st.floats(0.001, 0.05),
)
def test_sample_size_monotone_in_mde(baseline: float, mde: float, bigger: float) -> None:
    if baseline + mde + bigger >= 1:
        return
    small = stats.sample_size(baseline, mde, relative=False)
    large = stats.sample_size(baseline, mde + bigger, relative=False)
    assert large <= small


@settings(max_examples=60, deadline=None)
@given(
    alpha=st.floats(0.001, 0.2),
    alpha_step=st.floats(0.001, 0.1),
    power=st.floats(0.5, 0.95),
    power_step=st.floats(0.001, 0.04),
)
def test_sample_size_monotone_in_alpha_and_power(
    alpha: float, alpha_step: float, power: float, power_step: float
) -> None:
    base = stats.sample_size(0.12, 0.15, alpha=alpha, power=power)
    # stricter alpha -> more units; more power -> more units
    assert stats.sample_size(0.12, 0.15, alpha=alpha / (1 + alpha_step * 10), power=power) >= base
    assert stats.sample_size(0.12, 0.15, alpha=alpha, power=power + power_step) >= base
    assert stats.sample_size(0.12, 0.15, alpha=alpha, power=power, alternative="greater") <= base


# ---------------------------------------------------------------------------
# two_proportion_test
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n1", "k1", "n2", "k2"),
    [
        (1000, 120, 1000, 150),
        (5443, 653, 5443, 735),
        (30, 27, 30, 20),
        (200, 0, 150, 3),
        (7, 7, 9, 8),
    ],
)
@pytest.mark.parametrize(
    ("alternative", "sm_alternative"),
    [("two-sided", "two-sided"), ("greater", "larger"), ("less", "smaller")],
)
def test_two_proportion_matches_statsmodels(
    n1: int, k1: int, n2: int, k2: int, alternative: str, sm_alternative: str
) -> None:
    res = stats.two_proportion_test(n1, k1, n2, k2, alternative=alternative)
    # statsmodels tests count[0]/nobs[0] - count[1]/nobs[1]: put arm 2 first
    z, p = proportions_ztest([k2, k1], [n2, n1], alternative=sm_alternative)
    assert close(res.z, float(z))
    assert close(res.p_value, float(p))
    low, high = confint_proportions_2indep(k2, n2, k1, n1, method="newcomb", compare="diff")
    assert close(res.ci_low, float(low), abs_=1e-12)
    assert close(res.ci_high, float(high), abs_=1e-12)
    assert res.p1 == k1 / n1 and res.p2 == k2 / n2
    assert close(res.diff, k2 / n2 - k1 / n1)


def test_two_proportion_closed_form() -> None:
    res = stats.two_proportion_test(1000, 120, 1000, 150)
    pooled = 270 / 2000
    z = 0.03 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert close(res.z, z)
    assert z > 0  # arm 2 higher -> positive z
    assert close(res.p_value, normal_two_sided(z))
    assert close(res.relative_lift or 0.0, 0.25)
    assert res.significant(0.05) and not res.significant(0.01)


@pytest.mark.parametrize(
    ("n1", "k1", "n2", "k2", "low", "high"),
    [
        # Newcombe, Statistics in Medicine 17 (1998) 873-890, Table II, method 10,
        # written as arm 2 - arm 1.
        (80, 48, 70, 56, 0.0524, 0.3339),
        (10, 3, 10, 9, 0.1705, 0.8090),
        (7, 2, 7, 6, 0.0582, 0.8062),
        (29, 0, 56, 5, -0.0381, 0.1926),
        (20, 0, 10, 0, -0.1611, 0.2775),
        (10, 0, 10, 0, -0.2775, 0.2775),
    ],
)
def test_difference_ci_newcombe_published(
    n1: int, k1: int, n2: int, k2: int, low: float, high: float
) -> None:
    res = stats.two_proportion_test(n1, k1, n2, k2)
    assert res.ci_low == pytest.approx(low, abs=5e-5)
    assert res.ci_high == pytest.approx(high, abs=5e-5)


def test_two_proportion_degenerate_arms() -> None:
    res = stats.two_proportion_test(10, 0, 20, 0)
    assert (res.z, res.p_value) == (0.0, 1.0)
    assert res.relative_lift is None  # lift over a zero rate is undefined
    full = stats.two_proportion_test(10, 10, 20, 20)
    assert (full.z, full.p_value) == (0.0, 1.0)


@settings(max_examples=150, deadline=None)
@given(
    n1=st.integers(1, 5000),
    n2=st.integers(1, 5000),
    f1=st.floats(0, 1),
    f2=st.floats(0, 1),
    alternative=st.sampled_from(["two-sided", "greater", "less"]),
)
def test_two_proportion_properties(
    n1: int, n2: int, f1: float, f2: float, alternative: str
) -> None:
    k1, k2 = round(f1 * n1), round(f2 * n2)
    res = stats.two_proportion_test(n1, k1, n2, k2, alternative=alternative)
    assert 0.0 <= res.p_value <= 1.0
    assert -1.0 - 1e-12 <= res.ci_low <= res.diff <= res.ci_high <= 1.0 + 1e-12
    if k2 / n2 > k1 / n1:
        assert res.z > 0
    swapped = stats.two_proportion_test(n2, k2, n1, k1, alternative=alternative)
    assert close(swapped.z, -res.z, abs_=1e-12)
    if alternative == "two-sided":
        assert close(swapped.p_value, res.p_value, abs_=1e-15)


def test_binomial_drop_test_depends_on_suite_size() -> None:
    # the same 3-point drop from a 90% history: significant on 2,000 cases, not on 30
    big = stats.binomial_drop_test(18_000, 20_000, 1_740, 2_000)
    small = stats.binomial_drop_test(270, 300, 26, 30)
    assert big.diff == pytest.approx(-0.03)
    assert small.diff == pytest.approx(-1 / 30)  # 26/30: even a slightly larger drop
    assert big.p_value < 0.001
    assert small.p_value > 0.2
    assert big.alternative == "less"
    z, p = proportions_ztest([1_740, 18_000], [2_000, 20_000], alternative="smaller")
    assert close(big.z, float(z)) and close(big.p_value, float(p))


def test_binomial_drop_test_rise_is_not_a_drop() -> None:
    assert stats.binomial_drop_test(800, 1000, 95, 100).p_value > 0.99


# ---------------------------------------------------------------------------
# proportion_ci
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe, Statistics in Medicine 17 (1998) 857-872, Table I: Wilson score (method 3)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_published(k: int, n: int, low: float, high: float) -> None:
    got_low, got_high = stats.proportion_ci(k, n)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 20), (1, 29), (81, 263), (500, 1000), (9999, 10000)]
)
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
@pytest.mark.parametrize(
    ("method", "sm_method"), [("wilson", "wilson"), ("clopper-pearson", "beta")]
)
def test_proportion_ci_matches_statsmodels(
    k: int, n: int, level: float, method: str, sm_method: str
) -> None:
    low, high = stats.proportion_ci(k, n, method=method, level=level)
    sm_low, sm_high = proportion_confint(k, n, alpha=1 - level, method=sm_method)
    # statsmodels computes Wilson's lower bound as centre - half (cancellation near 0), hence
    # a tiny absolute tolerance on top of the relative one.
    assert close(low, float(sm_low), abs_=1e-12)
    assert close(high, float(sm_high), abs_=1e-12)


def test_proportion_ci_edges_are_exact() -> None:
    assert stats.proportion_ci(0, 50)[0] == 0.0
    assert stats.proportion_ci(50, 50)[1] == 1.0
    low, high = stats.proportion_ci(0, 50, method="clopper-pearson")
    assert low == 0.0
    assert close(high, 1 - 0.025 ** (1 / 50))  # closed form at k = 0


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 100_000),
    frac=st.floats(0, 1),
    level=st.floats(0.5, 0.999),
    method=st.sampled_from(["wilson", "clopper-pearson"]),
)
def test_proportion_ci_contains_point_estimate(
    n: int, frac: float, level: float, method: str
) -> None:
    k = round(frac * n)
    low, high = stats.proportion_ci(k, n, method=method, level=level)
    assert 0.0 <= low <= k / n <= high <= 1.0


# ---------------------------------------------------------------------------
# mcnemar, sign test, fisher
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "c"), [(0, 5), (5, 0), (3, 4), (10, 2), (25, 10), (1, 40), (60, 45)])
def test_mcnemar_matches_statsmodels(b: int, c: int) -> None:
    table = [[50, b], [c, 30]]
    exact = stats.mcnemar(b, c)
    assert close(exact.p_value, float(sm_mcnemar(table, exact=True).pvalue))
    chi = stats.mcnemar(b, c, exact=False)
    sm_chi = sm_mcnemar(table, exact=False, correction=True)
    assert close(chi.statistic, float(sm_chi.statistic))
    assert close(chi.p_value, float(sm_chi.pvalue))


def test_mcnemar_closed_forms() -> None:
    assert stats.mcnemar(5, 0).p_value == pytest.approx(2 / 32, rel=REL)
    assert stats.mcnemar(0, 0).p_value == 1.0
    assert stats.mcnemar(0, 0, exact=False).p_value == 1.0
    assert stats.mcnemar(4, 4, exact=False).p_value == 1.0  # no spurious statistic at b == c
    # chi-square with 1 df: P[χ² >= x] = erfc(sqrt(x / 2))
    res = stats.mcnemar(10, 2, exact=False)
    assert res.statistic == pytest.approx(49 / 12, rel=REL)
    assert close(res.p_value, math.erfc(math.sqrt(49 / 24)))


@settings(max_examples=200, deadline=None)
@given(b=st.integers(0, 3000), c=st.integers(0, 3000), exact=st.booleans())
def test_mcnemar_symmetric_and_bounded(b: int, c: int, exact: bool) -> None:
    one = stats.mcnemar(b, c, exact=exact)
    other = stats.mcnemar(c, b, exact=exact)
    assert one.p_value == other.p_value
    assert 0.0 <= one.p_value <= 1.0
    if b == c:
        assert one.p_value == 1.0


def test_sign_test() -> None:
    assert stats.sign_test(9, 1) == pytest.approx(2 * 11 / 1024, rel=REL)
    assert stats.sign_test(0, 0) == 1.0
    assert stats.sign_test(7, 7) == 1.0
    assert stats.sign_test(3, 12) == stats.sign_test(12, 3)


@settings(max_examples=100, deadline=None)
@given(w=st.integers(0, 500), lost=st.integers(0, 500))
def test_sign_test_bounded(w: int, lost: int) -> None:
    assert 0.0 <= stats.sign_test(w, lost) <= 1.0


@pytest.mark.parametrize(
    "table", [[[3, 0], [0, 3]], [[8, 2], [1, 5]], [[0, 10], [10, 0]], [[12, 30], [40, 18]]]
)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_fisher_table_matches_scipy(table: list[list[int]], alternative: str) -> None:
    from scipy.stats import fisher_exact as scipy_fisher

    res = stats.fisher_exact(table, alternative=alternative)
    ref = scipy_fisher(table, alternative=alternative)
    assert close(res.p_value, min(1.0, float(ref.pvalue)))
    assert res.table == (tuple(table[0]), tuple(table[1]))


@pytest.mark.parametrize(
    ("n1", "k1", "n2", "k2"),
    [(3, 3, 3, 0), (3, 2, 3, 1), (5, 5, 5, 0), (20, 15, 25, 9), (8, 0, 8, 4)],
)
def test_fisher_counts_less_is_hypergeometric_tail(n1: int, k1: int, n2: int, k2: int) -> None:
    res = stats.fisher_exact(n1, k1, n2, k2, alternative="less")
    assert close(res.p_value, hypergeom_lower_tail(k2, n2, k1, n1))
    assert res.table == ((k2, n2 - k2), (k1, n1 - k1))
    greater = stats.fisher_exact(n2, k2, n1, k1, alternative="greater")
    assert close(greater.p_value, res.p_value)


def test_repeat_drop_test_wobble_versus_regression() -> None:
    assert stats.repeat_drop_test(2, 3, 1, 3) == pytest.approx(0.5, rel=REL)
    assert stats.repeat_drop_test(3, 3, 0, 3) == pytest.approx(1 / 20, rel=REL)
    assert stats.repeat_drop_test(5, 5, 0, 5) == pytest.approx(1 / 252, rel=REL)
    assert stats.repeat_drop_test(1, 3, 3, 3) == 1.0  # an improvement is never a drop


def test_fisher_odds_ratio_infinite_is_json_safe() -> None:
    res = stats.fisher_exact([[5, 0], [0, 5]])
    assert math.isinf(res.odds_ratio)
    data = res.to_dict()
    assert data["odds_ratio"] is None
    json.dumps(data, allow_nan=False)


# ---------------------------------------------------------------------------
# srm_check
# ---------------------------------------------------------------------------


def test_srm_closed_form() -> None:
    res = stats.srm_check([5000, 4800], [0.5, 0.5])
    stat = 2 * 100**2 / 4900
    assert close(res.statistic, stat)
    assert close(res.p_value, math.erfc(math.sqrt(stat / 2)))
    assert res.df == 1 and not res.mismatch
    assert res.expected_counts == (4900.0, 4900.0)


def test_srm_flags_mismatch_and_normalises_ratios() -> None:
    res = stats.srm_check([5000, 4600], [1, 1])
    assert res.mismatch and res.p_value < 0.001
    three = stats.srm_check([2000, 3000, 5100], [0.2, 0.3, 0.5])
    from scipy.stats import chisquare

    ref = chisquare([2000, 3000, 5100], [2020.0, 3030.0, 5050.0])
    assert close(three.statistic, float(ref.statistic)) and close(three.p_value, float(ref.pvalue))
    assert three.df == 2 and not three.mismatch


# ---------------------------------------------------------------------------
# assign_variant
# ---------------------------------------------------------------------------


def reference_bucket(user_id: str, experiment_id: str) -> float:
    salt = experiment_id.encode()
    payload = f"{len(salt)}:".encode() + salt + b":" + user_id.encode()
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "big") / 2**64


def test_assign_variant_follows_documented_recipe() -> None:
    for i in range(500):
        user = f"user_{i:03d}"
        u = reference_bucket(user, "experiment_v2_prompts")
        expected = "control" if u < 0.5 else "treatment"
        assert stats.assign_variant(user, "experiment_v2_prompts") == expected


def test_assign_variant_golden_values() -> None:
    # Frozen: if these change, every running experiment reshuffles its users.
    got = [stats.assign_variant(f"user_{i:03d}", "experiment_v2_prompts") for i in range(1, 9)]
    assert got == [
        "treatment", "treatment", "control", "treatment",
        "treatment", "treatment", "control", "control",
    ]  # fmt: skip
    weights = {"a": 1, "b": 2, "c": 3}
    three = "".join(stats.assign_variant(f"u{i}", "exp-x", weights=weights) for i in range(40))
    assert three == "acbaccbbbccaccbbbcbcaacccbcbabbacbbbbbcc"


def test_assign_variant_same_in_another_process() -> None:
    code = (
        "from pytest_llmeval.stats import assign_variant;"
        "print(''.join(assign_variant(f'u{i}', 'exp-x', "
        "weights={'a': 1, 'b': 2, 'c': 3})[0] for i in range(300)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.strip()
    here = "".join(
        stats.assign_variant(f"u{i}", "exp-x", weights={"a": 1, "b": 2, "c": 3})[0]
        for i in range(300)
    )
    assert out == here


@pytest.mark.parametrize(
    "weights",
    [
        {"control": 0.5, "treatment": 0.5},
        {"control": 0.9, "treatment": 0.1},
        {"a": 0.2, "b": 0.3, "c": 0.5},
        {"v1": 1, "v2": 1, "v3": 1, "v4": 1},
    ],
)
def test_assign_variant_proportions_over_100k_users(weights: dict[str, float]) -> None:
    counts = Counter(
        stats.assign_variant(str(i), "exp-prop", weights=weights) for i in range(100_000)
    )
    total = sum(weights.values())
    assert set(counts) == set(weights)
    for name, w in weights.items():
        assert abs(counts[name] / 100_000 - w / total) < 0.01


def test_assign_variant_is_salted_and_order_independent() -> None:
    users = [str(i) for i in range(2000)]
    a = [stats.assign_variant(u, "exp-a") for u in users]
    b = [stats.assign_variant(u, "exp-b") for u in users]
    agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(users)
    assert 0.45 < agreement < 0.55  # independent experiments: ~50% agreement by chance
    reordered = {"treatment": 0.5, "control": 0.5}
    assert [stats.assign_variant(u, "exp-a", weights=reordered) for u in users] == a


def test_assign_variant_zero_weight_and_ramp_up() -> None:
    users = [str(i) for i in range(3000)]
    assert {stats.assign_variant(u, "e", weights={"a": 0, "b": 1}) for u in users} == {"b"}
    designer = ABTestDesigner()
    at_10 = [designer.assign_variant(u, "ramp", traffic_fraction=0.1) for u in users]
    at_50 = [designer.assign_variant(u, "ramp", traffic_fraction=0.5) for u in users]
    # raising the treatment share never moves a treatment user back to control
    assert all(
        later == "treatment"
        for first, later in zip(at_10, at_50, strict=True)
        if first == "treatment"
    )
    assert {designer.assign_variant(u, "ramp", traffic_fraction=0.0) for u in users} == {"control"}
    assert {designer.assign_variant(u, "ramp", traffic_fraction=1.0) for u in users} == {
        "treatment"
    }


@settings(max_examples=100, deadline=None)
@given(user=st.text(), experiment=st.text(min_size=1))
def test_assign_variant_stable(user: str, experiment: str) -> None:
    first = stats.assign_variant(user, experiment)
    assert first in ("control", "treatment")
    assert stats.assign_variant(user, experiment) == first


# ---------------------------------------------------------------------------
# analyze_experiment
# ---------------------------------------------------------------------------


def test_analyze_ship_with_counts_and_rates_agree() -> None:
    by_count = stats.analyze_experiment(
        {"n": 1000, "thumbs_up": 120}, {"n": 1000, "thumbs_up": 170}, metric="thumbs_up"
    )
    by_rate = stats.analyze_experiment(
        {"n": 1000, "thumbs_up": 0.12}, {"n": 1000, "thumbs_up": 0.17}, metric="thumbs_up"
    )
    assert by_count.recommendation == by_rate.recommendation == "ship"
    assert close(by_count.test.p_value, by_rate.test.p_value)
    z, p = proportions_ztest([170, 120], [1000, 1000])
    assert close(by_count.test.z, float(z)) and close(by_count.test.p_value, float(p))


def test_analyze_significant_but_below_mde_is_not_ship() -> None:
    control = {"n": 5443, "thumbs_up_rate": 0.12}
    treatment = {"n": 5443, "thumbs_up_rate": 0.135}  # +12.5% relative, p ≈ 0.019
    without = stats.analyze_experiment(control, treatment, metric="thumbs_up_rate")
    assert without.recommendation == "ship"
    with_mde = stats.analyze_experiment(control, treatment, metric="thumbs_up_rate", mde=0.15)
    assert with_mde.test.p_value < 0.05
    assert with_mde.practically_significant is False
    assert with_mde.recommendation == "no_ship"
    assert with_mde.mde_absolute == pytest.approx(0.018)
    reached = stats.analyze_experiment(control, treatment, metric="thumbs_up_rate", mde=0.10)
    assert reached.recommendation == "ship" and reached.practically_significant is True
    absolute = stats.analyze_experiment(
        control, treatment, metric="thumbs_up_rate", mde=0.02, relative=False
    )
    assert absolute.recommendation == "no_ship"


def test_analyze_improvement_exactly_at_mde_ships() -> None:
    res = stats.analyze_experiment(
        {"n": 20000, "r": 0.12}, {"n": 20000, "r": 0.12 * 1.15}, metric="r", mde=0.15
    )
    assert res.practically_significant is True and res.recommendation == "ship"


def test_analyze_worse_and_inconclusive() -> None:
    worse = stats.analyze_experiment({"n": 2000, "m": 300}, {"n": 2000, "m": 220}, metric="m")
    assert worse.recommendation == "no_ship"
    flat = stats.analyze_experiment({"n": 200, "m": 30}, {"n": 200, "m": 33}, metric="m")
    assert flat.recommendation == "inconclusive"
    assert flat.practically_significant is None


def test_analyze_lower_is_better_primary() -> None:
    res = stats.analyze_experiment(
        {"n": 3000, "error_rate": 0.05}, {"n": 3000, "error_rate": 0.03},
        metric="error_rate", direction="lower",
    )  # fmt: skip
    assert res.recommendation == "ship"


def test_analyze_guardrail_blocks_shipping() -> None:
    control = {"n": 10000, "thumbs_up": 1200, "thumbs_down_rate": 0.030, "error_rate": 0.010}
    treatment = {"n": 10000, "thumbs_up": 1400, "thumbs_down_rate": 0.038, "error_rate": 0.0105}
    res = stats.analyze_experiment(
        control, treatment, metric="thumbs_up", guardrails=["thumbs_down_rate", "error_rate"]
    )
    assert res.test.p_value < 0.001
    assert res.recommendation == "no_ship"
    by_name = {g.name: g for g in res.guardrails}
    assert by_name["thumbs_down_rate"].worse and not by_name["error_rate"].worse
    # one-sided harm test: H1 = treatment rate higher
    _z, p = proportions_ztest([380, 300], [10000, 10000], alternative="larger")
    assert close(by_name["thumbs_down_rate"].test.p_value, float(p))
    assert any("thumbs_down_rate" in r for r in res.reasons)
    ok = stats.analyze_experiment(
        control, treatment, metric="thumbs_up", guardrails={"error_rate": "lower"}
    )
    assert ok.recommendation == "ship"


def test_analyze_guardrail_improvement_does_not_block() -> None:
    res = stats.analyze_experiment(
        {"n": 5000, "m": 600, "copy_rate": 0.30},
        {"n": 5000, "m": 700, "copy_rate": 0.40},
        metric="m",
        guardrails={"copy_rate": "higher"},
    )
    assert res.recommendation == "ship"
    worse = stats.analyze_experiment(
        {"n": 5000, "m": 600, "copy_rate": 0.40},
        {"n": 5000, "m": 700, "copy_rate": 0.30},
        metric="m",
        guardrails={"copy_rate": "higher"},
    )
    assert worse.recommendation == "no_ship"


def test_analysis_to_dict_is_json() -> None:
    res = stats.analyze_experiment(
        {"n": 100, "m": 0, "errors": 1}, {"n": 100, "m": 4, "errors": 0}, metric="m",
        guardrails=["errors"],
    )  # fmt: skip
    data = res.to_dict()
    assert plain_builtins(data)
    assert data["test"]["relative_lift"] is None
    assert json.loads(json.dumps(data, allow_nan=False))["recommendation"] == res.recommendation


# ---------------------------------------------------------------------------
# history gate helpers
# ---------------------------------------------------------------------------


def test_history_bounds() -> None:
    rates = [0.80, 0.82, 0.79, 0.85]
    mean, std, lower = stats.history_bounds(rates, 2.0)
    m = sum(rates) / 4
    s = math.sqrt(sum((r - m) ** 2 for r in rates) / 3)
    assert close(mean, m) and close(std, s) and close(lower, m - 2 * s)
    assert stats.history_bounds([0.9, 0.9], 2.0) == (0.9, 0.0, 0.9)
    assert stats.history_bounds(rates, 2.0).to_dict()["sample_std"] == std


# ---------------------------------------------------------------------------
# ABTestDesigner (the seed's interface)
# ---------------------------------------------------------------------------


def test_designer_seed_interface() -> None:
    designer = ABTestDesigner()
    n = designer.compute_required_sample_size(baseline_rate=0.12, minimum_detectable_effect=0.15)
    assert n == 5443
    assert designer.compute_required_sample_size(0.12, 0.15, alpha=0.01) == 8099
    assert designer.compute_required_sample_size(0.12, 0.15, power=0.9) > n
    result = designer.analyze_experiment(
        control_metrics={"n": n, "thumbs_up_rate": 0.120},
        treatment_metrics={"n": n, "thumbs_up_rate": 0.135},
        metric_name="thumbs_up_rate",
    )
    assert set(result) >= {"metric", "control", "treatment", "statistical_test", "recommendation"}
    assert result["recommendation"] == "ship_treatment"
    assert result["control"] == {"n": n, "rate": 0.12}
    test = result["statistical_test"]
    assert set(test) >= {"z_score", "p_value", "significant", "direction", "relative_lift"}
    assert test["relative_lift"] == pytest.approx(0.125)
    assert test["significant"] is True and test["direction"] == "treatment_better"
    assert test["z_score"] > 0
    pooled = 0.1275
    z = 0.015 / math.sqrt(pooled * (1 - pooled) * 2 / n)
    assert test["z_score"] == pytest.approx(z, rel=REL)
    assert test["p_value"] == pytest.approx(normal_two_sided(z), rel=REL)
    assert designer.assign_variant("user_001", "experiment_v2_prompts") in ("control", "treatment")


def test_designer_z_test_exact_p_value() -> None:
    res = ABTestDesigner.two_proportion_z_test(1000, 0.15, 1000, 0.12)
    # the seed would have bucketed this into 0.05
    assert res["p_value"] == pytest.approx(0.0496403868653, rel=1e-9)
    assert res["z_score"] < 0 and res["direction"] == "control_better"
    same = ABTestDesigner.two_proportion_z_test(10, 0.5, 10, 0.5)
    assert same["direction"] == "no_difference" and same["p_value"] == 1.0


def test_designer_exposes_module_functions() -> None:
    designer = ABTestDesigner()
    assert designer.sample_size(0.12, 0.15) == 5443
    assert designer.mcnemar(5, 0).p_value == pytest.approx(0.0625)
    assert designer.assign_variant("u", "e", weights={"x": 1}) == "x"
    assert designer.analyze({"n": 10, "m": 1}, {"n": 10, "m": 2}, metric="m").recommendation == (
        "inconclusive"
    )
    for name in ("proportion_ci", "fisher_exact", "srm_check", "sign_test", "history_bounds",
                 "binomial_drop_test", "repeat_drop_test", "two_proportion_test"):  # fmt: skip
        assert callable(getattr(designer, name))


def test_designer_missing_metric_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="thumbs_up_rate"):
        ABTestDesigner().analyze_experiment({"n": 100}, {"n": 100, "thumbs_up_rate": 0.2})


# ---------------------------------------------------------------------------
# every ValueError
# ---------------------------------------------------------------------------

ARM = {"n": 5, "m": 1}
ARM_G = {"n": 5, "m": 1, "g": 1}


def analyze(control: dict[str, Any], treatment: dict[str, Any], **kw: Any) -> object:
    return stats.analyze_experiment(control, treatment, metric=kw.pop("metric", "m"), **kw)


BAD_INPUTS: list[tuple[str, Callable[[], object], str]] = [
    ("baseline above 1", lambda: stats.sample_size(1.2, 0.1), "baseline_rate"),
    ("baseline below 0", lambda: stats.sample_size(-0.1, 0.1, relative=False), "baseline_rate"),
    ("baseline nan", lambda: stats.sample_size(math.nan, 0.1), "baseline_rate"),
    ("mde zero", lambda: stats.sample_size(0.12, 0.0), "mde"),
    ("mde pushes p2 above 1", lambda: stats.sample_size(0.9, 0.2), "mde"),
    ("mde pushes p2 to 0", lambda: stats.sample_size(0.1, -1.0), "mde"),
    ("absolute mde below 0", lambda: stats.sample_size(0.1, -0.2, relative=False), "mde"),
    ("relative on zero baseline", lambda: stats.sample_size(0.0, 0.1), "baseline_rate"),
    ("alpha 0", lambda: stats.sample_size(0.12, 0.15, alpha=0), "alpha"),
    ("alpha 1", lambda: stats.sample_size(0.12, 0.15, alpha=1), "alpha"),
    ("power 1", lambda: stats.sample_size(0.12, 0.15, power=1.0), "power"),
    ("power 0", lambda: stats.sample_size(0.12, 0.15, power=0.0), "power"),
    (
        "alternative unknown",
        lambda: stats.sample_size(0.12, 0.15, alternative="larger"),
        "alternative",
    ),
    (
        "greater with negative mde",
        lambda: stats.sample_size(0.12, -0.1, alternative="greater"),
        "greater",
    ),
    ("less with positive mde", lambda: stats.sample_size(0.12, 0.1, alternative="less"), "less"),
    ("n1 zero", lambda: stats.two_proportion_test(0, 0, 10, 1), "n1"),
    ("n2 negative", lambda: stats.two_proportion_test(10, 1, -5, 0), "n2"),
    ("k1 > n1", lambda: stats.two_proportion_test(10, 11, 10, 1), "k1"),
    ("k2 < 0", lambda: stats.two_proportion_test(10, 1, 10, -1), "k2"),
    ("k float", lambda: stats.two_proportion_test(10, 1.5, 10, 1), "k1"),  # type: ignore[arg-type]
    (
        "bad alternative",
        lambda: stats.two_proportion_test(10, 1, 10, 1, alternative="both"),
        "alternative",
    ),
    ("bad level", lambda: stats.two_proportion_test(10, 1, 10, 1, level=1.0), "level"),
    ("ci n zero", lambda: stats.proportion_ci(0, 0), "n"),
    ("ci k > n", lambda: stats.proportion_ci(5, 4), "k"),
    ("ci k < 0", lambda: stats.proportion_ci(-1, 4), "k"),
    ("ci method", lambda: stats.proportion_ci(1, 4, method="wald"), "method"),
    ("ci level", lambda: stats.proportion_ci(1, 4, level=0), "level"),
    ("mcnemar b < 0", lambda: stats.mcnemar(-1, 3), "b"),
    ("mcnemar c float", lambda: stats.mcnemar(1, 2.0), "c"),  # type: ignore[arg-type]
    ("sign wins < 0", lambda: stats.sign_test(-1, 3), "wins"),
    ("sign losses < 0", lambda: stats.sign_test(1, -3), "losses"),
    ("fisher 3x2", lambda: stats.fisher_exact([[1, 2], [3, 4], [5, 6]]), "2x2"),
    ("fisher negative cell", lambda: stats.fisher_exact([[1, -2], [3, 4]]), r"table\[0\]\[1\]"),
    ("fisher k > n", lambda: stats.fisher_exact(3, 4, 3, 1), "k1"),
    ("fisher missing counts", lambda: stats.fisher_exact(3, 1), "n1, k1, n2, k2"),  # type: ignore[call-overload]
    (
        "fisher alternative",
        lambda: stats.fisher_exact([[1, 2], [3, 4]], alternative="x"),
        "alternative",
    ),
    ("repeat k > n", lambda: stats.repeat_drop_test(4, 3, 1, 3), "k1"),
    ("srm one arm", lambda: stats.srm_check([10], [1.0]), "at least 2"),
    ("srm length mismatch", lambda: stats.srm_check([10, 10], [0.5]), "expected_ratios"),
    ("srm negative count", lambda: stats.srm_check([10, -1], [0.5, 0.5]), r"observed_counts\[1\]"),
    ("srm zero ratio", lambda: stats.srm_check([10, 10], [1.0, 0.0]), r"expected_ratios\[1\]"),
    ("srm all zero", lambda: stats.srm_check([0, 0], [0.5, 0.5]), "all be 0"),
    ("srm threshold", lambda: stats.srm_check([10, 10], [1, 1], threshold=1.5), "threshold"),
    ("assign empty experiment", lambda: stats.assign_variant("u", ""), "experiment_id"),
    ("assign no variants", lambda: stats.assign_variant("u", "e", weights={}), "weights"),
    (
        "assign negative weight",
        lambda: stats.assign_variant("u", "e", weights={"a": -1, "b": 2}),
        "weights",
    ),
    (
        "assign all zero",
        lambda: stats.assign_variant("u", "e", weights={"a": 0, "b": 0}),
        "all be 0",
    ),
    ("traffic fraction", lambda: ABTestDesigner.assign_variant("u", "e", 1.5), "traffic_fraction"),
    (
        "fraction and weights",
        lambda: ABTestDesigner.assign_variant("u", "e", 0.3, weights={"a": 1}),
        "not both",
    ),
    ("analyze no n", lambda: analyze({"m": 1}, ARM), "'n'"),
    ("analyze n zero", lambda: analyze({"n": 0, "m": 0}, ARM), r"control\['n'\]"),
    ("analyze missing metric", lambda: analyze(ARM, {"n": 5}), "treatment has no metric"),
    ("analyze count > n", lambda: analyze({"n": 5, "m": 6}, ARM), r"control\['m'\]"),
    ("analyze rate > 1", lambda: analyze(ARM, {"n": 5, "m": 1.5}), r"treatment\['m'\]"),
    ("analyze string value", lambda: analyze({"n": 5, "m": "1"}, ARM), "count"),
    ("analyze mde <= 0", lambda: analyze(ARM, ARM, mde=0), "mde"),
    ("analyze alpha", lambda: analyze(ARM, ARM, alpha=0), "alpha"),
    ("analyze direction", lambda: analyze(ARM, ARM, direction="up"), "direction"),
    ("analyze metric n", lambda: analyze({"n": 5}, {"n": 5}, metric="n"), "metric"),
    (
        "guardrail unknown direction",
        lambda: analyze(ARM_G, ARM_G, guardrails=["g"]),
        "no known direction",
    ),
    (
        "guardrail bad direction",
        lambda: analyze(ARM_G, ARM_G, guardrails={"g": "down"}),
        "guardrails",
    ),
    ("guardrail missing", lambda: analyze(ARM, ARM, guardrails={"g": "lower"}), "no metric 'g'"),
    ("guardrail is primary", lambda: analyze(ARM, ARM, guardrails={"m": "lower"}), "primary"),
    ("guardrail string", lambda: analyze(ARM, ARM, guardrails="error_rate"), "not a string"),
    ("history one point", lambda: stats.history_bounds([0.9], 2.0), "at least 2"),
    ("history empty", lambda: stats.history_bounds([], 2.0), "at least 2"),
    ("history rate > 1", lambda: stats.history_bounds([0.9, 1.2], 2.0), r"pass_rates\[1\]"),
    ("history negative k", lambda: stats.history_bounds([0.9, 0.8], -1.0), "k"),
    ("drop test total zero", lambda: stats.binomial_drop_test(0, 0, 1, 2), "n1"),
    ("drop test now > total", lambda: stats.binomial_drop_test(5, 10, 3, 2), "k2"),
    ("designer z-test rate", lambda: ABTestDesigner.two_proportion_z_test(10, 1.5, 10, 0.5), "p1"),
    ("designer z-test n", lambda: ABTestDesigner.two_proportion_z_test(0, 0.5, 10, 0.5), "n1"),
]


@pytest.mark.parametrize(
    ("call", "match"), [(c, m) for _, c, m in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS]
)
def test_bad_input_raises_value_error(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_results_to_dict_are_plain_builtins() -> None:
    results: list[Any] = [
        stats.two_proportion_test(100, 10, 100, 20),
        stats.mcnemar(3, 9),
        stats.fisher_exact(10, 3, 10, 8),
        stats.srm_check([100, 90], [1, 1]),
        stats.history_bounds([0.5, 0.6], 1.0),
        stats.analyze_experiment(
            {"n": 100, "m": 10, "error_rate": 0.1},
            {"n": 100, "m": 20, "error_rate": 0.1},
            metric="m",
            guardrails=["error_rate"],
        ),
    ]
    for res in results:
        data = res.to_dict()
        assert plain_builtins(data), data
        json.dumps(data, allow_nan=False)
