"""Baseline snapshot and history files: round trip, diff-friendly, atomic, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_llmeval.core.verdict import JudgeIdentity
from pytest_llmeval.engine import store
from pytest_llmeval.engine.store import (
    Baseline,
    BaselineEntry,
    StateFileError,
    append_history,
    atomic_write,
    dump_baseline,
    git_commit,
    load_baseline,
    load_history,
    save_baseline,
)

JUDGE = JudgeIdentity(name="local", prompt_version="sim-1")


def entry(verdict: str = "pass", score: float = 0.9) -> BaselineEntry:
    return BaselineEntry(
        verdict=verdict,
        score=score,
        response_sha256="ab" * 32,
        threshold=0.7,
        passes=1 if verdict == "pass" else 0,
    )


def sample() -> Baseline:
    return Baseline(
        judge=JUDGE,
        entries={
            "llmeval_b.jsonl::zeta": entry("fail", 0.2),
            "llmeval_a.jsonl::alpha": entry("pass", 0.912345678),
            "llmeval_a.jsonl::caf\u00e9": entry("pass", 1.0),
        },
    )


def test_missing_baseline_is_none(tmp_path: Path) -> None:
    assert load_baseline(tmp_path / "baseline.json") is None


def test_baseline_round_trip(tmp_path: Path) -> None:
    path = tmp_path / ".llmeval" / "baseline.json"
    save_baseline(path, sample(), 0.7)
    loaded = load_baseline(path)
    assert loaded is not None
    assert loaded.judge == JUDGE
    assert set(loaded.entries) == set(sample().entries)
    alpha = loaded.entries["llmeval_a.jsonl::alpha"]
    assert alpha.score == 0.912346  # rounded to 6 places: stable diffs
    assert alpha.passed and alpha.response_sha256 == "ab" * 32 and alpha.threshold == 0.7
    zeta = loaded.entries["llmeval_b.jsonl::zeta"]
    assert zeta.verdict == "fail" and not zeta.passed and zeta.passes == 0
    # saving what was loaded gives the same bytes
    again = tmp_path / "again.json"
    save_baseline(again, loaded, 0.7)
    assert again.read_bytes() == path.read_bytes()


def test_baseline_is_sorted_with_one_entry_per_line(tmp_path: Path) -> None:
    text = dump_baseline(sample(), 0.7).decode("utf-8")
    lines = text.splitlines()
    case_lines = [ln for ln in lines if ln.startswith('    "')]
    assert len(case_lines) == 3
    keys = [json.loads("{" + ln.rstrip(",") + "}").popitem()[0] for ln in case_lines]
    assert keys == sorted(keys)
    assert "caf\u00e9" in text  # readable, not \u-escaped
    assert text.endswith("}\n")
    data = json.loads(text)
    assert list(data) == [*sorted(k for k in data if k != "cases"), "cases"]
    assert data["judge"] == {
        "model": None,
        "name": "local",
        "prompt_version": "sim-1",
        "version": None,
    }
    assert data["default_threshold"] == 0.7
    for raw in data["cases"].values():
        assert list(raw) == sorted(raw)
    # the same baseline built in another order gives the same bytes
    reordered = Baseline(JUDGE, dict(reversed(list(sample().entries.items()))))
    assert dump_baseline(reordered, 0.7) == dump_baseline(sample(), 0.7)


def test_empty_baseline_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, Baseline(judge=None), 0.7)
    loaded = load_baseline(path)
    assert loaded is not None and loaded.judge is None and dict(loaded.entries) == {}


def test_corrupt_baseline_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    good = dump_baseline(sample(), 0.7).decode()
    lines = good.splitlines()
    assert lines[6].startswith('    "llmeval_a.jsonl::caf')
    lines[6] = '    "llmeval_a.jsonl::caf\u00e9": {"verdict": pass},'  # a hand edit gone wrong
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(StateFileError) as info:
        load_baseline(path)
    message = str(info.value)
    assert message.startswith(f"{path}:7:")
    assert "not valid JSON" in message
    assert "git checkout" in message  # how to recover


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"[]", "not a pytest-llmeval baseline"),
        (b'{"version": 1}', "not a pytest-llmeval baseline"),
        (b'{"version": 99, "cases": {}}', "version 99"),
        (b'{"version": 1, "cases": {"f::a": {"score": 1}}}', "case 'f::a'"),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": "x"}}}',
            "case 'f::a': field 'score': must be a number",
        ),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_invalid_baseline_is_a_store_error(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError) as info:
        load_baseline(path)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_missing_history_is_empty(tmp_path: Path) -> None:
    assert load_history(tmp_path / "history.jsonl") == []


def test_history_append_keeps_existing_bytes_exactly(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    # hand-formatted, unsorted keys, CRLF and a blank line: none of it may be rewritten
    existing = (
        b'{ "total": 10, "passed": 9,  "pass_rate": 0.9 }\r\n'
        b"\n"
        b'{"pass_rate":0.8,"passed":8,"total":10,"note":"caf\xc3\xa9"}\n'
    )
    path.write_bytes(existing)
    append_history(path, {"total": 10, "passed": 7, "pass_rate": 0.7, "judge": {"name": "x"}})
    data = path.read_bytes()
    assert data.startswith(existing)
    added = data[len(existing) :]
    assert added.endswith(b"\n") and added.count(b"\n") == 1
    assert json.loads(added) == {
        "total": 10,
        "passed": 7,
        "pass_rate": 0.7,
        "judge": {"name": "x"},
    }
    assert [h["pass_rate"] for h in load_history(path)] == [0.9, 0.8, 0.7]


def test_history_append_to_a_file_without_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b'{"total": 1, "passed": 1, "pass_rate": 1.0}')
    append_history(path, {"total": 1, "passed": 0, "pass_rate": 0.0})
    data = path.read_bytes()
    assert data.startswith(b'{"total": 1, "passed": 1, "pass_rate": 1.0}\n')
    assert [h["pass_rate"] for h in load_history(path)] == [1.0, 0.0]


def test_history_append_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / ".llmeval" / "history.jsonl"
    append_history(path, {"total": 2, "passed": 1, "pass_rate": 0.5})
    assert load_history(path) == [{"total": 2, "passed": 1, "pass_rate": 0.5}]


@pytest.mark.parametrize(
    ("lines", "bad_line", "words"),
    [
        ([b'{"total": 1, "passed": 1, "pass_rate": 1.0}', b"{oops"], 2, "not a JSON line"),
        ([b"", b"[1, 2]"], 2, "expected a JSON object"),
        ([b'{"total": 1, "passed": 1}'], 1, "field 'pass_rate' is missing"),
        ([b'{"total": 1, "pass_rate": 1.0}'], 1, "field 'passed' is missing"),
        ([b'{"total": 1, "passed": 1, "pass_rate": 1.5}'], 1, "pass_rate"),
        ([b'{"total": 1, "passed": 1, "pass_rate": "high"}'], 1, "pass_rate"),
        ([b'{"total": 1, "passed": 1, "pass_rate": true}'], 1, "pass_rate"),
        ([b'{"total": 1, "passed": 1, "pass_rate": 1.0, "x": "\xff"}'], 1, "not a JSON line"),
    ],
)
def test_corrupt_history_names_the_file_and_line(
    tmp_path: Path, lines: list[bytes], bad_line: int, words: str
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(StateFileError) as info:
        load_history(path)
    assert str(info.value).startswith(f"{path}:{bad_line}:")
    assert words in str(info.value)


def test_atomic_write_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    path.write_bytes(b"old")
    atomic_write(path, b"new")
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # no temp file left


def test_atomic_write_failure_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = tmp_path / "baseline.json"
    history = tmp_path / "history.jsonl"
    save_baseline(baseline, sample(), 0.7)
    append_history(history, {"total": 1, "passed": 1, "pass_rate": 1.0})
    before = {p.name: p.read_bytes() for p in (baseline, history)}

    def fail_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail_replace)
    with pytest.raises(OSError):
        save_baseline(baseline, Baseline(JUDGE, {"f::new": entry()}), 0.7)
    with pytest.raises(OSError):
        append_history(history, {"total": 1, "passed": 0, "pass_rate": 0.0})
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in (baseline, history)} == before
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".gitignore", "baseline.json", "baseline.json.lock", "history.jsonl"] + [
        "history.jsonl.lock"
    ]  # no temp file


def test_atomic_write_failure_while_writing_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(b"old content")

    def fail_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(store.os, "fsync", fail_fsync)
    with pytest.raises(OSError):
        atomic_write(path, b"new content")
    monkeypatch.undo()
    assert path.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]


def test_git_commit_outside_a_repository(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None
