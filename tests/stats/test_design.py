"""pytest_llmeval.stats.design: sample size, sample-ratio mismatch and variant assignment.

References: statsmodels and scipy (test-only dependencies), closed forms evaluated here with
``math`` only, and published tables (Newcombe 1998a/b).
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
from stats_helpers import close, plain_builtins
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    samplesize_proportions_2indep_onetail,
)

from pytest_llmeval import stats
from pytest_llmeval.stats import ABTestDesigner

# ---------------------------------------------------------------------------
# sample_size
# ---------------------------------------------------------------------------


def test_sample_size_issue_values() -> None:
    assert stats.sample_size(0.12, 0.15) == 5443
    assert stats.sample_size(0.12, 0.15, alpha=0.01) == 8099


def test_sample_size_closed_form_with_math_only() -> None:
    # z values from the inverse normal are the only scipy dependency; check the formula with
    # textbook quantile tables replaced by statistics.NormalDist (stdlib).
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
# every ValueError
# ---------------------------------------------------------------------------

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
]


@pytest.mark.parametrize(
    ("call", "match"), [(c, m) for _, c, m in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS]
)
def test_bad_input_raises_value_error(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_results_to_dict_are_plain_builtins() -> None:
    results: list[Any] = [
        stats.srm_check([100, 90], [1, 1]),
    ]
    for res in results:
        data = res.to_dict()
        assert plain_builtins(data), data
        json.dumps(data, allow_nan=False)
