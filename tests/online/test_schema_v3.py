"""Schema version 3 (the per-session table): the migration from version 2, exact dedup of
events that share a response and a time, and several writers at once."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from online_helpers import T0, ev, ingest_at_once, resp, write_jsonl

from pytest_llmeval import online
from pytest_llmeval.online import EventStore, StoreError, schema


def _records() -> list[dict[str, Any]]:
    return [
        resp("r1", "s1", T0, variant="control", model="m1"),
        resp("r2", "s1", T0 + 10, variant="treatment", model="m2"),
        resp("r3", None, T0 + 20, variant="control"),
        resp("r4", "s2", T0 + 30, variant="treatment", user_id="u4", experiment="e1"),
        ev("copy", "r1", T0 + 1),
        ev("thumbs_down", "r2", T0 + 12),
        ev("thumbs_up", "r2", T0 + 11),
        ev("rephrase_retry", "r3", T0 + 25),
        ev("rephrase_retry", "r4", T0 + 31, delay_seconds=4.0),
        ev("continue", None, T0 + 30, session_id="s1"),
        ev("task_complete", "r2", T0 + 40),
        ev("copy", "r-never-shown", T0 + 2),
        ev("thumbs_up", "r4", T0 + 35, metadata={"k": [1, 2]}),
    ]


def _events(store: EventStore) -> Counter[tuple[Any, ...]]:
    return Counter(store.query("SELECT * FROM events"))


def _readouts(store: EventStore) -> list[Any]:
    out: list[Any] = []
    for until in (T0 + 100, T0 + 11.5, T0 + 31.5):
        for by in (None, "variant", "model"):
            out.append(store.dashboard(window=None, until=until, by=by))
        out.append(store.user_counts("e1", ["copy_rate", "thumbs_up_rate"], until=until))
    return out


def _v2_store(path: Path, fresh: EventStore) -> None:
    """The store as version 2 wrote it: the version-1 tables filled with ``fresh``'s rows, then
    the version-2 migration's aggregates (what version 2 kept at ingest)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(schema._V1_TABLES)
    for table in ("responses", "events", "failures"):
        rows = fresh.query(f"SELECT * FROM {table}")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
    conn.execute("BEGIN")
    schema.migrate_1_to_2(conn)
    conn.execute("COMMIT")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "facts" in tables and "sessions" not in tables
    conn.close()


