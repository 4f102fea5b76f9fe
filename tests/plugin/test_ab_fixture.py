"""The ``llmeval_ab`` fixture in a user's test file: the seed's API with exact statistics."""

from __future__ import annotations

import pytest

USER_TESTS = """
import pytest


def test_sample_size(llmeval_ab):
    assert llmeval_ab.compute_required_sample_size(0.12, 0.15) == 5443
    assert llmeval_ab.compute_required_sample_size(0.12, 0.15, alpha=0.01) == 8099
    assert llmeval_ab.compute_required_sample_size(
        baseline_rate=0.12, minimum_detectable_effect=0.15, power=0.9
    ) > 5443


def test_seed_analysis(llmeval_ab):
    result = llmeval_ab.analyze_experiment(
        control_metrics={"n": 5443, "thumbs_up_rate": 0.120},
        treatment_metrics={"n": 5443, "thumbs_up_rate": 0.135},
        metric_name="thumbs_up_rate",
    )
    assert result["recommendation"] == "ship_treatment"
    test = result["statistical_test"]
    assert test["significant"] is True
    assert test["relative_lift"] == pytest.approx(0.125)
    assert test["p_value"] == pytest.approx(0.018967965, rel=1e-6)


def test_mde_blocks_small_lift(llmeval_ab):
    result = llmeval_ab.analyze_experiment(
        {"n": 5443, "thumbs_up_rate": 0.120},
        {"n": 5443, "thumbs_up_rate": 0.135},
        metric_name="thumbs_up_rate",
        mde=0.15,
    )
    assert result["recommendation"] == "no_ship"


def test_z_test_and_variants(llmeval_ab):
    res = llmeval_ab.two_proportion_z_test(1000, 0.12, 1000, 0.15)
    assert res["z_score"] > 0 and res["direction"] == "treatment_better"
    assert res["p_value"] == pytest.approx(0.0496403868653, rel=1e-9)
    assert llmeval_ab.assign_variant("user_001", "experiment_v2_prompts") == "treatment"
    assert llmeval_ab.assign_variant("user_003", "experiment_v2_prompts") == "control"


def test_module_functions(llmeval_ab):
    assert llmeval_ab.sample_size(0.12, 0.15) == 5443
    assert llmeval_ab.mcnemar(5, 0).p_value == pytest.approx(0.0625)
    assert llmeval_ab.srm_check([5000, 4600], [0.5, 0.5]).mismatch


def test_wrong_expectation(llmeval_ab):
    assert llmeval_ab.compute_required_sample_size(0.12, 0.15) == 5000
"""


def test_llmeval_ab_fixture_in_user_tests(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_ab=USER_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*test_wrong_expectation*", "*assert 5443 == 5000*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_llmeval_ab_is_documented_in_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--fixtures", "-v")
    result.stdout.fnmatch_lines(["llmeval_ab*", "*compute_required_sample_size*"])
