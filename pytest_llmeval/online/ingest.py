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

A big file is cut into parts at line ends and parsed by worker processes (the decoder holds
the GIL, so threads would not help); each part comes back as one serialized SQLite database
of its rows, which the writer inserts with SQL alone, in file order and in the file's one
transaction. Line numbers, strict mode and every message are those of one process reading
the whole file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from itertools import chain, islice, pairwise
from operator import itemgetter
from typing import IO, Any, NamedTuple

from pytest_llmeval.online import schema
from pytest_llmeval.online.records import (
    EventRow,
    FailureRow,
    ResponseRow,
    Row,
    ShortEventRow,
    parse_record,
)
from pytest_llmeval.online.values import (
    _MAX_TS,
    FAILURE_RECORD_TYPE,
    RESPONSE_RECORD_TYPES,
    LineError,
    RecordError,
    StoreError,
)

_JSON_WS = b" \t\r\n"
_WS_BYTES = (b" ", b"\t", b"\r", b"\n", b"")  # b"": an empty line (its end cut off)
_BOM = b"\xef\xbb\xbf"
_DECODE = json.JSONDecoder().raw_decode
_LONG_DIGITS = re.compile(rb"[0-9]{19}").search
# Types that are not an event (the empty string is no type at all).
_NOT_EVENTS = frozenset({"", FAILURE_RECORD_TYPE, *RESPONSE_RECORD_TYPES})
# Lines a reader takes at a time when iterated.
_READ_LINES = 20_000


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

    :meth:`read` takes the rows of the next lines as a :class:`Batch` (the workers and the
    writer use it); iterating gives the rows one by one (each kind in file order).
    With ``strict``, rows stop coming after the first bad line (the caller rejects the file)
    but every line is still read, so every bad line is reported.
    """

    def __init__(
        self, handle: Iterable[bytes], name: str, *, strict: bool = False, bom: bool = True
    ) -> None:
        self.handle = handle  # an open file, or its lines (without or with their line ends)
        self.name = name
        self.strict = strict
        self.bom = bom  # False: the handle starts mid-file, where a BOM is no BOM
        self.errors: list[LineError] = []
        self.lines = 0
        self.raw_lines = 0  # every line read, blank or not (the next part's line numbers)
        self._numbered = enumerate(handle, start=1)
        self.done = False  # the file has no more lines

    def _bad(self, lineno: int, exc: RecordError) -> None:
        self.errors.append(LineError(self.name, lineno, exc.field, exc.message))

    def __iter__(self) -> Iterator[Row]:
        while not self.done:
            batch = self.read(_READ_LINES)
            for response in batch.responses:
                yield ("response", response)
            for short in batch.short:
                yield ("event", (*short, "", ""))
            for event in batch.events:
                yield ("event", event)
            for failure in batch.failures:
                yield ("failure", failure)

    def read(self, limit: int) -> Batch:
        """The rows of the next ``limit`` lines (blank ones included) as one batch; ``done``
        is set once the file has no more lines."""
        fast, long_digits = _FAST_DECODE, _LONG_DIGITS
        not_events, max_ts, strict = _NOT_EVENTS, _MAX_TS, self.strict
        response_types = RESPONSE_RECORD_TYPES
        responses: list[ResponseRow] = []
        events: list[EventRow] = []
        short: list[ShortEventRow] = []
        failures: list[FailureRow] = []
        add_short, add_response = short.append, responses.append
        lineno = read = blank = 0
        keep = not (strict and self.errors)  # rows stop after a bad line under strict
        for lineno, raw in islice(self._numbered, limit):
            read += 1
            if lineno == 1 and self.bom and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if raw[:1] in _WS_BYTES or raw[-1:] in _WS_BYTES:
                raw = raw.strip(_JSON_WS)
                if not raw:
                    blank += 1
                    continue
            if fast is not None:
                try:
                    obj = fast(raw)
                except ValueError:
                    obj = None
                # The common event and response, validated inline: exactly what parse_record
                # returns for them (no metadata, so no question of long integers either).
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
                        if keep:
                            row = (rid or "", t, ts, sid or "", -1.0 if delay is None else delay)
                            if eid is None:
                                add_short(row)
                            else:
                                events.append((*row, "", eid))
                        continue
                    # The common response: plain strings, no conversation and no metadata.
                    if (
                        type(t) is str
                        and t in response_types
                        and type(ts) is float
                        and -max_ts < ts < max_ts
                        and type(rid) is str
                        and rid
                        and get("metadata") is None
                        and get("messages") is None
                    ):
                        q, text = get("question"), get("response")
                        uid, var, exp, mod = (
                            get("user_id"),
                            get("variant"),
                            get("experiment"),
                            get("model"),
                        )
                        if (
                            (sid is None or (type(sid) is str and sid))
                            and (uid is None or (type(uid) is str and uid))
                            and (var is None or (type(var) is str and var))
                            and (exp is None or (type(exp) is str and exp))
                            and (mod is None or (type(mod) is str and mod))
                            and (q is None or type(q) is str)
                            and (text is None or type(text) is str)
                        ):
                            if keep:
                                add_response(
                                    (rid, sid, uid, var, exp, mod, q, None, text, ts, None)
                                )
                            continue
                try:
                    parsed = _record(obj, b"") if obj is not None else None
                except ValueError:
                    parsed = None  # json decides, with its own message
                if parsed is not None and (
                    not (b"metadata" in raw or b"\\u" in raw) or not long_digits(raw)
                ):
                    if keep:
                        _add(parsed, responses, events, failures)
                    continue
            try:
                parsed = _record(_decode_line(raw), raw)
            except RecordError as exc:
                self._bad(lineno, exc)
                keep = not strict
                continue
            if keep:
                _add(parsed, responses, events, failures)
        self.lines += read - blank
        if read:
            self.raw_lines = lineno
        if read < limit:
            self.done = True
        return batch_of(responses, events, failures, short)


def _add(
    row: Row, responses: list[ResponseRow], events: list[EventRow], failures: list[FailureRow]
) -> None:
    kind, value = row
    if kind == "event":
        events.append(value)  # type: ignore[arg-type]
    elif kind == "response":
        responses.append(value)  # type: ignore[arg-type]
    else:
        failures.append(value)  # type: ignore[arg-type]


# -- parts of a file, parsed in worker processes ---------------------------------------------

#: Files at least this big are parsed by worker processes (starting one costs about 0.3 s).
PARALLEL_MIN_BYTES = 16 << 20
#: Bytes of a file per part handed to a worker (cut at a line end).
PART_BYTES = 8 << 20
#: Worker processes at most (the writer, this process, needs a CPU of its own as well).
MAX_WORKERS = 4


class Batch(NamedTuple):
    """Rows for the store: as lists, or (``blob``) as one serialized database of the
    :data:`~.schema.STAGE_TABLES` holding them. ``short`` are the events with no metadata and
    no event id (nearly all of them), without those two columns."""

    responses: list[ResponseRow]
    events: list[EventRow]
    failures: list[FailureRow]
    short: list[ShortEventRow]
    rows: int
    blob: bytes | None = None


def batch_of(
    responses: list[ResponseRow],
    events: list[EventRow],
    failures: list[FailureRow],
    short: list[ShortEventRow] | None = None,
) -> Batch:
    short = short if short is not None else []
    # By response id (the events key's first column), successive rows land on the same or the
    # next page of the key (sorting whole tuples costs three times as much). Responses too (a
    # stable sort: the same id's records keep their file order, so its first values stay).
    first = itemgetter(0)
    events.sort(key=first)
    short.sort(key=first)
    responses.sort(key=first)
    rows = len(responses) + len(events) + len(failures) + len(short)
    return Batch(responses, events, failures, short, rows)


def batches(rows: Iterable[Row], size: int) -> Iterator[Batch]:
    """The rows in batches of ``size`` (the last one possibly empty). Every kind counts
    towards a batch: a list that starts with a million responses must not hold them all in
    memory before the first event arrives."""
    responses: list[ResponseRow] = []
    events: list[EventRow] = []
    failures: list[FailureRow] = []
    for n, row in enumerate(rows, start=1):
        _add(row, responses, events, failures)
        if not n % size:
            yield batch_of(responses, events, failures)
            responses, events, failures = [], [], []
    yield batch_of(responses, events, failures)


def parse_here(
    handle: IO[bytes], name: str, *, strict: bool, size: int
) -> Generator[Part, None, None]:
    """The parts of an open file parsed in this process, ``size`` lines at a time; the last
    part carries the line counts and every bad line."""
    reader = LineReader(handle, name, strict=strict)
    batch = reader.read(size)
    while not reader.done:
        yield Part(batch, 0, 0, [])
        batch = reader.read(size)
    errors = [(e.line, e.field, e.message) for e in reader.errors]
    yield Part(batch, reader.raw_lines, reader.lines, errors)


#: Rows per INSERT statement when staging (one statement of many rows binds the same values
#: with a fraction of the per-statement work: 0.8 against 1.3 us an event).
_ROWS_PER_INSERT = 64


def _stage_rows(conn: sqlite3.Connection, table: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples of one width) into ``table``, many rows per statement."""
    if not rows:
        return
    one = f"({', '.join('?' * len(rows[0]))})"
    k = _ROWS_PER_INSERT
    whole = len(rows) - len(rows) % k
    if whole:
        many = f"INSERT INTO {table} VALUES {', '.join([one] * k)}"
        conn.executemany(
            many, (list(chain.from_iterable(rows[i : i + k])) for i in range(0, whole, k))
        )
    if whole < len(rows):
        conn.executemany(f"INSERT INTO {table} VALUES {one}", rows[whole:])


