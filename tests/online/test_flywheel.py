"""The flywheel: selection, stratified sampling, deduplication and the atomic append."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.core.cases import iter_cases, validate_case_dict
from pytest_llmeval.online import EventStore
from pytest_llmeval.online.flywheel import (
    allocate,
    append_lines_atomically,
    case_files,
    run_flywheel,
    select_failures,
    slug,
)

T0 = 1_700_000_000.0
NOW = T0 + 3600


def shown(store: EventStore, rid: str, question: str, ts: float = T0, **extra: Any) -> None:
    store.record_response(
        rid,
        session_id=f"s-{rid}",
        question=question,
        response=f"answer {rid}",
        timestamp=ts,
        **extra,
    )


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(tmp_path / "online.sqlite3")


def test_selects_thumbs_down_quick_retries_and_logged_failures(store: EventStore) -> None:
    shown(store, "down", "Why was I charged twice?")
    shown(store, "undone", "How do I reset my password?")
    shown(store, "quick", "What is the refund window?")
    shown(store, "slow", "Can I pay by invoice?")
    shown(store, "happy", "Where is my parcel?")
    shown(store, "old", "Do you ship abroad?", ts=T0 - 30 * 86400)
    store.record_thumbs_down("s", "down", timestamp=T0 + 10)
    store.record_thumbs_down("s", "undone", timestamp=T0 + 10)
    store.record_thumbs_up("s", "undone", timestamp=T0 + 20)  # changed their mind
    store.record_rephrase_retry("s", "quick", 8, timestamp=T0 + 8)
    store.record_rephrase_retry("s", "slow", 95, timestamp=T0 + 95)
    store.record_thumbs_up("s", "happy", timestamp=T0 + 5)
    store.record_thumbs_down("s", "old", timestamp=T0 - 30 * 86400 + 5)
    store.log_production_failure(
        "Is the warranty two years?",
        "It is five years.",
        "wrong fact",
        "support_ticket",
        timestamp=T0 + 30,
    )
    store.log_production_failure(None, None, "toxic", response_id="quick", timestamp=T0 + 40)
    failures = select_failures(store, since=7 * 86400, until=NOW)
    by_key = {f.key: f for f in failures}
    assert set(by_key) == {
        "response:down",
        "response:quick",
        next(k for k in by_key if k.startswith("failure:")),
    }
    assert by_key["response:down"].reason == "thumbs_down"
    assert by_key["response:down"].response == "answer down"
    # the logged reason outranks the implicit signal; both are kept
    quick = by_key["response:quick"]
    assert quick.reason == "toxic"
    assert quick.question == "What is the refund window?"
    assert quick.signals == ("logged:toxic", "rephrase_retry")
    logged = next(f for f in failures if f.key.startswith("failure:"))
    assert (logged.question, logged.reason, logged.source) == (
        "Is the warranty two years?",
        "wrong fact",
        "support_ticket",
    )
    everything = select_failures(store, since=None, until=NOW)
    assert "response:old" in {f.key for f in everything}


def test_allocate_is_stratified() -> None:
    # exact shares 8 / 1.5 / 0.5: b wins the tie on the remainder by name, c still gets one
    assert allocate({"a": 80, "b": 15, "c": 5}, 10) == {"a": 7, "b": 2, "c": 1}
    assert allocate({"a": 40, "b": 10}, 10) == {"a": 8, "b": 2}
    assert sum(allocate({"a": 80, "b": 15, "c": 5}, 10).values()) == 10
    assert allocate({"a": 3, "b": 2}, 50) == {"a": 3, "b": 2}  # fewer than the limit: all
    assert allocate({"a": 10, "b": 9, "c": 1}, 2) == {"a": 1, "b": 1, "c": 0}
    assert allocate({"a": 1, "b": 1, "c": 1, "d": 100}, 4) == {"a": 1, "b": 1, "c": 1, "d": 1}
    with pytest.raises(ValueError):
        allocate({"a": 1}, -1)


def test_slug() -> None:
    assert slug("Wrong fact!") == "wrong_fact"
    assert slug("  ") == "unspecified"
    assert slug("thumbs_down") == "thumbs_down"


def _failures(store: EventStore, n: int, reason: str, start: int = 0) -> None:
    for i in range(start, start + n):
        rid = f"{reason}-{i}"
        shown(store, rid, f"question {reason} number {i} about topic {i * 7919 % 1000}")
        if reason == "thumbs_down":
            store.record_thumbs_down("s", rid, timestamp=T0 + i)
        else:
            store.record_rephrase_retry("s", rid, 3, timestamp=T0 + i)


def test_sampling_is_reproducible_and_stratified(store: EventStore, tmp_path: Path) -> None:
    _failures(store, 40, "thumbs_down")
    _failures(store, 10, "rephrase_retry")
    out = tmp_path / "evals" / "llmeval_prod.jsonl"
    kwargs: dict[str, Any] = {
        "out": out,
        "cases": tmp_path,
        "since": None,
        "until": NOW,
        "limit": 10,
        "dry_run": True,
    }
    first = run_flywheel(store, seed=1, **kwargs)
    again = run_flywheel(store, seed=1, **kwargs)
    other = run_flywheel(store, seed=2, **kwargs)
    ids = [c["id"] for c in first.added]
    assert ids == [c["id"] for c in again.added]
    assert ids != [c["id"] for c in other.added]
    assert first.by_reason == {"rephrase_retry": 10, "thumbs_down": 40}
    tags = [c["tags"][1] for c in first.added]
    assert tags.count("thumbs_down") == 8 and tags.count("rephrase_retry") == 2
    assert not out.exists()  # dry run


def test_new_cases_are_valid_and_marked(store: EventStore, tmp_path: Path) -> None:
    shown(store, "r1", "Why was I charged twice?", variant="treatment", model="v2")
    store.record_thumbs_down("s", "r1", timestamp=T0 + 1)
    store.record_response(
        "r2",
        session_id="s2",
        timestamp=T0,
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "cancel my order"},
        ],
    )
    store.record_rephrase_retry("s2", "r2", 4, timestamp=T0 + 4)
    out = tmp_path / "llmeval_prod.jsonl"
    result = run_flywheel(store, out=out, cases=tmp_path, since=None, until=NOW, seed=0)
    assert len(result.added) == 2
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    cases = [json.loads(line) for line in lines]
    for case in cases:
        validate_case_dict(case)
        assert case["difficulty"] == "hard"
        assert case["tags"][0] == "production_failure"
        assert case["metadata"]["do_not_train"] is True
        prov = case["metadata"]["provenance"]
        assert {"response_id", "timestamp", "reason", "source"} <= set(prov)
    by_id = {c["metadata"]["provenance"]["response_id"]: c for c in cases}
    assert by_id["r1"]["question"] == "Why was I charged twice?"
    assert by_id["r1"]["metadata"]["provenance"]["model"] == "v2"
    assert by_id["r1"]["metadata"]["provenance"]["timestamp"] == "2023-11-14T22:13:21Z"
    assert by_id["r2"]["messages"][-1] == {"role": "user", "content": "cancel my order"}
    assert by_id["r2"]["tags"] == ["production_failure", "rephrase_retry"]
    # the case loader collects them
    loaded = list(iter_cases(str(out), out.read_bytes()))
    assert all(not isinstance(c, Exception) for c in loaded)


def test_duplicates_exact_near_and_within_batch(store: EventStore, tmp_path: Path) -> None:
    evals = tmp_path / "evals"
    (evals / "sub").mkdir(parents=True)
    (evals / "llmeval_core.jsonl").write_text(
        json.dumps({"id": "refund", "question": "How long is the refund window?"}) + "\n"
    )
    countries = "Canada, Mexico, Brazil, Chile, Peru, Colombia, Argentina, Uruguay"
    (evals / "sub" / "llmeval_more.jsonl").write_text(
        json.dumps({"id": "ship", "question": "Do you ship to Canada and Mexico?"})
        + "\n"
        + json.dumps({"id": "south", "question": f"Do you ship to {countries} and Ecuador?"})
        + "\n"
    )
    (evals / "notes.jsonl").write_text(json.dumps({"question": "Where is my parcel?"}) + "\n")
    questions = {
        "exact": "how long is the REFUND window",  # normalised equal to an existing case
        "typo": "Do you ship to Canada and Mexcio?",  # a typo of an existing case: 1.0
        # one more country: similarity 0.93 one way, 0.98 the other
        "near": f"Do you ship to {countries}, Bolivia and Ecuador?",
        "new1": "Can I change the delivery address after ordering?",
        "new1-again": "Can I change the delivery address after ordering??",  # batch duplicate
        "parcel": "Where is my parcel?",  # only in a file that is not a case file
    }
    for rid, question in questions.items():
        shown(store, rid, question)
        store.record_thumbs_down("s", rid, timestamp=T0 + 1)
    out = evals / "llmeval_production_failures.jsonl"
    result = run_flywheel(store, out=out, cases=evals, since=None, until=NOW, seed=3)
    added = sorted(c["metadata"]["provenance"]["response_id"] for c in result.added)
    assert len(added) == 2
    assert "parcel" in added
    assert added[0] in ("new1", "new1-again")
    kinds = {d.key: (d.kind, d.against) for d in result.duplicates}
    assert kinds["response:exact"] == ("exact", f"{evals / 'llmeval_core.jsonl'}:1")
    assert kinds["response:typo"][0] == "near"
    assert kinds["response:typo"][1].endswith("llmeval_more.jsonl:1")
    assert kinds["response:near"][0] == "near"
    assert kinds["response:near"][1].endswith("llmeval_more.jsonl:2")
    batch_dup = next(k for k in kinds if k.startswith("response:new1"))
    assert kinds[batch_dup][1].startswith("batch:")
    assert sorted(str(p) for p in result.case_files) == sorted(
        [str(evals / "llmeval_core.jsonl"), str(evals / "sub" / "llmeval_more.jsonl")]
    )
    # Running again adds nothing: every failure is now in the output file.
    again = run_flywheel(store, out=out, cases=evals, since=None, until=NOW, seed=3)
    assert again.added == ()
    # A stricter threshold lets the extra country through (the typo still matches fully).
    strict = run_flywheel(
        store,
        out=out,
        cases=evals,
        since=None,
        until=NOW,
        seed=3,
        similarity_threshold=0.95,
        dry_run=True,
    )
    assert [c["metadata"]["provenance"]["response_id"] for c in strict.added] == ["near"]


def test_append_keeps_existing_bytes(tmp_path: Path) -> None:
    out = tmp_path / "llmeval_x.jsonl"
    original = b'{"id": "a", "question": "caf\xc3\xa9?"}\r\n\n{"id": "b", "question": "q"}'
    out.write_bytes(original)
    out.chmod(0o640)
    append_lines_atomically(out, ['{"id": "c", "question": "new"}'])
    data = out.read_bytes()
    assert data.startswith(original)
    assert data == original + b'\n{"id": "c", "question": "new"}\n'
    assert out.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["llmeval_x.jsonl"]  # no temp file left
    fresh = tmp_path / "new" / "llmeval_y.jsonl"
    append_lines_atomically(fresh, ["{}"])
    assert fresh.read_bytes() == b"{}\n"


def test_flywheel_never_rewrites_existing_lines(store: EventStore, tmp_path: Path) -> None:
    out = tmp_path / "llmeval_prod.jsonl"
    existing = b'{"id": "keep-me", "question": "An old case, kept byte for byte."}'
    out.write_bytes(existing)  # no final newline
    shown(store, "r1", "A brand new failing question")
    store.record_thumbs_down("s", "r1", timestamp=T0 + 1)
    run_flywheel(store, out=out, cases=tmp_path, since=None, until=NOW)
    data = out.read_bytes()
    assert data.startswith(existing + b"\n")
    assert data.count(b"\n") == 2


def test_failures_without_question_are_skipped(store: EventStore, tmp_path: Path) -> None:
    store.record_response_shown("s", "bare", timestamp=T0)
    store.record_thumbs_down("s", "bare", timestamp=T0 + 1)
    result = run_flywheel(
        store, out=tmp_path / "llmeval_p.jsonl", cases=tmp_path, since=None, until=NOW, dry_run=True
    )
    assert result.candidates == 1
    assert result.skipped_no_question == 1
    assert result.added == ()


def test_invalid_candidates_are_reported_not_written(store: EventStore, tmp_path: Path) -> None:
    store.record_response(
        "tool",
        session_id="s",
        timestamp=T0,
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "tool", "content": "{}"},
            {"role": "user", "content": "and tomorrow?"},
        ],
    )
    store.record_thumbs_down("s", "tool", timestamp=T0 + 1)
    result = run_flywheel(
        store, out=tmp_path / "llmeval_p.jsonl", cases=tmp_path, since=None, until=NOW
    )
    assert result.added == ()
    assert len(result.invalid) == 1 and "response:tool" in result.invalid[0]
    assert not (tmp_path / "llmeval_p.jsonl").exists()


def test_case_files_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        case_files(tmp_path / "missing")
    single = tmp_path / "cases.jsonl"
    single.write_text("")
    assert case_files(single) == [single]
