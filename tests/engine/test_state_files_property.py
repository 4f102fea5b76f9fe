"""Generated malformed baselines and history lines through load_baseline / load_history.

Whatever the bytes (wrong types, missing fields, lone surrogates, deep nesting, invalid UTF-8,
truncated JSON, huge numbers, NaN), reading gives a valid value or a StateFileError whose one
line names ``file:line`` (and the field where there is one), and the file is never changed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_llmeval.engine import store
from pytest_llmeval.engine.store import StateFileError, dump_baseline, load_baseline, load_history

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PLACEHOLDER = '"__BAD__"'
MAX_COUNT = 2**53 - 1

# values JSON can hold, of every type
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["pass", "fail", "", "local", "0.5"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# raw JSON text Python's json module reads but no state file may hold
poison = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", '"\\ud800"', '"a\\udfff"']),
    st.sampled_from(['{"\\udc00": 1}', '["ok", "\\ud83d"]']),
    st.integers(31, 6000).map(lambda n: "9" * n),
    st.integers(33, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(33, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)
raw_values = json_values.map(json.dumps) | poison


def parsed(raw: str) -> Any:
    """``raw`` as Python reads it; NaN for what it cannot (too deep, too many digits)."""
    try:
        return json.loads(raw)
    except (RecursionError, ValueError):
        return math.nan


def is_num01(v: Any) -> bool:
    return type(v) in (int, float) and 0 <= v <= 1


def is_count(v: Any, low: int = 0) -> bool:
    integral = type(v) is int or (type(v) is float and math.isfinite(v) and v.is_integer())
    return integral and low <= v <= MAX_COUNT


def is_judge(v: Any) -> bool:
    return v is None or (
        isinstance(v, dict)
        and isinstance(v.get("name"), str)
        and v["name"] != ""
        and all(
            v.get(k) is None or isinstance(v[k], str)
            for k in ("model", "prompt_version", "version")
        )
    )


def clean(v: Any) -> bool:
    """No lone surrogate, NaN, infinity or too-deep nesting anywhere in ``v``."""

    def walk(x: Any, depth: int) -> bool:
        if isinstance(x, str):
            return not any(0xD800 <= ord(c) <= 0xDFFF for c in x)
        if isinstance(x, float):
            return math.isfinite(x)
        if isinstance(x, (list, dict)):
            if depth > store.MAX_DEPTH:
                return False
            items = list(x.items()) if isinstance(x, dict) else [(None, i) for i in x]
            return all((k is None or walk(k, 0)) and walk(i, depth + 1) for k, i in items)
        return True

    return walk(v, 2)


ENTRY_RULES: dict[str, Callable[[Any], bool]] = {
    "verdict": lambda v: isinstance(v, str) and v in ("pass", "fail"),
    "score": is_num01,
    "threshold": is_num01,
    "response_sha256": lambda v: isinstance(v, str),
    "response": lambda v: isinstance(v, str),
    "passes": is_count,  # the generated entries have 1 sample and 0 passes: see below
    "samples": lambda v: is_count(v, 1),
}
TOP_RULES: dict[str, Callable[[Any], bool]] = {
    "judge": is_judge,
    "default_threshold": is_num01,
    "version": lambda v: type(v) is int and v == 1,
}

case_keys = st.from_regex(r"[a-z][a-z_/.]{0,8}\.jsonl::[a-z0-9-]{1,8}", fullmatch=True)
entries = st.fixed_dictionaries(
    {
        "verdict": st.sampled_from(["pass", "fail"]),
        "score": st.floats(0, 1),
        "response_sha256": st.just("ab" * 32),
        "threshold": st.floats(0, 1),
        "passes": st.just(0),
        "samples": st.integers(1, 5),
    },
    optional={"response": st.text(max_size=20)},
)
baselines = st.fixed_dictionaries(
    {
        "version": st.just(1),
        "judge": st.none() | st.just({"name": "local", "model": None, "prompt_version": "sim-2"}),
        "default_threshold": st.just(0.7),
        "cases": st.dictionaries(case_keys, entries, min_size=1, max_size=5),
    }
)


def render(data: dict[str, Any], style: str) -> str:
    """The baseline as the plugin writes it (one case per line) or as a person indents it."""
    if style == "one per line":
        head = [f"  {json.dumps(k)}: {json.dumps(data[k])}," for k in data if k != "cases"]
        cases = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in data["cases"].items()]
        return "\n".join(["{", *head, '  "cases": {', ",\n".join(cases), "  }", "}"]) + "\n"
    return json.dumps(data, indent=2 if style == "indent 2" else 1) + "\n"


def line_with(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.split("\n"), start=1) if needle in ln)


def read_error(load: Callable[[Path], Any], path: Path) -> str | None:
    """Load ``path``: None when it loads, else the StateFileError's message (checked to be one
    printable line naming the file). Any other exception fails the test."""
    before = path.read_bytes()
    message: str | None
    try:
        load(path)
    except StateFileError as exc:
        message = str(exc)
    else:
        message = None
    assert path.read_bytes() == before  # reading never writes
    if message is not None:
        assert message.startswith(f"{path}:"), message
        assert "\n" not in message and message.isprintable(), message
        message.encode("utf-8")
    return message


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("state")


# -- baseline -------------------------------------------------------------------------------------


@SETTINGS
@given(
    data=baselines,
    style=st.sampled_from(["one per line", "indent 1", "indent 2"]),
    where=st.sampled_from(["entry", "top", "judge.name", "missing"]),
    field=st.sampled_from(sorted(ENTRY_RULES)),
    top=st.sampled_from(sorted(TOP_RULES)),
    raw=raw_values,
    pick=st.integers(0, 4),
)
def test_a_bad_baseline_field_is_named_with_its_line(
    folder: Path,
    data: dict[str, Any],
    style: str,
    where: str,
    field: str,
    top: str,
    raw: str,
    pick: int,
) -> None:
    key = sorted(data["cases"])[pick % len(data["cases"])]
    entry = data["cases"][key]
    value = parsed(raw)
    if where == "entry":
        entry[field] = "__BAD__"
        valid = clean(value) and ENTRY_RULES[field](value)
        if field == "passes" and valid:
            valid = value <= entry["samples"]
        named = [f"case '{key}': field '{field}"]
    elif where == "top":
        data[top] = "__BAD__"
        valid = clean(value) and TOP_RULES[top](value)
        named = [f"field '{top}", "baseline version"]
    elif where == "judge.name":
        data["judge"] = {"name": "__BAD__", "model": None}
        valid = clean(value) and isinstance(value, str) and value != ""
        named = ["field 'judge.name"]
    else:
        del entry[field if field in ("verdict", "score") else "score"]
        valid = False
        named = [f"case '{key}': field '{field if field in ('verdict', 'score') else 'score'}'"]
    text = render(data, style)
    expected_line = (
        line_with(text, PLACEHOLDER) if where != "missing" else line_with(text, f'"{key}"')
    )
    text = text.replace(PLACEHOLDER, raw)
    path = folder / "baseline.json"
    path.write_text(text, encoding="utf-8")

    message = read_error(load_baseline, path)
    if valid:
        assert message is None
        loaded = load_baseline(path)
        assert loaded is not None
        again = folder / "again.json"
        again.write_bytes(dump_baseline(loaded, 0.7))  # what loads can be written back
        reloaded = load_baseline(again)
        assert reloaded is not None and dump_baseline(reloaded, 0.7) == again.read_bytes()
        return
    assert message is not None, text
    assert message.startswith(f"{path}:{expected_line}:"), (message, text)
    if "nested deeper" not in message:  # past Python's stack, the line is all there is
        assert any(n in message for n in named), (message, named)


def mutate(data: bytes, how: str, at: int, junk: bytes) -> bytes:
    at %= len(data) + 1
    if how == "truncate":
        return data[:at]
    if how == "insert":
        return data[:at] + junk + data[at:]
    if how == "replace":
        return data[:at] + junk + data[at + len(junk) :]
    return data[:at] + data[at + len(junk) :]  # delete


mutations = st.sampled_from(["truncate", "insert", "replace", "delete"])
junk = st.binary(min_size=1, max_size=6) | st.sampled_from(
    [b"\xff", b"\xed\xa0\x80", b"\xc3", b"NaN", b"1e999", b'"\\ud800"', b"[" * 40, b"{", b'"', b","]
)


@SETTINGS
@given(data=baselines, how=mutations, at=st.integers(0, 10_000), junk=junk)
def test_any_damaged_baseline_is_a_clear_error(
    folder: Path, data: dict[str, Any], how: str, at: int, junk: bytes
) -> None:
    good = render(data, "one per line").encode("utf-8")
    damaged = mutate(good, how, at, junk)
    path = folder / "baseline.json"
    path.write_bytes(damaged)
    message = read_error(load_baseline, path)
    if message is None:
        loaded = load_baseline(path)
        assert loaded is not None
        dump_baseline(loaded, 0.7).decode("utf-8")
        return
    line = int(message[len(str(path)) + 1 :].split(":", 1)[0])
    assert 1 <= line <= damaged.count(b"\n") + 1, message


@SETTINGS
@given(data=baselines, key=st.text(min_size=1, max_size=6), raw=raw_values)
def test_odd_case_keys_are_shown_escaped(
    folder: Path, data: dict[str, Any], key: str, raw: str
) -> None:
    name = json.dumps(key)  # with ensure_ascii: lone surrogates stay escaped in the file
    text = render(data, "one per line").replace(
        '  "cases": {\n', f'  "cases": {{\n    {name}: {{"verdict": "pass", "score": {raw}}},\n', 1
    )
    path = folder / "baseline.json"
    path.write_text(text, encoding="utf-8")
    message = read_error(load_baseline, path)
    if message is not None:
        line = line_with(text, '  "cases": {') + 1
        assert message.startswith(f"{path}:{line}:"), message


# -- history --------------------------------------------------------------------------------------

HISTORY_RULES: dict[str, Callable[[Any], bool]] = {
    "timestamp": lambda v: isinstance(v, str),
    "commit": lambda v: v is None or isinstance(v, str),
    "errors": is_count,
    "pass_rate": is_num01,
    "mean_score": lambda v: v is None or is_num01(v),
    "judge": is_judge,
    "failed": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "errored": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "keys_sha256": lambda v: isinstance(v, str),
    "samples": lambda v: is_count(v, 1),
    "total": lambda v: is_count(v) and v >= 10,  # the generated lines have passed <= 10
    "passed": lambda v: is_count(v) and v <= 10,  # and total == 10
}

history_lines = st.builds(
    lambda passed, old: (
        {"total": 10, "passed": passed, "pass_rate": passed / 10}
        if old
        else {
            "timestamp": "2026-01-01T00:00:00Z",
            "commit": None,
            "total": 10,
            "passed": passed,
            "errors": 0,
            "pass_rate": passed / 10,
            "mean_score": 0.5,
            "judge": {"name": "local", "model": None, "prompt_version": "sim-2", "version": None},
            "failed": [],
            "keys_sha256": "0" * 64,
            "errored": [],
            "samples": 1,
            "extra_from_a_later_version": [1, {"x": None}],
        }
    ),
    st.integers(0, 10),
    st.booleans(),
)


@SETTINGS
@given(
    lines=st.lists(history_lines, min_size=1, max_size=5),
    pick=st.integers(0, 4),
    field=st.sampled_from(sorted(HISTORY_RULES)),
    raw=raw_values,
    missing=st.booleans(),
    blank=st.booleans(),
)
def test_a_bad_history_field_is_named_with_its_line(
    folder: Path,
    lines: list[dict[str, Any]],
    pick: int,
    field: str,
    raw: str,
    missing: bool,
    blank: bool,
) -> None:
    index = pick % len(lines)
    record = lines[index]
    value = parsed(raw)
    if missing and field in ("total", "passed", "pass_rate"):
        del record[field]
        valid = False
    else:
        record[field] = "__BAD__"
        valid = clean(value) and HISTORY_RULES[field](value)
    texts = [json.dumps(r).replace(PLACEHOLDER, raw) for r in lines]
    if blank:  # blank lines count in the numbering
        texts.insert(0, "")
    path = folder / "history.jsonl"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")

    message = read_error(load_history, path)
    if valid:
        assert message is None
        assert len(load_history(path)) == len(lines)
        return
    assert message is not None
    assert message.startswith(f"{path}:{index + 1 + blank}: "), message
    if "nested deeper" not in message:  # past Python's stack, the line is all there is
        assert f"field '{field}" in message, message


@SETTINGS
@given(
    lines=st.lists(history_lines, min_size=1, max_size=4),
    pick=st.integers(0, 3),
    how=mutations,
    at=st.integers(0, 1000),
    junk=junk,
)
def test_any_damaged_history_line_is_a_clear_error(
    folder: Path, lines: list[dict[str, Any]], pick: int, how: str, at: int, junk: bytes
) -> None:
    index = pick % len(lines)
    encoded = [json.dumps(r, ensure_ascii=False).encode("utf-8") for r in lines]
    damaged = mutate(encoded[index], how, at, junk.replace(b"\n", b" "))
    assume(damaged.strip())
    encoded[index] = damaged
    path = folder / "history.jsonl"
    path.write_bytes(b"\n".join(encoded) + b"\n")
    message = read_error(load_history, path)
    if message is not None:
        assert message.startswith(f"{path}:{index + 1}: "), message
        return
    (record,) = load_history(path)[index : index + 1]
    json.dumps(record, ensure_ascii=False, allow_nan=False).encode("utf-8")  # usable downstream


# -- the speed path never accepts what the schema rejects -----------------------------------------


def near(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with a few fields replaced by values of any type."""
    return st.builds(
        lambda changes: {**valid, **changes},
        st.dictionaries(
            st.sampled_from([*valid, "agreement", "sample_passes"]), json_values, max_size=3
        ),
    )