def fill_stage(conn: sqlite3.Connection, database: str, batch: Batch) -> None:
    """Put the batch's rows into the staging tables of ``database`` (emptied first)."""
    for table, rows in (
        ("resp", batch.responses),
        ("ev", batch.events),
        ("evs", batch.short),
        ("fail", batch.failures),
    ):
        conn.execute(f"DELETE FROM {database}.{table}")
        _stage_rows(conn, f"{database}.{table}", rows)


def staged(batch: Batch) -> Batch:
    """The batch as one serialized database (Python 3.11+; otherwise unchanged): it crosses
    to the writer process as one string of bytes, and the writer inserts it with SQL alone."""
    if not hasattr(sqlite3.Connection, "serialize"):
        return batch
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for statement in schema.stage_tables("main"):
            conn.execute(statement)
        conn.execute("BEGIN")
        fill_stage(conn, "main", batch)
        conn.execute("COMMIT")
        blob: bytes = conn.serialize()  # type: ignore[attr-defined]
    finally:
        conn.close()
    return batch._replace(responses=[], events=[], failures=[], short=[], blob=blob)


class Part(NamedTuple):
    """A parsed part of a file: its rows, how many lines it has (``raw_lines``) and how many
    are not blank, and its bad lines as (line within the part, field, message)."""

    batch: Batch
    raw_lines: int
    lines: int
    errors: list[tuple[int, str | None, str]]


