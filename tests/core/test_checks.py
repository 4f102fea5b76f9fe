"""Deterministic case checks, rule checks and the step from a judge's result to a Verdict."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.checks import (
    TOO_SHORT_CAP,
    RuleSettings,
    finalize,
    run_check,
    system_error_verdict,
    word_count,
)
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult

JUDGE = JudgeIdentity(name="local", prompt_version="sim-1")
RULES = RuleSettings()
LONG_OK = "You have thirty days from delivery to ask for a refund."


def case(
    *checks: dict[str, Any], threshold: float | None = None, ground_truth: str | None = "x"
) -> Case:
    return Case(
        id="c", question="q?", ground_truth=ground_truth, checks=checks, threshold=threshold
    )


def free(*checks: dict[str, Any], threshold: float | None = None) -> Case:
    """A case without a reference: the only kind the minimum-length rule applies to."""
    return case(*checks, threshold=threshold, ground_truth=None)


@pytest.mark.parametrize(
    ("check", "response", "failure"),
    [
        ({"type": "contains", "value": "30"}, "within 30 days", None),
        ({"type": "contains", "value": "REFUND"}, "a refund is due", None),
        (
            {"type": "contains", "value": "REFUND", "case_sensitive": True},
            "a refund is due",
            "contains 'REFUND': not found",
        ),
        ({"type": "contains", "value": "60"}, "within 30 days", "contains '60': not found"),
        ({"type": "not_contains", "value": "fee"}, "no charge", None),
        ({"type": "not_contains", "value": "fee"}, "a FEE applies", "not_contains 'fee': found"),
        ({"type": "not_contains", "value": "fee", "case_sensitive": True}, "a FEE", None),
        ({"type": "regex", "value": r"\b30 days\b"}, "Within 30 Days.", None),
        ({"type": "regex", "value": r"^\d+$"}, "abc", r"regex '^\\d+$': no match"),
        (
            {"type": "regex", "value": "Days", "case_sensitive": True},
            "30 days",
            "regex 'Days': no match",
        ),
        ({"type": "min_words", "value": 3}, "one two three", None),
        ({"type": "min_words", "value": 3}, "one two", "min_words 3: has 2"),
        ({"type": "max_words", "value": 2}, "one two", None),
        ({"type": "max_words", "value": 2}, "one two three", "max_words 2: has 3"),
    ],
)
def test_run_check(check: dict[str, Any], response: str, failure: str | None) -> None:
    assert run_check(check, response) == failure


SCHEMA = {
    "type": "object",
    "required": ["order", "refund"],
    "properties": {"order": {"type": "string"}, "refund": {"type": "boolean"}},
}


def test_json_schema_check_passes_on_valid_json() -> None:
    check = {"type": "json_schema", "value": SCHEMA}
    assert run_check(check, '{"order": "A-1", "refund": true}') is None


def test_json_schema_check_reports_where_the_document_is_wrong() -> None:
    check = {"type": "json_schema", "value": SCHEMA}
    failure = run_check(check, '{"order": "A-1", "refund": "yes"}')
    assert failure is not None
    assert failure.startswith("json_schema: at refund:")
    assert "boolean" in failure
    missing = run_check(check, '{"order": "A-1"}')
    assert missing is not None and "(root)" in missing and "refund" in missing


def test_json_schema_check_on_a_non_json_response() -> None:
    failure = run_check({"type": "json_schema", "value": SCHEMA}, "Sure! Here it is: {")
    assert failure is not None and failure.startswith("json_schema: response is not JSON")


CATASTROPHIC = "a" * 41 + "!"


@pytest.mark.parametrize("pattern", [r"(a|aa)+$", r"(a|a)*$", r"(\w|\w\w)+$"])
def test_a_catastrophic_regex_fails_its_check_in_bounded_time(
    pattern: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from pytest_llmeval.core import checks

    monkeypatch.setattr(checks, "CHECK_TIMEOUT", 0.2)
    start = time.monotonic()
    failure = run_check({"type": "regex", "value": pattern}, CATASTROPHIC)
    assert time.monotonic() - start < 5
    assert failure is not None and "ran past 0.2 s" in failure and failure.startswith("regex")


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": r"(a|aa)+$"},
        {"type": "object", "properties": {"k": {"type": "string", "pattern": r"(a|aa)+$"}}},
        {"type": "object", "patternProperties": {r"(a|aa)+$": {"type": "string"}}},
        {
            "type": "object",
            "patternProperties": {r"(a|aa)+$": {}},
            "additionalProperties": False,
        },
    ],
)
def test_a_catastrophic_pattern_inside_a_json_schema_is_bounded_too(
    schema: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import time

    from pytest_llmeval.core import checks

    monkeypatch.setattr(checks, "CHECK_TIMEOUT", 0.2)
    document = (
        CATASTROPHIC if schema["type"] == "string" else {"k": CATASTROPHIC, CATASTROPHIC: "v"}
    )
    start = time.monotonic()
    failure = run_check({"type": "json_schema", "value": schema}, json.dumps(document))
    assert time.monotonic() - start < 5
    assert failure is not None and failure.startswith("json_schema") and "ran past" in failure


def test_bounded_json_schema_keywords_still_validate() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "string", "pattern": "^[a-z]+$"}},
        "patternProperties": {"^x-": {"type": "integer"}},
        "additionalProperties": False,
    }
    check = {"type": "json_schema", "value": schema}
    assert run_check(check, '{"id": "abc", "x-n": 3}') is None
    assert "does not match" in (run_check(check, '{"id": "ABC"}') or "")
    assert "x-n" in (run_check(check, '{"x-n": "three"}') or "")
    assert "other" in (run_check(check, '{"other": 1}') or "")


def test_word_count() -> None:
    assert word_count("") == 0
    assert word_count("  one\ttwo\nthree  ") == 3


def test_passing_verdict() -> None:
    v = finalize(case(), LONG_OK, JudgeResult(score=0.9, reasoning="close"), JUDGE, RULES)
    assert v.passed
    assert v.score == 0.9
    assert v.threshold == 0.7
    assert v.failure_modes == ()
    assert v.reasoning == "close"
    assert v.judge == JUDGE
    assert not v.checks_only


def test_too_short_caps_the_score_at_0_3_and_fails() -> None:
    v = finalize(free(), "Thirty days.", JudgeResult(score=1.0), JUDGE, RULES)
    assert TOO_SHORT_CAP == 0.3
    assert v.score == 0.3
    assert not v.passed
    assert "too_short" in v.failure_modes
    # the cap is a cap, not a floor
    low = finalize(free(), "No.", JudgeResult(score=0.1), JUDGE, RULES)
    assert low.score == 0.1


def test_too_short_fails_even_with_a_low_threshold() -> None:
    v = finalize(free(threshold=0.2), "Thirty days.", JudgeResult(score=1.0), JUDGE, RULES)
    assert v.score == 0.3 and not v.passed and "too_short" in v.failure_modes


@pytest.mark.parametrize("answer", ["Steven Spielberg", "Spielberg", "30 days."])
def test_a_short_answer_is_not_too_short_when_there_is_a_reference(answer: str) -> None:
    """With a reference the judge compares against it: a two-word reference must not make a
    two-word answer fail (issue #12: every correct short answer failed)."""
    short_ref = case(ground_truth="Steven Spielberg")
    v = finalize(short_ref, answer, JudgeResult(score=0.9), JUDGE, RULES)
    assert v.passed and v.score == 0.9 and "too_short" not in v.failure_modes
    several = Case(id="c", question="q?", references=("Spielberg", "Steven Spielberg"))
    assert finalize(several, answer, JudgeResult(score=0.9), JUDGE, RULES).passed


def test_word_bounds_are_configurable() -> None:
    rules = RuleSettings(min_words=2, max_words=3)
    short = finalize(free(), "Thirty days.", JudgeResult(score=1.0), JUDGE, rules)
    assert short.passed and short.score == 1.0
    long = finalize(case(), "one two three four", JudgeResult(score=1.0), JUDGE, rules)
    assert "too_long" in long.failure_modes


def test_too_long_is_flagged_but_does_not_fail_alone() -> None:
    text = " ".join(["word"] * 601)
    v = finalize(case(), text, JudgeResult(score=0.95), JUDGE, RULES)
    assert "too_long" in v.failure_modes
    assert v.passed
    exactly = finalize(case(), " ".join(["word"] * 600), JudgeResult(score=0.95), JUDGE, RULES)
    assert "too_long" not in exactly.failure_modes


@pytest.mark.parametrize(
    ("score", "threshold", "passed"),
    [
        (0.7, None, True),
        (0.69, None, False),
        (0.5, 0.5, True),
        (0.49, 0.5, False),
        (1.0, 1.0, True),
    ],
)
def test_threshold(score: float, threshold: float | None, passed: bool) -> None:
    v = finalize(case(threshold=threshold), LONG_OK, JudgeResult(score=score), JUDGE, RULES)
    assert v.passed is passed
    assert v.threshold == (0.7 if threshold is None else threshold)
    assert ("quality_below_threshold" in v.failure_modes) is (not passed)


def test_default_threshold_comes_from_the_rules() -> None:
    rules = RuleSettings(default_threshold=0.95)
    v = finalize(case(), LONG_OK, JudgeResult(score=0.9), JUDGE, rules)
    assert not v.passed and v.threshold == 0.95


def test_a_failed_case_check_fails_a_high_score() -> None:
    c = case({"type": "contains", "value": "30"}, {"type": "not_contains", "value": "fee"})
    v = finalize(c, LONG_OK + " A fee applies.", JudgeResult(score=1.0), JUDGE, RULES)
    assert not v.passed
    assert v.score == 1.0
    assert "check_failed" in v.failure_modes
    assert v.failed_checks == ("contains '30': not found", "not_contains 'fee': found")


def test_all_case_checks_passing() -> None:
    c = case({"type": "contains", "value": "thirty"}, {"type": "max_words", "value": 20})
    v = finalize(c, LONG_OK, JudgeResult(score=0.8), JUDGE, RULES)
    assert v.passed and v.failed_checks == ()


def test_judge_saying_failed_fails_a_high_score() -> None:
    result = JudgeResult(score=0.9, passed=False, reasoning="invents a fee")
    v = finalize(case(), LONG_OK, result, JUDGE, RULES)
    assert not v.passed
    assert "judge_failed" in v.failure_modes
    assert v.reasoning == "invents a fee"


def test_judge_saying_passed_does_not_override_the_threshold() -> None:
    v = finalize(case(), LONG_OK, JudgeResult(score=0.2, passed=True), JUDGE, RULES)
    assert not v.passed


def test_judge_failure_modes_are_kept_once() -> None:
    result = JudgeResult(score=0.1, failure_modes=("hallucination", "quality_below_threshold"))
    v = finalize(case(), LONG_OK, result, JUDGE, RULES)
    assert v.failure_modes == ("hallucination", "quality_below_threshold")


def test_checks_only_verdict() -> None:
    c = Case(id="c", question="q?", checks=({"type": "contains", "value": "thirty"},))
    ok = finalize(c, LONG_OK, JudgeResult(score=1.0), JUDGE, RULES, checks_only=True)
    assert ok.passed and ok.checks_only
    bad = finalize(
        c, "We never give refunds at all.", JudgeResult(score=1.0), JUDGE, RULES, checks_only=True
    )
    assert not bad.passed and bad.checks_only and "check_failed" in bad.failure_modes


def test_system_error_verdict() -> None:
    v = system_error_verdict(
        case(threshold=0.5), "system_error", "RuntimeError: boom", JUDGE, RULES
    )
    assert not v.passed
    assert v.score == 0.0
    assert v.failure_modes == ("system_error",)
    assert v.reasoning == "RuntimeError: boom"
    assert v.threshold == 0.5
    t = system_error_verdict(case(), "timeout", "too slow", JUDGE, RULES)
    assert t.failure_modes == ("timeout",) and t.threshold == 0.7
