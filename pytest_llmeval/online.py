"""The production event store and its implicit-signal metrics.

Production traffic is recorded in one SQLite file (default ``.llmeval/online.sqlite3``):

* **responses**: one row per response shown to a user (``response_id`` is the key). A response
  record *is* the "response shown" signal; the seed's separate ``response_shown`` event becomes a
  minimal response row that a later full record completes.
* **events**: what users did: ``copy``, ``continue``, ``rephrase_retry`` (with
  ``delay_seconds``), ``thumbs_up``, ``thumbs_down``, a session completion event
  (``task_complete`` by default) and any custom type.
* **failures**: production failures logged explicitly (:meth:`EventStore.log_production_failure`
  or ``{"type": "production_failure", ...}`` lines), the flywheel's third source besides
  thumbs-down and quick rephrase-retries.

Ingest format (JSONL, one object per line)::

    {"type": "response", "response_id": "r1", "session_id": "s1", "user_id": "u1",
     "variant": "control", "experiment": "exp-1", "question": "...", "response": "...",
     "model": "v1", "timestamp": "2025-01-01T12:00:00Z", "metadata": {}}
    {"type": "copy", "response_id": "r1", "session_id": "s1", "timestamp": 1735732800.5}
    {"type": "rephrase_retry", "response_id": "r1", "timestamp": 1735732812, "delay_seconds": 12}
    {"type": "production_failure", "question": "...", "response": "...", "reason": "wrong_fact",
     "source": "support_ticket", "timestamp": 1735732900}

A response record has ``question`` or ``messages`` (a conversation; its last user turn is the
question), not both. Timestamps are ISO 8601 strings (no offset means UTC) or epoch seconds. An
event needs ``response_id`` or, for session-level events, at least ``session_id``.

**Event identity** (what makes re-ingesting a file a no-op): all of an event's fields —
``(response_id, type, timestamp, session_id, delay_seconds, metadata, event_id)``, with
metadata in canonical JSON. The same line ingested twice is one event; two events equal in every
field are one event unless they carry different ``event_id`` values. Responses are identified by
``response_id``; a repeated response record only fills fields that were still empty (the shown
time is the earliest seen). Failures are identified by their content (or ``failure_id``).

**Metric definitions** over a window ``(until - window, until]`` of *response shown* time; an
event counts when it happened no later than ``until`` (so ``--until`` makes a readout
reproducible on historical logs):

=========================  ===========================================  ========================
metric                     numerator                                    denominator
=========================  ===========================================  ========================
copy_rate                  shown responses with >= 1 ``copy``           responses shown
rephrase_retry_rate        shown responses with a ``rephrase_retry``    responses shown
                           whose delay <= ``max_delay_s``
thumbs_up_rate             shown responses whose latest thumb is up     responses shown
thumbs_down_rate           shown responses whose latest thumb is down   responses shown
feedback_response_rate     shown responses with any thumb               responses shown
positive_rate              responses whose latest thumb is up           responses with a thumb
session_continuation_rate  sessions with >= 1 ``continue``              sessions with a response
                                                                        shown in the window
time_to_task_completion    sessions with a completion event (rate);     sessions with a response
                           median/mean seconds from the session's       shown in the window
                           first response to its first completion
=========================  ===========================================  ========================

Rules behind the table: an event counts only through a *shown* response (its ``response_id``)
or, when it has no ``response_id``, through the session it names; events whose response was
never shown count nowhere (the dashboard reports how many there were, ``unattributed_events``).
A session is every response sharing a ``session_id`` (responses without one count for the
response metrics only), including its responses shown before the window. A response with both
thumbs counts its *latest* one (a user changing their mind; at equal times thumbs-down wins). A
rephrase-retry without ``delay_seconds`` takes ``event time - response time``. A window with no
responses gives ``rate: None`` and ``ci: None`` — never 0 or the seed's 0.5. Intervals are 95%
Wilson score intervals (Wilson, *JASA* 22, 1927) from :func:`pytest_llmeval.stats.proportion_ci`.

Unlike the seed (``copies / responses_shown`` over raw event counts, which double-counts repeated
copies and can exceed 1), every rate here is a proportion of units, so its interval is valid.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

DEFAULT_DB_PATH = os.path.join(".llmeval", "online.sqlite3")
SCHEMA_VERSION = 1
DEFAULT_MAX_DELAY_S = 30.0
DEFAULT_COMPLETION_EVENT = "task_complete"

#: The dashboard's rate metrics (the seed's names) and whether higher is better.
METRICS: dict[str, bool] = {
    "copy_rate": True,
    "session_continuation_rate": True,
    "rephrase_retry_rate": False,
    "thumbs_up_rate": True,
    "thumbs_down_rate": False,
    "positive_rate": True,
    "feedback_response_rate": True,
}
RESPONSE_RECORD_TYPES = frozenset({"response", "response_shown"})
FAILURE_RECORD_TYPE = "production_failure"
GROUP_DIMENSIONS = ("variant", "model")
NO_GROUP = "(none)"
_MAX_TS = 1e15  # epoch seconds beyond this are garbage (year 31 million), as are inf and nan

# Events store absent optional fields as '' / -1 (rejected as real values) rather than NULL,
# because they are part of the primary key and NULLs are never equal in SQL.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    response_id TEXT PRIMARY KEY NOT NULL,
    session_id  TEXT,
    user_id     TEXT,
    variant     TEXT,
    experiment  TEXT,
    model       TEXT,
    question    TEXT,
    messages    TEXT,
    response    TEXT,
    ts          REAL NOT NULL,
    metadata    TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS responses_ts ON responses (ts, variant, model, session_id);
CREATE INDEX IF NOT EXISTS responses_session ON responses (session_id);
CREATE TABLE IF NOT EXISTS events (
    response_id TEXT NOT NULL,
    type        TEXT NOT NULL,
    ts          REAL NOT NULL,
    session_id  TEXT NOT NULL,
    delay_s     REAL NOT NULL,
    metadata    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (response_id, type, ts, session_id, delay_s, metadata, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_session_only ON events (session_id, type, ts)
    WHERE response_id = '';
CREATE TABLE IF NOT EXISTS failures (
    failure_id  TEXT PRIMARY KEY NOT NULL,
    response_id TEXT,
    session_id  TEXT,
    question    TEXT,
    messages    TEXT,
    response    TEXT,
    reason      TEXT NOT NULL,
    source      TEXT NOT NULL,
    ts          REAL NOT NULL,
    metadata    TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS failures_ts ON failures (ts);
"""