def parse_part(name: str, start: int, end: int, identity: tuple[int, int], strict: bool) -> Part:
    """Parse bytes ``start:end`` of file ``name`` (whole lines; run in a worker process).

    ``identity`` is the (device, inode) of the file the caller opened: another file now under
    that name is refused rather than ingested in part.
    """
    with open(name, "rb") as handle:
        stat = os.fstat(handle.fileno())
        if (stat.st_dev, stat.st_ino) != identity:
            raise StoreError(f"{name} was replaced while it was being ingested")
        handle.seek(start)
        data = handle.read(end - start)
    lines = data.split(b"\n")  # the lines a file gives, without their line ends
    if lines[-1] == b"":
        lines.pop()
    reader = LineReader(lines, name, strict=strict, bom=start == 0)
    batch = reader.read(1 << 62)
    errors = [(e.line, e.field, e.message) for e in reader.errors]
    # under strict a bad line rejects the file: the rows would only be thrown away
    return Part(
        batch if strict and errors else staged(batch), reader.raw_lines, reader.lines, errors
    )


def part_bounds(handle: IO[bytes], size: int, part_bytes: int) -> list[tuple[int, int]]:
    """``[start, end)`` byte ranges covering the first ``size`` bytes, each cut after a
    line end."""
    bounds = [0]
    while bounds[-1] + part_bytes < size:
        handle.seek(bounds[-1] + part_bytes)
        handle.readline()
        cut = handle.tell()
        if cut >= size:
            break
        bounds.append(cut)
    bounds.append(size)
    return list(pairwise(bounds))


