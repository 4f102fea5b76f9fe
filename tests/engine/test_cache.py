"""The judge cache: keys cover everything that can change a verdict; corruption is survived."""

from __future__ import annotations

import dataclasses
import multiprocessing
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.core.cases import Case, Message
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Usage
from pytest_llmeval.engine.cache import SCHEMA_VERSION, JudgeCache, cache_key, key_parts

JUDGE = JudgeIdentity(name="local", prompt_version="sim-1")
CASE = Case(
    id="refund",
    question="How long for a refund?",
    ground_truth="30 days.",
    rubric="Must say 30 days.",
)
RESULT = JudgeResult(
    score=0.8,
    reasoning="close enough",
    failure_modes=("tone",),
    passed=True,
    usage=Usage(input_tokens=10, output_tokens=5, requests=1),
)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[JudgeCache]:
    c = JudgeCache(tmp_path / ".llmeval" / "cache.sqlite3")
    yield c
    c.close()


def test_miss_then_hit(cache: JudgeCache) -> None:
    key = cache_key(JUDGE, CASE, "Thirty days.")
    assert cache.get(key) is None
    cache.put(key, RESULT)
    assert cache.get(key) == RESULT
    assert cache.problems == []


def test_hit_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    first = JudgeCache(path)
    key = cache_key(JUDGE, CASE, "Thirty days.")
    first.put(key, RESULT)
    first.close()
    second = JudgeCache(path)
    try:
        assert second.get(key) == RESULT
    finally:
        second.close()


def test_put_replaces(cache: JudgeCache) -> None:
    key = cache_key(JUDGE, CASE, "r")
    cache.put(key, RESULT)
    cache.put(key, JudgeResult(score=0.1))
    assert cache.get(key) == JudgeResult(score=0.1)


BASE_KEY = cache_key(JUDGE, CASE, "Thirty days.", 0)


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param(
            cache_key(dataclasses.replace(JUDGE, name="other"), CASE, "Thirty days."),
            id="judge-name",
        ),
        pytest.param(
            cache_key(dataclasses.replace(JUDGE, model="m2"), CASE, "Thirty days."),
            id="judge-model",
        ),
        pytest.param(
            cache_key(dataclasses.replace(JUDGE, prompt_version="sim-2"), CASE, "Thirty days."),
            id="prompt-version",
        ),
        pytest.param(
            cache_key(dataclasses.replace(JUDGE, version="2"), CASE, "Thirty days."),
            id="judge-version",
        ),
        pytest.param(
            cache_key(dataclasses.replace(JUDGE, source_hash="abc"), CASE, "Thirty days."),
            id="source-hash",
        ),
        pytest.param(
            cache_key(JUDGE, dataclasses.replace(CASE, question="Refund?"), "Thirty days."),
            id="question",
        ),
        pytest.param(
            cache_key(
                JUDGE,
                dataclasses.replace(CASE, messages=(Message("user", "How long for a refund?"),)),
                "Thirty days.",
            ),
            id="messages",
        ),
        pytest.param(
            cache_key(JUDGE, dataclasses.replace(CASE, ground_truth="14 days."), "Thirty days."),
            id="ground-truth",
        ),
        pytest.param(
            cache_key(JUDGE, dataclasses.replace(CASE, rubric=None), "Thirty days."), id="rubric"
        ),
        pytest.param(cache_key(JUDGE, CASE, "Thirty days!"), id="response"),
        pytest.param(cache_key(JUDGE, CASE, "Thirty days.", 1), id="sample"),
    ],
)
def test_key_changes_with_everything_that_can_change_a_verdict(changed: str) -> None:
    assert changed != BASE_KEY
    assert len(changed) == 64


def test_key_ignores_what_is_applied_after_the_judge() -> None:
    # threshold, checks, tags, difficulty, metadata, id and position are applied after the
    # judge (or do not matter to it): changing them reuses the cached judgment
    other = dataclasses.replace(
        CASE,
        id="another-id",
        threshold=0.99,
        checks=({"type": "contains", "value": "30"},),
        tags=("billing",),
        difficulty="hard",
        metadata={"x": 1},
        file="other.jsonl",
        line=7,
    )
    assert cache_key(JUDGE, other, "Thirty days.") == BASE_KEY


