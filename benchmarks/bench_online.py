"""Benchmark: the SQLite event store against the seed's in-memory OnlineMetricCollector.

Generates (reproducibly) N user events (default 1,000,000; the issue's scale is
``--events 10000000``) and N/10 shown responses over the last 20 hours into a temporary folder
as one JSONL file, then times:

* ``EventStore.ingest_file`` (parse, validate, dedup on the full event key, one transaction),
  as events/s, with the CPU time of the writer (this process) and of the parse workers apart
  (``--workers N`` sets their number; 0 parses in this process);
* ``EventStore.dashboard(window=24h, by="variant")`` (every metric overall and per variant,
  with Wilson intervals, session metrics and the unattributed-event count);
* the seed's algorithm (reimplemented faithfully below: a Python list of events, every metric
  rescanning the whole list through ``_events_in_window``) on the same events: recording into
  the list, then ``get_dashboard(24)``.

Peak RSS is the process's high-water mark after ingest and dashboard (before the seed's
in-memory list is built; above 2,000,000 events the seed comparison is skipped, its list would
not fit in memory). Targets (issue #13): dashboard < 2 s at 10,000,000 events, ingest >=
200,000 events/s, peak RSS < 1 GiB. The last line prints each figure as a ratio of its target
(<= 1.0 meets a time or memory target; >= 1.0 meets the ingest target).

Engine: SQLite, with per-response and per-session aggregates kept at ingest (``facts``,
``sessions``), so the dashboard reads one row per shown response, one per session and no
event; lines are decoded by ``orjson`` when the ``online-fast`` extra is installed (the line
before the ratios says which decoder ran).
``--duckdb`` also times DuckDB on the same file (if it is installed): its own ``read_json``
into two tables, no validation and no event identity (a lower bound for a DuckDB store), and
the copy/retry/thumb counts by variant as one SQL aggregate over every event.

Then ``--small-writes`` (200) one-event writes (``record_copy``, each its own transaction) into
the loaded store: what an application recording events one at a time pays.

Run: ``python benchmarks/bench_online.py [--10m | --events N] [--responses M] [--workers N]
[--page-size BYTES] [--small-writes N] [--phases] [--duckdb]``

``--phases`` also prints the writer's CPU and wall seconds per phase of the ingest (receiving
parts from the workers, inserting them, the aggregate upkeep at the end, the commit).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from pytest_llmeval.online import EventStore, ingest
from pytest_llmeval.online import store as store_module

# event type -> weight (percent) in the generated stream
EVENT_MIX = {
    "copy": 15,
    "continue": 20,
    "rephrase_retry": 10,
    "thumbs_up": 5,
    "thumbs_down": 3,
    "task_complete": 2,
    "scroll": 45,
}


# ------------------------------------------------------------------------------------------
# the seed's algorithm, faithfully (only ``time.time()`` is read once per call, as there)


@dataclass
class OnlineEvent:
    event_type: str
    session_id: str
    response_id: str
    timestamp: float
    metadata: dict[str, Any] = field(default_factory=dict)


class SeedOnlineMetricCollector:
    def __init__(self) -> None:
        self._events: list[OnlineEvent] = []

    def record_event(self, event: OnlineEvent) -> None:
        self._events.append(event)

    def _events_in_window(self, window_hours: float) -> list[OnlineEvent]:
        cutoff = time.time() - window_hours * 3600
        return [e for e in self._events if e.timestamp >= cutoff]

    def compute_copy_rate(self, window_hours: float = 24.0) -> float:
        events = self._events_in_window(window_hours)
        responses_shown = sum(1 for e in events if e.event_type == "response_shown")
        copies = sum(1 for e in events if e.event_type == "copy")
        return copies / responses_shown if responses_shown > 0 else 0.0

    def compute_session_continuation_rate(self, window_hours: float = 24.0) -> float:
        events = self._events_in_window(window_hours)
        sessions: dict[str, set[str]] = {}
        for e in events:
            if e.session_id not in sessions:
                sessions[e.session_id] = set()
            sessions[e.session_id].add(e.event_type)
        if not sessions:
            return 0.0
        sessions_with_continuation = sum(
            1 for event_types in sessions.values() if "continue" in event_types
        )
        return sessions_with_continuation / len(sessions)

    def compute_rephrase_retry_rate(
        self, window_hours: float = 24.0, max_delay_s: float = 30.0
    ) -> float:
        events = self._events_in_window(window_hours)
        responses_shown = sum(1 for e in events if e.event_type == "response_shown")
        quick_retries = sum(
            1
            for e in events
            if e.event_type == "rephrase_retry"
            and e.metadata.get("delay_seconds", 999) <= max_delay_s
        )
        return quick_retries / responses_shown if responses_shown > 0 else 0.0

    def compute_explicit_feedback_rate(self, window_hours: float = 24.0) -> dict[str, Any]:
        events = self._events_in_window(window_hours)
        responses_shown = sum(1 for e in events if e.event_type == "response_shown")
        thumbs_up = sum(1 for e in events if e.event_type == "thumbs_up")
        thumbs_down = sum(1 for e in events if e.event_type == "thumbs_down")
        total_explicit = thumbs_up + thumbs_down
        return {
            "thumbs_up": thumbs_up,
            "thumbs_down": thumbs_down,
            "thumbs_up_rate": thumbs_up / responses_shown if responses_shown > 0 else 0.0,
            "thumbs_down_rate": thumbs_down / responses_shown if responses_shown > 0 else 0.0,
            "positive_rate": thumbs_up / total_explicit if total_explicit > 0 else 0.5,
            "feedback_response_rate": total_explicit / responses_shown
            if responses_shown > 0
            else 0.0,
        }

    def get_dashboard(self, window_hours: float = 24.0) -> dict[str, Any]:
        return {
            "window_hours": window_hours,
            "copy_rate": self.compute_copy_rate(window_hours),
            "session_continuation_rate": self.compute_session_continuation_rate(window_hours),
            "rephrase_retry_rate": self.compute_rephrase_retry_rate(window_hours),
            "explicit_feedback": self.compute_explicit_feedback_rate(window_hours),
        }


# ------------------------------------------------------------------------------------------


def generate(path: str, n_responses: int, n_events: int, seed: int, now: float) -> None:
    """Write the JSONL stream: responses first-shown over the last 20 h, events after them."""
    rng = random.Random(seed)
    start = now - 20 * 3600.0
    step = 19 * 3600.0 / n_responses
    types = [t for t, w in EVENT_MIX.items() for _ in range(w)]
    shown = [start + i * step for i in range(n_responses)]
    with open(path, "w", encoding="utf-8") as out:
        for i, ts in enumerate(shown):
            user = i // 12
            variant = "treatment" if (user * 2654435761) % 97 < 48 else "control"
            out.write(
                f'{{"type": "response", "response_id": "r{i}", "session_id": "s{i // 4}", '
                f'"user_id": "u{user}", "variant": "{variant}", "experiment": "exp-1", '
                f'"question": "question {i % 5000}", "response": "answer {i}", '
                f'"model": "m{user % 2}", "timestamp": {ts:.3f}}}\n'
            )
        for _ in range(n_events):
            i = rng.randrange(n_responses)
            kind = rng.choice(types)
            ts = shown[i] + rng.random() * 600.0
            extra = (
                f', "delay_seconds": {rng.random() * 60.0:.2f}' if kind == "rephrase_retry" else ""
            )
            out.write(
                f'{{"type": "{kind}", "response_id": "r{i}", "session_id": "s{i // 4}", '
                f'"timestamp": {ts:.6f}{extra}}}\n'
            )


def seed_events(path: str) -> list[OnlineEvent]:
    """The same stream as the seed's events (a response record is its ``response_shown``)."""
    import json

    events: list[OnlineEvent] = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            obj = json.loads(line)
            kind = obj["type"]
            meta = {"delay_seconds": obj["delay_seconds"]} if "delay_seconds" in obj else {}
            events.append(
                OnlineEvent(
                    "response_shown" if kind == "response" else kind,
                    obj["session_id"],
                    obj["response_id"],
                    float(obj["timestamp"]),
                    meta,
                )
            )
    return events


