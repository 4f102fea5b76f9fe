"""The online side: the production event store, its implicit-signal metrics, A/B and canary
readouts, interleaving, shadow evaluation and the flywheel.

Production traffic is recorded in one SQLite file (default ``.llmeval/online.sqlite3``,
:class:`EventStore`; the schema and the aggregates kept at ingest are in :mod:`.schema`):

* **responses**: one row per response shown to a user (``response_id`` is the key). A response
  record *is* the "response shown" signal; a separate ``response_shown`` event becomes a
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
responses gives ``rate: None`` and ``ci: None`` — never 0 or a made-up 0.5. Intervals are 95%
Wilson score intervals (Wilson, *JASA* 22, 1927) from :func:`pytest_llmeval.stats.proportion_ci`.

Unlike the naive computation (``copies / responses_shown`` over raw event counts, which
double-counts repeated copies and can exceed 1), every rate here is a proportion of units, so
its interval is valid.
"""

from __future__ import annotations

from pytest_llmeval.online.interleaving import (
    InterleavingResult,
    interleave,
    interleaving_credit,
    interleaving_test,
)
from pytest_llmeval.online.metrics import UserCounts, check_metric
from pytest_llmeval.online.readouts import (
    ABReadout,
    CanaryReadout,
    GuardrailCheck,
    ab_readout,
    canary_readout,
)
from pytest_llmeval.online.records import canonical_json, parse_record, parse_timestamp
from pytest_llmeval.online.schema import SCHEMA_VERSION
from pytest_llmeval.online.store import EventStore
from pytest_llmeval.online.values import (
    DEFAULT_COMPLETION_EVENT,
    DEFAULT_DB_PATH,
    DEFAULT_MAX_DELAY_S,
    FAILURE_RECORD_TYPE,
    GROUP_DIMENSIONS,
    METRICS,
    NO_GROUP,
    RESPONSE_RECORD_TYPES,
    IngestReport,
    LineError,
    MetricValue,
    RecordError,
    StoreError,
    Window,
    iso,
    wilson_ci,
)

__all__ = [
    "DEFAULT_COMPLETION_EVENT",
    "DEFAULT_DB_PATH",
    "DEFAULT_MAX_DELAY_S",
    "FAILURE_RECORD_TYPE",
    "GROUP_DIMENSIONS",
    "METRICS",
    "NO_GROUP",
    "RESPONSE_RECORD_TYPES",
    "SCHEMA_VERSION",
    "ABReadout",
    "CanaryReadout",
    "EventStore",
    "GuardrailCheck",
    "IngestReport",
    "InterleavingResult",
    "LineError",
    "MetricValue",
    "RecordError",
    "StoreError",
    "UserCounts",
    "Window",
    "ab_readout",
    "canary_readout",
    "canonical_json",
    "check_metric",
    "interleave",
    "interleaving_credit",
    "interleaving_test",
    "iso",
    "parse_record",
    "parse_timestamp",
    "wilson_ci",
]
