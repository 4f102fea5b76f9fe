"""Baseline snapshot and history files: round trip, diff-friendly, atomic, clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

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
    assert left == [
        ".gitignore",
        "baseline.json",
        "baseline.json.lock",
        "history.jsonl",
        "history.jsonl.lock",
    ]  # no temp file


def test_atomic_write_failure_while_writing_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(b"old content")

    def fail_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", fail_fsync)
    with pytest.raises(OSError):
        atomic_write(path, b"new content")
    monkeypatch.undo()
    assert path.read_bytes() == b"old content"
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]


def test_git_commit_outside_a_repository(tmp_path: Path) -> None:
    assert git_commit(tmp_path) is None


# -- validation against the shipped schemas -----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (  # the INTERNALERROR
            b'{"version": 1, "judge": 7, "cases": {}}',
            "field 'judge': must be an object or null, got 7",
        ),
        (
            b'{"version": 1, "judge": {"model": "m"}, "cases": {}}',
            "field 'judge.name' is missing",
        ),
        (b'{"version": 1, "cases": {"f::a": {"score": 1}}}', "case 'f::a': field 'verdict' is"),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "ok", "score": 1}}}',
            'case \'f::a\': field \'verdict\': must be "pass" or "fail", got "ok"',
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1, "response": 3}}}',
            "case 'f::a': field 'response': must be a string, got 3",
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1, "samples": 0}}}',
            "case 'f::a': field 'samples': must be >= 1, got 0",
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1, "passes": 2}}}',
            "case 'f::a': field 'passes': 2 passes out of 1 samples",
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": NaN}}}',
            "case 'f::a': field 'score': NaN is not a usable JSON number",
        ),
        (
            b'{"version": 1, "default_threshold": 1e999, "cases": {}}',
            "field 'default_threshold': 1e999 is not a usable JSON number",
        ),
        (
            b'{"version": 1, "cases": {"f::\\ud800": {"verdict": "pass", "score": 1}}}',
            'case "f::\\ud800": the key contains a lone surrogate',
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1, "x": '
            + b"[" * 5000
            + b"]" * 5000
            + b"}}}",
            "nested deeper than",
        ),
        (b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1}', "not valid JSON"),
        # what the fast structure check (no suspect text, containers only) must still catch
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1, "x": '
            + b"[" * 40
            + b"]" * 40
            + b"}}}",
            "nested deeper than 32 levels",
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass",'
            b' "score": 1234567890123456789012345678901234}}}',
            "field 'score': 123456789012... is not a usable JSON number",
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1e400}}}',
            "field 'score': 1e400 is not a usable JSON number",
        ),
        (
            b'{"version": 1, "cases": {"f::a": {"verdict": "pass", "score": 1,'
            b' "response": "ok \\uDBFF"}}}',
            "field 'response': contains a lone surrogate",
        ),
    ],
)
def test_baseline_schema_errors_name_file_line_and_field(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "baseline.json"
    path.write_bytes(content)
    with pytest.raises(StateFileError) as info:
        load_baseline(path)
    message = str(info.value)
    assert message.startswith(f"{path}:1:"), message
    assert expected in message, message
    assert path.read_bytes() == content  # never rewritten


def test_a_bad_entry_is_placed_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, sample(), 0.7)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[7].startswith('    "llmeval_b.jsonl::zeta"')
    lines[7] = lines[7].replace('"score": 0.2', '"score": "low"')
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(StateFileError) as info:
        load_baseline(path)
    assert str(info.value).startswith(
        f"{path}:8: case 'llmeval_b.jsonl::zeta': field 'score': must be a number, got \"low\""
    )


def test_a_bad_field_of_an_indented_baseline_is_placed_on_its_line(tmp_path: Path) -> None:
    data = json.loads(dump_baseline(sample(), 0.7))
    data["cases"]["llmeval_a.jsonl::alpha"]["threshold"] = [0.7]
    data["judge"]["prompt_version"] = 1
    path = tmp_path / "baseline.json"
    text = json.dumps(data, indent=1)
    path.write_text(text, encoding="utf-8")
    lines = text.splitlines()
    with pytest.raises(StateFileError) as info:
        load_baseline(path)
    line = int(str(info.value)[len(str(path)) + 1 :].split(":")[0])
    assert lines[line - 1].strip().startswith(('"threshold"', '"prompt_version"'))
    # fixing one shows the other, on its own line
    data["judge"]["prompt_version"] = "sim-1"
    text = json.dumps(data, indent=1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StateFileError) as info:
        load_baseline(path)
    line = int(str(info.value)[len(str(path)) + 1 :].split(":")[0])
    assert text.splitlines()[line - 1].strip() == '"threshold": ['
    assert "case 'llmeval_a.jsonl::alpha': field 'threshold': must be a number" in str(info.value)


def test_a_baseline_with_responses_and_unknown_fields_loads(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "judge": {"name": "local", "prompt_version": "sim-1"},
                "future": {"x": 1},
                "cases": {
                    "f::a": {"verdict": "pass", "score": 1, "response": "30 days", "new": 1},
                    "f::b": {"verdict": "fail", "score": 0},  # the oldest form
                },
            }
        ),
        encoding="utf-8",
    )
    loaded = load_baseline(path)
    assert loaded is not None
    assert loaded.entries["f::a"].response == "30 days"
    assert loaded.entries["f::b"] == BaselineEntry("fail", 0.0, "", 0.0, passes=0, samples=1)


OLD_LINE = {"timestamp": "2024-01-01T00:00:00Z", "total": 10, "passed": 9, "pass_rate": 0.9}
NEW_LINE: dict[str, Any] = {
    **OLD_LINE,
    "commit": None,
    "errors": 1,
    "mean_score": 0.8,
    "judge": JUDGE.to_dict(),
    "failed": ["f::a"],
    "keys_sha256": "0" * 64,
    "errored": ["f::b"],
    "samples": 3,
    "sample_passes": {"f::a": [0, 3], "f::c": [2, 3]},
    "agreement": {"n": 2, "tp": 1, "fp": 0, "fn": 0, "tn": 1, "kappa": None, "method": "x"},
    "added_by_a_later_version": {"anything": [1, 2]},
}


def test_old_and_new_history_lines_load(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(OLD_LINE) + "\n" + json.dumps(NEW_LINE) + "\n", encoding="utf-8")
    assert load_history(path) == [OLD_LINE, NEW_LINE]
    append_history(path, NEW_LINE)
    assert load_history(path)[-1] == NEW_LINE


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"total": "x"}, "field 'total': must be an integer, got \"x\""),  # crashed later
        ({"judge": "local"}, "field 'judge': must be an object or null, got \"local\""),
        ({"judge": {"model": "m"}}, "field 'judge.name' is missing"),
        ({"passed": 11}, "field 'passed': 11 passed out of a total of 10"),
        ({"passed": -1}, "field 'passed': must be >= 0, got -1"),
        ({"errors": 1.5}, "field 'errors': must be an integer, got 1.5"),
        ({"mean_score": "0.8"}, "field 'mean_score': must be a number or null"),
        ({"commit": 1}, "field 'commit': must be a string or null, got 1"),
        ({"failed": "f::a"}, "field 'failed': must be an array, got \"f::a\""),
        ({"failed": [1]}, "field 'failed[0]': must be a string, got 1"),
        ({"errored": [None]}, "field 'errored[0]': must be a string, got null"),
        ({"samples": 0}, "field 'samples': must be >= 1, got 0"),
        ({"keys_sha256": 5}, "field 'keys_sha256': must be a string, got 5"),
        ({"sample_passes": {"f::a": [1]}}, "field 'sample_passes.f::a': must be a pair"),
        ({"sample_passes": {"f::a": [3, 2]}}, "field 'sample_passes.f::a': 3 passes out of 2"),
        ({"sample_passes": {"f::a": ["1", 2]}}, "field 'sample_passes.f::a[0]': must be an"),
        ({"agreement": {"tp": 1}}, "field 'agreement.fp' is missing"),
        ({"agreement": {**NEW_LINE["agreement"], "kappa": "high"}}, "field 'agreement.kappa'"),
        ({"note": "\ud800"}, "field 'note': contains a lone surrogate"),
    ],
)
def test_history_schema_errors_name_file_line_and_field(
    tmp_path: Path, change: dict[str, object], expected: str
) -> None:
    path = tmp_path / "history.jsonl"
    bad = json.dumps({**NEW_LINE, **change})
    content = (json.dumps(OLD_LINE) + "\n\n" + bad + "\n").encode("utf-8")
    path.write_bytes(content)
    with pytest.raises(StateFileError) as info:
        load_history(path)
    assert str(info.value).startswith(f"{path}:3: {expected}"), str(info.value)
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"total": 1, "passed": 1, "pass_rate": NaN}', "field 'pass_rate': NaN is not"),
        (b'{"total": 1, "passed": 1, "pass_rate": -Infinity}', "field 'pass_rate': -Infinity"),
        (b'{"total": 1' + b"0" * 5000 + b', "passed": 1, "pass_rate": 1}', "field 'total': 1000"),
        (b'{"total": 1, "passed": 1, "pass_rate": 1, "x": "\xed\xa0\x80"}', "not UTF-8"),
        (b'{"total": 1, "passed": 1, "pass_rate": 1, "x": ' + b"[" * 3000, "nested deeper"),
        (b'{"total": 1, "passed": 1, "pass_rate": 1, "x": ' + b"[" * 40 + b"]" * 40 + b"}", "x[0]"),
        (b'{"total": 1, "passed": 1, "pass_', "not a JSON line"),
        (b"null", "expected a JSON object, got null"),
    ],
)
def test_history_rejects_what_json_accepts_or_crashes_on(
    tmp_path: Path, raw: bytes, expected: str
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_bytes(raw + b"\n")
    with pytest.raises(StateFileError) as info:
        load_history(path)
    assert str(info.value).startswith(f"{path}:1: "), str(info.value)
    assert expected in str(info.value), str(info.value)


def test_an_invalid_history_line_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    append_history(path, OLD_LINE)
    before = path.read_bytes()
    for bad in ({**OLD_LINE, "total": "x"}, {**OLD_LINE, "mean_score": float("nan")}):
        with pytest.raises(StateFileError, match="not written"):
            append_history(path, bad)
    with pytest.raises(StateFileError, match="not written"):
        append_history(path, {**OLD_LINE, "note": "\ud800"})
    assert path.read_bytes() == before


def test_an_invalid_baseline_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, sample(), 0.7)
    before = path.read_bytes()
    bad = Baseline(JUDGE, {"f::a": BaselineEntry("maybe", 0.5, "", 0.7)})
    with pytest.raises(StateFileError, match=r"not written.*field 'verdict'"):
        save_baseline(path, bad, 0.7)
    with pytest.raises(StateFileError, match="not written"):
        save_baseline(path, Baseline(JUDGE, {"f::\ud800": entry()}), 0.7)
    assert path.read_bytes() == before


# -- concurrent runs ----------------------------------------------------------------------------


def _append_many(path: str, writer: int, count: int) -> None:
    for i in range(count):
        append_history(
            Path(path),
            {"total": 100, "passed": i % 100, "pass_rate": (i % 100) / 100, "w": writer, "i": i},
        )


def test_two_processes_appending_at_once_lose_no_line(tmp_path: Path) -> None:
    import multiprocessing

    path = tmp_path / ".llmeval" / "history.jsonl"
    path.parent.mkdir()
    existing = b'{"total": 1, "passed": 1, "pass_rate": 1.0, "hand": "written"}'  # no newline
    path.write_bytes(existing)
    os.chmod(path, 0o640)
    count = 150
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter, as a second pytest is
    workers = [ctx.Process(target=_append_many, args=(str(path), w, count)) for w in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    data = path.read_bytes()
    assert data.startswith(existing + b"\n")
    lines = load_history(path)
    assert len(lines) == 1 + 2 * count
    for writer in (1, 2):
        assert [ln["i"] for ln in lines if ln.get("w") == writer] == list(range(count))
    assert os.stat(path).st_mode & 0o777 == 0o640


def test_an_append_waits_for_the_lock(tmp_path: Path) -> None:
    import fcntl
    import multiprocessing

    path = tmp_path / "history.jsonl"
    append_history(path, OLD_LINE)
    before = path.read_bytes()
    with open(path.with_name("history.jsonl.lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        ctx = multiprocessing.get_context("spawn")
        child = ctx.Process(target=_append_many, args=(str(path), 1, 1))
        child.start()
        child.join(1.5)
        assert child.is_alive()  # blocked on the lock
        assert path.read_bytes() == before
    child.join(60)
    assert child.exitcode == 0
    assert len(load_history(path)) == 2


def test_save_baseline_refuses_a_file_changed_since_it_was_read(tmp_path: Path) -> None:
    path = tmp_path / ".llmeval" / "baseline.json"
    save_baseline(path, sample(), 0.7, expected_sha256=None)
    loaded, sha = store.load_baseline_with_sha256(path)
    assert loaded is not None and sha == store.file_sha256(path)
    # another run accepts its own state meanwhile
    theirs = Baseline(JUDGE, {**sample().entries, "f::theirs": entry()})
    save_baseline(path, theirs, 0.7, expected_sha256=sha)
    after_theirs = path.read_bytes()
    mine = Baseline(JUDGE, {**loaded.entries, "f::mine": entry()})
    with pytest.raises(StateFileError) as info:
        save_baseline(path, mine, 0.7, expected_sha256=sha)
    assert str(info.value).startswith(f"{path}: not written: the file changed since this run")
    assert path.read_bytes() == after_theirs
    # a baseline created by someone else while this run had none
    fresh = tmp_path / "other" / "baseline.json"
    save_baseline(fresh, theirs, 0.7)
    with pytest.raises(StateFileError, match="absent then"):
        save_baseline(fresh, mine, 0.7, expected_sha256=None)
    # reading again gives the digest that lets the update through
    _, sha = store.load_baseline_with_sha256(path)
    save_baseline(path, mine, 0.7, expected_sha256=sha)
    assert load_baseline(path) == mine


def test_the_baseline_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "baseline.json"
    save_baseline(path, sample(), 0.7)
    os.chmod(path, 0o604)
    save_baseline(path, Baseline(JUDGE, {"f::a": entry()}), 0.7)
    assert os.stat(path).st_mode & 0o777 == 0o604


# -- the state folder's .gitignore ----------------------------------------------------------------


def test_the_state_folder_gets_a_gitignore_for_the_cache(tmp_path: Path) -> None:
    state = tmp_path / "project" / ".llmeval"
    save_baseline(state / "baseline.json", sample(), 0.7)
    append_history(state / "history.jsonl", OLD_LINE)
    text = (state / ".gitignore").read_text(encoding="utf-8")
    assert text == store.GITIGNORE
    rules = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    import fnmatch

    def ignored(name: str) -> bool:
        return any(fnmatch.fnmatch(name, rule) for rule in rules)

    for name in ("cache.sqlite3", "cache.sqlite3-wal", "cache.sqlite3-shm", "history.jsonl.lock"):
        assert ignored(name), name
    assert ignored("cache.sqlite3.corrupt-1700000000-42")
    assert ignored(".baseline.json.abc123.tmp")
    for name in ("baseline.json", "history.jsonl", ".gitignore"):
        assert not ignored(name), name


def test_a_users_gitignore_is_never_touched(tmp_path: Path) -> None:
    state = tmp_path / ".llmeval"
    state.mkdir()
    (state / ".gitignore").write_bytes(b"# mine\n*\n")
    store.ensure_state_dir(state)
    append_history(state / "history.jsonl", OLD_LINE)
    assert (state / ".gitignore").read_bytes() == b"# mine\n*\n"
    # a dangling symlink is the user's too
    other = tmp_path / "other"
    other.mkdir()
    (other / ".gitignore").symlink_to(tmp_path / "nowhere")
    store.ensure_state_dir(other)
    assert (other / ".gitignore").is_symlink() and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in other.iterdir()) == [".gitignore"]  # no temp file left


def test_ensure_state_dir_creates_the_folder_once(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / ".llmeval"
    store.ensure_state_dir(state)
    first = (state / ".gitignore").stat()
    (state / ".gitignore").write_text(store.GITIGNORE + "extra\n", encoding="utf-8")
    store.ensure_state_dir(state)
    assert (state / ".gitignore").read_text(encoding="utf-8").endswith("extra\n")
    assert first.st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(p.name for p in state.iterdir()) == [".gitignore"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