class WriterPhases:
    """While entered, the writer's CPU and wall seconds per phase of an ingest: waiting for
    and receiving parts from the workers, inserting parts, the aggregate upkeep (or rebuild)
    at the end, and the commit (with SQLite's WAL checkpoint)."""

    PHASES = (
        ("receive", ingest._Worker, "receive"),
        ("insert parts", store_module.EventStore, "_apply"),
        ("upkeep", store_module.EventStore, "_upkeep"),
        ("commit", store_module._Tx, "__exit__"),
    )

    def __init__(self) -> None:
        self.cpu = dict.fromkeys((name for name, _, _ in self.PHASES), 0.0)
        self.wall = dict(self.cpu)
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> WriterPhases:
        for name, owner, attr in self.PHASES:
            real = getattr(owner, attr)
            self._saved.append((owner, attr, real))
            setattr(owner, attr, self._timed(name, real))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, attr, real in self._saved:
            setattr(owner, attr, real)

    def _timed(self, name: str, real: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                return real(*args, **kwargs)
            finally:
                self.cpu[name] += time.process_time() - c0
                self.wall[name] += time.perf_counter() - w0

        return timed

    def line(self) -> str:
        parts = ", ".join(f"{n} {self.cpu[n]:.1f} s CPU / {self.wall[n]:.1f} s" for n in self.cpu)
        return f"writer phases: {parts}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--10m", dest="ten_million", action="store_true", help="the issue's scale: 10,000,000"
    )
    parser.add_argument("--duckdb", action="store_true", help="also time DuckDB's raw load")
    parser.add_argument("--responses", type=int, default=None, help="default: events / 10")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--workers", type=int, default=None, help="parse processes (default: the store's own)"
    )
    parser.add_argument(
        "--page-size", type=int, default=0, help="SQLite page size (default: the store's own)"
    )
    parser.add_argument(
        "--small-writes", type=int, default=200, help="one-event writes timed after the ingest"
    )
    parser.add_argument(
        "--phases", action="store_true", help="the writer's CPU and wall time per ingest phase"
    )
    args = parser.parse_args()
    if args.ten_million:
        args.events = 10_000_000
    if args.responses is None:
        args.responses = max(1, args.events // 10)

    import scipy.stats  # noqa: F401 - imported up front so the dashboard timing excludes it

    with tempfile.TemporaryDirectory(prefix="bench-online-") as tmp:
        now = time.time()
        path = os.path.join(tmp, "events.jsonl")
        t0 = time.perf_counter()
        generate(path, args.responses, args.events, args.seed, now)
        size_mb = os.path.getsize(path) / 1e6
        gen_s = time.perf_counter() - t0
        # The generated file's write-back to disk belongs to the generator, not to the ingest
        # timed next (unsynced, the kernel writes the 1.3 GB of a 10M file out during it).
        t0 = time.perf_counter()
        if hasattr(os, "sync"):
            os.sync()
        print(
            f"generated {args.responses:,} responses + {args.events:,} events "
            f"({size_mb:.0f} MB) in {gen_s:.1f} s; "
            f"written to disk in {time.perf_counter() - t0:.1f} s"
        )

        db_path = os.path.join(tmp, "online.sqlite3")
        if args.page_size:  # an empty file of that page size: the store is created in it
            conn = sqlite3.connect(db_path)
            conn.execute(f"PRAGMA page_size = {args.page_size}")
            conn.execute("VACUUM")
            conn.close()
        store = EventStore(db_path)
        load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        phases = WriterPhases() if args.phases else None
        t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
        with phases or contextlib.nullcontext():
            report = store.ingest_file(path, workers=args.workers)
        ingest_s, ingest_cpu = time.perf_counter() - t0, time.process_time() - c0
        workers_cpu = children_cpu() - k0
        if phases is not None:
            print(phases.line())
        assert report.events_added == args.events and not report.errors, report.to_dict()
        lines = args.events + args.responses
        workers = ingest.worker_count(os.path.getsize(path), args.workers)
        print(
            f"ingest: {ingest_s:.2f} s = {args.events / ingest_s:,.0f} events/s "
            f"({lines / ingest_s:,.0f} lines/s incl. responses; CPU {ingest_cpu:.2f} s writer + "
            f"{workers_cpu:.2f} s in {workers} parse worker(s); load average {load0:.1f} "
            "before; target >= 200,000 events/s)"
        )

        if args.events <= 2_000_000:  # at 10M it only doubles the run time
            t0 = time.perf_counter()
            again = store.ingest_file(path)
            print(
                f"re-ingest of the same file: {time.perf_counter() - t0:.2f} s, "
                f"{again.events_added} events added, {again.duplicates:,} duplicates"
            )

        t0, c0 = time.perf_counter(), time.process_time()
        dash = store.dashboard(window=24 * 3600.0, until=now, by="variant")
        dash_s, dash_cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"dashboard (overall + by variant, 24 h): {dash_s:.2f} s, CPU {dash_cpu:.2f} s "
            "(target < 2 s)"
        )
        for name in ("copy_rate", "rephrase_retry_rate", "thumbs_down_rate", "positive_rate"):
            m = dash[name]
            print(f"  {name}: {m['rate']:.4f} ({m['numerator']:,}/{m['denominator']:,})")
        # what an application recording events one at a time pays on a store this big
        writes = []
        for i in range(args.small_writes):
            t0 = time.perf_counter()
            store.record_copy(f"s{i // 4}", f"r{i * 7919 % args.responses}", timestamp=now)
            writes.append(time.perf_counter() - t0)
        if writes:
            print(
                f"one-event writes (record_copy, each its own transaction) into the loaded store: "
                f"median {statistics.median(writes) * 1e3:.2f} ms, max {max(writes) * 1e3:.2f} ms"
                f" over {len(writes)}"
            )
        (page_size,) = store.query("PRAGMA page_size")[0]
        store.close()
        rss_mib = peak_rss_mib()
        print(
            f"peak RSS (ingest + dashboard): {rss_mib:,.0f} MiB (target < 1,024 MiB); "
            f"largest child process so far (the parse workers) {peak_rss_mib('children'):,.0f} MiB"
        )
        db_mb = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp) if "sqlite" in f)
        print(f"store on disk: {db_mb / 1e6:,.0f} MB, pages of {page_size:,} bytes")
        if args.duckdb:
            duckdb_compare(path, tmp, now)
        if args.events > 2_000_000:
            seed_dash_s = float("nan")
            print("seed comparison skipped (its in-memory list of events would not fit)")
        else:
            seed_dash_s = seed_compare(path)
    decoder = "orjson" if ingest._FAST_DECODE is not None else "json (no online-fast extra)"
    print(
        f"ingest CPU (writer + workers) {(ingest_cpu + workers_cpu) / ingest_s:.0%} of its wall "
        f"time; lines decoded by {decoder}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} at the end")
    rate = args.events / ingest_s
    print(
        f"ratios vs targets at {args.events:,} events: dashboard {dash_s / 2.0:.2f} "
        f"({dash_s:.2f} s / 2 s), ingest {rate / 200_000:.2f} ({rate:,.0f} / 200,000 events/s), "
        f"peak RSS {rss_mib / 1024:.2f} ({rss_mib:,.0f} / 1,024 MiB); seed/ours dashboard "
        f"{seed_dash_s / dash_s:.2f}x"
    )


