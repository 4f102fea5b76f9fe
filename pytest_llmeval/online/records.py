"""Ingest records: validation of one JSON object and its row for the store's tables."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Literal

from pytest_llmeval.online.values import (
    _MAX_TS,
    FAILURE_RECORD_TYPE,
    RESPONSE_RECORD_TYPES,
    RecordError,
)


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
#: An event row without its metadata and event id (both empty).
ShortEventRow = tuple[str, str, float, str, float]
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
