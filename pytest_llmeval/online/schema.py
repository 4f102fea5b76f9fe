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

Each write recomputes the aggregates of the responses and sessions it touched from their
events, at the end of its transaction (a write touching most of the store rebuilds them all in
one pass over the events: :data:`REBUILD`), so they always equal what the events table says
whatever the order in which lines arrive (events before their response, a file twice).
Version 3 adds ``sessions``: one row per session (its first and last shown response, first
continuation and completion, lowest and highest variant and model), kept with ``facts`` at the
end of each write, so the dashboard reads a session that lies wholly in its window as one row
(see :mod:`.metrics`). Opening a version-1 or version-2 store migrates it in one transaction
(the events are kept; the aggregates are computed from them).
"""

from __future__ import annotations

import sqlite3

from pytest_llmeval.online.values import NO_GROUP

SCHEMA_VERSION = 3

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

# Version 3: one row per session with a facts row, so the dashboard's session metrics read one
# row per session instead of every response: the first and last shown time of its responses,
# its first continuation and completion (through its responses or its own events) and the
# lowest and highest variant and model of its responses (NULL group as ``'(none)'``).
_V3_TABLES = """
CREATE TABLE IF NOT EXISTS sessions (
    skey           TEXT PRIMARY KEY NOT NULL,
    ts_min         REAL,
    ts_max         REAL,
    continue_first REAL,
    complete_first REAL,
    variant_lo     TEXT,
    variant_hi     TEXT,
    model_lo       TEXT,
    model_hi       TEXT
) WITHOUT ROWID;
"""
_SESSION_ROWS = f"""
INSERT OR REPLACE INTO sessions
SELECT skey, MIN(ts), MAX(ts), MIN(continue_first), MIN(complete_first),
    MIN(CASE WHEN response_id != '' THEN COALESCE(variant, '{NO_GROUP}') END),
    MAX(CASE WHEN response_id != '' THEN COALESCE(variant, '{NO_GROUP}') END),
    MIN(CASE WHEN response_id != '' THEN COALESCE(model, '{NO_GROUP}') END),
    MAX(CASE WHEN response_id != '' THEN COALESCE(model, '{NO_GROUP}') END)
FROM facts WHERE skey > '' {{where}} GROUP BY skey
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

# -- upkeep at the end of a transaction: the touched response ids are in temp._rid, the touched
# sessions (events without a response id) in temp._sid. Every join starts from them (CROSS JOIN
# keeps that order: without statistics the planner would scan every response instead, 0.4 s a
# one-event write into a 10M-event store). Each touched response's aggregates are
# recomputed from its events (one range of the events key) rather than merged chunk by chunk,
# so a response written to by many chunks is rewritten once.
_MOVED = (
    "SELECT r.response_id FROM temp._rid t CROSS JOIN responses r ON r.response_id = t.response_id"
    " WHERE r.session_id IS NOT NULL"
)
UPKEEP = (
    "DELETE FROM temp._agg",
    "INSERT INTO temp._agg "
    + AGGREGATE.format(src="events").replace(
        "WHERE response_id != ''",
        "WHERE response_id IN (SELECT response_id FROM temp._rid) AND response_id != ''",
    ),
    # A response that gained a session was filed under '' until now.
    f"DELETE FROM facts WHERE skey = '' AND response_id IN ({_MOVED})",
    f"INSERT OR REPLACE INTO facts (skey, response_id, ts, variant, model, {_SIG})"
    f" SELECT COALESCE(r.session_id, ''), r.response_id, r.ts, r.variant, r.model, {_A_SIG}"
    " FROM temp._rid t CROSS JOIN responses r ON r.response_id = t.response_id"
    " LEFT JOIN temp._agg a ON a.response_id = t.response_id",
    "DELETE FROM pending WHERE response_id IN (SELECT response_id FROM temp._rid)",
    f"INSERT INTO pending (response_id, {_SIG}) SELECT a.response_id, {_A_SIG} FROM temp._agg a"
    " WHERE NOT EXISTS (SELECT 1 FROM responses r WHERE r.response_id = a.response_id)",
    "DELETE FROM facts WHERE response_id = '' AND skey IN (SELECT session_id FROM temp._sid)",
    f"INSERT INTO facts (skey, response_id, ts, variant, model, {_SIG})"
    + _SESSION_AGGREGATE.format(src="events").replace(
        "WHERE response_id = ''",
        "WHERE response_id = '' AND session_id IN (SELECT session_id FROM temp._sid)",
    ),
    # the touched sessions' rows, from their facts (a session's rows only ever grow)
    _SESSION_ROWS.format(
        where="AND skey IN (SELECT r.session_id FROM temp._rid t CROSS JOIN responses r"
        " ON r.response_id = t.response_id WHERE r.session_id IS NOT NULL"
        " UNION SELECT session_id FROM temp._sid)"
    ),
    "DELETE FROM temp._rid",
    "DELETE FROM temp._sid",
)

