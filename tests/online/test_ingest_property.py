"""Generated malformed event lines through ingest: no traceback, always file:line (issue #11)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from online_helpers import reader_rows_checked

from pytest_llmeval.online import EventStore

GOOD = {
    "type": "response",
    "response_id": "r1",
    "session_id": "s1",
    "user_id": "u1",
    "variant": "control",
    "question": "q",
    "response": "a",
    "timestamp": "2026-11-25T12:00:00Z",
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)
bad_lines = st.one_of(
    st.binary(max_size=60),  # anything, including invalid UTF-8
    st.builds(lambda k, v: json.dumps({**GOOD, k: v}), st.sampled_from(sorted(GOOD)), json_values),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(min_value=1, max_value=3000)),
    st.just('{"type": "response", "response_id": "x\\ud800"}'),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(bad_lines, min_size=1, max_size=4))
def test_bad_event_lines_are_reported_and_the_good_line_is_kept(
    tmp_path: Path, lines: list[str | bytes]
) -> None:
    here = Path(tempfile.mkdtemp(dir=tmp_path))  # one store per generated example
    path = here / "events.jsonl"
    raw = [ln if isinstance(ln, bytes) else ln.encode("utf-8") for ln in lines]
    good = json.dumps({**GOOD, "response_id": "kept"}).encode()
    path.write_bytes(b"\n".join([*(r.replace(b"\n", b" ") for r in raw), good]) + b"\n")
    store = EventStore(here / "online.sqlite3")
    try:
        report = store.ingest_file(path)
    finally:
        store.close()
    for error in report.errors:  # each names the file and its line
        assert str(error).startswith(f"{path}:"), error
        assert 1 <= error.line <= len(raw)
    assert report.responses_added >= 1  # the valid line after the others is stored


EVENT = {"type": "copy", "response_id": "r1", "session_id": "s1", "timestamp": 1764072000.25}
event_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-2, max_value=2),
    st.floats(min_value=-2.0, max_value=2e15),
    st.sampled_from(["", "x", "copy", "response", "response_shown", "production_failure"]),
    st.just({"k": 1}),
)
event_objects = st.builds(
    lambda base, changes, drop: {k: v for k, v in {**base, **changes}.items() if k not in drop},
    st.just(EVENT),
    st.dictionaries(
        st.sampled_from(
            ["type", "response_id", "session_id", "timestamp", "delay_seconds", "event_id"]
        ),
        event_values,
        max_size=3,
    ),
    st.sets(st.sampled_from(["response_id", "session_id", "delay_seconds"]), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(obj=event_objects)
def test_the_readers_fast_path_gives_what_parse_record_gives(obj: dict[str, object]) -> None:
    """Event lines the reader validates inline give the row (or the error) of parse_record."""
    reader_rows_checked(obj)
