"""The reader's inline path for response lines gives what parse_record gives (row or error)."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from online_helpers import reader_rows_checked

from pytest_llmeval.online import ingest
from pytest_llmeval.online.ingest import LineReader

# Each field: absent, or a value of a type the inline path takes or must leave to parse_record.
values: st.SearchStrategy[object] = st.one_of(
    st.none(),
    st.just(""),
    st.text(max_size=4),
    st.integers(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.lists(st.integers(), max_size=1),
)
FIELDS = ("session_id", "user_id", "variant", "experiment", "model", "question", "response")
response_objects = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["response", "response_shown", "copy", ""]) | values,
        "timestamp": st.floats(min_value=-2e15, max_value=2e15) | values,
        "response_id": st.sampled_from(["r1", ""]) | values,
    },
    optional={
        **dict.fromkeys(FIELDS, values),
        "metadata": st.none() | st.just({}) | st.just({"a": 1}),
        "messages": st.none() | st.just([{"role": "user", "content": "q"}]),
    },
)


@settings(max_examples=400, deadline=None)
@given(obj=response_objects)
def test_the_readers_response_path_gives_what_parse_record_gives(obj: dict[str, object]) -> None:
    rows, expected = reader_rows_checked(obj)
    if expected is not None:
        assert [type(v) for v in rows[0][1]] == [type(v) for v in expected[1]]


def test_a_plain_response_line_takes_the_inline_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_here(*args: object) -> None:
        raise AssertionError("parsed by parse_record, not inline")

    monkeypatch.setattr(ingest, "_record", not_here)
    rec = {"type": "response", "response_id": "r1", "session_id": "s1", "timestamp": 5.5}
    reader = LineReader(io.BytesIO(json.dumps({**rec, "question": "q"}).encode()), "f.jsonl")
    assert list(reader) == [
        ("response", ("r1", "s1", None, None, None, None, "q", None, None, 5.5, None))
    ]
