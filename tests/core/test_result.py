"""Case results: scrubbing a result of secrets before it is written or shown."""

from __future__ import annotations

import pytest

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.evaluation import Evaluation, Sample
from pytest_llmeval.core.result import (
    CaseResult,
    Classified,
    ResultSettings,
    build_case_result,
    scrubbed,
)
from pytest_llmeval.core.secrets import REDACTED, scrub, scrubber
from pytest_llmeval.core.verdict import JudgeIdentity, Verdict

KEY = "sk-ant-api03-result-test-0123456789abcdef"
JUDGE = JudgeIdentity("local", prompt_version="sim-2")


def _result(response: str, reasoning: str) -> CaseResult:
    case = Case(id="a", question="Refund window?", ground_truth="30 days")
    verdict = Verdict(0.9, True, 0.7, reasoning, failure_modes=(), judge=JUDGE)
    ev = Evaluation(case, samples=[Sample(response, verdict, True, 0.01)], cache_hits=1)
    return build_case_result(
        nodeid="cases.jsonl::a",
        case=case,
        evaluation=ev,
        baseline=None,
        judge=JUDGE,
        settings=ResultSettings(),
        classify=lambda verdict, entry, passes, samples: Classified("new", "no baseline", None),
    )


def test_a_result_with_nothing_to_hide_is_returned_as_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    r = _result("Refunds within 30 days.", "covers the reference")
    assert scrubbed(r, scrubber()) is r


def test_the_key_is_removed_from_every_text_of_a_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    r = _result(f"my key is {KEY}", f"the answer quotes {KEY}")
    clean = scrubbed(r, scrubber())
    assert clean is not r
    assert clean.response == f"my key is {REDACTED}"
    assert clean.reasoning == f"the answer quotes {REDACTED}"
    assert KEY not in repr(clean.to_dict())
    assert r.response.endswith(KEY)  # the original is not changed in place


def test_scrubber_reads_the_environment_once_and_scrub_agrees(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "plain-secret-without-the-key-shape")
    clean = scrubber()
    text = "token plain-secret-without-the-key-shape and sk-ant-xyz0123456789"
    assert clean(text) == scrub(text) == f"token {REDACTED} and {REDACTED}"
    unchanged = "nothing secret here"
    assert clean(unchanged) is unchanged


def test_a_stored_record_with_nulls_reads_them_as_absent() -> None:
    # a hand-edited or foreign report: null text fields must not become the text "None"
    record = _result("Refunds within 30 days.", "covers the reference").to_dict()
    assert CaseResult.from_dict(record) == _result(
        "Refunds within 30 days.", "covers the reference"
    )
    fields = ("reasoning", "response", "judge", "outcome_detail", "response_sha256", "difficulty")
    nulls = {**record, **dict.fromkeys(fields)}
    r = CaseResult.from_dict(nulls)
    assert (r.reasoning, r.response, r.judge, r.outcome_detail, r.response_sha256) == ("",) * 5
    assert r.difficulty == "medium"  # what an absent difficulty reads as
    assert "None" not in repr([getattr(r, f) for f in fields])
