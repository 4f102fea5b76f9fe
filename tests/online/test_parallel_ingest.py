"""Ingest with worker processes parsing parts of a file: the same rows, counts and messages
as parsing in one process, line numbers across parts, strict, fallbacks, several writers."""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from online_helpers import T0, ev, fail_the_third_apply, ingest_at_once, resp, write_jsonl

from pytest_llmeval.online import EventStore, StoreError, ingest

TABLES = ("responses", "events", "failures", "facts", "pending", "sessions")


def _records(n: int = 600, seed: int = 3) -> list[Any]:
    """Responses and events shuffled (events before their responses), some twice, some bad."""
    rng = random.Random(seed)
    out: list[Any] = [
        resp(f"r{i}", f"s{i // 3}" if i % 5 else None, T0 + i, variant=f"v{i % 3}")
        for i in range(n // 6)
    ]
    kinds = ("copy", "thumbs_up", "thumbs_down", "rephrase_retry", "continue", "task_complete")
    out += [ev(kinds[i % 6], f"r{i % (n // 5)}", T0 + 2 * i + 0.5) for i in range(n)]
    out += [ev("continue", None, T0 + i, session_id=f"s{i}") for i in range(20)]
    out += [ev("copy", "r1", T0 + 1, metadata={"k": i}) for i in range(5)]
    out += rng.sample(out, n // 4)
    out += ["oops", '{"type": "copy", "response_id": "r1", "timestamp": "soon"}', "", "[1]"]
    rng.shuffle(out)
    return out


def _tables(store: EventStore) -> dict[str, list[Any]]:
    return {t: sorted(map(repr, store.query(f"SELECT * FROM {t}"))) for t in TABLES}


def _ingest(tmp_path: Path, path: Path, tag: str, **kwargs: Any) -> tuple[Any, ...]:
    with EventStore(tmp_path / f"{tag}.sqlite3") as store:
        report = store.ingest_file(path, **kwargs)
        dash = store.dashboard(window=None, until=T0 + 5000, by="variant")
        return report.to_dict(), _tables(store), dash


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest, "PART_BYTES", 2000)  # a few dozen lines per part


def test_workers_give_what_one_process_gives(tmp_path: Path, small_parts: None) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", _records())
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n", 40))
    here = _ingest(tmp_path, path, "here", workers=0)
    parallel = _ingest(tmp_path, path, "parallel", workers=2)
    assert here == parallel
    report = here[0]
    assert len(report["errors"]) == 3 and report["events_added"] > 0 and report["duplicates"]
    lines = path.read_bytes().split(b"\n")
    for error in report["errors"]:  # each names the line it is about, across part boundaries
        number = int(error.split(":")[1])
        assert lines[number - 1].strip() in (b"oops", b"[1]") or b'"soon"' in lines[number - 1]


def test_strict_with_workers_rejects_the_file_and_reports_every_bad_line(
    tmp_path: Path, small_parts: None
) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", _records())
    with EventStore(tmp_path / "db.sqlite3") as store:
        report = store.ingest_file(path, strict=True, workers=2)
        assert report.rejected_files == (str(path),) and len(report.errors) == 3
        assert store.counts() == {"responses": 0, "events": 0, "failures": 0}
        assert store.query("SELECT COUNT(*) FROM facts") == [(0,)]
        here = store.ingest_file(path, strict=True, workers=0)
    assert here == report


def test_a_failure_midway_with_workers_leaves_nothing(
    tmp_path: Path, small_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", _records())
    store = EventStore(tmp_path / "db.sqlite3")
    fail_the_third_apply(monkeypatch)
    with pytest.raises(sqlite3.OperationalError):
        store.ingest_file(path, workers=2)
    assert store.counts() == {"responses": 0, "events": 0, "failures": 0}
    assert all(store.query(f"SELECT COUNT(*) FROM {t}") == [(0,)] for t in TABLES)
    store.close()


def test_workers_that_cannot_start_or_die_leave_the_parsing_to_the_writer(
    tmp_path: Path, small_parts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", _records())
    expected = _ingest(tmp_path, path, "here", workers=0)

    def cannot_start(self: Any) -> None:
        raise OSError("no processes left (simulated)")

    with monkeypatch.context() as m:
        m.setattr(ingest._Worker, "__init__", cannot_start)
        assert _ingest(tmp_path, path, "unstarted", workers=2) == expected

    received = {"n": 0}
    real_receive = ingest._Worker.receive

    def dies(self: Any) -> ingest.Part:
        received["n"] += 1
        if received["n"] == 4:
            self.proc.kill()
            self.proc.wait()
        return real_receive(self)

    monkeypatch.setattr(ingest._Worker, "receive", dies)
    assert _ingest(tmp_path, path, "died", workers=2) == expected
    assert received["n"] == 4  # three parts came from workers, the rest from the writer


def test_a_worker_refuses_a_file_replaced_under_the_same_name(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [resp("r1", "s1", T0)])
    stat = os.stat(path)
    part = ingest.parse_part(str(path), 0, stat.st_size, (stat.st_dev, stat.st_ino), False)
    assert (part.raw_lines, part.lines, part.errors, part.batch.rows) == (1, 1, [], 1)
    with pytest.raises(StoreError, match=r"e\.jsonl was replaced while it was being ingested"):
        ingest.parse_part(str(path), 0, stat.st_size, (stat.st_dev, stat.st_ino + 1), False)


def test_a_workers_loop_answers_each_task_in_order_errors_included(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [resp("r1", "s1", T0), ev("copy", "r1", T0)])
    stat = os.stat(path)
    identity = (stat.st_dev, stat.st_ino)
    tasks = [(str(path), 0, stat.st_size, identity, False), (str(path), 0, 1, (0, 0), False)]
    source = io.BytesIO()
    for task in tasks:
        data = pickle.dumps(task)
        source.write(len(data).to_bytes(8, "little") + data)
    source.seek(0)
    sink = io.BytesIO()
    ingest.serve(source, sink)
    sink.seek(0)
    answers = []
    while head := sink.read(8):
        answers.append(pickle.loads(sink.read(int.from_bytes(head, "little"))))
    assert [kind for kind, _ in answers] == ["part", "error"]
    assert answers[0][1].batch.rows == 2 and isinstance(answers[1][1], StoreError)


@pytest.mark.parametrize("how", ["writer gone", "interrupted"])
def test_a_worker_whose_writer_is_gone_exits_without_a_traceback(tmp_path: Path, how: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    path = write_jsonl(tmp_path / "e.jsonl", [ev("copy", f"r{i}", T0) for i in range(2000)])
    stat = os.stat(path)
    task = pickle.dumps((str(path), 0, stat.st_size, (stat.st_dev, stat.st_ino), False))
    code = "from pytest_llmeval.online.ingest import serve_quietly; serve_quietly()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    if how == "writer gone":
        proc.stdout.close()  # the writer died: its end of the pipe is closed
        proc.stdin.write(len(task).to_bytes(8, "little") + task)
        proc.stdin.flush()
    else:
        time.sleep(0.5)  # Ctrl-C reaches the whole process group, the worker included
        proc.send_signal(signal.SIGINT)
    try:
        err = proc.stderr.read()
    finally:
        proc.stdin.close()
    assert proc.wait(timeout=30) == 1
    assert err == b""


@pytest.mark.parametrize("size", [0, 1, 50, 2000, 2001, 10_000])
def test_parts_cover_the_file_and_end_at_line_ends(tmp_path: Path, size: int) -> None:
    path = tmp_path / "e.jsonl"
    rng = random.Random(size)
    text = "".join(json.dumps({"n": "x" * rng.randrange(80)}) + "\n" for _ in range(400))
    path.write_bytes(text.encode()[:size] if size else text.encode())
    data = path.read_bytes()
    with open(path, "rb") as handle:
        bounds = ingest.part_bounds(handle, len(data), 500)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(data)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    assert all(data[end - 1 : end] == b"\n" for _, end in bounds[:-1])


def test_three_writers_each_with_workers_store_each_event_once(tmp_path: Path) -> None:
    records = [r for r in _records(1200, seed=5) if isinstance(r, dict)]
    a = write_jsonl(tmp_path / "a.jsonl", records[: len(records) * 2 // 3])
    b = write_jsonl(tmp_path / "b.jsonl", records[len(records) // 3 :][::-1])
    db = str(tmp_path / "shared.sqlite3")
    ingest_at_once(db, [a, b, a], workers=2, part_bytes=4000)
    with EventStore(tmp_path / "one.sqlite3") as one, EventStore(db, create=False) as shared:
        one.ingest_files([a, b], workers=0)
        assert _tables(shared) == _tables(one)
        args: dict[str, Any] = {"window": None, "until": T0 + 5000, "by": "variant"}
        assert shared.dashboard(**args) == one.dashboard(**args)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_is_read_in_this_process_whatever_the_workers(tmp_path: Path) -> None:
    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    lines = [json.dumps(resp("r1", "s1", T0))] + [
        json.dumps(ev("copy", "r1", T0 + i)) for i in range(50)
    ]

    def feed() -> None:
        with open(fifo, "w", encoding="utf-8") as out:
            out.write("\n".join(lines) + "\n")

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    with EventStore(tmp_path / "db.sqlite3") as store:
        report = store.ingest_file(fifo, workers=2)
    feeder.join(10)
    assert (report.lines, report.responses_added, report.events_added) == (51, 1, 50)
