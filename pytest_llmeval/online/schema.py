"""The event store's SQLite schema, its migrations and the aggregates kept at ingest.

Version 1 held ``responses``, ``events`` and ``failures``. Version 2 adds two tables that
ingest maintains so the dashboard never reads the events themselves:

* ``facts``: one row per shown response, clustered by session (``skey`` is the session id,
  ``''`` without one) with its group columns and its signals: the first ``copy``, the last
  ``rephrase_retry`` (with the smallest given delay and the first retry without one), the last
  thumbs-up and thumbs-down, the first ``continue`` and ``task_complete``. A session's own
  events (no ``response_id``) sit in a row with ``response_id = ''`` and no ``ts``.
* ``pending``: the same signals for response ids that have events but no stored response yet
  (the dashboard's ``unattributed_events``); they move into ``facts`` when the response comes.

Every signal is a MIN or a MAX over events, so each write folds its events into the old
aggregates (a repeated event changes nothing) at the end of its transaction, without reading
the events table back: they always equal what the events table says whatever the order in
which lines arrive (events before their response, a file twice, two writers at once).
Opening a version-1 store migrates it in one
transaction (the events are kept; the aggregates are computed from them).
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

# Events store absent optional fields as '' / -1 (rejected as real values) rather than NULL,
# because they are part of the primary key and NULLs are never equal in SQL.
_V1_TABLES = """
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

SIGNALS = (
    "copy_first",
    "retry_last",
    "retry_delay_min",
    "retry_nodelay_first",
    "up_last",
    "down_last",
    "continue_first",
    "complete_first",
)
_MERGE = {name: "MIN" if name.endswith(("_first", "_min")) else "MAX" for name in SIGNALS}
_SIGNAL_COLUMNS = ",\n    ".join(f"{name} REAL" for name in SIGNALS)

_V2_TABLES = f"""
CREATE TABLE IF NOT EXISTS facts (
    skey        TEXT NOT NULL,
    response_id TEXT NOT NULL,
    ts          REAL,
    variant     TEXT,
    model       TEXT,
    {_SIGNAL_COLUMNS},
    PRIMARY KEY (skey, response_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS pending (
    response_id TEXT PRIMARY KEY NOT NULL,
    {_SIGNAL_COLUMNS}
) WITHOUT ROWID;
"""

#: Per response id, the signals of a set of event rows (``{src}``: a table of event columns).
AGGREGATE = """
SELECT response_id,
    MIN(CASE WHEN type = 'copy' THEN ts END) AS copy_first,
    MAX(CASE WHEN type = 'rephrase_retry' THEN ts END) AS retry_last,
    MIN(CASE WHEN type = 'rephrase_retry' AND delay_s >= 0 THEN delay_s END) AS retry_delay_min,
    MIN(CASE WHEN type = 'rephrase_retry' AND delay_s < 0 THEN ts END) AS retry_nodelay_first,
    MAX(CASE WHEN type = 'thumbs_up' THEN ts END) AS up_last,
    MAX(CASE WHEN type = 'thumbs_down' THEN ts END) AS down_last,
    MIN(CASE WHEN type = 'continue' THEN ts END) AS continue_first,
    MIN(CASE WHEN type = 'task_complete' THEN ts END) AS complete_first
FROM {src} WHERE response_id != '' GROUP BY response_id
"""
_SESSION_AGGREGATE = """
SELECT session_id, '', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
    MIN(CASE WHEN type = 'continue' THEN ts END),
    MIN(CASE WHEN type = 'task_complete' THEN ts END)
FROM {src} WHERE response_id = '' AND type IN ('continue', 'task_complete')
GROUP BY session_id
"""


_SIG = ", ".join(SIGNALS)
_A_SIG = ", ".join(f"a.{n}" for n in SIGNALS)

# -- upkeep. Every signal is a MIN or a MAX over events, so the aggregate of old and new events
# is the MIN/MAX of the old aggregate (a facts or pending row) and the new events' aggregate:
# ingest folds each chunk's events into ``temp._agg`` (per response id) and ``temp._sagg``
# (per session, events without a response id) and never reads the events table back. A
# repeated event changes no MIN or MAX, so duplicates need no special case. At the end of the
# transaction the touched response ids are in ``temp._rid`` (stored responses and event ids).


def _least(fn: str, *values: str) -> str:
    """``fn`` (MIN or MAX) of the values that are not NULL; NULL when all are."""
    rotations = [", ".join(values[i:] + values[:i]) for i in range(len(values))]
    return f"{fn.lower()}(" + ", ".join(f"COALESCE({r})" for r in rotations) + ")"


def _merged(*aliases: str) -> str:
    return ", ".join(
        _least(_MERGE[name], *(f"{a}.{name}" for a in aliases)) + f" AS {name}" for name in SIGNALS
    )


