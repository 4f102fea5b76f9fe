"""pytest_llmeval.stats.experiment: A/B analysis and the legacy ABTestDesigner interface.

References: statsmodels and scipy (test-only dependencies), closed forms evaluated here with
``math`` only, and published tables (Newcombe 1998a/b).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from stats_helpers import REL, close, normal_two_sided, plain_builtins
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    proportions_ztest,
)

from pytest_llmeval import stats
from pytest_llmeval.stats import ABTestDesigner

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
# ABTestDesigner (the legacy interface)
# ---------------------------------------------------------------------------


def test_designer_legacy_interface() -> None:
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
    # a bucketed p-value would have said 0.05
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
