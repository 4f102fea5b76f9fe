"""The dashboard's metrics, read from the aggregates ingest keeps (see :mod:`.schema`).

Definitions are in the package docstring (:mod:`pytest_llmeval.online`). The response metrics
are one pass of SQLite over the ``facts`` rows of the window (one row per shown response, in
session order); the session metrics read one ``sessions`` row per session that lies wholly in
the window and the ``facts`` rows of only the sessions that straddle one of its edges. No
event is read for an ordinary readout. An event time later than ``until`` cannot
be answered from a MIN/MAX aggregate of every event, so exactly those responses take a seek
into the events (``CASE`` below); a custom completion event does the same.
"""

from __future__ import annotations

import sqlite3
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.online.values import (
    DEFAULT_COMPLETION_EVENT,
    GROUP_DIMENSIONS,
    METRICS,
    NO_GROUP,
    MetricValue,
    StoreError,
    Window,
)

_EVENT = "SELECT {agg}(e.ts) FROM events e WHERE e.response_id = f.response_id AND e.type = '{t}'"
_UNTIL = " AND e.ts <= :until"


def _latest(column: str, event_type: str) -> str:
    """The latest ``event_type`` time <= until (MAX of all unless a later one exists)."""
    exact = "(" + _EVENT.format(agg="MAX", t=event_type) + _UNTIL + ")"
    return (
        f"(CASE WHEN f.{column} <= :until THEN f.{column}"
        f" WHEN f.{column} IS NULL THEN NULL ELSE {exact} END)"
    )


_RETRIED_EXACT = (
    "EXISTS (SELECT 1 FROM events e WHERE e.response_id = f.response_id"
    " AND e.type = 'rephrase_retry' AND e.ts <= :until"
    " AND (CASE WHEN e.delay_s >= 0 THEN e.delay_s ELSE e.ts - f.ts END) <= :max_delay)"
)
_RETRIED = (
    "(CASE WHEN f.retry_last IS NULL THEN 0 WHEN f.retry_last <= :until THEN"
    " (COALESCE(f.retry_delay_min <= :max_delay, 0)"
    " OR COALESCE(f.retry_nodelay_first - f.ts <= :max_delay, 0))"
    f" ELSE {_RETRIED_EXACT} END)"
)
_UP = _latest("up_last", "thumbs_up")
_DOWN = _latest("down_last", "thumbs_down")

# The latest thumb is up / down. When both latest thumbs are no later than ``until`` (every
# readout up to now), the aggregates answer directly and no seek is made; one flat
# aggregate (no subquery) lets SQLite evaluate each expression once per row.
_THUMB_UP = (
    "(CASE WHEN f.up_last IS NULL THEN 0"
    " WHEN f.up_last <= :until AND (f.down_last IS NULL OR f.down_last <= :until)"
    " THEN f.down_last IS NULL OR f.down_last < f.up_last"
    f" ELSE {_UP} IS NOT NULL AND ({_DOWN} IS NULL OR {_DOWN} < {_UP}) END)"
)
_THUMB_DOWN = (
    "(CASE WHEN f.down_last IS NULL THEN 0"
    " WHEN f.down_last <= :until AND (f.up_last IS NULL OR f.up_last <= :until)"
    " THEN f.up_last IS NULL OR f.down_last >= f.up_last"
    f" ELSE {_DOWN} IS NOT NULL AND ({_UP} IS NULL OR {_DOWN} >= {_UP}) END)"
)

# Per group: shown, copied, quick-retried, latest thumb up, latest thumb down.
_RESPONSES = f"""
SELECT {{group}} AS g, COUNT(*), TOTAL(f.copy_first <= :until), TOTAL({_RETRIED}),
    TOTAL({_THUMB_UP}), TOTAL({_THUMB_DOWN})
FROM facts f WHERE f.ts > :since AND f.ts <= :until
GROUP BY g
"""


def _completion_column(completion_event: str) -> str:
    if completion_event == DEFAULT_COMPLETION_EVENT:
        return "f.complete_first"
    return (
        "(CASE WHEN f.response_id = '' THEN (SELECT MIN(e.ts) FROM events e"
        " WHERE e.response_id = '' AND e.session_id = f.skey AND e.type = :completion"
        " AND e.ts <= :until) ELSE (SELECT MIN(e.ts) FROM events e"
        " WHERE e.response_id = f.response_id AND e.type = :completion AND e.ts <= :until) END)"
    )


# Per session with a response in the window: its start (first response <= until), first
# continuation and completion (through its responses or its own events), and the lowest and
# highest group of its responses in the window (equal for nearly every session).
_SESSIONS = """
SELECT lo, hi, skey, MAX(0.0, done - start), cont <= :until FROM (
    SELECT f.skey AS skey, MIN(f.ts) AS start, MIN(f.continue_first) AS cont,
        MIN(CASE WHEN c <= :until THEN c END) AS done,
        MIN(CASE WHEN f.ts > :since THEN {group} END) AS lo,
        MAX(CASE WHEN f.ts > :since THEN {group} END) AS hi
    FROM (SELECT f.*, {completion} AS c FROM facts f) f
    WHERE f.skey > '' AND (f.ts <= :until OR f.response_id = '')
    GROUP BY f.skey
) WHERE lo IS NOT NULL
"""


