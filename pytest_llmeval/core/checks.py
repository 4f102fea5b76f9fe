"""Deterministic checks and the step from a judge's result to the final :class:`Verdict`.

Pure: no pytest, no I/O. Rule checks apply to every judge: a case *without* a reference that
gets fewer than ``min_words`` words is ``too_short`` (score capped at 0.3) — with a reference
the judge compares the answer with it, and a two-word reference must not make a two-word answer
fail; more than ``max_words`` is ``too_long`` (reported, not failing by itself). A case's own
``checks`` must all pass.

Regular expressions (``regex`` checks and ``pattern``/``patternProperties`` inside
``json_schema`` checks) run on the ``regex`` package, which can stop a match: a catastrophic
pattern like ``(a|aa)+$`` fails its check after :data:`CHECK_TIMEOUT` seconds with a reason
instead of hanging the run (the standard ``re`` module cannot be interrupted).
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import regex  # type: ignore[import-untyped]  # the stubs are not worth a dependency

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Verdict

TOO_SHORT_CAP = 0.3
CHECK_TIMEOUT = 1.0
"""Seconds one check's regular expressions may run in total before the check fails."""

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("llmeval_check_deadline")


class CheckTimeout(Exception):
    """A check's regular expression ran past :data:`CHECK_TIMEOUT`."""


def _search(pattern: str, text: str, flags: int = 0) -> bool:
    """``regex.search`` bounded by the current check's deadline."""
    remaining = _deadline.get(time.monotonic() + CHECK_TIMEOUT) - time.monotonic()
    if remaining <= 0:
        raise CheckTimeout
    try:
        return regex.search(pattern, text, flags, timeout=remaining) is not None
    except TimeoutError:
        raise CheckTimeout from None


def _bounded_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _bounded_pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _bounded_additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Any
) -> Iterator[Any]:
    from jsonschema import _keywords

    if "patternProperties" not in schema or not validator.is_type(instance, "object"):
        plain: Any = _keywords.additionalProperties  # a generator, typed as returning None
        yield from plain(validator, additional, instance, schema)
        return
    from jsonschema.exceptions import ValidationError

    properties = schema.get("properties", {})
    patterns = list(schema["patternProperties"])
    extras = [
        key
        for key in instance
        if key not in properties and not any(_search(p, key) for p in patterns)
    ]
    if validator.is_type(additional, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], additional, path=extra)
    elif not additional and extras:
        joined = ", ".join(repr(each) for each in sorted(extras))
        yield ValidationError(f"{joined} do(es) not match any of the regexes: {patterns}")


@lru_cache(maxsize=1)
def _schema_validator_class() -> Any:
    """Draft 2020-12 with every keyword that runs a regex bounded by the check's deadline."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator,
        {
            "pattern": _bounded_pattern,
            "patternProperties": _bounded_pattern_properties,
            "additionalProperties": _bounded_additional_properties,
        },
    )


@dataclass(frozen=True)
class RuleSettings:
    """Rule checks applied to every response, whatever the judge."""

    min_words: int = 5
    max_words: int = 600
    default_threshold: float = 0.7


def word_count(text: str) -> int:
    return len(text.split())


def run_check(check: Mapping[str, Any], response: str) -> str | None:
    """Run one case check; return a one-line description of the failure, or None if it passed.

    A regular expression that runs past :data:`CHECK_TIMEOUT` fails the check with that reason.
    """
    token = _deadline.set(time.monotonic() + CHECK_TIMEOUT)
    try:
        return _run_check(check, response)
    except CheckTimeout:
        return (
            f"{check['type']}: a regular expression ran past {CHECK_TIMEOUT:g} s and was"
            " stopped (catastrophic backtracking? simplify the pattern)"
        )
    finally:
        _deadline.reset(token)


def _run_check(check: Mapping[str, Any], response: str) -> str | None:
    kind = check["type"]
    value = check["value"]
    sensitive = bool(check.get("case_sensitive", False))
    if kind in ("contains", "not_contains"):
        haystack, needle = (response, value) if sensitive else (response.lower(), value.lower())
        found = needle in haystack
        if kind == "contains" and not found:
            return f"contains {value!r}: not found"
        if kind == "not_contains" and found:
            return f"not_contains {value!r}: found"
        return None
    if kind == "regex":
        flags = 0 if sensitive else regex.IGNORECASE
        if not _search(value, response, flags):
            return f"regex {value!r}: no match"
        return None
    if kind == "json_schema":
        from jsonschema.exceptions import best_match

        try:
            document = json.loads(response)
        except json.JSONDecodeError as exc:
            return f"json_schema: response is not JSON ({exc.msg})"
        except RecursionError:
            return "json_schema: response is nested too deeply to read"
        try:
            error = best_match(_schema_validator_class()(value).iter_errors(document))
        except RecursionError:
            return "json_schema: response is nested too deeply to validate"
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            return f"json_schema: at {where}: {error.message}"
        return None
    if kind == "min_words":
        count = word_count(response)
        return f"min_words {value}: has {count}" if count < value else None
    if kind == "max_words":
        count = word_count(response)
        return f"max_words {value}: has {count}" if count > value else None
    raise ValueError(f"unknown check type {kind!r}")  # the schema prevents this


def finalize(
    case: Case,
    response: str,
    result: JudgeResult,
    judge: JudgeIdentity,
    rules: RuleSettings,
    *,
    checks_only: bool = False,
) -> Verdict:
    """Combine the judge's result with rule checks and case checks into the final verdict."""
    threshold = case.threshold if case.threshold is not None else rules.default_threshold
    score = float(result.score)
    modes = list(result.failure_modes)
    words = word_count(response)
    if words < rules.min_words and not case.references:
        modes.append("too_short")
        score = min(score, TOO_SHORT_CAP)
    if words > rules.max_words:
        modes.append("too_long")
    failed = tuple(f for f in (run_check(c, response) for c in case.checks) if f is not None)
    if failed:
        modes.append("check_failed")
    if score < threshold:
        modes.append("quality_below_threshold")
    passed = (
        score >= threshold
        and not failed
        and "too_short" not in modes
        and result.passed is not False
    )
    if result.passed is False and score >= threshold:
        modes.append("judge_failed")
    return Verdict(
        score=score,
        passed=passed,
        threshold=threshold,
        reasoning=result.reasoning,
        failure_modes=tuple(dict.fromkeys(modes)),
        judge=judge,
        failed_checks=failed,
        checks_only=checks_only,
        members=result.members,
    )


def system_error_verdict(
    case: Case, mode: str, message: str, judge: JudgeIdentity, rules: RuleSettings
) -> Verdict:
    """A failed verdict for a SUT that raised (``system_error``) or timed out (``timeout``)."""
    threshold = case.threshold if case.threshold is not None else rules.default_threshold
    return Verdict(
        score=0.0,
        passed=False,
        threshold=threshold,
        reasoning=message,
        failure_modes=(mode,),
        judge=judge,
    )