def duckdb_compare(path: str, tmp: str, now: float) -> None:
    """DuckDB's raw load and a dashboard-like aggregate on the same file (no validation, no
    identity, no migration: what DuckDB costs before doing what the store does)."""
    t0 = time.perf_counter()
    try:
        import duckdb
    except ImportError:
        print("duckdb: not installed, skipped")
        return
    con = duckdb.connect(os.path.join(tmp, "online.duckdb"), config={"memory_limit": "600MB"})
    import_s = time.perf_counter() - t0
    cols = ", ".join(
        f"{name}: '{kind}'"
        for name, kind in (
            ("type", "VARCHAR"),
            ("response_id", "VARCHAR"),
            ("session_id", "VARCHAR"),
            ("user_id", "VARCHAR"),
            ("variant", "VARCHAR"),
            ("experiment", "VARCHAR"),
            ("model", "VARCHAR"),
            ("question", "VARCHAR"),
            ("response", "VARCHAR"),
            ("timestamp", "DOUBLE"),
            ("delay_seconds", "DOUBLE"),
        )
    )
    t0 = time.perf_counter()
    con.execute(
        f"CREATE TABLE raw AS SELECT * FROM read_json('{path}', "
        f"format = 'newline_delimited', columns = {{{cols}}})"
    )
    con.execute(
        "CREATE TABLE events AS SELECT response_id, type, timestamp AS ts, session_id,"
        " COALESCE(delay_seconds, -1) AS delay_s FROM raw WHERE type != 'response'"
    )
    con.execute(
        "CREATE TABLE responses AS SELECT response_id, session_id, variant, model,"
        " timestamp AS ts FROM raw WHERE type = 'response'"
    )
    con.execute("DROP TABLE raw")
    load_s = time.perf_counter() - t0
    n = con.execute("SELECT COUNT(*) FROM events").fetchone()
    sql = """
        WITH a AS (SELECT response_id,
            MIN(CASE WHEN type = 'copy' THEN ts END) AS copied,
            MIN(CASE WHEN type = 'rephrase_retry' AND delay_s >= 0 THEN delay_s END) AS delay,
            MAX(CASE WHEN type = 'thumbs_up' THEN ts END) AS up,
            MAX(CASE WHEN type = 'thumbs_down' THEN ts END) AS down
            FROM events GROUP BY response_id)
        SELECT r.variant, COUNT(*), COUNT(a.copied), COUNT_IF(a.delay <= 30),
            COUNT_IF(a.up IS NOT NULL AND (a.down IS NULL OR a.down < a.up))
        FROM responses r LEFT JOIN a USING (response_id)
        WHERE r.ts > ? AND r.ts <= ? GROUP BY 1
    """
    t0 = time.perf_counter()
    con.execute(sql, [now - 24 * 3600.0, now]).fetchall()
    dash_s = time.perf_counter() - t0
    con.close()
    events = int(n[0]) if n else 0
    print(
        f"duckdb {duckdb.__version__}: connect (and import) {import_s:.2f} s; raw load "
        f"{load_s:.2f} s = {events / load_s:,.0f} events/s (no validation, no identity); "
        f"copy/retry/thumb counts by variant from the events {dash_s:.2f} s"
    )


def peak_rss_mib(who: str = "self") -> float:
    """Peak RSS of this process, or (``children``) of the largest child that has ended."""
    import resource
    import sys

    which = resource.RUSAGE_CHILDREN if who == "children" else resource.RUSAGE_SELF
    peak = resource.getrusage(which).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def children_cpu() -> float:
    """CPU seconds (user + system) of the child processes that have ended."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def seed_compare(path: str) -> float:
    """The seed's collector on the same events; returns its dashboard time."""
    events = seed_events(path)
    seed = SeedOnlineMetricCollector()
    t0 = time.perf_counter()
    for event in events:
        seed.record_event(event)
    seed_record_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    seed_dash = seed.get_dashboard(24.0)
    seed_dash_s = time.perf_counter() - t0
    print(
        f"seed: record into a list {seed_record_s:.2f} s (in memory, nothing parsed or "
        f"persisted); get_dashboard {seed_dash_s:.2f} s; its copy_rate "
        f"{seed_dash['copy_rate']:.4f} counts copies per shown response (can exceed 1)"
    )
    return seed_dash_s


if __name__ == "__main__":
    main()