# Sessions wholly in the window (every response shown in it, so each value above is over all
# of the session's rows): one row of ``sessions`` each. Only the rest, the sessions that
# straddle an edge of the window, go through _SESSIONS, restricted to them.
_WHOLE = ":since < s.ts_min AND s.ts_max <= :until"
_SESSIONS_WHOLE = f"""
SELECT {{lo}}, {{hi}}, s.skey,
    MAX(0.0, (CASE WHEN s.complete_first <= :until THEN s.complete_first END) - s.ts_min),
    s.continue_first <= :until
FROM sessions s WHERE {_WHOLE}
"""
_STRADDLING = (
    " AND f.skey IN (SELECT s.skey FROM sessions s WHERE s.ts_max > :since"
    f" AND s.ts_min <= :until AND NOT ({_WHOLE}))"
)
_SESSION_GROUPS = {
    None: (":none", ":none"),
    "variant": ("s.variant_lo", "s.variant_hi"),
    "model": ("s.model_lo", "s.model_hi"),
}


def _session_rows(
    conn: sqlite3.Connection, by: str | None, group: str, completion_event: str, args: Any
) -> Iterator[tuple[Any, ...]]:
    """(lo, hi, skey, duration, continued) of each session with a response in the window."""
    completion = _completion_column(completion_event)
    if completion_event != DEFAULT_COMPLETION_EVENT:  # not in ``sessions``: from the facts
        yield from conn.execute(_SESSIONS.format(group=group, completion=completion), args)
        return
    lo, hi = _SESSION_GROUPS[by]
    yield from conn.execute(_SESSIONS_WHOLE.format(lo=lo, hi=hi), args)
    sql = _SESSIONS.format(group=group, completion=completion).replace(
        "WHERE f.skey > ''", "WHERE f.skey > ''" + _STRADDLING
    )
    yield from conn.execute(sql, args)


@dataclass
class _Counts:
    shown: int = 0
    copied: int = 0
    retried: int = 0
    thumbs_up: int = 0
    thumbs_down: int = 0
    sessions: int = 0
    continued: int = 0

    def __post_init__(self) -> None:
        self.durations: list[float] = []


def _dimension(by: str | None) -> str:
    if by not in GROUP_DIMENSIONS:
        raise StoreError(f"cannot group by {by!r}; choose one of {', '.join(GROUP_DIMENSIONS)}")
    return by


def check_metric(name: str) -> None:
    """Raise :class:`StoreError` unless ``name`` is one of :data:`METRICS`."""
    if name not in METRICS:
        raise StoreError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


def _groups_of(conn: sqlite3.Connection, skey: str, group: str, args: dict[str, Any]) -> set[str]:
    sql = (
        f"SELECT DISTINCT {group} FROM facts f"
        " WHERE f.skey = :skey AND f.ts > :since AND f.ts <= :until"
    )
    return {row[0] for row in conn.execute(sql, {**args, "skey": skey})}


def compute(
    conn: sqlite3.Connection,
    window: Window,
    *,
    by: str | None,
    max_delay_s: float,
    completion_event: str,
) -> dict[str, dict[str, MetricValue]]:
    """Every metric overall (``"all"``) and, with ``by``, per group (see ``EventStore.metrics``)."""
    group = f"COALESCE(f.{_dimension(by)}, :none)" if by else ":none"
    args: dict[str, Any] = {
        **window.params(),
        "max_delay": max_delay_s,
        "completion": completion_event,
        "none": NO_GROUP,
    }
    # One read transaction: the response and session reads (whole sessions, then those on an
    # edge of the window) see the same snapshot even while another process writes.
    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        return _compute(conn, by, group, args, completion_event)
    finally:
        if own:
            conn.execute("COMMIT")


def _compute(
    conn: sqlite3.Connection,
    by: str | None,
    group: str,
    args: dict[str, Any],
    completion_event: str,
) -> dict[str, dict[str, MetricValue]]:
    overall = _Counts()
    grouped: dict[str, _Counts] = {}
    for g, shown, copied, retried, up, down in conn.execute(_RESPONSES.format(group=group), args):
        for c in (overall, grouped.setdefault(g, _Counts())) if by else (overall,):
            c.shown += shown
            c.copied += int(copied)
            c.retried += int(retried)
            c.thumbs_up += int(up)
            c.thumbs_down += int(down)
    rows = _session_rows(conn, by, group, completion_event, args)
    for lo, hi, skey, duration, continued in rows:
        targets = [overall]
        if by:
            if lo == hi:  # nearly every session: one group, no lookup
                one = grouped.get(lo)
                targets.append(grouped.setdefault(lo, _Counts()) if one is None else one)
            else:
                names = sorted(_groups_of(conn, skey, group, args))
                targets += [grouped.setdefault(name, _Counts()) for name in names]
        for c in targets:
            c.sessions += 1
            c.continued += bool(continued)
            if duration is not None:
                # clock skew between front-end and back-end can put completion first: clamped
                c.durations.append(duration)
    out = {"all": metric_values(overall, completion_event)}
    for key in sorted(grouped):
        out[key] = metric_values(grouped[key], completion_event)
    return out


