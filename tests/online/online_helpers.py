"""Helpers of the online tests: event records, JSONL files and writers ingesting at once."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
