"""What 10,000 cached cases hold once, not once a case (a cached rerun's peak memory, issue 13).

Each test names a value that used to be allocated per case and checks that equal values are now
one object: the same answer's digest as the baseline's, one zero usage, one tuple per tag set,
one verdict string, one float per repeated score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_llmeval.core.baseline import BaselineEntry
from pytest_llmeval.core.cases import iter_cases
from pytest_llmeval.core.evaluation import Evaluation, Sample
from pytest_llmeval.core.result import (
    Classified,
    ResultSettings,
    build_case_result,
    response_sha256,
)
from pytest_llmeval.core.verdict import NO_USAGE, JudgeIdentity, Verdict
from pytest_llmeval.engine.store import load_baseline_with_sha256

JUDGE = JudgeIdentity("local", prompt_version="sim-2")


def _lines(n: int) -> bytes:
    rows = [
        {"id": f"c{i}", "question": f"q{i}", "ground_truth": f"a{i}", "tags": ["billing", "en"]}
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_cases_with_the_same_tags_share_one_tuple_and_one_difficulty_string() -> None:
    a, b = (c for c in iter_cases("cases.jsonl", _lines(2)) if not isinstance(c, Exception))
    assert a.tags == b.tags == ("billing", "en")
    assert a.tags is b.tags
    assert a.difficulty is b.difficulty


def test_an_evaluation_starts_from_the_one_zero_usage() -> None:
    from pytest_llmeval.core.cases import Case

    case = Case(id="a", question="q")
    assert Evaluation(case).usage is NO_USAGE
    assert Evaluation(case).usage is Evaluation(case).usage


def _result_against(baseline_digest: str, response: str) -> str:
    from pytest_llmeval.core.cases import Case

    case = Case(id="a", question="Refund window?", ground_truth="30 days")
    verdict = Verdict(0.9, True, 0.7, "ok", failure_modes=(), judge=JUDGE)
    entry = BaselineEntry("pass", 0.9, baseline_digest, 0.7)
    r = build_case_result(
        nodeid="cases.jsonl::a",
        case=case,
        evaluation=Evaluation(case, samples=[Sample(response, verdict, True, 0.01)]),
        baseline=entry,
        judge=JUDGE,
        settings=ResultSettings(),
        classify=lambda verdict, entry, passes, samples: Classified("passed", "", None),
    )
    assert r.response_sha256 == response_sha256(response)
    return r.response_sha256


def test_an_unchanged_answer_reuses_the_baselines_digest_string() -> None:
    stored = "".join(["", response_sha256("Refunds within 30 days.")])  # a distinct object
    assert _result_against(stored, "Refunds within 30 days.") is stored


def test_a_changed_answer_gets_its_own_digest() -> None:
    stored = response_sha256("Refunds within 30 days.")
    assert _result_against(stored, "Refunds within 14 days.") != stored


def test_a_loaded_baseline_shares_verdict_strings_and_repeated_scores(tmp_path: Path) -> None:
    cases: dict[str, dict[str, Any]] = {
        f"cases.jsonl::c{i}": {
            "verdict": "pass" if i % 2 else "fail",
            "score": 1.0 if i % 2 else 0.25,
            "response_sha256": "ab" * 32,
            "threshold": 0.7,
            "passes": i % 2,
            "samples": 1,
        }
        for i in range(6)
    }
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"version": 1, "cases": cases}), encoding="utf-8")
    baseline, digest = load_baseline_with_sha256(path)
    assert baseline is not None and digest is not None
    entries = list(baseline.entries.values())
    assert [e.verdict for e in entries] == ["fail", "pass"] * 3
    assert len({id(e.verdict) for e in entries}) == 2
    assert len({id(e.score) for e in entries}) == 2
    assert len({id(e.threshold) for e in entries}) == 1
    # what was read is what the file says
    assert {k: e.to_dict() for k, e in baseline.entries.items()} == {
        k: {**v, "score": round(v["score"], 6)} for k, v in cases.items()
    }
