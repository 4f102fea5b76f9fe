"""A write that touches most of the store rebuilds every aggregate in one pass over the events;
the aggregates (and so every dashboard) are those of recomputing only what it touched."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from online_helpers import T0, ev, resp, write_jsonl

from pytest_llmeval.online import EventStore
from pytest_llmeval.online import schema as online_schema
from pytest_llmeval.online import store as online_store

AGGREGATES = ("facts", "pending", "sessions")


def _files(tmp_path: Path) -> list[Path]:
    """Three files in turn: responses with and without sessions, events before their response,
    a response gaining a session later, session events, duplicates across files."""
    rng = random.Random(7)
    kinds = ("copy", "thumbs_up", "thumbs_down", "rephrase_retry", "continue", "task_complete")
    first: list[Any] = [resp(f"r{i}", f"s{i // 3}" if i % 4 else None, T0 + i) for i in range(40)]
    first += [ev(kinds[i % 6], f"r{i % 60}", T0 + i + 0.5) for i in range(200)]  # r40..59: later
    first += [ev("continue", None, T0 + i, session_id=f"s{i}") for i in range(5)]
    second: list[Any] = [resp(f"r{i}", f"s{i // 3}", T0 + i, variant="v") for i in range(30, 60)]
    second += [ev("rephrase_retry", f"r{i}", T0 + 50 + i, delay_seconds=i / 7) for i in range(60)]
    second += rng.sample(first, 40)
    third: list[Any] = [ev("task_complete", None, T0 + 90, session_id="s2")]
    third += [ev(kinds[i % 6], f"r{i % 80}", T0 + 99 + i) for i in range(100)]
    third += [resp("r70", "s70", T0 + 1)]
    for records in (first, second, third):
        rng.shuffle(records)
    return [write_jsonl(tmp_path / f"f{n}.jsonl", r) for n, r in enumerate((first, second, third))]


def _state(store: EventStore) -> tuple[Any, ...]:
    tables = {t: sorted(map(repr, store.query(f"SELECT * FROM {t}"))) for t in AGGREGATES}
    dash = store.dashboard(window=None, until=T0 + 5000, by="variant")
    return tables, dash


@pytest.mark.parametrize("workers", [0, 2])
def test_rebuilding_every_aggregate_gives_what_recomputing_the_touched_ones_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    files = _files(tmp_path)
    rebuilds = {"n": 0}
    real = online_schema.rebuild_aggregates

    def counted(conn: Any) -> None:
        rebuilds["n"] += 1
        real(conn)

    monkeypatch.setattr(online_schema, "rebuild_aggregates", counted)
    touched = EventStore(tmp_path / "touched.sqlite3")
    states = []
    for path in files:
        touched.ingest_file(path, workers=workers)
        states.append(_state(touched))
    assert rebuilds["n"] == 0
    monkeypatch.setattr(online_store, "_FEW_TOUCHED", 5)  # every file touches more than that
    rebuilt = EventStore(tmp_path / "rebuilt.sqlite3")
    for path, state in zip(files, states, strict=True):
        rebuilt.ingest_file(path, workers=workers)
        assert _state(rebuilt) == state
    assert rebuilds["n"] == 3
    assert state[0]["pending"] and state[0]["sessions"]  # the data exercises every table
    touched.close()
    rebuilt.close()


def test_a_small_write_into_a_big_store_recomputes_only_what_it_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(online_store, "_FEW_TOUCHED", 5)
    store = EventStore(tmp_path / "db.sqlite3")
    store.ingest_file(
        write_jsonl(tmp_path / "a.jsonl", [resp(f"r{i}", None, T0) for i in range(40)])
    )
    calls = {"n": 0}
    monkeypatch.setattr(online_schema, "rebuild_aggregates", lambda conn: calls.__setitem__("n", 1))
    # 8 of 40 responses: more than _FEW_TOUCHED but less than half the store
    store.ingest_file(
        write_jsonl(tmp_path / "b.jsonl", [ev("copy", f"r{i}", T0) for i in range(8)])
    )
    assert calls["n"] == 0
    assert store.metric("copy_rate", window=None, until=T0 + 1).numerator == 8
    store.close()


def test_the_upkeep_of_a_write_reads_only_what_it_touched(tmp_path: Path) -> None:
    """Every upkeep statement starts from the touched ids: none scans the responses, the
    events or the aggregates (a scan made each one-event write into a 10M-event store take
    0.4 s)."""
    store = EventStore(tmp_path / "db.sqlite3")
    store.ingest_file(_files(tmp_path)[0])
    scans = []
    for statement in online_schema.UPKEEP:
        for *_, detail in store.query("EXPLAIN QUERY PLAN " + statement):
            if detail.startswith("SCAN") and detail not in ("SCAN t", "SCAN a", "SCAN temp._sid"):
                scans.append((statement[:60], detail))
    assert scans == []
    store.close()