def test_key_is_deterministic() -> None:
    assert cache_key(JUDGE, CASE, "Thirty days.", 0) == BASE_KEY
    assert cache_key(JudgeIdentity("local", prompt_version="sim-1"), CASE, "Thirty days.") == (
        BASE_KEY
    )


def test_garbage_file_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    garbage = b"this is not a database\x00\xff" * 200
    path.write_bytes(garbage)
    cache = JudgeCache(path)
    try:
        key = cache_key(JUDGE, CASE, "r")
        assert cache.get(key) is None  # never a crash, never a stale verdict
        assert len(cache.problems) == 1
        assert "unreadable" in cache.problems[0] and "rebuilt" in cache.problems[0]
        cache.put(key, RESULT)
        assert cache.get(key) == RESULT
    finally:
        cache.close()
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept for inspection
    assert aside[0].name in cache.problems[0]


def test_clobbered_database_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = JudgeCache(path)
    keys = [cache_key(JUDGE, CASE, f"response {i}" * 50) for i in range(200)]
    for key in keys:
        cache.put(key, RESULT)
    cache.close()
    # checkpoint the WAL into the main file, then overwrite its pages past the header
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    assert len(data) > 8192
    data[100:] = b"\xa5" * (len(data) - 100)
    path.write_bytes(bytes(data))
    reopened = JudgeCache(path)
    try:
        assert reopened.get(keys[0]) is None
        assert reopened.problems and "rebuilt" in reopened.problems[0]
        reopened.put(keys[0], RESULT)
        assert reopened.get(keys[0]) == RESULT
    finally:
        reopened.close()


def test_unknown_schema_version_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    cache = JudgeCache(path)
    try:
        assert cache.get("k") is None
        assert "schema version 99" in cache.problems[0]
    finally:
        cache.close()


def test_unreadable_entry_is_re_judged(cache: JudgeCache) -> None:
    key = cache_key(JUDGE, CASE, "r")
    cache.put(key, RESULT)
    cache.close()
    with sqlite3.connect(cache.path) as conn:
        conn.execute("UPDATE verdicts SET result = ? WHERE key = ?", ('{"score": 7}', key))
    assert cache.get(key) is None  # a score outside [0, 1] is never replayed
    assert "re-judging" in cache.problems[0]


def _writer(path: str, worker: int, n: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    cache = JudgeCache(Path(path))
    barrier.wait()
    for i in range(n):
        key = cache_key(JUDGE, CASE, f"worker {worker} response {i}")
        cache.put(key, JudgeResult(score=(i % 10) / 10, reasoning=f"w{worker}-{i}"))
    cache.close()


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    n = 150
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(path), w, n, barrier)) for w in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = JudgeCache(path)
    try:
        for worker in (1, 2):
            for i in range(n):
                got = cache.get(cache_key(JUDGE, CASE, f"worker {worker} response {i}"))
                assert got is not None, (worker, i)
                assert got.reasoning == f"w{worker}-{i}"
        assert cache.problems == []
    finally:
        cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM verdicts").fetchone()[0] == 2 * n


