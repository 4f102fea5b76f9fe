"""Deterministic checks and the step from a judge's result to the final :class:`Verdict`.

Pure: no pytest, no I/O. Rule checks (from the seed) apply to every judge: fewer than
``min_words`` words is ``too_short`` (score capped at 0.3), more than ``max_words`` is
``too_long`` (reported, not failing by itself, as in the seed). A case's own ``checks`` must
all pass.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Verdict

TOO_SHORT_CAP = 0.3


@dataclass(frozen=True)
class RuleSettings:
    """Rule checks applied to every response, whatever the judge."""

    min_words: int = 5
    max_words: int = 600
    default_threshold: float = 0.7


def word_count(text: str) -> int:
    return len(text.split())


def run_check(check: Mapping[str, Any], response: str) -> str | None:
    """Run one case check; return a one-line description of the failure, or None if it passed."""
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
        flags = 0 if sensitive else re.IGNORECASE
        if re.search(value, response, flags) is None:
            return f"regex {value!r}: no match"
        return None
    if kind == "json_schema":
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import best_match

        try:
            document = json.loads(response)
        except json.JSONDecodeError as exc:
            return f"json_schema: response is not JSON ({exc.msg})"
        error = best_match(Draft202012Validator(value).iter_errors(document))
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
    if words < rules.min_words:
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
