"""The values judges produce: who judged, token usage, a judge's result and the final verdict.

A judge turns ``(case, response)`` into a :class:`JudgeResult` (its own opinion: a score in
[0, 1], an optional pass/fail, reasoning, failure modes, token usage). The deterministic rule
checks and the case's checks then produce the final :class:`Verdict`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_llmeval.errors import JudgeError


@dataclass(frozen=True, slots=True)
class JudgeIdentity:
    """Who judged: part of every cache key and of the baseline.

    ``name``/``model``/``prompt_version``/``version`` identify a judge for the baseline;
    ``source_hash`` (custom judges only) is part of the cache key but not of the baseline
    identity, so editing a judge re-judges without refusing the baseline.
    """

    name: str
    model: str | None = None
    prompt_version: str | None = None
    version: str | None = None
    source_hash: str | None = None

    def label(self) -> str:
        """A human-readable, stable identity string (without the source hash)."""
        return _label(self)

    def _label(self) -> str:
        parts = [self.name]
        if self.model:
            parts.append(f"model={self.model}")
        if self.prompt_version:
            parts.append(f"prompt={self.prompt_version}")
        if self.version:
            parts.append(f"version={self.version}")
        return " ".join(parts)

    def to_dict(self) -> dict[str, str | None]:
        """The baseline identity as plain builtins (no source hash)."""
        return {
            "name": self.name,
            "model": self.model,
            "prompt_version": self.prompt_version,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeIdentity:
        return cls(
            name=str(data["name"]),
            model=data.get("model"),
            prompt_version=data.get("prompt_version"),
            version=data.get("version"),
        )


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one or more judge calls (all zero for local judges)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.requests + other.requests,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "requests": self.requests,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        values = [int(data.get(k, 0)) for k in _USAGE_FIELDS]
        # a local judge's (and every cache hit's) usage is all zero: one shared value
        return NO_USAGE if not any(values) else cls(*values)


# every case result carries its judge's label: one string per identity, not one per result
_label = functools.lru_cache(maxsize=64)(JudgeIdentity._label)
_USAGE_FIELDS = tuple(Usage().to_dict())
#: all zero: what a local judge and every cache hit cost; shared, as Usage is immutable
NO_USAGE = Usage()


@dataclass(frozen=True, slots=True)
class JudgeResult:
    """A judge's raw opinion of one response, before rule checks and case checks.

    A panel of judges keeps each member's result in ``members`` (each with ``judge``, the
    member's identity label, and ``passed``, the member's own decision).
    """

    score: float
    reasoning: str = ""
    failure_modes: tuple[str, ...] = ()
    passed: bool | None = None
    usage: Usage = field(default_factory=Usage)
    judge: str | None = None
    members: tuple[JudgeResult, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.score, bool) or not isinstance(self.score, (int, float)):
            raise JudgeError(f"judge returned a non-numeric score: {self.score!r}")
        if not 0.0 <= float(self.score) <= 1.0:
            raise JudgeError(f"judge returned a score outside [0, 1]: {self.score!r}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "score": float(self.score),
            "reasoning": self.reasoning,
            "failure_modes": list(self.failure_modes),
            "passed": self.passed,
            "usage": self.usage.to_dict(),
        }
        # only when set, so a single judge's dict (and its cache entries) stay as they were
        if self.judge is not None:
            out["judge"] = self.judge
        if self.members:
            out["members"] = [m.to_dict() for m in self.members]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JudgeResult:
        judge = data.get("judge")
        return cls(
            score=float(data["score"]),
            reasoning=str(data.get("reasoning", "")),
            failure_modes=tuple(data.get("failure_modes", ())),
            passed=data.get("passed"),
            usage=Usage.from_dict(data.get("usage", {})),
            judge=str(judge) if judge is not None else None,
            members=tuple(cls.from_dict(m) for m in data.get("members", ())),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The final verdict on one response: the judge's result plus every deterministic check."""

    score: float
    passed: bool
    threshold: float
    reasoning: str
    failure_modes: tuple[str, ...]
    judge: JudgeIdentity
    failed_checks: tuple[str, ...] = ()
    checks_only: bool = False
    members: tuple[JudgeResult, ...] = ()  # a panel's members, each with its own verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "passed": self.passed,
            "threshold": self.threshold,
            "reasoning": self.reasoning,
            "failure_modes": list(self.failure_modes),
            "failed_checks": list(self.failed_checks),
            "checks_only": self.checks_only,
            "judge": self.judge.to_dict(),
        }


Preference = Literal["a", "b", "tie"]


@dataclass(frozen=True)
class PairwiseResult:
    """A pairwise comparison asked in both orders.

    ``preference`` is ``"a"``, ``"b"`` or ``"tie"``; a disagreement between the two orders is a
    tie with ``consistent=False``.
    """

    preference: Preference
    consistent: bool
    reasoning: str = ""
    usage: Usage = field(default_factory=Usage)