def worker_count(size: int, workers: int | None) -> int:
    """How many worker processes parse a file of ``size`` bytes (0: this process does)."""
    if workers is not None:
        return max(0, workers)
    if size < PARALLEL_MIN_BYTES:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(MAX_WORKERS, cpus) if cpus > 1 else 0


def serve(source: IO[bytes] | None = None, sink: IO[bytes] | None = None) -> None:
    """A worker process's loop: read tasks for :func:`parse_part`, answer each in order, until
    the input ends (tasks and answers are length-prefixed pickles)."""
    import pickle
    import sys

    source = source or sys.stdin.buffer
    sink = sink or sys.stdout.buffer
    while head := source.read(8):
        args = pickle.loads(source.read(int.from_bytes(head, "little")))
        try:
            answer: tuple[str, Any] = ("part", parse_part(*args))
        except Exception as exc:  # handed to the writer, which raises it
            answer = ("error", exc)
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        sink.write(len(data).to_bytes(8, "little") + data)
        sink.flush()


def serve_quietly() -> None:
    """A worker process's entry: :func:`serve`, and a quiet exit once the writer is gone (it
    was killed, or Ctrl-C reached the whole process group): no traceback for a closed pipe or
    an interrupt, which would only repeat on the user's terminal once per worker."""
    try:
        serve()
    except (BrokenPipeError, KeyboardInterrupt):
        os._exit(1)  # not sys.exit: flushing the closed pipe at exit would raise again


class _Worker:
    """One worker process (``python -c`` running :func:`serve`). A plain subprocess rather
    than :mod:`multiprocessing`, which would import the caller's ``__main__`` again in every
    worker and may not start from a daemonic process."""

    def __init__(self) -> None:
        import subprocess
        import sys

        # The worker imports what this process imports: the same sys.path, in the same order.
        code = f"import sys; sys.path[:] = {sys.path!r}; "
        code += "from pytest_llmeval.online.ingest import serve_quietly; serve_quietly()"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def send(self, *args: Any) -> None:
        import pickle

        data = pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL)
        assert self.proc.stdin is not None
        self.proc.stdin.write(len(data).to_bytes(8, "little") + data)
        self.proc.stdin.flush()

    def receive(self) -> Part:
        import pickle

        assert self.proc.stdout is not None
        head = self.proc.stdout.read(8)
        if len(head) < 8:
            raise OSError(f"an ingest worker exited (code {self.proc.wait()})")
        kind, value = pickle.loads(self.proc.stdout.read(int.from_bytes(head, "little")))
        if kind == "error":
            raise value
        part: Part = value
        return part

    def close(self) -> None:
        """Stop the worker (it may be dead already, or in the middle of a part)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # a task still buffered for a dead worker
                    stream.close()


def parse_parallel(
    handle: IO[bytes], name: str, workers: int, *, strict: bool, part_bytes: int = 0
) -> Generator[Part, None, None]:
    """The parts of an open file in order, parsed by ``workers`` processes (part ``i`` by
    worker ``i % workers``, at most two parts ahead each, so memory stays bounded). If a
    worker cannot start or dies, the parts not yet yielded are parsed here."""
    stat = os.fstat(handle.fileno())
    identity = (stat.st_dev, stat.st_ino)
    bounds = part_bounds(handle, stat.st_size, part_bytes or PART_BYTES)
    pool: list[_Worker] = []
    sent = done = 0
    try:
        try:
            for _ in range(workers):
                pool.append(_Worker())
        except OSError:  # no worker then: this process parses
            for worker in pool:
                worker.close()
            pool = []
        while done < len(bounds):
            if pool:
                try:
                    while sent < len(bounds) and sent < done + 2 * len(pool):
                        pool[sent % len(pool)].send(name, *bounds[sent], identity, strict)
                        sent += 1
                    part = pool[done % len(pool)].receive()
                except (OSError, EOFError):
                    for worker in pool:
                        worker.close()
                    pool = []
                    continue
            else:
                part = parse_part(name, *bounds[done], identity, strict)
            done += 1
            yield part
    finally:
        for worker in pool:
            worker.close()
