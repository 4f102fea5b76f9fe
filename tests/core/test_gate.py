"""Per-case classification (the outcome table) and the session gates."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from pytest_llmeval.core.gate import (
    OUTCOME_PYTEST,
    BaselineView,
    GateSettings,
    classify,
    decide,
    pass_rate,
)

PASS = BaselineView(passed=True)
FAIL = BaselineView(passed=False, passes=0)


# verdict now, baseline, outcome, pytest outcome: one row per line of DESIGN.md's table
@pytest.mark.parametrize(
    ("verdict", "baseline", "outcome", "pytest_outcome"),
    [
        ("pass", PASS, "passed", "passed"),
        ("pass", None, "passed", "passed"),
        ("pass", FAIL, "improvement", "passed"),
        ("fail", PASS, "regression", "failed"),
        ("fail", FAIL, "known_failure", "xfailed"),
        ("fail", None, "new_failure", "failed"),
        ("error", PASS, "error", "error"),
        ("error", FAIL, "error", "error"),
        ("error", None, "error", "error"),
    ],
)
def test_outcome_table(
    verdict: str, baseline: BaselineView | None, outcome: str, pytest_outcome: str
) -> None:
    result = classify(verdict, baseline)
    assert result.outcome == outcome
    assert OUTCOME_PYTEST[result.outcome] == pytest_outcome


def test_repeated_samples_drop_that_is_not_significant_is_flaky() -> None:
    base = BaselineView(passed=True, passes=5, samples=5)
    result = classify("fail", base, passes=4, samples=5)
    assert result.outcome == "flaky"
    assert "4/5 now vs 5/5" in result.detail
    assert OUTCOME_PYTEST["flaky"] == "xfailed"


def test_repeated_samples_significant_drop_is_a_regression() -> None:
    base = BaselineView(passed=True, passes=20, samples=20)
    result = classify("fail", base, passes=0, samples=20)
    assert result.outcome == "regression"
    assert "0/20 now vs 20/20" in result.detail


def test_pass_rate() -> None:
    assert pass_rate(3, 1) == 0.75
    assert pass_rate(0, 0) is None


def gates(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "passed": 9,
        "failed": 1,
        "regressions": [],
        "history": [],
        "settings": GateSettings(),
        "full_run": True,
    }
    args.update(kwargs)
    decision = decide(**args)
    return {"decision": decision, **{g.name: g for g in decision.gates}}


def test_no_regressions_passes() -> None:
    out = gates()
    assert out["decision"].passed
    assert out["regressions"].passed
    assert out["regressions"].detail == "0 regressions (max 0)"


def test_one_regression_fails_by_default() -> None:
    out = gates(regressions=["f.jsonl::a"])
    assert not out["decision"].passed
    assert not out["regressions"].passed
    assert out["regressions"].detail == "1 regressions (max 0)"
    assert [g.name for g in out["decision"].failed_gates] == ["regressions"]


def test_max_regressions_allows_some() -> None:
    settings = GateSettings(max_regressions=2)
    assert gates(regressions=["a", "b"], settings=settings)["decision"].passed
    out = gates(regressions=["a", "b", "c"], settings=settings)
    assert not out["decision"].passed
    assert out["regressions"].detail == "3 regressions (max 2)"


def test_regressions_are_accepted_while_updating_the_baseline() -> None:
    out = gates(regressions=["a", "b"], update_baseline=True)
    assert out["decision"].passed
    assert "2 regressions accepted" in out["regressions"].detail


def test_min_pass_rate() -> None:
    assert "min_pass_rate" not in gates()  # not set: no gate
    settings = GateSettings(min_pass_rate=0.9)
    ok = gates(passed=9, failed=1, settings=settings)
    assert ok["min_pass_rate"].passed
    assert ok["min_pass_rate"].detail == "pass rate 90.0% >= minimum 90.0%"
    bad = gates(passed=8, failed=2, settings=settings)
    assert not bad["decision"].passed
    assert not bad["min_pass_rate"].passed
    assert bad["min_pass_rate"].detail == "pass rate 80.0% < minimum 90.0%"


def test_min_pass_rate_without_judged_cases_is_skipped() -> None:
    out = gates(passed=0, failed=0, settings=GateSettings(min_pass_rate=0.9))
    assert out["min_pass_rate"].skipped and out["min_pass_rate"].passed


def hist(*rates: float) -> list[dict[str, Any]]:
    return [{"pass_rate": r, "total": 10, "passed": round(r * 10)} for r in rates]


def test_history_gate_uses_sample_std() -> None:
    rates = (0.9, 0.8, 1.0)
    mean = statistics.fmean(rates)  # 0.9
    std = statistics.stdev(rates)  # sample std (n - 1): 0.1; population std would be 0.0816
    lower = mean - 2.0 * std  # 0.7
    assert lower == pytest.approx(0.7)
    # 0.72 passes with the sample std (lower 0.70) but would fail with the population std (0.737)
    out = gates(passed=18, failed=7, history=hist(*rates))  # 0.72
    assert out["history"].passed and not out["history"].skipped
    assert "mean 90.0% - 2 x std 10.0% over 3 runs" in out["history"].detail
    assert "70.0%" in out["history"].detail
    below = gates(passed=69, failed=31, history=hist(*rates))  # 0.69
    assert not below["history"].passed
    assert not below["decision"].passed
    assert "pass rate 69.0% < 70.0%" in below["history"].detail


def test_history_gate_at_the_bound_passes() -> None:
    out = gates(passed=7, failed=3, history=hist(0.9, 0.8, 1.0))
    assert out["history"].passed


def test_history_gate_k_is_configurable() -> None:
    settings = GateSettings(std_threshold=1.0)
    out = gates(passed=75, failed=25, history=hist(0.9, 0.8, 1.0), settings=settings)
    assert not out["history"].passed  # 0.75 < 0.9 - 1 x 0.1
    assert "- 1 x std" in out["history"].detail


def test_history_gate_needs_min_history_points() -> None:
    out = gates(passed=1, failed=9, history=hist(0.9, 1.0))
    assert out["history"].skipped and out["history"].passed
    assert out["decision"].passed
    assert "2 recorded runs, need 3" in out["history"].detail
    assert "llmeval_min_history" in out["history"].detail
    more = gates(passed=1, failed=9, history=hist(0.9, 1.0), settings=GateSettings(min_history=2))
    assert not more["history"].skipped and not more["history"].passed


def test_history_gate_skipped_on_a_narrowed_run() -> None:
    out = gates(passed=0, failed=10, history=hist(0.9, 0.8, 1.0), full_run=False)
    assert out["history"].skipped and out["history"].passed
    assert "narrowed" in out["history"].detail
    assert out["decision"].passed


def test_history_gate_skipped_without_judged_cases() -> None:
    out = gates(passed=0, failed=0, history=hist(0.9, 0.8, 1.0))
    assert out["history"].skipped


def test_constant_history_has_zero_std() -> None:
    flat = hist(0.9, 0.9, 0.9)
    assert gates(passed=9, failed=1, history=flat)["history"].passed
    assert not gates(passed=8, failed=2, history=flat)["history"].passed


def test_several_failed_gates_are_all_named() -> None:
    out = gates(
        passed=1,
        failed=9,
        regressions=["a"],
        history=hist(0.9, 0.8, 1.0),
        settings=GateSettings(min_pass_rate=0.5),
    )
    assert [g.name for g in out["decision"].failed_gates] == [
        "regressions",
        "min_pass_rate",
        "history",
    ]


def test_gate_result_to_dict_is_plain() -> None:
    g = gates(regressions=["a"])["regressions"]
    assert g.to_dict() == {
        "name": "regressions",
        "passed": False,
        "skipped": False,
        "detail": "1 regressions (max 0)",
    }