TEMP_TABLES = (
    "CREATE TEMP TABLE IF NOT EXISTS _sid (session_id TEXT PRIMARY KEY)",
    f"CREATE TEMP TABLE IF NOT EXISTS _agg (response_id TEXT PRIMARY KEY, {_SIG})",
    "CREATE TEMP TABLE IF NOT EXISTS _rid (response_id TEXT PRIMARY KEY)",
)


#: Ingest's staging tables, in an attached in-memory database that is never part of the store: a
#: part of a file parsed in a worker process arrives as one serialized database of these tables
#: and goes into the store by SQL (no per-row Python in the writer). Untyped columns keep every
#: value exactly as parsed; the store's columns apply their own affinity on the way in.
STAGE = "_llmeval_stage"
STAGE_TABLES = {
    "resp": "response_id, session_id, user_id, variant, experiment, model, question, messages,"
    " response, ts, metadata",
    "ev": "response_id, type, ts, session_id, delay_s, metadata, event_id",
    "evs": "response_id, type, ts, session_id, delay_s",  # no metadata, no event id
    "fail": "failure_id, response_id, session_id, question, messages, response, reason, source,"
    " ts, metadata",
}


def stage_tables(database: str) -> list[str]:
    """The statements creating the staging tables in ``database`` (a schema name)."""
    return [f"CREATE TABLE IF NOT EXISTS {database}.{t} ({c})" for t, c in STAGE_TABLES.items()]


def _script(conn: sqlite3.Connection, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def create(conn: sqlite3.Connection) -> None:
    """Create every table of the current version (inside the caller's transaction)."""
    _script(conn, _V1_TABLES)
    _script(conn, _V2_TABLES)
    _script(conn, _V3_TABLES)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# -- every aggregate from every event: one pass over the events key into temp._agg, then
# ``facts`` and ``pending`` from it, each in key order (into empty tables). The migration from
# version 1 runs it as is; a write that touched most of the store first empties the tables.
_FILL = (
    TEMP_TABLES[1],  # temp._agg (a migration runs before the store creates its temp tables)
    "DELETE FROM temp._agg",
    "INSERT INTO temp._agg " + AGGREGATE.format(src="events"),
    f"INSERT INTO facts (skey, response_id, ts, variant, model, {_SIG})"
    f" SELECT COALESCE(r.session_id, ''), r.response_id, r.ts, r.variant, r.model, {_A_SIG}"
    " FROM responses r LEFT JOIN temp._agg a ON a.response_id = r.response_id ORDER BY 1, 2",
    f"INSERT INTO pending (response_id, {_SIG}) SELECT a.response_id, {_A_SIG} FROM temp._agg a"
    " WHERE NOT EXISTS (SELECT 1 FROM responses r WHERE r.response_id = a.response_id)",
    f"INSERT INTO facts (skey, response_id, ts, variant, model, {_SIG})"
    + _SESSION_AGGREGATE.format(src="events"),
    "DELETE FROM temp._agg",
)
REBUILD = (
    "DELETE FROM facts",
    "DELETE FROM pending",
    "DELETE FROM sessions",
    *_FILL,
    _SESSION_ROWS.format(where=""),
)


def rebuild_aggregates(conn: sqlite3.Connection) -> None:
    """Recompute ``facts``, ``pending`` and ``sessions`` from every event (inside the caller's
    transaction): what :data:`UPKEEP` gives for every response and session at once, in one
    pass over the events key instead of one lookup per touched response."""
    for statement in REBUILD:
        conn.execute(statement)


def migrate_1_to_2(conn: sqlite3.Connection) -> None:
    """Add the aggregate tables to a version-1 store and fill them from its events (inside the
    caller's transaction; nothing of version 1 is changed)."""
    _script(conn, _V2_TABLES)
    for statement in _FILL:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")


def migrate_2_to_3(conn: sqlite3.Connection) -> None:
    """Add the per-session table to a version-2 store and fill it from its facts (inside the
    caller's transaction; nothing of version 2 is changed)."""
    _script(conn, _V3_TABLES)
    conn.execute(_SESSION_ROWS.format(where=""))
    conn.execute("PRAGMA user_version = 3")


MIGRATIONS = {1: migrate_1_to_2, 2: migrate_2_to_3}