def unattributed_events(conn: sqlite3.Connection, window: Window) -> int:
    """Events in the window whose response_id names no stored response (kept in ``pending``)."""
    # CROSS JOIN keeps pending (a few rows) outside: SQLite would otherwise scan every event.
    sql = """
        SELECT COUNT(*) FROM pending p CROSS JOIN events e ON e.response_id = p.response_id
        WHERE e.ts > :since AND e.ts <= :until
    """
    return int(conn.execute(sql, window.params()).fetchone()[0])


def metric_values(c: _Counts, completion_event: str) -> dict[str, MetricValue]:
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


def dashboard(
    conn: sqlite3.Connection,
    window: Window,
    *,
    by: str | None,
    max_delay_s: float,
    completion_event: str,
) -> dict[str, Any]:
    """The dashboard as plain builtins (see ``EventStore.dashboard``)."""
    values = compute(
        conn, window, by=by, max_delay_s=max_delay_s, completion_event=completion_event
    )
    overall = values.pop("all")
    out: dict[str, Any] = {
        "window": window.to_dict(),
        "max_delay_s": max_delay_s,
        "responses_shown": overall["copy_rate"].denominator,
        "sessions": overall["session_continuation_rate"].denominator,
        "unattributed_events": unattributed_events(conn, window),
    }
    out.update({name: value.to_dict() for name, value in overall.items()})
    if by:
        out[f"by_{by}"] = {
            key: {name: value.to_dict() for name, value in group.items()}
            for key, group in values.items()
        }
    return out


# ---------------------------------------------------------------------------------------------
# per user, for experiments (one row per response of the experiment)

_USER_ROWS = f"""
SELECT COALESCE(r.variant, :none), r.session_id, r.user_id, f.copy_first <= :until,
    {_RETRIED}, {_UP}, {_DOWN}
FROM responses r JOIN facts f
    ON f.skey = COALESCE(r.session_id, '') AND f.response_id = r.response_id
WHERE r.ts > :since AND r.ts <= :until AND r.experiment = :experiment
"""
# A session's responses before the window count whatever their experiment; in the window,
# only the experiment's.
_CONTINUED = """
SELECT f.skey FROM facts f WHERE f.skey IN (
    SELECT r.session_id FROM responses r WHERE r.ts > :since AND r.ts <= :until
    AND r.experiment = :experiment AND r.session_id IS NOT NULL)
  AND (f.response_id = '' OR (f.ts <= :until AND (f.ts <= :since OR EXISTS (
      SELECT 1 FROM responses r WHERE r.response_id = f.response_id
      AND r.experiment = :experiment))))
GROUP BY f.skey HAVING MIN(f.continue_first) <= :until
"""


@dataclass(frozen=True)
class UserCounts:
    """User-level counts of one experiment (see :meth:`EventStore.user_counts`)."""

    experiment: str
    metrics: tuple[str, ...]
    users: dict[str, int]
    hits: dict[str, dict[str, int]]
    users_in_several_variants: int
    responses_without_user: int
    window: Window


def user_counts(
    conn: sqlite3.Connection,
    experiment: str,
    metrics: Sequence[str],
    window: Window,
    *,
    max_delay_s: float,
) -> UserCounts:
    """Per variant: users and users with each metric's signal (see ``EventStore.user_counts``)."""
    args: dict[str, Any] = {
        **window.params(),
        "max_delay": max_delay_s,
        "none": NO_GROUP,
        "experiment": experiment,
    }
    continued = {row[0] for row in conn.execute(_CONTINUED, args)}
    variants: dict[str, set[str]] = {}
    signals: dict[str, set[str]] = {}
    no_user = 0
    for grp, sid, uid, copied, retried, up, down in conn.execute(_USER_ROWS, args):
        if uid is None:
            no_user += 1
            continue
        variants.setdefault(uid, set()).add(grp)
        hit = signals.setdefault(uid, set())
        if copied:
            hit.add("copy_rate")
        if retried:
            hit.add("rephrase_retry_rate")
        if down is not None and (up is None or down >= up):
            hit.update(("thumbs_down_rate", "feedback_response_rate"))
        elif up is not None:
            hit.update(("thumbs_up_rate", "feedback_response_rate"))
        if sid is not None and sid in continued:
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
    return UserCounts(experiment, tuple(metrics), users, hits, mixed, no_user, window)
