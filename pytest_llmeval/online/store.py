"""The event store: production responses, user events and logged failures in one SQLite file.

Several processes may write at once: the database runs in WAL mode, every write is one
``BEGIN IMMEDIATE`` transaction (writers queue instead of failing on a lock upgrade) that
waits up to ``timeout`` seconds for the lock. Readers never wait for writers.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.online import metrics as _metrics
from pytest_llmeval.online import schema
from pytest_llmeval.online.ingest import (
    Batch,
    Part,
    batches,
    fill_stage,
    parse_here,
    parse_parallel,
    worker_count,
)
from pytest_llmeval.online.metrics import UserCounts, check_metric
from pytest_llmeval.online.recording import Recorder
from pytest_llmeval.online.records import Row, parse_record
from pytest_llmeval.online.values import (
    DEFAULT_COMPLETION_EVENT,
    DEFAULT_DB_PATH,
    DEFAULT_MAX_DELAY_S,
    NO_GROUP,
    IngestReport,
    LineError,
    MetricValue,
    RecordError,
    StoreError,
    Window,
)

# Fill what an earlier partial record (e.g. a bare ``response_shown``) left empty; otherwise the
# first value stays, and the shown time is the earliest seen. The WHERE skips rewriting rows a
# repeated record would not change (re-ingesting a file then writes nothing).
_UPSERT_RESPONSE = """
INSERT INTO responses (response_id, session_id, user_id, variant, experiment, model, question,
                       messages, response, ts, metadata)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (response_id) DO UPDATE SET
    session_id = COALESCE(responses.session_id, excluded.session_id),
    user_id    = COALESCE(responses.user_id, excluded.user_id),
    variant    = COALESCE(responses.variant, excluded.variant),
    experiment = COALESCE(responses.experiment, excluded.experiment),
    model      = COALESCE(responses.model, excluded.model),
    question   = COALESCE(responses.question, excluded.question),
    messages   = COALESCE(responses.messages, excluded.messages),
    response   = COALESCE(responses.response, excluded.response),
    ts         = MIN(responses.ts, excluded.ts),
    metadata   = COALESCE(responses.metadata, excluded.metadata)
WHERE excluded.ts < responses.ts
   OR (responses.session_id IS NULL AND excluded.session_id IS NOT NULL)
   OR (responses.user_id IS NULL AND excluded.user_id IS NOT NULL)
   OR (responses.variant IS NULL AND excluded.variant IS NOT NULL)
   OR (responses.experiment IS NULL AND excluded.experiment IS NOT NULL)
   OR (responses.model IS NULL AND excluded.model IS NOT NULL)
   OR (responses.question IS NULL AND excluded.question IS NOT NULL)
   OR (responses.messages IS NULL AND excluded.messages IS NOT NULL)
   OR (responses.response IS NULL AND excluded.response IS NOT NULL)
   OR (responses.metadata IS NULL AND excluded.metadata IS NOT NULL)
