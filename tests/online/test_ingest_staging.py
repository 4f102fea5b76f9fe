"""Staging rows for the store: many rows per INSERT, the short event rows (no metadata, no
event id) and reading a file a number of lines at a time give exactly the rows of
``parse_record``, line by line."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from online_helpers import T0, ev, resp, write_jsonl

from pytest_llmeval.online import EventStore, ingest
from pytest_llmeval.online.records import parse_record
from pytest_llmeval.online.values import RecordError


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 128, 130, 200])
@pytest.mark.parametrize("width", [5, 11])
def test_staging_many_rows_per_statement_keeps_every_row_in_order(n: int, width: int) -> None:
    rows = [
        tuple(f"{i}.{c}" if c % 2 else float(i * 100 + c) for c in range(width)) for i in range(n)
    ]
    conn = sqlite3.connect(":memory:")
    conn.execute(f"CREATE TABLE t ({', '.join(f'c{c}' for c in range(width))})")
    ingest._stage_rows(conn, "t", rows)
    assert conn.execute("SELECT * FROM t ORDER BY rowid").fetchall() == rows


def _lines() -> list[Any]:
    return [
        resp("r1", "s1", T0),
        ev("copy", "r1", T0 + 1),  # short
        ev("rephrase_retry", "r1", T0 + 2, delay_seconds=4.5),  # short, with a delay
        ev("copy", "r1", T0 + 3, event_id="e-1"),  # full: an event id
        ev("thumbs_up", "r1", T0 + 4, metadata={"k": [1, 2]}),  # full: metadata
        ev("continue", None, T0 + 5, session_id="s9"),  # short, a session's own event
        ev("copy", "r2", T0 + 6),  # short, before its response
        "",
        "not json",
        ev("copy", "r1", T0 + 1),  # the first event again
        resp("r2", "s1", T0 + 7, variant="v2"),
    ]


def _expected_events(records: list[Any]) -> set[tuple[Any, ...]]:
    out = set()
    for record in records:
        if not isinstance(record, dict):
            continue
        kind, row = parse_record(record)
        if kind == "event":
            out.add(row)
    return out


def test_short_and_full_events_are_split_and_stored_as_parse_record_reads_them(
    tmp_path: Path,
) -> None:
    records = _lines()
    path = write_jsonl(tmp_path / "e.jsonl", records)
    reader = ingest.LineReader(io.BytesIO(path.read_bytes()), str(path))
    batch = reader.read(1000)
    assert reader.done and [e.line for e in reader.errors] == [9]
    assert [s[0] for s in batch.short] == ["", "r1", "r1", "r1", "r2"]  # by response id
    assert all(len(s) == 5 for s in batch.short)
    assert {e[6] for e in batch.events} == {"e-1", ""} and len(batch.events) == 2
    assert batch.rows == 9
    with EventStore(tmp_path / "db.sqlite3") as store:
        report = store.ingest_file(path, workers=0)
        stored = store.query("SELECT * FROM events")
    assert (report.events_added, report.duplicates) == (6, 1)
    assert set(stored) == _expected_events(records) and len(stored) == 6
    assert all(type(row[2]) is float and type(row[4]) is float for row in stored)


@pytest.mark.parametrize("size", [1, 2, 3, 5, 1000])
def test_reading_a_few_lines_at_a_time_gives_the_same_rows_and_line_numbers(
    tmp_path: Path, size: int
) -> None:
    records = _lines() * 3
    path = write_jsonl(tmp_path / "e.jsonl", records)
    with path.open("rb") as handle:
        parts = list(ingest.parse_here(handle, str(path), strict=False, size=size))
    assert len(parts) == -(-len(records) // size) + (len(records) % size == 0)
    *middle, last = parts
    assert all((p.raw_lines, p.lines, p.errors) == (0, 0, []) for p in middle)
    assert (last.raw_lines, last.lines) == (len(records), len(records) - 3)
    assert [line for line, _, _ in last.errors] == [9, 20, 31]
    events = {e for p in parts for e in p.batch.events}
    events |= {(*s, "", "") for p in parts for s in p.batch.short}
    assert events == _expected_events(records)
    responses = [r for p in parts for r in p.batch.responses]
    assert sorted(r[0] for r in responses) == ["r1"] * 3 + ["r2"] * 3


def test_iterating_a_reader_gives_each_line_as_parse_record_does() -> None:
    lines = [json.dumps(r) if isinstance(r, dict) else r for r in _lines()]
    reader = ingest.LineReader(io.BytesIO("\n".join(lines).encode()), "f.jsonl")
    got = sorted(map(repr, reader))
    want = []
    for line in lines:
        try:
            want.append(repr(parse_record(json.loads(line))))
        except (ValueError, RecordError):
            continue
    assert got == sorted(want)


def test_responses_sorted_by_id_keep_the_first_values_of_each_id(tmp_path: Path) -> None:
    records = [
        resp("r2", None, T0 + 5, question="first q of r2"),
        resp("r1", "s1", T0, question="r1's q"),
        resp("r2", "s2", T0 + 9, question="second q of r2", variant="v"),
        resp("r0", None, T0),
    ]
    with EventStore(tmp_path / "db.sqlite3") as store:
        store.ingest_file(write_jsonl(tmp_path / "e.jsonl", records), workers=0)
        rows = store.query("SELECT response_id, session_id, question, variant, ts FROM responses")
    assert sorted(rows) == [
        ("r0", None, None, None, T0),
        ("r1", "s1", "r1's q", None, T0),
        ("r2", "s2", "first q of r2", "v", T0 + 5),  # the first value stays, gaps are filled
    ]