#: Fold one row of new signals into ``temp._agg`` (parameters: response_id, then SIGNALS).
AGG_UPSERT = (
    f"INSERT INTO temp._agg (response_id, {_SIG}) VALUES (?{', ?' * len(SIGNALS)})"
    " ON CONFLICT (response_id) DO UPDATE SET "
    + ", ".join(f"{n} = {_least(_MERGE[n], n, f'excluded.{n}')}" for n in SIGNALS)
)
#: The same for a session's own events (parameters: session_id, continue_first, complete_first).
SAGG_UPSERT = (
    "INSERT INTO temp._sagg (session_id, continue_first, complete_first) VALUES (?, ?, ?)"
    " ON CONFLICT (session_id) DO UPDATE SET "
    + ", ".join(
        f"{n} = {_least('MIN', n, f'excluded.{n}')}" for n in ("continue_first", "complete_first")
    )
)

UPKEEP = (
    "INSERT OR IGNORE INTO temp._rid SELECT response_id FROM temp._agg",
    "DELETE FROM temp._m",
    # Per touched id: its response (if stored) and the old aggregate (in pending, in facts under
    # its session, or under '' while it had none) merged with the new events'.
    f"INSERT INTO temp._m (response_id, stored, skey, ts, variant, model, {_SIG})"
    " SELECT t.response_id, r.response_id IS NOT NULL, COALESCE(r.session_id, ''), r.ts,"
    f" r.variant, r.model, {_merged('a', 'p', 'f1', 'f0')}"
    " FROM temp._rid t"
    " LEFT JOIN temp._agg a ON a.response_id = t.response_id"
    " LEFT JOIN pending p ON p.response_id = t.response_id"
    " LEFT JOIN responses r ON r.response_id = t.response_id"
    " LEFT JOIN facts f1 ON f1.skey = r.session_id AND f1.response_id = t.response_id"
    " LEFT JOIN facts f0 ON f0.skey = '' AND f0.response_id = t.response_id",
    # A response that gained a session was filed under '' until now.
    "DELETE FROM facts WHERE skey = '' AND response_id IN"
    " (SELECT response_id FROM temp._m WHERE stored AND skey != '')",
    f"INSERT OR REPLACE INTO facts (skey, response_id, ts, variant, model, {_SIG})"
    f" SELECT skey, response_id, ts, variant, model, {_SIG} FROM temp._m WHERE stored",
    "DELETE FROM pending WHERE response_id IN (SELECT response_id FROM temp._m)",
    f"INSERT INTO pending (response_id, {_SIG})"
    f" SELECT response_id, {_SIG} FROM temp._m WHERE NOT stored",
    "DELETE FROM temp._m",
    f"INSERT INTO temp._m (response_id, stored, skey, {_SIG})"
    f" SELECT '', 1, s.session_id, {_merged('s', 'f')} FROM temp._sagg s"
    " LEFT JOIN facts f ON f.skey = s.session_id AND f.response_id = ''",
    f"INSERT OR REPLACE INTO facts (skey, response_id, ts, variant, model, {_SIG})"
    f" SELECT skey, '', NULL, NULL, NULL, {_SIG} FROM temp._m",
    *(f"DELETE FROM temp.{t}" for t in ("_m", "_rid", "_agg", "_sagg")),
)

TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS _rid (response_id TEXT PRIMARY KEY)",
    f"CREATE TEMP TABLE IF NOT EXISTS _agg (response_id TEXT PRIMARY KEY, {_SIG})",
    f"CREATE TEMP TABLE IF NOT EXISTS _sagg (session_id TEXT PRIMARY KEY, {', '.join(SIGNALS)})",
    "CREATE TEMP TABLE IF NOT EXISTS _m (response_id TEXT, stored INTEGER, skey TEXT,"
    f" ts REAL, variant TEXT, model TEXT, {_SIG})",
)
#: Emptied when a transaction starts (a rolled-back one may have left rows).
TEMP_CLEAR = tuple(f"DELETE FROM temp.{t}" for t in ("_m", "_rid", "_agg", "_sagg"))


def _script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def create(conn: sqlite3.Connection) -> None:
    """Create every table of the current version (inside the caller's transaction)."""
    _script(conn, _V1_TABLES)
    _script(conn, _V2_TABLES)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Add the aggregate tables to a version-1 store and fill them from its events (inside the
    caller's transaction; nothing of version 1 is changed)."""
    _script(conn, _V2_TABLES)
    agg = AGGREGATE.format(src="events")
    conn.execute(
        f"INSERT INTO facts (skey, response_id, ts, variant, model, {_SIG})"
        f" SELECT COALESCE(r.session_id, ''), r.response_id, r.ts, r.variant, r.model, {_A_SIG}"
        f" FROM responses r LEFT JOIN ({agg}) a ON a.response_id = r.response_id"
    )
    conn.execute(
        f"INSERT INTO facts (skey, response_id, ts, variant, model, {_SIG})"
        f" {_SESSION_AGGREGATE.format(src='events')}"
    )
    conn.execute(
        f"INSERT INTO pending (response_id, {_SIG}) SELECT * FROM ({agg}) a"
        " WHERE NOT EXISTS (SELECT 1 FROM responses r WHERE r.response_id = a.response_id)"
    )
    conn.execute("PRAGMA user_version = 2")


MIGRATIONS = {1: migrate_1_to_2}