"""
# Rows go in from the staging tables, in the order they were read (a response's first value
# stays); events in the order of their response ids (see ``ingest.batch_of``).
_STAGED_RESPONSES = _UPSERT_RESPONSE.replace(
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    f"SELECT * FROM {schema.STAGE}.resp WHERE true ORDER BY rowid",
)
_STAGED_FAILURES = f"INSERT OR IGNORE INTO failures SELECT * FROM {schema.STAGE}.fail"
_STAGED_EVENTS = f"INSERT OR IGNORE INTO events SELECT * FROM {schema.STAGE}.ev"
_STAGED_SHORT_EVENTS = (
    "INSERT OR IGNORE INTO events SELECT response_id, type, ts, session_id, delay_s, '', ''"
    f" FROM {schema.STAGE}.evs"
)
# What a batch touched: the response ids of its events and responses, the sessions of its
# events without one (only read while the write is not rebuilding every aggregate anyway).
_STAGED_TOUCHED = " UNION ".join(
    f"SELECT response_id FROM {schema.STAGE}.{table}" for table in ("evs", "ev", "resp")
)
_STAGED_SESSIONS = " UNION ".join(
    f"SELECT session_id FROM {schema.STAGE}.{table} WHERE response_id = ''"
    for table in ("evs", "ev")
)
_CHUNK = 20_000
#: A write touching more response ids than this and than half the store's rebuilds every
#: aggregate at its end instead of recomputing the touched ones (see ``EventStore._apply``).
_FEW_TOUCHED = 50_000
#: The page size of a new store (SQLite's default is 4 KiB; see ``EventStore._init_schema``).
_PAGE_SIZE = 16384


@dataclass
class _Ingested:
    """What one transaction of ingest did so far."""

    lines: int = 0
    rows: int = 0
    responses: int = 0
    events: int = 0
    failures: int = 0
    errors: list[LineError] = field(default_factory=list)

    def added(self) -> tuple[int, int, int, int]:
        """(responses, events, failures, duplicates) for :class:`IngestReport`."""
        duplicates = self.rows - self.responses - self.events - self.failures
        return (self.responses, self.events, self.failures, duplicates)


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"the event store is busy or read-only: {exc}") from None
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


class EventStore(Recorder):
    """Production responses and user events in SQLite, with metrics computed in SQL.

    ``create=False`` refuses a missing file (readers should not create empty stores by
    mistake). A store of an older schema version is migrated when opened.

    Example::

        store = EventStore(".llmeval/online.sqlite3")
        store.record_response("r1", session_id="s1", user_id="u1", variant="control",
                              question="How do refunds work?", response="Within 30 days.")
        store.record_copy("s1", "r1")
        store.dashboard(window=24 * 3600)["copy_rate"]["rate"]
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_DB_PATH,
        *,
        create: bool = True,
        timeout: float = 60.0,
    ) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise StoreError(f"no event store at {self.path} (run `llmeval online ingest` first)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self._touched: set[str] = set()
        self._sessions: set[str] = set()
        self._rebuild = False  # this transaction rebuilds every aggregate (see _apply)
        self._touched_limit = _FEW_TOUCHED
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._init_schema(create)
            # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commit.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            # A big page cache keeps bulk inserts into the clustered event key from thrashing:
            # 512 MiB holds most of a 10M-event store's key (peak RSS stays under 1 GiB). It
            # is only filled by pages actually read, so small stores and readers stay small.
            self._conn.execute("PRAGMA cache_size = -524288")
            self._conn.execute("PRAGMA temp_store = FILE")
            for statement in schema.TEMP_TABLES:
                self._conn.execute(statement)
            self._conn.execute(f"ATTACH ':memory:' AS {schema.STAGE}")
            for statement in schema.stage_tables(schema.STAGE):
                self._conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"{self.path} is not a usable event store: {exc}") from None
        except StoreError:
            self._conn.close()
            raise

    def _version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _init_schema(self, create: bool) -> None:
        version = self._version()
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has event-store schema version {version}; this pytest-llmeval "
                f"knows {schema.SCHEMA_VERSION} (upgrade pytest-llmeval)"
            )
        if version == schema.SCHEMA_VERSION:
            return
        if version == 0 and not create:
            raise StoreError(f"{self.path} is not an event store (schema version {version})")
        if version == 0:
            # Only a new, empty file takes it (an existing store keeps its page size). At 10M
            # events 16 KiB pages cost the writer 30 s of CPU against 37 s with 4 KiB, and a
            # one-event write 0.71 ms against 0.95 ms (benchmarks/bench_online.py --page-size);
            # larger pages make every small write copy more bytes.
            self._conn.execute(f"PRAGMA page_size = {_PAGE_SIZE}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        with self._write():
            # Re-read inside the write lock: another process may have done it meanwhile.
            version = self._version()
            if version == 0:
                schema.create(self._conn)
                return
            while version < schema.SCHEMA_VERSION:
                schema.MIGRATIONS[version](self._conn)
                version = self._version()

    # -- connection management ----------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self) -> _Tx:
        return _Tx(self._conn)

    def query(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> list[Any]:
        """Run a read-only SQL statement on the store (for the flywheel, shadow and tests)."""
        return self._conn.execute(sql, params).fetchall()

    _query = query

    # -- writing ------------------------------------------------------------------------------

    def _count(self, table: str) -> int:
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def _apply(self, batch: Batch) -> tuple[int, int]:
        """Insert a batch's rows through the staging tables and note what they touched, in
        the open transaction; returns (events, failures) added."""
        conn = self._conn
        if batch.blob is not None:
            getattr(conn, "deserialize")(batch.blob, name=schema.STAGE)  # noqa: B009 - 3.11+
        else:
            fill_stage(conn, schema.STAGE, batch)
        conn.execute(_STAGED_RESPONSES)
        added_events = conn.execute(_STAGED_SHORT_EVENTS).rowcount
        added_events += conn.execute(_STAGED_EVENTS).rowcount
        added_failures = conn.execute(_STAGED_FAILURES).rowcount
        if not self._rebuild:
            self._touched.update(row[0] for row in conn.execute(_STAGED_TOUCHED))
            self._touched.discard("")
            self._sessions.update(row[0] for row in conn.execute(_STAGED_SESSIONS))
            if len(self._touched) > self._touched_limit:
                # Most of the store is touched: one pass over every event at the end costs at
                # most about twice what recomputing the touched ones would (their events are
                # at least half of all), without a lookup per touched response.
                self._rebuild = True
                self._touched, self._sessions = set(), set()
        return added_events, added_failures

    def _upkeep(self) -> None:
        """Recompute the aggregates of what this transaction touched (see :mod:`.schema`)."""
        if self._rebuild:
            schema.rebuild_aggregates(self._conn)
            return
        touched, sessions = self._touched, self._sessions
        self._touched, self._sessions = set(), set()
        # in key order, each id lands next to the previous one in the temporary tables
        self._conn.executemany("INSERT INTO temp._rid VALUES (?)", ((t,) for t in sorted(touched)))
        self._conn.executemany("INSERT INTO temp._sid VALUES (?)", ((s,) for s in sorted(sessions)))
        for statement in schema.UPKEEP:
            self._conn.execute(statement)

    def _ingest_parts(self, parts: Iterable[Part], name: str, strict: bool) -> _Ingested:
        """Insert the parts of one input in the open transaction, in order, then keep the
        aggregates. Under ``strict`` nothing more is inserted after a bad line (the caller
        rolls the transaction back), but every part is still read so every bad line is
        reported with its line number in the whole input."""
        self._touched, self._sessions = set(), set()
        before = self._count("responses")
        self._rebuild = False
        self._touched_limit = max(_FEW_TOUCHED, (before + self._count("pending")) // 2)
        done = _Ingested()
        base = 0
        for part in parts:
            done.errors.extend(LineError(name, base + n, f, m) for n, f, m in part.errors)
            base += part.raw_lines
            done.lines += part.lines
            if strict and done.errors:
                continue
            e, f = self._apply(part.batch)
            done.events += e
            done.failures += f
            done.rows += part.batch.rows
        if strict and done.errors:
            return done
        self._upkeep()
        done.responses = self._count("responses") - before
        return done

    def record_batch(self, records: Iterable[Mapping[str, Any]]) -> IngestReport:
        """Record many ingest-format records in one transaction: all or nothing.

        Raises :class:`RecordError` naming the record's index when any record is invalid.
        """
        rows: list[Row] = []
        for i, record in enumerate(records):
            try:
                rows.append(parse_record({k: v for k, v in record.items() if v is not None}))
            except RecordError as exc:
                raise RecordError(exc.field, f"record {i}: {exc.message}") from None
        parts = (Part(batch, 0, 0, []) for batch in batches(rows, _CHUNK))
        with self._write():
            done = self._ingest_parts(parts, "", strict=False)
        return IngestReport(0, len(rows), *done.added())

    def ingest_file(
        self, path: str | os.PathLike[str], *, strict: bool = False, workers: int | None = None
    ) -> IngestReport:
        """Ingest one JSONL file in one transaction.

        Bad lines are reported as ``file:line: field 'x': why`` and skipped; with ``strict``
        any bad line rejects the whole file and nothing from it is stored. A failure midway
        (disk full, interrupt) rolls the whole file back. Re-ingesting a file adds nothing.

        A big file (16 MiB or more) is parsed by ``workers`` processes (default: one per
        CPU, at most 4; 0 parses in this process) while this one inserts; the rows, the
        counts and the messages are the same either way.
        """
        name = os.fspath(path)
        try:
            handle = open(name, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise StoreError(f"cannot read {name}: {exc.strerror or exc}") from None

        class _Rejected(Exception):
            pass

        with handle:
            info = os.fstat(handle.fileno())
            # only a regular file can be cut into parts (not a pipe or a terminal)
            n = worker_count(info.st_size, workers) if stat.S_ISREG(info.st_mode) else 0
            if n:
                parts = parse_parallel(handle, name, n, strict=strict)
            else:
                parts = parse_here(handle, name, strict=strict, size=_CHUNK)
            try:
                with self._write():
                    done = self._ingest_parts(parts, name, strict)
                    if strict and done.errors:
                        raise _Rejected
            except _Rejected:
                errors = tuple(done.errors)
                return IngestReport(1, done.lines, errors=errors, rejected_files=(name,))
            finally:
                parts.close()
        return IngestReport(1, done.lines, *done.added(), tuple(done.errors))

    def ingest_files(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        strict: bool = False,
        workers: int | None = None,
    ) -> IngestReport:
        """Ingest several files, each in its own transaction (see :meth:`ingest_file`)."""
        report = IngestReport()
        for path in paths:
            report = report + self.ingest_file(path, strict=strict, workers=workers)
        return report

    # -- reading ------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Row counts per table."""
        return {t: self._count(t) for t in ("responses", "events", "failures")}

    def groups(self, by: str) -> list[str]:
        """The distinct values of a grouping dimension (``variant`` or ``model``)."""
        column = _metrics._dimension(by)
        rows = self._query(f"SELECT DISTINCT COALESCE({column}, ?) FROM responses", (NO_GROUP,))
        return sorted(str(r[0]) for r in rows)

    def metrics(
        self,
        *,
        window: float | None = 24 * 3600.0,
        until: float | None = None,
        by: str | None = None,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        completion_event: str = DEFAULT_COMPLETION_EVENT,
    ) -> dict[str, dict[str, MetricValue]]:
        """Every metric overall (key ``"all"``) and, with ``by`` (``variant``/``model``), per
        group (keys are the group values; ``"(none)"`` for responses without one)."""
        return _metrics.compute(
            self._conn,
            Window.of(window, until),
            by=by,
            max_delay_s=max_delay_s,
            completion_event=completion_event,
        )

    def metric(
        self,
        name: str,
        *,
        window: float | None = 24 * 3600.0,
        until: float | None = None,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
    ) -> MetricValue:
        """One overall metric by name (see :data:`METRICS`)."""
        check_metric(name)
        return self.metrics(window=window, until=until, max_delay_s=max_delay_s)["all"][name]

    def unattributed_events(self, window: Window) -> int:
        """Events in the window whose response_id names no stored response."""
        return _metrics.unattributed_events(self._conn, window)

    def dashboard(
        self,
        *,
        window: float | None = 24 * 3600.0,
        until: float | None = None,
        by: str | None = None,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        completion_event: str = DEFAULT_COMPLETION_EVENT,
    ) -> dict[str, Any]:
        """The familiar ``get_dashboard`` with counts and intervals, as plain builtins.

        Keys: ``window`` (since/until/seconds), ``max_delay_s``, ``responses_shown``,
        ``sessions``, ``unattributed_events``, each metric of :data:`METRICS` and
        ``time_to_task_completion`` as ``{rate, numerator, denominator, ci}`` (completion also
        has ``median_seconds``/``mean_seconds``); with ``by``, ``by_<by>``:
        ``{group: {metric: {...}}}``.
        """
        return _metrics.dashboard(
            self._conn,
            Window.of(window, until),
            by=by,
            max_delay_s=max_delay_s,
            completion_event=completion_event,
        )

    def user_counts(
        self,
        experiment: str,
        metrics: Sequence[str],
        *,
        window: float | None = None,
        until: float | None = None,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
    ) -> UserCounts:
        """Per variant of ``experiment``: users (the randomisation unit) and, per metric, the
        users with the metric's signal on at least one of their responses in the window (for
        ``session_continuation_rate``: a ``continue`` in one of their sessions).

        Responses without a user id are left out (they cannot be analysed per user), and so
        are users seen in more than one variant (a broken assignment); both are counted.
        """
        for name in metrics:
            check_metric(name)
            if name == "positive_rate":
                raise StoreError(
                    "positive_rate is conditional on leaving feedback and has no per-user "
                    "form; use thumbs_up_rate or thumbs_down_rate"
                )
        return _metrics.user_counts(
            self._conn, experiment, metrics, Window.of(window, until), max_delay_s=max_delay_s
        )
