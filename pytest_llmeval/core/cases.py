"""Evaluation cases: the :class:`Case` model and JSONL loading with file:line errors.

Pure: no pytest. Reading the file's bytes is the caller's job (:func:`parse_jsonl` takes bytes).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pytest_llmeval.core.jsontext import structure_problem
from pytest_llmeval.errors import CaseError

DIFFICULTIES = ("easy", "medium", "hard", "adversarial")
HUMAN_VERDICTS = ("pass", "fail")
MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a case line (the line itself is level 1)."""
HumanVerdict = Literal["pass", "fail"]


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a multi-turn conversation."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Case:
    """One evaluation case (one line of a JSONL file).

    Exactly one of ``question`` and ``messages`` is set. ``question`` is always usable by a
    system under test: for a conversation it is the content of the last user turn.

    ``references`` holds every acceptable answer (``ground_truth`` may be a list in a case
    line); ``ground_truth`` is the first of them, for code that reads one. Either may be given
    to the constructor; ``ground_truth``, when given, is always ``references[0]``.
    ``human_verdict`` is a person's label of the response a judge is checked against.
    """

    id: str
    question: str
    messages: tuple[Message, ...] | None = None
    ground_truth: str | None = None
    rubric: str | None = None
    tags: tuple[str, ...] = ()
    difficulty: str = "medium"
    threshold: float | None = None
    checks: tuple[Mapping[str, Any], ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    file: str = ""
    line: int = 0
    references: tuple[str, ...] = ()
    human_verdict: HumanVerdict | None = None

    def __post_init__(self) -> None:
        references = self.references
        truth = self.ground_truth
        if truth is not None:
            if not references or references[0] != truth:
                references = (truth, *(r for r in references if r != truth))
                object.__setattr__(self, "references", references)
        elif references:
            object.__setattr__(self, "ground_truth", references[0])
        if type(references) is not tuple:
            object.__setattr__(self, "references", tuple(references))
        if self.human_verdict is not None and self.human_verdict not in HUMAN_VERDICTS:
            raise ValueError(f"human_verdict must be 'pass' or 'fail', got {self.human_verdict!r}")

    @property
    def is_conversation(self) -> bool:
        return self.messages is not None

    @property
    def human_passed(self) -> bool | None:
        """The human label as a bool (None when the case carries none)."""
        return None if self.human_verdict is None else self.human_verdict == "pass"

    def content_key(self) -> dict[str, Any]:
        """Everything about the case that can change a verdict (for cache keys)."""
        return {
            "question": self.question if self.messages is None else None,
            "messages": [[m.role, m.content] for m in self.messages]
            if self.messages is not None
            else None,
            "ground_truth": self.ground_truth,
            "rubric": self.rubric,
            # only with several, so single-reference cases keep their existing cache keys
            **({"references": list(self.references)} if len(self.references) > 1 else {}),
        }


def content_id(question: str | None, messages: Any) -> str:
    """Stable id for a case without an explicit ``id``: a hash of its input."""
    payload = json.dumps({"q": question, "m": messages}, sort_keys=True, ensure_ascii=False)
    return "case-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


_SCHEMA_PATH = Path(__file__).parent.parent / "schemas" / "case.schema.json"


@lru_cache(maxsize=1)
def case_schema() -> dict[str, Any]:
    """The case JSON Schema (2020-12) shipped with the package."""
    with open(_SCHEMA_PATH, encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(case_schema())


def _field_path(parts: Iterator[Any] | Any) -> str | None:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


_ID_RE = re.compile(r"^(?!.*::)[^\s\[\]](?:[^\n\r\[\]]*[^\s\[\]])?$")
_FAST_KEYS = frozenset(
    (
        "id",
        "question",
        "ground_truth",
        "rubric",
        "tags",
        "difficulty",
        "threshold",
        "metadata",
        "human_verdict",
    )
)


def _fast_valid(obj: dict[str, Any]) -> bool:
    """True only for simple lines that certainly satisfy the schema (a speed path).

    Anything unusual (checks, messages, odd types) returns False and goes through the full
    jsonschema validation; ``tests/test_cases.py`` checks this never accepts an invalid line.
    """
    if not _FAST_KEYS.issuperset(obj):
        return False
    question = obj.get("question")
    if type(question) is not str or not question:
        return False
    case_id = obj.get("id")
    if "id" in obj and (  # an explicit null id is a schema error, not "no id"
        type(case_id) is not str or len(case_id) > 200 or not _ID_RE.match(case_id)
    ):
        return False
    if "rubric" in obj and type(obj["rubric"]) is not str:
        return False
    if "ground_truth" in obj:
        truth = obj["ground_truth"]
        if type(truth) is list:
            if not truth or any(type(t) is not str for t in truth):
                return False
        elif type(truth) is not str:
            return False
    if "human_verdict" in obj and obj["human_verdict"] not in HUMAN_VERDICTS:
        return False
    if "difficulty" in obj and obj["difficulty"] not in DIFFICULTIES:
        return False
    if "threshold" in obj:
        threshold = obj["threshold"]
        if type(threshold) not in (int, float) or not 0 <= threshold <= 1:
            return False
    if "metadata" in obj and type(obj["metadata"]) is not dict:
        return False
    if "tags" in obj:
        tags = obj["tags"]
        if type(tags) is not list or len(set(map(str, tags))) != len(tags):
            return False
        for tag in tags:
            if type(tag) is not str or not tag or len(tag.split()) != 1 or tag.strip() != tag:
                return False
    return True


def _schema_error(path: str, line: int, obj: Any) -> CaseError | None:
    """The clearest schema error of ``obj``, or None when it is valid."""
    if isinstance(obj, dict) and _fast_valid(obj):
        return None
    from jsonschema.exceptions import best_match

    if not isinstance(obj, dict):
        kind = type(obj).__name__ if obj is not None else "null"
        return CaseError(path, line, None, f"expected a JSON object, got {kind}")
    has_q, has_m = "question" in obj, "messages" in obj
    if has_q and has_m:
        return CaseError(path, line, "question", "has both 'question' and 'messages': use one")
    if not has_q and not has_m:
        return CaseError(path, line, "question", "needs 'question' or 'messages'")
    validator = _validator()
    if validator.is_valid(obj):
        return None
    error = best_match(validator.iter_errors(obj))
    if error is None:  # pragma: no cover - is_valid said there is one
        return None
    field_name = _field_path(error.absolute_path)
    message = error.message
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        prefix = f"{field_name}." if field_name else ""
        field_name = prefix + extra[0] if extra else field_name
        message = f"unknown field (allowed: {', '.join(allowed)})"
    return CaseError(path, line, field_name, message)


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _structure_error(path: str, line: int, obj: Any, raw: bytes | None = None) -> CaseError | None:
    """Lone surrogates anywhere and nesting deeper than :data:`MAX_DEPTH` (both crash later,
    far from the line: a cache key cannot encode a surrogate, a deep value overflows the
    stack). With the line's ``raw`` bytes, a cheap look skips the walk for ordinary lines."""
    if (
        raw is not None
        and (b"\\u" not in raw or not _SURROGATE_ESCAPE.search(raw))
        and raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH
    ):
        return None
    problem = structure_problem(obj, max_depth=MAX_DEPTH)
    if problem is None:
        return None
    parts, message = problem
    return CaseError(path, line, _field_path(iter(parts)), message)


def _semantic_error(path: str, line: int, obj: dict[str, Any]) -> CaseError | None:
    """Checks the schema cannot express: compilable regexes and valid nested JSON schemas."""
    for i, check in enumerate(obj.get("checks", ())):
        field_name = f"checks[{i}].value"
        if check["type"] == "regex":
            import regex  # type: ignore[import-untyped]  # the engine the checks run on

            try:
                regex.compile(check["value"])
            except regex.error as exc:
                return CaseError(path, line, field_name, f"invalid regular expression: {exc}")
        elif check["type"] == "json_schema":
            from jsonschema import Draft202012Validator
            from jsonschema.exceptions import SchemaError

            try:
                Draft202012Validator.check_schema(check["value"])
            except SchemaError as exc:
                return CaseError(path, line, field_name, f"invalid JSON schema: {exc.message}")
    messages = obj.get("messages")
    if messages is not None and messages[-1]["role"] != "user":
        return CaseError(
            path, line, f"messages[{len(messages) - 1}].role", "the last turn must be 'user'"
        )
    return None


# Most cases of a suite share a few tag sets: one tuple (of interned strings) per set, not one a
# case. Bounded, so a suite of unique tags cannot grow it without end.
_TAGS: dict[tuple[str, ...], tuple[str, ...]] = {}


def _shared_tags(tags: Any) -> tuple[str, ...]:
    key = tuple(tags)
    shared = _TAGS.get(key)
    if shared is not None:
        return shared
    value = tuple(sys.intern(t) for t in key)
    if len(_TAGS) < 4096:
        _TAGS[value] = value
    return value


def case_from_dict(obj: dict[str, Any], *, path: str = "", line: int = 0) -> Case:
    """Build a Case from an already validated JSON object."""
    raw_messages = obj.get("messages")
    messages = (
        tuple(Message(m["role"], m["content"]) for m in raw_messages)
        if raw_messages is not None
        else None
    )
    question = obj["question"] if messages is None else messages[-1].content
    case_id = obj.get("id") or content_id(obj.get("question"), raw_messages)
    threshold = obj.get("threshold")
    truth = obj.get("ground_truth")
    references = tuple(truth) if isinstance(truth, list) else (truth,) if truth is not None else ()
    return Case(
        id=case_id,
        question=question,
        messages=messages,
        ground_truth=references[0] if references else None,
        references=references,
        human_verdict=obj.get("human_verdict"),
        rubric=obj.get("rubric"),
        tags=_shared_tags(obj.get("tags", ())),
        difficulty=sys.intern(obj.get("difficulty", "medium")),
        threshold=float(threshold) if threshold is not None else None,
        checks=tuple(obj.get("checks", ())),
        metadata=obj.get("metadata", {}),
        file=path,
        line=line,
    )


def validate_case_dict(obj: Any, *, path: str = "<case>", line: int = 0) -> None:
    """Raise CaseError if ``obj`` is not a valid case line (schema and semantic checks)."""
    error = (
        _structure_error(path, line, obj)
        or _schema_error(path, line, obj)
        or _semantic_error(path, line, obj)
    )
    if error is not None:
        raise error


def iter_cases(path: str, data: bytes) -> Iterator[Case | CaseError]:
    """Parse a JSONL file's bytes, yielding a Case or a CaseError for each non-blank line.

    Accepts a UTF-8 BOM, CRLF line ends and blank lines. Duplicate ids within the file are
    errors at the later line.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield CaseError(path, lineno, None, f"invalid UTF-8 at byte {exc.start} of the line")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            yield CaseError(path, lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield CaseError(
                path, lineno, None, f"nested deeper than {MAX_DEPTH} levels of arrays and objects"
            )
            continue
        error = (
            _structure_error(path, lineno, obj, raw)
            or _schema_error(path, lineno, obj)
            or _semantic_error(path, lineno, obj)
        )
        if error is not None:
            yield error
            continue
        case = case_from_dict(obj, path=path, line=lineno)
        if case.id in seen:
            yield CaseError(
                path, lineno, "id", f"duplicate id {case.id!r} (first used on line {seen[case.id]})"
            )
            continue
        seen[case.id] = lineno
        yield case