@SETTINGS
@given(data=baselines, key=st.sampled_from(sorted(ENTRY_RULES)), value=json_values)
def test_the_baseline_speed_path_never_accepts_an_invalid_file(
    data: dict[str, Any], key: str, value: Any
) -> None:
    next(iter(data["cases"].values()))[key] = value
    if store._fast_baseline(data):
        assert store._validator("baseline").is_valid(data)


@SETTINGS
@given(line=history_lines.flatmap(near))
def test_the_history_speed_path_never_accepts_an_invalid_line(line: dict[str, Any]) -> None:
    if store._fast_history(line):
        assert store._validator("history").is_valid(line)


@SETTINGS
@given(
    agreement=st.fixed_dictionaries(
        {k: st.integers(0, 3) for k in ("tp", "fp", "fn", "tn")},
        optional={
            "n": json_values,
            "kappa": json_values,
            "confidence": json_values | st.floats(0, 1),
            "method": json_values,
        },
    ),
    pairs=st.dictionaries(case_keys, st.lists(json_values | st.integers(0, 3), max_size=3)),
)
def test_the_speed_path_checks_agreement_and_sample_passes(
    agreement: dict[str, Any], pairs: dict[str, Any]
) -> None:
    line = {
        "total": 1,
        "passed": 1,
        "pass_rate": 1.0,
        "agreement": agreement,
        "sample_passes": pairs,
    }
    if store._fast_history(line):
        assert store._validator("history").is_valid(line)
