"""Helpers of the online tests: event records, JSONL files and writers ingesting at once."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.online import EventStore

T0 = 1_700_000_000.0


def write_jsonl(path: Path, records: list[Any]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def resp(rid: str, sid: str | None, ts: float, **extra: Any) -> dict[str, Any]:
    rec = {"type": "response", "response_id": rid, "timestamp": ts, **extra}
    if sid is not None:
        rec["session_id"] = sid
    return rec


def ev(kind: str, rid: str | None, ts: float, **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"type": kind, "timestamp": ts, **extra}
    if rid is not None:
        rec["response_id"] = rid
    return rec


def _ingest_worker(db: str, path: str, start: Any, workers: int | None, part_bytes: int) -> None:
    start.wait()
    if part_bytes:
        from pytest_llmeval.online import ingest

        ingest.PART_BYTES = part_bytes
    with EventStore(db) as store:
        report = store.ingest_file(path, workers=workers)
    assert not report.errors


def ingest_at_once(
    db: str, files: Sequence[Path], *, workers: int | None = None, part_bytes: int = 0
) -> None:
    """One writer process per file (spawned, released together), each ingesting into ``db``
    (``workers``: parse processes of each, ``part_bytes``: bytes per part they parse); every
    one must finish cleanly."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_ingest_worker, args=(db, str(f), start, workers, part_bytes))
        for f in files
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0


def reader_rows_checked(obj: dict[str, object]) -> tuple[list[Any], Any]:
    """The rows the line reader gives for ``obj`` as one JSONL line, checked against
    ``parse_record``: the same row, or no row and the same error at line 1. Returns the rows
    and parse_record's row (None when it raised)."""
    from pytest_llmeval.online.ingest import LineReader
    from pytest_llmeval.online.records import parse_record
    from pytest_llmeval.online.values import RecordError

    line = json.dumps(obj).encode()
    reader = LineReader(io.BytesIO(line + b"\n"), "f.jsonl")
    rows = list(reader)
    try:
        expected = parse_record(json.loads(line))
    except RecordError as exc:
        assert rows == []
        assert [(e.line, e.field, e.message) for e in reader.errors] == [
            (1, exc.field, exc.message)
        ]
        return rows, None
    assert reader.errors == []
    assert rows == [expected]
    return rows, expected


def fail_the_third_apply(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Make the store's third write inside a transaction fail like a disk error; the count of
    writes tried so far."""
    calls = {"n": 0}
    real_apply = EventStore._apply

    def flaky_apply(self: EventStore, *args: Any) -> tuple[int, int]:
        calls["n"] += 1
        if calls["n"] == 3:
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return real_apply(self, *args)

    monkeypatch.setattr(EventStore, "_apply", flaky_apply)
    return calls
