"""JSONL case parsing: every bad-input kind names file, line and field; odd but valid input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmeval.core.cases import (
    Case,
    _fast_valid,
    _validator,
    case_from_dict,
    iter_cases,
    validate_case_dict,
)
from pytest_llmeval.errors import CaseError

PATH = "evals/llmeval_support.jsonl"


def parse(*lines: str | bytes, sep: bytes = b"\n") -> list[Case | CaseError]:
    raw = [line.encode("utf-8") if isinstance(line, str) else line for line in lines]
    return list(iter_cases(PATH, sep.join(raw)))


def line(**fields: Any) -> str:
    return json.dumps(fields)


def only_error(results: list[Case | CaseError]) -> CaseError:
    errors = [r for r in results if isinstance(r, CaseError)]
    assert len(errors) == 1, results
    return errors[0]


GOOD = line(id="ok", question="How long is the refund window?", ground_truth="30 days.")

# (name, bad line, field named in the error (None: the whole line), words the message must use)
BAD_LINES: list[tuple[str, bytes, str | None, str]] = [
    ("bad-json", b'{"question": "q",', None, "invalid JSON"),
    ("not-an-object", b'["question", "q"]', None, "expected a JSON object, got list"),
    ("a-string", b'"just a question"', None, "expected a JSON object, got str"),
    ("null", b"null", None, "expected a JSON object, got null"),
    ("question-wrong-type", line(question=5).encode(), "question", "not of type 'string'"),
    ("tags-wrong-type", line(question="q", tags="billing").encode(), "tags", "not of type"),
    (
        "metadata-wrong-type",
        line(question="q", metadata=[1]).encode(),
        "metadata",
        "not of type 'object'",
    ),
    (
        "unknown-difficulty",
        line(question="q", difficulty="extreme").encode(),
        "difficulty",
        "'extreme'",
    ),
    (
        "unknown-check-type",
        line(question="q", checks=[{"type": "fuzzy", "value": "x"}]).encode(),
        "checks[0].type",
        "'fuzzy'",
    ),
    (
        "both-question-and-messages",
        line(question="q", messages=[{"role": "user", "content": "q"}]).encode(),
        "question",
        "both",
    ),
    ("neither-question-nor-messages", line(id="x").encode(), "question", "needs 'question'"),
    ("threshold-above-1", line(question="q", threshold=1.5).encode(), "threshold", "1.5"),
    ("threshold-below-0", line(question="q", threshold=-0.1).encode(), "threshold", "-0.1"),
    ("threshold-bool", line(question="q", threshold=True).encode(), "threshold", "number"),
    (
        "invalid-regex",
        line(question="q", checks=[{"type": "regex", "value": "(unclosed"}]).encode(),
        "checks[0].value",
        "invalid regular expression",
    ),
    (
        "invalid-json-schema",
        line(question="q", checks=[{"type": "json_schema", "value": {"type": "nope"}}]).encode(),
        "checks[0].value",
        "invalid JSON schema",
    ),
    (
        "check-value-wrong-type",
        line(question="q", checks=[{"type": "min_words", "value": "3"}]).encode(),
        "checks[0].value",
        "integer",
    ),
    ("invalid-utf8", b'{"question": "caf\xe9?"}', None, "invalid UTF-8"),
    ("unknown-field", line(question="q", colour="red").encode(), "colour", "unknown field"),
    (
        "unknown-check-field",
        line(question="q", checks=[{"type": "contains", "value": "x", "extra": 1}]).encode(),
        "checks[0].extra",
        "unknown field",
    ),
    (
        "unknown-role",
        line(messages=[{"role": "robot", "content": "hi"}]).encode(),
        "messages[0].role",
        "'robot'",
    ),
    (
        "last-turn-not-user",
        line(
            messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
        ).encode(),
        "messages[1].role",
        "last turn",
    ),
    ("id-null", b'{"id": null, "question": "q"}', "id", "not of type 'string'"),
    ("id-with-double-colon", line(id="a::b", question="q").encode(), "id", "does not match"),
    ("empty-question", line(question="").encode(), "question", "non-empty"),
    ("ground-truth-empty-list", line(question="q", ground_truth=[]).encode(), "ground_truth", ""),
    (
        "ground-truth-list-of-numbers",
        line(question="q", ground_truth=["a", 3]).encode(),
        "ground_truth[1]",
        "",
    ),
    ("human-verdict-unknown", line(question="q", human_verdict="ok").encode(), "human_verdict", ""),
    # lone surrogates (issue #11 item 2): escaped in JSON, anywhere in the line
    ("surrogate-question", b'{"question": "caf\\ud800?"}', "question", "lone surrogate"),
    ("surrogate-id", b'{"id": "a\\udfff", "question": "q"}', "id", "lone surrogate"),
    (
        "surrogate-ground-truth",
        b'{"question": "q", "ground_truth": ["ok", "\\ud83d"]}',
        "ground_truth[1]",
        "lone surrogate",
    ),
    ("surrogate-rubric", b'{"question": "q", "rubric": "\\uDC00"}', "rubric", "lone surrogate"),
    (
        "surrogate-message",
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
        "messages[0].content",
        "lone surrogate",
    ),
    (
        "surrogate-metadata-key",
        b'{"question": "q", "metadata": {"\\ud800": 1}}',
        "metadata.\ud800",
        "key contains a lone surrogate",
    ),
    (
        "surrogate-check",
        b'{"question": "q", "checks": [{"type": "contains", "value": "\\ud800"}]}',
        "checks[0].value",
        "lone surrogate",
    ),
    # nesting (issue #11 item 13)
    (
        "deep-metadata",
        b'{"question": "q", "metadata": {"a": ' + b"[" * 70 + b"]" * 70 + b"}}",
        "metadata.a" + "[0]" * 62,
        "nested deeper than 64",
    ),
    ("very-deep-line", b'{"question": "q", "metadata": ' + b"[" * 100_000, None, "nested deeper"),
]


@pytest.mark.parametrize(
    ("bad", "field", "words"), [b[1:] for b in BAD_LINES], ids=[b[0] for b in BAD_LINES]
)
def test_bad_line_names_file_line_and_field(bad: bytes, field: str | None, words: str) -> None:
    results = parse(GOOD, b"", bad, GOOD.replace('"ok"', '"ok2"'))
    error = only_error(results)
    assert error.path == PATH
    assert error.line == 3  # blank line 2 still counts
    assert error.field == field
    text = str(error)
    assert text.startswith(f"{PATH}:3:")
    if field is not None:
        assert f"'{field}'" in text
    assert words in text
    assert "Traceback" not in text
    # the good lines around it still parse
    assert [r.id for r in results if isinstance(r, Case)] == ["ok", "ok2"]


def test_duplicate_id_is_an_error_at_the_later_line() -> None:
    results = parse(GOOD, GOOD.replace("30 days", "thirty days"))
    error = only_error(results)
    assert (error.line, error.field) == (2, "id")
    assert "duplicate id 'ok'" in str(error) and "line 1" in str(error)


def test_duplicate_default_ids_are_errors_too() -> None:
    same = line(question="Where is my parcel?")
    error = only_error(parse(same, same))
    assert (error.line, error.field) == (2, "id")


def test_every_bad_line_of_a_file_is_reported() -> None:
    results = parse(b"{", GOOD, b"[]", line(question="q", difficulty="x").encode())
    assert [(r.line, r.field) for r in results if isinstance(r, CaseError)] == [
        (1, None),
        (3, None),
        (4, "difficulty"),
    ]


def test_bom_crlf_and_blank_lines_are_accepted() -> None:
    data = (
        b"\xef\xbb\xbf"
        + GOOD.encode()
        + b"\r\n\r\n   \r\n"
        + line(id="two", question="caf\u00e9?").encode("utf-8")
        + b"\r\n"
    )
    results = list(iter_cases(PATH, data))
    assert all(isinstance(r, Case) for r in results), results
    cases = [r for r in results if isinstance(r, Case)]
    assert [(c.id, c.line) for c in cases] == [("ok", 1), ("two", 4)]
    assert cases[1].question == "caf\u00e9?"


def test_empty_and_blank_files_yield_nothing() -> None:
    assert list(iter_cases(PATH, b"")) == []
    assert list(iter_cases(PATH, b"\n \n\r\n")) == []
    assert list(iter_cases(PATH, b"\xef\xbb\xbf")) == []


def test_fields_are_parsed() -> None:
    obj = {
        "id": "refund-window",
        "question": "How long do I have to ask for a refund?",
        "ground_truth": "30 days from delivery.",
        "rubric": "Must state 30 days.",
        "tags": ["billing", "refunds"],
        "difficulty": "easy",
        "threshold": 1,
        "checks": [{"type": "contains", "value": "30"}],
        "metadata": {"owner": "support"},
    }
    (case,) = parse(json.dumps(obj))
    assert isinstance(case, Case)
    assert case.id == "refund-window"
    assert case.ground_truth == "30 days from delivery."
    assert case.rubric == "Must state 30 days."
    assert case.tags == ("billing", "refunds")
    assert case.difficulty == "easy"
    assert case.threshold == 1.0 and isinstance(case.threshold, float)
    assert case.checks == ({"type": "contains", "value": "30"},)
    assert case.metadata == {"owner": "support"}
    assert (case.file, case.line) == (PATH, 1)
    assert case.messages is None and not case.is_conversation


def test_defaults() -> None:
    (case,) = parse(line(question="Hi?"))
    assert isinstance(case, Case)
    assert case.difficulty == "medium"
    assert case.threshold is None and case.ground_truth is None and case.rubric is None
    assert case.tags == () and case.checks == () and dict(case.metadata) == {}


def test_default_id_is_stable_and_depends_on_content_only() -> None:
    a = parse(line(question="Where is my parcel?", ground_truth="x"))[0]
    b = parse(b"", line(question="Where is my parcel?", ground_truth="y", tags=["t"]))[0]
    c = parse(line(question="Where is my parcel now?"))[0]
    assert isinstance(a, Case) and isinstance(b, Case) and isinstance(c, Case)
    assert a.id == b.id  # same input, other line and other expectations
    assert a.id.startswith("case-")
    assert c.id != a.id
    # and it does not change between processes or releases: a fixed value
    assert a.id == case_from_dict({"question": "Where is my parcel?"}).id
    conv = [{"role": "user", "content": "Where is my parcel?"}]
    d = parse(line(messages=conv))[0]
    assert isinstance(d, Case) and d.id != a.id  # a conversation is another input


def test_multi_turn_question_is_the_last_user_turn() -> None:
    messages = [
        {"role": "system", "content": "You are a support bot."},
        {"role": "user", "content": "I ordered a kettle."},
        {"role": "assistant", "content": "Thanks, how can I help?"},
        {"role": "user", "content": "Can I still return it?"},
    ]
    (case,) = parse(line(id="conv", messages=messages, ground_truth="Yes, within 30 days."))
    assert isinstance(case, Case)
    assert case.is_conversation
    assert case.question == "Can I still return it?"
    assert case.messages is not None
    assert [(m.role, m.content) for m in case.messages] == [
        (m["role"], m["content"]) for m in messages
    ]


def test_content_key_distinguishes_conversations_from_questions() -> None:
    q = case_from_dict({"question": "Return it?"})
    m = case_from_dict({"messages": [{"role": "user", "content": "Return it?"}]})
    assert q.content_key() != m.content_key()
    gt = case_from_dict({"question": "Return it?", "ground_truth": "yes"})
    assert gt.content_key() != q.content_key()


def test_validate_case_dict_raises_case_error() -> None:
    with pytest.raises(CaseError) as info:
        validate_case_dict({"question": "q", "threshold": 2}, path="tests/test_x.py", line=0)
    assert info.value.field == "threshold"
    validate_case_dict({"question": "q", "checks": [{"type": "max_words", "value": 3}]})


def test_a_valid_line_with_every_check_kind_parses() -> None:
    checks = [
        {"type": "contains", "value": "30", "case_sensitive": True},
        {"type": "not_contains", "value": "fee"},
        {"type": "regex", "value": r"\b30\b"},
        {"type": "json_schema", "value": {"type": "object", "required": ["a"]}},
        {"type": "json_schema", "value": True},
        {"type": "min_words", "value": 0},
        {"type": "max_words", "value": 50},
    ]
    (case,) = parse(line(question="q", checks=checks))
    assert isinstance(case, Case) and len(case.checks) == 7


# -- the speed path ------------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.sampled_from(["easy", "medium", "hard", "adversarial", "", " x", "x ", "a::b", "[x]"]),
)
_value = st.one_of(
    _scalar,
    st.lists(_scalar, max_size=3),
    st.dictionaries(_text, _scalar, max_size=2),
    st.sampled_from([0, 0.5, 1, 1.0, -0.0, 1e-9, 1.0000001, "a" * 201, "a" * 200]),
    st.sampled_from(["pass", "fail", "Pass", [], [""], ["a", "b"], ["a", None], [["a"]]]),
)
_key = st.sampled_from(
    [
        "id",
        "question",
        "ground_truth",
        "rubric",
        "tags",
        "difficulty",
        "threshold",
        "metadata",
        "human_verdict",
    ]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_key, _value, max_size=8), st.booleans())
def test_fast_path_never_accepts_what_the_schema_rejects(obj: dict[str, Any], add_q: bool) -> None:
    if add_q:
        obj.setdefault("question", "How long is the refund window?")
    if _fast_valid(obj):
        errors = [e.message for e in _validator().iter_errors(obj)]
        assert not errors, (obj, errors)


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {"question": st.text(min_size=1, max_size=20)},
        optional={
            "tags": st.lists(
                st.text(min_size=1, max_size=6).filter(lambda t: t.split() == [t]),
                unique=True,
                max_size=3,
            ),
            "threshold": st.floats(min_value=0, max_value=1),
            "difficulty": st.sampled_from(["easy", "medium", "hard", "adversarial"]),
            "ground_truth": st.one_of(
                st.text(max_size=10), st.lists(st.text(max_size=5), min_size=1, max_size=3)
            ),
            "human_verdict": st.sampled_from(["pass", "fail"]),
        },
    )
)
def test_fast_path_and_schema_agree_on_valid_lines(obj: dict[str, Any]) -> None:
    """Both paths must accept ordinary valid lines (the fast path would be useless otherwise)."""
    assert _validator().is_valid(obj)
    assert _fast_valid(obj)


# -- several references and human labels (issue #12) ---------------------------------------------


def test_ground_truth_may_be_a_list_of_acceptable_answers() -> None:
    [case] = parse(line(id="a", question="Who?", ground_truth=["Steven Spielberg", "Spielberg"]))
    assert isinstance(case, Case)
    assert case.ground_truth == "Steven Spielberg"  # the first, for code that reads one
    assert case.references == ("Steven Spielberg", "Spielberg")
    [single] = parse(GOOD)
    assert isinstance(single, Case) and single.references == ("30 days.",)
    [none] = parse(line(question="Hi?"))
    assert isinstance(none, Case) and none.references == () and none.ground_truth is None


def test_references_and_ground_truth_stay_consistent_when_built_in_code() -> None:
    assert Case(id="a", question="q", ground_truth="x").references == ("x",)
    assert Case(id="a", question="q", references=("x", "y")).ground_truth == "x"
    moved = Case(id="a", question="q", ground_truth="y", references=("x", "y"))
    assert moved.references == ("y", "x")  # ground_truth is always the first reference
    assert Case(id="a", question="q").references == ()


def test_several_references_change_the_cache_key_one_does_not() -> None:
    one = Case(id="a", question="q", ground_truth="x")
    assert "references" not in one.content_key()  # existing cache entries stay valid
    two = Case(id="a", question="q", references=("x", "y"))
    assert two.content_key()["references"] == ["x", "y"] and two.content_key() != one.content_key()


def test_human_verdict() -> None:
    [labelled] = parse(line(id="a", question="q", ground_truth="x", human_verdict="fail"))
    assert isinstance(labelled, Case)
    assert labelled.human_verdict == "fail" and labelled.human_passed is False
    [plain] = parse(GOOD)
    assert isinstance(plain, Case) and plain.human_verdict is None and plain.human_passed is None
    # a label is not part of what the judge sees: the cache key ignores it
    assert labelled.content_key() == Case(id="a", question="q", ground_truth="x").content_key()
    with pytest.raises(ValueError):
        Case(id="a", question="q", human_verdict="maybe")  # type: ignore[arg-type]


def test_structure_errors_come_before_schema_errors_and_go_through_validate_case_dict() -> None:
    with pytest.raises(CaseError, match="lone surrogate"):
        validate_case_dict({"question": "q", "metadata": {"k": ["\ud800"]}})
    deep: Any = "x"
    for _ in range(80):
        deep = [deep]
    with pytest.raises(CaseError, match="nested deeper than 64"):
        validate_case_dict({"question": "q", "metadata": {"k": deep}})


def test_nesting_up_to_the_limit_is_fine() -> None:
    ok = b'{"question": "q", "metadata": {"a": ' + b"[" * 62 + b"]" * 62 + b"}}"
    [case] = parse(ok)
    assert isinstance(case, Case)
    assert isinstance(
        parse(ok.replace(b"[" * 62, b"[" * 63).replace(b"]" * 62, b"]" * 63))[0], CaseError
    )


def test_a_surrogate_pair_is_ordinary_text() -> None:
    [case] = parse(b'{"question": "\\ud83d\\ude00 ok?", "ground_truth": "\\ud83d\\ude00"}')
    assert isinstance(case, Case) and case.question == "\U0001f600 ok?"