def test_a_version_2_store_is_migrated_on_open_and_keeps_every_event(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", _records())
    fresh = EventStore(tmp_path / "fresh.sqlite3")
    fresh.ingest_file(path)
    old = tmp_path / "v2.sqlite3"
    _v2_store(old, fresh)
    migrated = EventStore(old, create=False)
    assert migrated.query("PRAGMA user_version")[0][0] == online.SCHEMA_VERSION == 3
    assert migrated.counts() == fresh.counts() == {"responses": 4, "events": 9, "failures": 0}
    assert _events(migrated) == _events(fresh)
    assert _readouts(migrated) == _readouts(fresh)
    assert migrated.dashboard(window=None, until=T0 + 100)["unattributed_events"] == 1
    names = {r[0] for r in migrated.query("SELECT name FROM sqlite_master")}
    assert "sessions" in names
    assert migrated.query("SELECT * FROM sessions") == fresh.query("SELECT * FROM sessions")
    # it goes on as a version-3 store: a re-ingest adds nothing, a new event counts
    again = migrated.ingest_file(path)
    assert again.events_added == 0 and again.duplicates == len(_records())
    migrated.record_copy("s1", "r2", timestamp=T0 + 50)
    fresh.record_copy("s1", "r2", timestamp=T0 + 50)
    assert _readouts(migrated) == _readouts(fresh)
    migrated.close()
    fresh.close()


def test_a_failed_migration_leaves_the_version_2_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = EventStore(tmp_path / "fresh.sqlite3")
    fresh.record_batch(_records())
    old = tmp_path / "v2.sqlite3"
    _v2_store(old, fresh)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("DROP TABLE events")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(schema.MIGRATIONS, 2, broken)
    with pytest.raises(StoreError, match=r"v2\.sqlite3"):
        EventStore(old, create=False)
    conn = sqlite3.connect(old)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert Counter(conn.execute("SELECT * FROM events").fetchall()) == _events(fresh)
    conn.close()
    monkeypatch.undo()
    with EventStore(old, create=False) as migrated:
        assert _readouts(migrated) == _readouts(fresh)


def test_a_store_from_a_newer_version_is_refused_naming_the_file(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {online.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match=r"newer\.sqlite3 has event-store schema version 4"):
        EventStore(newer)


def test_dedup_is_exact_when_response_and_time_collide(tmp_path: Path) -> None:
    # Every row here has the same (response_id, ts), the index key that finds candidates:
    # each differs from the first in one field, so all are kept; exact copies are not.
    base: dict[str, Any] = {"session_id": "s1", "event_id": None}
    distinct = [
        ev("rephrase_retry", "r1", T0 + 5, **base),
        ev("thumbs_up", "r1", T0 + 5, **base),
        ev("rephrase_retry", "r1", T0 + 5, **{**base, "session_id": "s2"}),
        ev("rephrase_retry", "r1", T0 + 5, delay_seconds=3.0, **base),
        ev("rephrase_retry", "r1", T0 + 5, delay_seconds=0.0, **base),
        ev("rephrase_retry", "r1", T0 + 5, metadata={"a": 1}, **base),
        ev("rephrase_retry", "r1", T0 + 5, metadata={"a": 2}, **base),
        ev("rephrase_retry", "r1", T0 + 5, **{**base, "event_id": "e1"}),
        ev("rephrase_retry", "r1", T0 + 5, **{**base, "event_id": "e2"}),
        ev("continue", None, T0 + 5, session_id="s1"),
        ev("continue", None, T0 + 5, session_id="s3"),
    ]
    distinct = [{k: v for k, v in r.items() if v is not None} for r in distinct]
    s = EventStore(tmp_path / "db.sqlite3")
    first = s.record_batch([resp("r1", "s1", T0), *distinct, *distinct[::-1]])
    assert first.events_added == len(distinct) and first.duplicates == len(distinct)
    path = write_jsonl(tmp_path / "e.jsonl", distinct + distinct)
    again = s.ingest_file(path)
    assert again.events_added == 0 and again.duplicates == 2 * len(distinct)
    assert s.counts()["events"] == len(distinct)
    assert len(set(s.query("SELECT * FROM events"))) == len(distinct)
    retry = s.metric("rephrase_retry_rate", window=None, until=T0 + 10)
    assert (retry.numerator, retry.denominator) == (1, 1)
    s.close()


def test_two_writers_with_overlapping_files_store_each_event_once(tmp_path: Path) -> None:
    records: list[Any] = [resp(f"r{i}", f"s{i // 3}", T0 + i) for i in range(200)]
    records += [ev("copy", f"r{i % 200}", T0 + i + 0.5) for i in range(0, 2000, 3)]
    records += [ev("thumbs_up", f"r{i % 200}", T0 + i + 0.25) for i in range(0, 2000, 7)]
    records += [ev("continue", None, T0 + i, session_id=f"s{i % 50}") for i in range(300)]
    # each file: most of the records, both share most; events of a response in the other file
    a = write_jsonl(tmp_path / "a.jsonl", records[: len(records) * 3 // 4])
    b = write_jsonl(tmp_path / "b.jsonl", records[len(records) // 4 :][::-1])
    db = str(tmp_path / "shared.sqlite3")
    ingest_at_once(db, [a, b, a])
    one = EventStore(tmp_path / "one.sqlite3")
    one.record_batch(records)
    with EventStore(db, create=False) as shared:
        assert shared.counts() == one.counts()
        assert _events(shared) == _events(one)
        for until in (T0 + 100, T0 + 3000):
            args: dict[str, Any] = {"window": None, "until": until, "by": "variant"}
            assert shared.dashboard(**args) == one.dashboard(**args)
    one.close()
