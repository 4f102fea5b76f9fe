"""Reading an ingest file: JSON lines to rows, bad lines to ``file:line`` errors.

Every line is decoded on its own (joining lines into one JSON array decodes faster, but a
line that is not one complete value could then merge with its neighbour unnoticed). A bad
line, whatever is wrong with it (invalid UTF-8, a lone surrogate, nesting deeper than the
decoder allows, a field), is reported with its file and line and the next line is read.

With the ``online-fast`` extra installed, ``orjson`` decodes each line first (about 7x faster
than :mod:`json`, which is most of an ingest's CPU). A line it refuses goes through :mod:`json`
as before, and so does a line whose record is invalid, so bad lines get the same messages.
``orjson`` reads an integer beyond 64 bits as a float where :mod:`json` keeps it exact; only
in metadata could that pass unnoticed, so a line with metadata (or an escape) and a run of 19
digits is read by :mod:`json` too. Otherwise whatever ``orjson`` accepts :mod:`json` reads the
same (it refuses lone surrogates, ``NaN`` and nesting past 1,024 levels): a line's row never
depends on which decoder read it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from pytest_llmeval.online.records import Row, parse_record
from pytest_llmeval.online.values import (
    _MAX_TS,
    FAILURE_RECORD_TYPE,
    RESPONSE_RECORD_TYPES,
    LineError,
    RecordError,
)

_JSON_WS = b" \t\r\n"
_WS_BYTES = (b" ", b"\t", b"\r", b"\n")
_BOM = b"\xef\xbb\xbf"
_DECODE = json.JSONDecoder().raw_decode
_LONG_DIGITS = re.compile(rb"[0-9]{19}").search
# Types that are not an event (the empty string is no type at all).
_NOT_EVENTS = frozenset({"", FAILURE_RECORD_TYPE, *RESPONSE_RECORD_TYPES})


def _fast_decoder() -> Callable[[bytes], Any] | None:
    try:
        import orjson
    except ImportError:
        return None
    return orjson.loads


_FAST_DECODE = _fast_decoder()


def _surrogate(value: Any) -> bool:
    """True when a string in ``value`` holds a lone surrogate (only a ``\\u`` escape makes one)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _record(obj: Any, raw: bytes) -> Row:
    if b"\\u" in raw and _surrogate(obj):
        raise RecordError(None, "contains a lone surrogate (a \\ud800-\\udfff escape): not text")
    try:
        return parse_record(obj)
    except RecursionError:
        raise RecordError(None, "nested too deeply") from None


def _decode_line(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError(None, f"not UTF-8: {exc.reason} at byte {exc.start + 1}") from None
    try:
        obj, end = _DECODE(text)
    except RecursionError:
        raise RecordError(None, "invalid JSON: nested too deeply") from None
    except ValueError as exc:
        raise RecordError(None, f"invalid JSON: {exc}") from None
    if end != len(text):
        raise RecordError(None, f"invalid JSON: extra data at column {end + 1}")
    return obj


class LineReader:
    """Rows of one open file; bad lines go to ``errors``; ``lines`` counts non-blank lines.

    With ``strict``, rows stop coming after the first bad line (the caller rejects the file)
    but every line is still read, so every bad line is reported.
    """

    def __init__(self, handle: IO[bytes], name: str, *, strict: bool = False) -> None:
        self.handle = handle
        self.name = name
        self.strict = strict
        self.errors: list[LineError] = []
        self.lines = 0

    def _bad(self, lineno: int, exc: RecordError) -> None:
        self.errors.append(LineError(self.name, lineno, exc.field, exc.message))

    def __iter__(self) -> Iterator[Row]:
        fast, long_digits = _FAST_DECODE, _LONG_DIGITS
        not_events, max_ts, strict = _NOT_EVENTS, _MAX_TS, self.strict
        for lineno, raw in enumerate(self.handle, start=1):
            if lineno == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if raw[:1] in _WS_BYTES or raw[-1:] in _WS_BYTES:
                raw = raw.strip(_JSON_WS)
                if not raw:
                    continue
            self.lines += 1
            if fast is not None:
                try:
                    obj = fast(raw)
                except ValueError:
                    obj = None
                # The common event, validated inline: exactly what parse_record returns for it
                # (no metadata, so no question of long integers either).
                if type(obj) is dict:
                    get = obj.get
                    t, ts, rid = get("type"), get("timestamp"), get("response_id")
                    sid, delay, eid = get("session_id"), get("delay_seconds"), get("event_id")
                    if (
                        type(t) is str
                        and t not in not_events
                        and type(ts) is float
                        and -max_ts < ts < max_ts
                        and ((type(rid) is str and rid) or (rid is None and sid is not None))
                        and (sid is None or (type(sid) is str and sid))
                        and (delay is None or (type(delay) is float and 0.0 <= delay < max_ts))
                        and get("metadata") is None
                        and (eid is None or (type(eid) is str and eid))
                    ):
                        if not (strict and self.errors):
                            yield (
                                "event",
                                (
                                    rid or "",
                                    t,
                                    ts,
                                    sid or "",
                                    -1.0 if delay is None else delay,
                                    "",
                                    eid or "",
                                ),
                            )
                        continue
                try:
                    row = _record(obj, b"") if obj is not None else None
                except ValueError:
                    row = None  # json decides, with its own message
                if row is not None and (
                    not (b"metadata" in raw or b"\\u" in raw) or not long_digits(raw)
                ):
                    if not (self.strict and self.errors):
                        yield row
                    continue
            try:
                row = _record(_decode_line(raw), raw)
            except RecordError as exc:
                self._bad(lineno, exc)
                continue
            if not (self.strict and self.errors):
                yield row