def test_a_busy_database_is_waited_for_never_moved_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite may answer "database is locked" at once while another worker creates the file."""
    path = tmp_path / "cache.sqlite3"
    seed = JudgeCache(path)
    key = cache_key(JUDGE, CASE, "r")
    seed.put(key, RESULT)
    seed.close()
    real_open = JudgeCache._open
    attempts = []

    def busy_twice(self: JudgeCache) -> sqlite3.Connection:
        attempts.append(1)
        if len(attempts) <= 2:
            raise sqlite3.OperationalError("database is locked")
        return real_open(self)

    monkeypatch.setattr(JudgeCache, "_open", busy_twice)
    cache = JudgeCache(path)
    try:
        assert cache.get(key) == RESULT  # the healthy file was kept
        assert cache.problems == []
    finally:
        cache.close()
    assert len(attempts) == 3
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def _opener(path: str, barrier: multiprocessing.synchronize.Barrier, q: Any) -> None:
    cache = JudgeCache(Path(path))
    barrier.wait()
    cache.put(cache_key(JUDGE, CASE, path), RESULT)
    q.put(list(cache.problems))
    cache.close()


def test_workers_creating_the_cache_at_once_never_quarantine_it(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for trial in range(30):
        path = str(tmp_path / f"cache-{trial}.sqlite3")
        barrier = ctx.Barrier(3)
        queue = ctx.Queue()
        procs = [ctx.Process(target=_opener, args=(path, barrier, queue)) for _ in range(3)]
        for p in procs:
            p.start()
        problems = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert problems == [[], [], []], (trial, problems)
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


# -- prekeys: rows read before the SUT answers ----------------------------------------------------


def _key_v1(judge: JudgeIdentity, case: Case, response: str, sample: int = 0) -> str:
    """The key as version 1 computed it: existing caches must keep their hits."""
    import hashlib
    import json

    payload = {
        "judge": [judge.name, judge.model, judge.prompt_version, judge.version, judge.source_hash],
        "case": case.content_key(),
        "response": response,
        "sample": sample,
    }
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    "case",
    [
        CASE,
        Case(id="m", question="q", messages=(Message("user", 'Grüße \u2028 "quoted" \\ back'),)),
        Case(id="r", question="q", references=("30 days", "thirty days"), ground_truth="30 days"),
        Case(id="n", question="no truth, no rubric"),
    ],
    ids=["plain", "messages", "references", "bare"],
)
@pytest.mark.parametrize("response", ["Thirty days.", "", 'Grüße\n\t"x" \ud7ff \U0001f600'])
def test_key_parts_give_the_version_1_key(case: Case, response: str) -> None:
    for sample in (0, 3):
        parts = key_parts(JUDGE, case, sample)
        assert parts.key(response) == _key_v1(JUDGE, case, response, sample)
        assert cache_key(JUDGE, case, response, sample) == _key_v1(JUDGE, case, response, sample)
    # the prekey leaves the response out and keeps everything else
    assert key_parts(JUDGE, case, 0).prekey != key_parts(JUDGE, case, 1).prekey
    other = dataclasses.replace(JUDGE, model="m2")
    assert key_parts(JUDGE, case).prekey != key_parts(other, case).prekey


def test_rows_for_reads_every_row_of_the_prekeys_in_chunks(cache: JudgeCache) -> None:
    cases = [dataclasses.replace(CASE, id=f"c{i}", question=f"q{i}?") for i in range(1200)]
    parts = [key_parts(JUDGE, c) for c in cases]
    for p in parts[::2]:
        cache.put(p.key("old answer"), RESULT, p.prekey)
        cache.put(p.key("new answer"), JudgeResult(score=0.2), p.prekey)
    found = cache.rows_for(p.prekey for p in parts)
    assert set(found) == {p.prekey for p in parts[::2]}
    first = found[parts[0].prekey]
    assert set(first) == {parts[0].key("old answer"), parts[0].key("new answer")}
    assert cache.decode(parts[0].key("old answer"), first[parts[0].key("old answer")]) == RESULT
    assert cache.legacy is False


def test_reads_never_open_a_transaction(cache: JudgeCache) -> None:
    p = key_parts(JUDGE, CASE)
    cache.put(p.key("r"), RESULT, p.prekey)
    conn = cache._connect()
    changes = conn.total_changes
    assert cache.get(p.key("r")) == RESULT
    assert cache.rows_for([p.prekey])
    assert not conn.in_transaction  # nothing to commit after a read
    assert conn.total_changes == changes


def test_a_version_1_file_is_upgraded_and_its_rows_still_hit(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    old_key = _key_v1(JUDGE, CASE, "Thirty days.")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE verdicts (key TEXT PRIMARY KEY, result TEXT NOT NULL,"
            " created REAL NOT NULL)"
        )
        conn.execute(
            "INSERT INTO verdicts VALUES (?, ?, 0)",
            (old_key, '{"score": 0.8, "reasoning": "close enough"}'),
        )
        conn.execute("PRAGMA user_version = 1")
    cache = JudgeCache(path)
    try:
        got = cache.get(old_key)
        assert got is not None and got.score == 0.8
        assert cache.legacy is True  # a prekey miss is no proof: the runner asks by full key
        assert cache.rows_for([key_parts(JUDGE, CASE).prekey]) == {}
        assert cache.problems == []
    finally:
        cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {row[1] for row in conn.execute("PRAGMA table_info(verdicts)")}
        assert "prekey" in columns