class StoreError(Exception):
    """The event store cannot do what was asked (missing file, newer schema, unknown variant,
    unknown metric...). The message is one line, fit for the command line."""


class RecordError(ValueError):
    """One ingest record is invalid. ``field`` names the offending field (or None)."""

    def __init__(self, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


# ---------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class LineError:
    """A bad line in an ingest file."""

    path: str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        what = f" field '{self.field}':" if self.field else ""
        return f"{self.path}:{self.line}:{what} {self.message}"


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did. ``*_added`` count rows actually added; ``duplicates`` counts valid
    records already stored (or repeated within the input), which were not added again."""

    files: int = 0
    lines: int = 0
    responses_added: int = 0
    events_added: int = 0
    failures_added: int = 0
    duplicates: int = 0
    errors: tuple[LineError, ...] = ()
    rejected_files: tuple[str, ...] = ()

    def __add__(self, other: IngestReport) -> IngestReport:
        return IngestReport(
            self.files + other.files,
            self.lines + other.lines,
            self.responses_added + other.responses_added,
            self.events_added + other.events_added,
            self.failures_added + other.failures_added,
            self.duplicates + other.duplicates,
            self.errors + other.errors,
            self.rejected_files + other.rejected_files,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "responses_added": self.responses_added,
            "events_added": self.events_added,
            "failures_added": self.failures_added,
            "duplicates": self.duplicates,
            "errors": [str(e) for e in self.errors],
            "rejected_files": list(self.rejected_files),
        }


@dataclass(frozen=True)
class MetricValue:
    """A proportion with its counts and 95% Wilson interval; ``rate`` and ``ci`` are None when
    the denominator is 0. ``extra`` holds metric-specific figures (completion times)."""

    name: str
    numerator: int
    denominator: int
    rate: float | None
    ci: tuple[float, float] | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, name: str, numerator: int, denominator: int, extra: Mapping[str, Any] | None = None
    ) -> MetricValue:
        if denominator <= 0:
            return cls(name, int(numerator), 0, None, None, dict(extra or {}))
        return cls(
            name,
            int(numerator),
            int(denominator),
            numerator / denominator,
            wilson_ci(int(numerator), int(denominator)),
            dict(extra or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rate": self.rate,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "ci": list(self.ci) if self.ci is not None else None,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Window:
    """Responses shown in ``(since, until]``; ``since`` None means from the beginning."""

    since: float | None
    until: float

    @classmethod
    def of(cls, window: float | None, until: float | None = None) -> Window:
        """``window`` seconds before ``until`` (default: now); None means all time."""
        end = time.time() if until is None else float(until)
        if window is not None and not window > 0:
            raise StoreError(f"the window must be a positive duration, got {window!r} seconds")
        return cls(None if window is None else end - window, end)

    def params(self) -> dict[str, float]:
        # -inf rather than NULL keeps every query a plain range comparison
        return {"since": -math.inf if self.since is None else self.since, "until": self.until}

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": None if self.since is None else iso(self.since),
            "until": iso(self.until),
            "seconds": None if self.since is None else self.until - self.since,
        }


def wilson_ci(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of ``k / n`` (:func:`pytest_llmeval.stats.proportion_ci`)."""
    from pytest_llmeval.stats import proportion_ci

    lo, hi = proportion_ci(k, n, method="wilson", level=0.95)
    return (float(lo), float(hi))


# ---------------------------------------------------------------------------------------------
# parsing records


def parse_timestamp(value: Any, field_name: str = "timestamp") -> float:
    """Epoch seconds from epoch seconds (a number or numeric string) or an ISO 8601 string
    (``Z`` or an offset; none means UTC)."""
    if value is None:
        raise RecordError(field_name, "is required")
    if isinstance(value, bool):
        raise RecordError(field_name, f"expected ISO 8601 or epoch seconds, got {value!r}")
    if isinstance(value, (int, float)):
        try:
            ts = float(value)
        except OverflowError:
            ts = math.inf
    elif isinstance(value, str):
        text = value.strip()
        try:
            ts = float(text)
        except ValueError:
            if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not know "Z"
                text = text[:-1] + "+00:00"
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                raise RecordError(
                    field_name, f"not an ISO 8601 timestamp or epoch seconds: {value!r}"
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            ts = parsed.timestamp()
    else:
        raise RecordError(field_name, f"expected ISO 8601 or epoch seconds, got {value!r}")
    if not -_MAX_TS < ts < _MAX_TS:
        raise RecordError(field_name, f"timestamp out of range: {value!r}")
    return ts


def iso(ts: float) -> str:
    """UTC ISO 8601 with a ``Z`` suffix (microseconds only when present)."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    text = dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def _opt_str(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise RecordError(name, f"expected a string, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise RecordError(name, "must not be empty")
    return text


def _req_str(obj: Mapping[str, Any], name: str) -> str:
    value = _opt_str(obj, name)
    if value is None:
        raise RecordError(name, "is required")
    return value


def _text(obj: Mapping[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        raise RecordError(name, f"expected a string, got {type(value).__name__}")
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: equal objects give equal text (part of event identity)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _metadata(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("metadata")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordError("metadata", f"expected an object, got {type(value).__name__}")
    return canonical_json(value) if value else None


def _messages(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(question, messages JSON). For a conversation the question is the last user turn."""
    question = obj.get("question")
    messages = obj.get("messages")
    if question is not None and messages is not None:
        raise RecordError("messages", "give 'question' or 'messages', not both")
    if messages is None:
        return _text(obj, "question"), None
    if not isinstance(messages, list) or not messages:
        raise RecordError("messages", "expected a non-empty list of {role, content}")
    last_user: str | None = None
    for i, msg in enumerate(messages):
        if (
            not isinstance(msg, dict)
            or not isinstance(msg.get("role"), str)
            or not isinstance(msg.get("content"), str)
        ):
            raise RecordError(f"messages[{i}]", "expected {role: str, content: str}")
        if msg["role"] == "user":
            last_user = msg["content"]
    if last_user is None:
        raise RecordError("messages", "has no user turn")
    return last_user, json.dumps(
        [{"role": m["role"], "content": m["content"]} for m in messages],
        ensure_ascii=False,
        separators=(",", ":"),
    )


# (response_id, session_id, user_id, variant, experiment, model, question, messages, response,
#  ts, metadata)
ResponseRow = tuple[
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    float,
    str | None,
]
# (response_id or '', type, ts, session_id or '', delay_s or -1, metadata or '', event_id or '')
EventRow = tuple[str, str, float, str, float, str, str]
# (failure_id, response_id, session_id, question, messages, response, reason, source, ts, meta)
FailureRow = tuple[
    str, str | None, str | None, str | None, str | None, str | None, str, str, float, str | None
]
Row = (
    tuple[Literal["response"], ResponseRow]
    | tuple[Literal["event"], EventRow]
    | tuple[Literal["failure"], FailureRow]
)


def parse_record(obj: Any) -> Row:
    """Validate one ingest record and turn it into a row for its table.

    Raises :class:`RecordError` naming the field. This runs once per line of a million-line
    ingest, so the common event shape takes a path of exact type checks.
    """
    if type(obj) is not dict:
        raise RecordError(None, f"expected a JSON object, got {type(obj).__name__}")
    get = obj.get
    type_ = get("type")
    if type(type_) is not str or not type_:
        raise RecordError("type", "is required (a non-empty string)")
    ts = get("timestamp")
    if type(ts) is not float or not -_MAX_TS < ts < _MAX_TS:
        ts = parse_timestamp(ts)
    if type_ in RESPONSE_RECORD_TYPES:
        return ("response", _response_row(obj, ts))
    if type_ == FAILURE_RECORD_TYPE:
        return ("failure", _failure_row(obj, ts))

    response_id = get("response_id")
    if type(response_id) is not str or not response_id:
        response_id = _opt_str(obj, "response_id")
    session_id = get("session_id")
    if session_id is not None and (type(session_id) is not str or not session_id):
        session_id = _opt_str(obj, "session_id")
    if response_id is None and session_id is None:
        raise RecordError("response_id", "an event needs 'response_id' or 'session_id'")
    delay = get("delay_seconds")
    if delay is None:
        delay = -1.0
    elif type(delay) is not float or not 0.0 <= delay < _MAX_TS:
        delay = _delay(delay)
    meta = get("metadata")
    if meta is not None:
        meta = _metadata(obj) or ""
    event_id = get("event_id")
    if event_id is not None:
        event_id = _opt_str(obj, "event_id")
    return (
        "event",
        (response_id or "", type_, ts, session_id or "", delay, meta or "", event_id or ""),
    )


def _delay(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RecordError("delay_seconds", f"expected a number >= 0, got {value!r}")
    try:
        delay = float(value)
    except OverflowError:
        delay = math.inf
    if not 0.0 <= delay < _MAX_TS:
        raise RecordError("delay_seconds", f"expected a finite number >= 0, got {value!r}")
    return delay


def _response_row(obj: Mapping[str, Any], ts: float) -> ResponseRow:
    question, messages = _messages(obj)
    return (
        _req_str(obj, "response_id"),
        _opt_str(obj, "session_id"),
        _opt_str(obj, "user_id"),
        _opt_str(obj, "variant"),
        _opt_str(obj, "experiment"),
        _opt_str(obj, "model"),
        question,
        messages,
        _text(obj, "response"),
        ts,
        _metadata(obj),
    )


def _failure_row(obj: Mapping[str, Any], ts: float) -> FailureRow:
    question, messages = _messages(obj)
    response_id = _opt_str(obj, "response_id")
    if question is None and response_id is None:
        raise RecordError("question", "a failure needs 'question' (or 'messages') or 'response_id'")
    reason = _req_str(obj, "reason")
    source = _opt_str(obj, "source") or "user_report"
    response = _text(obj, "response")
    session_id = _opt_str(obj, "session_id")
    meta = _metadata(obj)
    failure_id = (
        _opt_str(obj, "failure_id")
        or hashlib.sha256(
            canonical_json(
                [
                    response_id,
                    session_id,
                    question,
                    messages,
                    response,
                    reason,
                    source,
                    repr(ts),
                    meta,
                ]
            ).encode("utf-8")
        ).hexdigest()[:32]
    )
    return (
        failure_id,
        response_id,
        session_id,
        question,
        messages,
        response,
        reason,
        source,
        ts,
        meta,
    )


# ---------------------------------------------------------------------------------------------
# the store

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
_INSERT_EVENT = "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_FAILURE = "INSERT OR IGNORE INTO failures VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_CHUNK = 20_000
_JSON_WS = " \t\r\n"

# Per shown response: copied?, quick retry?, latest thumb-up/down times, first continue and
# completion times. Each is one seek into the events key (response_id, type, ts, ...).
_RESPONSE_FLAGS = """
    EXISTS (SELECT 1 FROM events e WHERE e.response_id = r.response_id
            AND e.type = 'copy' AND e.ts <= :until),
    EXISTS (SELECT 1 FROM events e WHERE e.response_id = r.response_id
            AND e.type = 'rephrase_retry' AND e.ts <= :until
            AND (CASE WHEN e.delay_s >= 0 THEN e.delay_s ELSE e.ts - r.ts END) <= :max_delay),
    (SELECT MAX(e.ts) FROM events e WHERE e.response_id = r.response_id
            AND e.type = 'thumbs_up' AND e.ts <= :until),
    (SELECT MAX(e.ts) FROM events e WHERE e.response_id = r.response_id
            AND e.type = 'thumbs_down' AND e.ts <= :until)
"""
_SESSION_FLAGS = """
    (SELECT MIN(e.ts) FROM events e WHERE e.response_id = r.response_id
            AND e.type = 'continue' AND e.ts <= :until),
    (SELECT MIN(e.ts) FROM events e WHERE e.response_id = r.response_id
            AND e.type = :completion AND e.ts <= :until)
"""


@dataclass
class _Session:
    start: float
    groups: set[str]
    continued: float | None = None
    completed: float | None = None

    def add(self, start: float, continued: float | None, completed: float | None) -> None:
        self.start = min(self.start, start)
        if continued is not None and (self.continued is None or continued < self.continued):
            self.continued = continued
        if completed is not None and (self.completed is None or completed < self.completed):
            self.completed = completed


@dataclass
class _Counts:
    shown: int = 0
    copied: int = 0
    retried: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    sessions: int = 0
    continued: int = 0
    durations: list[float] = field(default_factory=list)

    def add_session(self, s: _Session) -> None:
        self.sessions += 1
        if s.continued is not None:
            self.continued += 1
        if s.completed is not None:
            # clock skew between front-end and back-end can put completion first: clamp
            self.durations.append(max(0.0, s.completed - s.start))


def _latest_thumb(up: float | None, down: float | None) -> str | None:
    if down is not None and (up is None or down >= up):
        return "thumbs_down"
    return "thumbs_up" if up is not None else None


class EventStore:
    """Production responses and user events in SQLite, with metrics computed in SQL.

    Several processes may write at once: the database runs in WAL mode, every write is one
    ``BEGIN IMMEDIATE`` transaction (writers queue instead of failing on a lock upgrade) that
    waits up to ``timeout`` seconds for the lock. ``create=False`` refuses a missing file
    (readers should not create empty stores by mistake).

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
        # check_same_thread=False: ingest hands the connection to its insert thread (and
        # waits for it), never using it from two threads at once.
        self._conn = sqlite3.connect(
            str(self.path), timeout=timeout, isolation_level=None, check_same_thread=False
        )
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._init_schema(create)
            # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commit.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            # A big page cache keeps bulk inserts into the clustered event key from thrashing.
            self._conn.execute("PRAGMA cache_size = -131072")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"{self.path} is not a usable event store: {exc}") from None
        except StoreError:
            self._conn.close()
            raise

    def _init_schema(self, create: bool) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has event-store schema version {version}; this pytest-llmeval "
                f"knows {SCHEMA_VERSION} (upgrade pytest-llmeval)"
            )
        if version == SCHEMA_VERSION:
            return
        if not create:
            raise StoreError(f"{self.path} is not an event store (schema version {version})")
        self._conn.execute("PRAGMA journal_mode = WAL")
        with self._write():
            # Re-read inside the write lock: another process may have created it meanwhile.
            if self._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
                return
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- connection management ----------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _write(self) -> EventStore._Tx:
        return EventStore._Tx(self._conn)

    def query(self, sql: str, params: Mapping[str, Any] | Sequence[Any] = ()) -> list[Any]:
        """Run a read-only SQL statement on the store (for the flywheel, shadow and tests)."""
        return self._conn.execute(sql, params).fetchall()

    _query = query

    # -- writing ------------------------------------------------------------------------------

    def _count(self, table: str) -> int:
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    def _flush(
        self, responses: list[ResponseRow], events: list[EventRow], failures: list[FailureRow]
    ) -> tuple[int, int]:
        """Insert buffered rows in the open transaction; returns (events, failures) added."""
        conn = self._conn
        added_events = added_failures = 0
        if responses:
            conn.executemany(_UPSERT_RESPONSE, responses)
        if events:
            added_events = conn.executemany(_INSERT_EVENT, events).rowcount
        if failures:
            added_failures = conn.executemany(_INSERT_FAILURE, failures).rowcount
        return added_events, added_failures

    def _ingest_rows(
        self, rows: Iterable[Row], *, threaded: bool = False
    ) -> tuple[int, int, int, int]:
        """Insert rows in the open transaction: (responses, events, failures, duplicates).

        With ``threaded``, chunks are inserted by a helper thread while the caller's iterator
        parses the next chunk: SQLite releases the GIL while it inserts, so parsing and
        inserting overlap on two cores. The helper uses the connection alone until it is
        joined, and an error in it is raised here.
        """
        before = self._count("responses")
        added = [0, 0]
        buffers: tuple[list[ResponseRow], list[EventRow], list[FailureRow]] = ([], [], [])
        total = 0

        def insert(chunk: tuple[list[ResponseRow], list[EventRow], list[FailureRow]]) -> None:
            e, f = self._flush(*chunk)
            added[0] += e
            added[1] += f

        work: queue.Queue[Any] = queue.Queue(maxsize=2)
        failure: list[BaseException] = []

        def writer() -> None:
            while True:
                chunk = work.get()
                if chunk is None:
                    return
                if not failure:
                    try:
                        insert(chunk)
                    except BaseException as exc:  # re-raised in the caller's thread
                        failure.append(exc)

        thread = threading.Thread(target=writer, name="llmeval-ingest", daemon=True)
        if threaded:
            thread.start()

        def hand_over() -> None:
            nonlocal buffers
            if threaded:
                work.put(buffers)
                if failure:
                    raise failure[0]
            else:
                insert(buffers)
            buffers = ([], [], [])

        try:
            responses, events, failures = buffers
            for kind, row in rows:
                total += 1
                if kind == "event":
                    events.append(row)  # type: ignore[arg-type]
                    if len(events) >= _CHUNK:
                        hand_over()
                        responses, events, failures = buffers
                elif kind == "response":
                    responses.append(row)  # type: ignore[arg-type]
                else:
                    failures.append(row)  # type: ignore[arg-type]
            hand_over()
        finally:
            if threaded:
                work.put(None)
                thread.join()
        if failure:
            raise failure[0]
        n_responses = self._count("responses") - before
        n_events, n_failures = added
        return n_responses, n_events, n_failures, total - n_responses - n_events - n_failures

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
        with self._write():
            r, e, f, d = self._ingest_rows(rows)
        return IngestReport(0, len(rows), r, e, f, d)

    def record_response(
        self,
        response_id: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        variant: str | None = None,
        experiment: str | None = None,
        model: str | None = None,
        question: str | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        response: str | None = None,
        timestamp: float | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a response shown to a user (``timestamp`` defaults to now)."""
        self.record_batch(
            [
                {
                    "type": "response",
                    "response_id": response_id,
                    "session_id": session_id,
                    "user_id": user_id,
                    "variant": variant,
                    "experiment": experiment,
                    "model": model,
                    "question": question,
                    "messages": None if messages is None else [dict(m) for m in messages],
                    "response": response,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "metadata": None if metadata is None else dict(metadata),
                }
            ]
        )

    def record_event(
        self,
        type: str,
        response_id: str | None,
        *,
        session_id: str | None = None,
        timestamp: float | str | None = None,
        delay_seconds: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Record one event (``timestamp`` defaults to now); False when it was already stored."""
        report = self.record_batch(
            [
                {
                    "type": type,
                    "response_id": response_id,
                    "session_id": session_id,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "delay_seconds": delay_seconds,
                    "metadata": None if metadata is None else dict(metadata),
                    "event_id": event_id,
                }
            ]
        )
        return report.events_added == 1

    # The seed's conveniences, with its argument order (session first).

    def record_response_shown(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        """A response was shown (a minimal response row that a full record may complete)."""
        self.record_response(response_id, session_id=session_id, timestamp=timestamp)

    def record_copy(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("copy", response_id, session_id=session_id, timestamp=timestamp)

    def record_continuation(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("continue", response_id, session_id=session_id, timestamp=timestamp)

    def record_rephrase_retry(
        self,
        session_id: str,
        response_id: str,
        delay_seconds: float,
        *,
        timestamp: float | None = None,
    ) -> None:
        self.record_event(
            "rephrase_retry",
            response_id,
            session_id=session_id,
            timestamp=timestamp,
            delay_seconds=delay_seconds,
        )

    def record_thumbs_up(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("thumbs_up", response_id, session_id=session_id, timestamp=timestamp)

    def record_thumbs_down(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("thumbs_down", response_id, session_id=session_id, timestamp=timestamp)

    def log_production_failure(
        self,
        question: str | None,
        response: str | None,
        failure_reason: str,
        source: str = "user_report",
        *,
        response_id: str | None = None,
        session_id: str | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        timestamp: float | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Log a production failure for the flywheel (the seed's ``log_production_failure``).

        ``question`` may be None when ``response_id`` names a stored response: the flywheel
        then takes the question from it.
        """
        self.record_batch(
            [
                {
                    "type": FAILURE_RECORD_TYPE,
                    "question": question,
                    "messages": None if messages is None else [dict(m) for m in messages],
                    "response": response,
                    "reason": failure_reason,
                    "source": source,
                    "response_id": response_id,
                    "session_id": session_id,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "metadata": None if metadata is None else dict(metadata),
                }
            ]
        )

    def ingest_file(self, path: str | os.PathLike[str], *, strict: bool = False) -> IngestReport:
        """Ingest one JSONL file in one transaction.

        Bad lines are reported as ``file:line: field 'x': why`` and skipped; with ``strict``
        any bad line rejects the whole file and nothing from it is stored. A failure midway
        (disk full, interrupt) rolls the whole file back. Re-ingesting a file adds nothing.
        """
        name = os.fspath(path)
        errors: list[LineError] = []
        counter = [0]
        try:
            handle = open(name, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise StoreError(f"cannot read {name}: {exc.strerror or exc}") from None

        def rows() -> Iterable[Row]:
            decode = json.JSONDecoder().raw_decode
            for lineno, raw in enumerate(handle, start=1):
                try:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise RecordError(None, f"not UTF-8: {exc.reason}") from None
                    if text[:1] in _JSON_WS or text[-1:] in _JSON_WS or lineno == 1:
                        text = text.strip(_JSON_WS)
                        if lineno == 1:
                            text = text.lstrip("\ufeff")
                        if not text:
                            continue
                    counter[0] += 1
                    # raw_decode plus an end check is json.loads without its per-call overhead
                    try:
                        obj, end = decode(text)
                    except ValueError as exc:
                        raise RecordError(None, f"invalid JSON: {exc}") from None
                    if end != len(text):
                        raise RecordError(None, f"invalid JSON: extra data at column {end + 1}")
                    row = parse_record(obj)
                except RecordError as exc:
                    errors.append(LineError(name, lineno, exc.field, exc.message))
                    continue
                if not (strict and errors):
                    yield row

        class _Rejected(Exception):
            pass

        with handle:
            try:
                with self._write():
                    r, e, f, d = self._ingest_rows(rows(), threaded=True)
                    if strict and errors:
                        raise _Rejected
            except _Rejected:
                return IngestReport(1, counter[0], errors=tuple(errors), rejected_files=(name,))
        return IngestReport(1, counter[0], r, e, f, d, tuple(errors))

    def ingest_files(
        self, paths: Iterable[str | os.PathLike[str]], *, strict: bool = False
    ) -> IngestReport:
        """Ingest several files, each in its own transaction."""
        report = IngestReport()
        for path in paths:
            report = report + self.ingest_file(path, strict=strict)
        return report

    # -- reading ------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Row counts per table."""
        return {t: self._count(t) for t in ("responses", "events", "failures")}

    def groups(self, by: str) -> list[str]:
        """The distinct values of a grouping dimension (``variant`` or ``model``)."""
        column = _dimension(by)
        rows = self._query(f"SELECT DISTINCT COALESCE({column}, ?) FROM responses", (NO_GROUP,))
        return sorted(str(r[0]) for r in rows)

    def _scan(
        self,
        window: Window,
        *,
        by: str | None,
        max_delay_s: float,
        completion_event: str,
        experiment: str | None = None,
    ) -> tuple[list[tuple[Any, ...]], dict[str, _Session]]:
        """Per shown response in the window: (group, session, user, copied, retried, thumb),
        and every session touching the window with its start, continuation and completion."""
        group = f"COALESCE(r.{_dimension(by)}, :none)" if by else ":none"
        args: dict[str, Any] = {
            **window.params(),
            "max_delay": max_delay_s,
            "completion": completion_event,
            "none": NO_GROUP,
            "experiment": experiment,
        }
        only = "AND r.experiment = :experiment" if experiment is not None else ""
        user = "r.user_id" if experiment is not None else "NULL"
        sql = f"""
            SELECT {group}, r.session_id, {user}, r.ts, {_RESPONSE_FLAGS}, {_SESSION_FLAGS}
            FROM responses r WHERE r.ts > :since AND r.ts <= :until {only}
        """
        rows: list[tuple[Any, ...]] = []
        sessions: dict[str, _Session] = {}
        for grp, sid, uid, ts, copied, retried, up, down, cont, done in self._query(sql, args):
            rows.append((grp, sid, uid, copied, retried, _latest_thumb(up, down)))
            if sid is None:
                continue
            s = sessions.get(sid)
            if s is None:
                s = sessions[sid] = _Session(ts, {grp})
            else:
                s.groups.add(grp)
            s.add(ts, cont, done)
        if not sessions:
            return rows, sessions
        if window.since is not None:
            # Sessions that began before the window: their earlier responses still count.
            earlier = f"""
                SELECT r.session_id, r.ts, {_SESSION_FLAGS} FROM responses r
                WHERE r.ts <= :since AND r.session_id IN (
                    SELECT session_id FROM responses r
                    WHERE r.ts > :since AND r.ts <= :until AND r.session_id IS NOT NULL {only})
            """
            for sid, ts, cont, done in self._query(earlier, args):
                if sid in sessions:
                    sessions[sid].add(ts, cont, done)
        session_only = """
            SELECT session_id, type, MIN(ts) FROM events
            WHERE response_id = '' AND type IN ('continue', :completion) AND ts <= :until
            GROUP BY session_id, type
        """
        for sid, kind, ts in self._query(session_only, args):
            if sid in sessions:
                if kind == "continue":
                    sessions[sid].add(math.inf, ts, None)
                if kind == completion_event:
                    sessions[sid].add(math.inf, None, ts)
        return rows, sessions

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
        win = Window.of(window, until)
        rows, sessions = self._scan(
            win, by=by, max_delay_s=max_delay_s, completion_event=completion_event
        )
        overall = _Counts()
        grouped: dict[str, _Counts] = {}
        for grp, _sid, _uid, copied, retried, thumb in rows:
            for c in (overall, grouped.setdefault(grp, _Counts())) if by else (overall,):
                c.shown += 1
                c.copied += copied
                c.retried += retried
                c.thumbs_up += thumb == "thumbs_up"
                c.thumbs_down += thumb == "thumbs_down"
        for s in sessions.values():
            overall.add_session(s)
            if by:
                for grp in s.groups:
                    grouped.setdefault(grp, _Counts()).add_session(s)
        out = {"all": _metric_values(overall, completion_event)}
        for key in sorted(grouped):
            out[key] = _metric_values(grouped[key], completion_event)
        return out

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
        # Grouping first (in key order) turns a million lookups into one per response id.
        sql = """
            SELECT COALESCE(SUM(g.n), 0) FROM (
                SELECT e.response_id, COUNT(*) AS n FROM events e
                WHERE e.response_id != '' AND e.ts > :since AND e.ts <= :until
                GROUP BY e.response_id
            ) g WHERE NOT EXISTS (SELECT 1 FROM responses r WHERE r.response_id = g.response_id)
        """
        return int(self._query(sql, window.params())[0][0])

    def dashboard(
        self,
        *,
        window: float | None = 24 * 3600.0,
        until: float | None = None,
        by: str | None = None,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        completion_event: str = DEFAULT_COMPLETION_EVENT,
    ) -> dict[str, Any]:
        """The seed's ``get_dashboard`` with counts and intervals, as plain builtins.

        Keys: ``window`` (since/until/seconds), ``max_delay_s``, ``responses_shown``,
        ``sessions``, ``unattributed_events``, each metric of :data:`METRICS` and
        ``time_to_task_completion`` as ``{rate, numerator, denominator, ci}`` (completion also
        has ``median_seconds``/``mean_seconds``); with ``by``, ``by_<by>``:
        ``{group: {metric: {...}}}``.
        """
        win = Window.of(window, until)
        values = self.metrics(
            window=window,
            until=win.until,
            by=by,
            max_delay_s=max_delay_s,
            completion_event=completion_event,
        )
        overall = values.pop("all")
        out: dict[str, Any] = {
            "window": win.to_dict(),
            "max_delay_s": max_delay_s,
            "responses_shown": overall["copy_rate"].denominator,
            "sessions": overall["session_continuation_rate"].denominator,
            "unattributed_events": self.unattributed_events(win),
        }
        out.update({name: value.to_dict() for name, value in overall.items()})
        if by:
            out[f"by_{by}"] = {
                key: {name: value.to_dict() for name, value in group.items()}
                for key, group in values.items()
            }
        return out

    # -- experiment readouts ------------------------------------------------------------------

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
        win = Window.of(window, until)
        rows, sessions = self._scan(
            win,
            by="variant",
            max_delay_s=max_delay_s,
            completion_event=DEFAULT_COMPLETION_EVENT,
            experiment=experiment,
        )
        variants: dict[str, set[str]] = {}
        signals: dict[str, set[str]] = {}
        no_user = 0
        for grp, sid, uid, copied, retried, thumb in rows:
            if uid is None:
                no_user += 1
                continue
            variants.setdefault(uid, set()).add(grp)
            hit = signals.setdefault(uid, set())
            if copied:
                hit.add("copy_rate")
            if retried:
                hit.add("rephrase_retry_rate")
            if thumb is not None:
                hit.add(thumb + "_rate")
                hit.add("feedback_response_rate")
            if sid is not None and sessions[sid].continued is not None:
                hit.add("session_continuation_rate")
        users: dict[str, int] = {}
        hits: dict[str, dict[str, int]] = {}
        mixed = 0
        for uid, seen in variants.items():
            if len(seen) > 1:
                mixed += 1
                continue
            (variant,) = seen
            users[variant] = users.get(variant, 0) + 1
            per = hits.setdefault(variant, dict.fromkeys(metrics, 0))
            for name in metrics:
                per[name] += name in signals[uid]
        return UserCounts(experiment, tuple(metrics), users, hits, mixed, no_user, win)


@dataclass(frozen=True)
class UserCounts:
    """User-level counts of one experiment (see :meth:`EventStore.user_counts`)."""

    experiment: str
    metrics: tuple[str, ...]
    users: Mapping[str, int]
    hits: Mapping[str, Mapping[str, int]]
    users_in_several_variants: int
    responses_without_user: int
    window: Window


def _dimension(by: str | None) -> str:
    if by not in GROUP_DIMENSIONS:
        raise StoreError(f"cannot group by {by!r}; choose one of {', '.join(GROUP_DIMENSIONS)}")
    return by


def check_metric(name: str) -> None:
    """Raise :class:`StoreError` unless ``name`` is one of :data:`METRICS`."""
    if name not in METRICS:
        raise StoreError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


def _metric_values(c: _Counts, completion_event: str) -> dict[str, MetricValue]:
    feedback = c.thumbs_up + c.thumbs_down
    completion: dict[str, Any] = {
        "completion_event": completion_event,
        "median_seconds": statistics.median(c.durations) if c.durations else None,
        "mean_seconds": statistics.fmean(c.durations) if c.durations else None,
    }
    return {
        "copy_rate": MetricValue.of("copy_rate", c.copied, c.shown),
        "session_continuation_rate": MetricValue.of(
            "session_continuation_rate", c.continued, c.sessions
        ),
        "rephrase_retry_rate": MetricValue.of("rephrase_retry_rate", c.retried, c.shown),
        "thumbs_up_rate": MetricValue.of("thumbs_up_rate", c.thumbs_up, c.shown),
        "thumbs_down_rate": MetricValue.of("thumbs_down_rate", c.thumbs_down, c.shown),
        "positive_rate": MetricValue.of("positive_rate", c.thumbs_up, feedback),
        "feedback_response_rate": MetricValue.of("feedback_response_rate", feedback, c.shown),
        "time_to_task_completion": MetricValue.of(
            "time_to_task_completion", len(c.durations), c.sessions, completion
        ),
    }


# ---------------------------------------------------------------------------------------------
# A/B and canary readouts


def _direction_of(metric: str) -> Literal["higher", "lower"]:
    return "higher" if METRICS[metric] else "lower"


@dataclass(frozen=True)
class ABReadout:
    """An experiment read from stored events, per user (the randomisation unit).

    ``users``/``hits`` are per variant and per metric (primary first, then guardrails). When
    the sample-ratio check fails, ``valid`` is False and the recommendation is
    ``inconclusive``: a broken assignment makes every comparison untrustworthy.
    """

    experiment: str
    metric: str
    control: str
    treatment: str
    users: Mapping[str, int]
    hits: Mapping[str, Mapping[str, int]]
    users_in_several_variants: int
    responses_without_user: int
    window: Window
    srm: Any  # stats.SRMResult
    analysis: Any  # stats.ExperimentAnalysis
    valid: bool
    recommendation: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "metric": self.metric,
            "unit": "user",
            "control": self.control,
            "treatment": self.treatment,
            "window": self.window.to_dict(),
            "users": dict(self.users),
            "hits": {k: dict(v) for k, v in self.hits.items()},
            "users_in_several_variants": self.users_in_several_variants,
            "responses_without_user": self.responses_without_user,
            "srm": self.srm.to_dict(),
            "analysis": self.analysis.to_dict(),
            "valid": self.valid,
            "recommendation": self.recommendation,
            "reasons": list(self.reasons),
        }


def ab_readout(
    store: EventStore,
    experiment: str,
    metric: str,
    *,
    control: str = "control",
    treatment: str = "treatment",
    guardrails: Sequence[str] = (),
    expected_ratios: Sequence[float] = (1.0, 1.0),
    mde: float | None = None,
    alpha: float = 0.05,
    window: float | None = None,
    until: float | None = None,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
) -> ABReadout:
    """Read an A/B experiment from the store and run :func:`stats.analyze_experiment`.

    Units are users (responses grouped by ``user_id``); a user "converts" on a metric when at
    least one of their responses in the window has the metric's event (for
    ``session_continuation_rate``: a ``continue`` in one of their sessions). The sample-ratio
    check (:func:`stats.srm_check`, threshold 0.001) compares the user counts with
    ``expected_ratios`` (control, treatment). Guardrails use each metric's known direction.
    """
    from pytest_llmeval.stats import analyze_experiment, srm_check

    names = [metric, *dict.fromkeys(g for g in guardrails if g != metric)]
    counts = store.user_counts(
        experiment, names, window=window, until=until, max_delay_s=max_delay_s
    )
    if not counts.users:
        raise StoreError(f"no responses with a user id for experiment {experiment!r} in the window")
    for variant in (control, treatment):
        if variant not in counts.users:
            known = ", ".join(sorted(counts.users))
            raise StoreError(
                f"unknown variant {variant!r} in experiment {experiment!r} (variants: {known})"
            )
    srm = srm_check([counts.users[control], counts.users[treatment]], list(expected_ratios))

    def arm(variant: str) -> dict[str, int]:
        return {"n": counts.users[variant], **counts.hits[variant]}

    analysis = analyze_experiment(
        arm(control),
        arm(treatment),
        metric=metric,
        mde=mde,
        guardrails={g: _direction_of(g) for g in names[1:]},
        alpha=alpha,
        direction=_direction_of(metric),
    )
    reasons = list(analysis.reasons)
    recommendation = str(analysis.recommendation)
    if srm.mismatch:
        recommendation = "inconclusive"
        reasons.insert(
            0,
            f"sample-ratio mismatch: {counts.users[control]} vs {counts.users[treatment]} users "
            f"(chi-square p = {srm.p_value:.3g} < {srm.threshold}); the assignment is broken, "
            "fix it before reading the result",
        )
    return ABReadout(
        experiment=experiment,
        metric=metric,
        control=control,
        treatment=treatment,
        users={v: counts.users[v] for v in (control, treatment)},
        hits={v: dict(counts.hits[v]) for v in (control, treatment)},
        users_in_several_variants=counts.users_in_several_variants,
        responses_without_user=counts.responses_without_user,
        window=counts.window,
        srm=srm,
        analysis=analysis,
        valid=not srm.mismatch,
        recommendation=recommendation,
        reasons=tuple(reasons),
    )


@dataclass(frozen=True)
class GuardrailCheck:
    """One canary guardrail: one-sided test that the candidate is worse than the control."""

    metric: str
    direction: str
    control: MetricValue
    candidate: MetricValue
    p_value: float | None
    worse: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "better": self.direction,
            "control": self.control.to_dict(),
            "candidate": self.candidate.to_dict(),
            "p_value": self.p_value,
            "worse": self.worse,
            "note": self.note,
        }


@dataclass(frozen=True)
class CanaryReadout:
    """The canary verdict: ``passed`` is False when any guardrail is significantly worse."""

    control: str
    candidate: str
    by: str
    alpha: float
    window: Window
    checks: tuple[GuardrailCheck, ...]

    @property
    def passed(self) -> bool:
        return not any(c.worse for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "candidate": self.candidate,
            "by": self.by,
            "alpha": self.alpha,
            "window": self.window.to_dict(),
            "passed": self.passed,
            "guardrails": [c.to_dict() for c in self.checks],
        }


def canary_readout(
    store: EventStore,
    control: str,
    candidate: str,
    guardrails: Sequence[str],
    *,
    by: str = "variant",
    alpha: float = 0.05,
    window: float | None = 24 * 3600.0,
    until: float | None = None,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
) -> CanaryReadout:
    """Compare a canary (``candidate``) with the ``control`` on guardrail metrics.

    Groups are values of ``by`` (``variant`` or ``model``). Each guardrail is the metric as
    defined for the dashboard (unit: response, or session for ``session_continuation_rate``);
    the test is a one-sided pooled two-proportion z-test (:func:`stats.two_proportion_test`)
    of "candidate worse" at ``alpha``, without multiplicity correction (a deploy gate should
    rather stop once too often). A guardrail with no data in either group is reported, not
    failed. Responses of one user are not independent, so with heavy users these p-values are
    optimistic (the gate errs towards stopping); :func:`ab_readout` analyses per user.
    """
    from pytest_llmeval.stats import two_proportion_test

    if not guardrails:
        raise StoreError("give at least one guardrail metric")
    for name in guardrails:
        check_metric(name)
    grouped = store.metrics(window=window, until=until, by=by, max_delay_s=max_delay_s)
    for group in (control, candidate):
        if group not in grouped or grouped[group]["copy_rate"].denominator == 0:
            known = ", ".join(k for k in grouped if grouped[k]["copy_rate"].denominator) or "none"
            raise StoreError(f"no responses for {by} {group!r} in the window ({by}s: {known})")
    checks: list[GuardrailCheck] = []
    for name in guardrails:
        c, t = grouped[control][name], grouped[candidate][name]
        direction = _direction_of(name)
        if c.denominator == 0 or t.denominator == 0:
            checks.append(GuardrailCheck(name, direction, c, t, None, False, "no data"))
            continue
        test = two_proportion_test(
            c.denominator,
            c.numerator,
            t.denominator,
            t.numerator,
            alternative="greater" if direction == "lower" else "less",
        )
        checks.append(GuardrailCheck(name, direction, c, t, test.p_value, test.p_value <= alpha))
    return CanaryReadout(control, candidate, by, alpha, Window.of(window, until), tuple(checks))


# ---------------------------------------------------------------------------------------------
# team-draft interleaving


def interleave(
    ranking_a: Sequence[Any],
    ranking_b: Sequence[Any],
    seed: int | str,
    *,
    length: int | None = None,
) -> tuple[list[Any], list[str]]:
    """Team-draft interleaving (Radlinski, Kurup & Joachims, CIKM 2008, Algorithm 2).

    The team with fewer picks (a coin toss when equal) adds its highest-ranked item not yet in
    the list; an item both rankings share belongs to whichever team picked it. Stops when
    either ranking has no unused item left (or at ``length``). Returns the interleaved list and
    the team (``"a"``/``"b"``) of each position. Deterministic for a given ``seed``.
    """
    import random

    rng = random.Random(seed)
    out: list[Any] = []
    teams: list[str] = []
    used: set[Any] = set()
    picks = {"a": 0, "b": 0}
    pos = {"a": 0, "b": 0}
    source = {"a": ranking_a, "b": ranking_b}

    def next_unused(team: str) -> bool:
        while pos[team] < len(source[team]) and source[team][pos[team]] in used:
            pos[team] += 1
        return pos[team] < len(source[team])

    limit = len(set(ranking_a) | set(ranking_b)) if length is None else length
    while len(out) < limit and next_unused("a") and next_unused("b"):
        if picks["a"] < picks["b"] or (picks["a"] == picks["b"] and rng.random() < 0.5):
            team = "a"
        else:
            team = "b"
        item = source[team][pos[team]]
        out.append(item)
        teams.append(team)
        used.add(item)
        picks[team] += 1
    return out, teams


def interleaving_credit(teams: Sequence[str], clicked_positions: Iterable[int]) -> str:
    """Which ranking won one impression: ``"a"``, ``"b"`` or ``"tie"`` (equal clicks or none).

    Each click credits the team that contributed the clicked position (Radlinski et al. 2008).
    """
    counts = {"a": 0, "b": 0}
    for position in set(clicked_positions):
        if not 0 <= position < len(teams):
            raise ValueError(
                f"clicked position {position} is outside the list (0..{len(teams) - 1})"
            )
        counts[teams[position]] += 1
    if counts["a"] == counts["b"]:
        return "tie"
    return "a" if counts["a"] > counts["b"] else "b"


@dataclass(frozen=True)
class InterleavingResult:
    """Preference over many impressions: ties are excluded from the sign test."""

    wins_a: int
    wins_b: int
    ties: int
    p_value: float
    preference_b: float | None
    ci: tuple[float, float] | None
    preferred: str
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
            "p_value": self.p_value,
            "preference_b": self.preference_b,
            "ci": None if self.ci is None else list(self.ci),
            "preferred": self.preferred,
            "alpha": self.alpha,
        }


def interleaving_test(outcomes: Iterable[str], *, alpha: float = 0.05) -> InterleavingResult:
    """Sign test over impression outcomes (``"a"``/``"b"``/``"tie"``).

    ``preference_b = wins_b / (wins_a + wins_b)`` with a Wilson interval; ``preferred`` is the
    winning ranking only when the two-sided exact sign test (:func:`stats.sign_test`) gives
    ``p <= alpha``, otherwise ``"none"``.
    """
    from pytest_llmeval.stats import sign_test

    counts = {"a": 0, "b": 0, "tie": 0}
    for outcome in outcomes:
        if outcome not in counts:
            raise ValueError(f"outcome must be 'a', 'b' or 'tie', got {outcome!r}")
        counts[outcome] += 1
    a, b = counts["a"], counts["b"]
    p = float(sign_test(b, a))
    decisive = a + b
    preferred = "none"
    if decisive and p <= alpha:
        preferred = "b" if b > a else "a"
    return InterleavingResult(
        a,
        b,
        counts["tie"],
        p,
        b / decisive if decisive else None,
        wilson_ci(b, decisive) if decisive else None,
        preferred,
        alpha,
    )
