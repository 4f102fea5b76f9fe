"""Baseline values: one entry per case, and what accepting a run does to them. Pure.

Reading and writing the files is :mod:`pytest_llmeval.engine.store`'s job; this module says what
an entry holds; :mod:`pytest_llmeval.core.accept` says how a run's results change them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_llmeval.core.verdict import JudgeIdentity

BASELINE_VERSION = 1
# the accepted answer is kept (cut to this many characters) so a regression can show old vs new
RESPONSE_TEXT_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class BaselineEntry:
    """The accepted state of one case."""

    verdict: str  # "pass" | "fail"
    score: float
    response_sha256: str
    threshold: float
    passes: int = 1
    samples: int = 1
    response: str | None = None  # the accepted answer's text (cut), when the baseline has it

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "score": round(self.score, 6),
            "response_sha256": self.response_sha256,
            "threshold": self.threshold,
            "passes": self.passes,
            "samples": self.samples,
        }
        if self.response is not None:
            out["response"] = self.response
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BaselineEntry:
        """An entry from its file form; raises KeyError/TypeError/ValueError on a bad one."""
        verdict = raw["verdict"]
        if verdict not in ("pass", "fail"):
            raise ValueError(f"verdict must be 'pass' or 'fail', got {verdict!r}")
        response = raw.get("response")
        if response is not None and not isinstance(response, str):
            raise TypeError(f"response must be a string, got {type(response).__name__}")
        return cls(
            verdict="pass" if verdict == "pass" else "fail",  # one string each, not one an entry
            score=float(raw["score"]),
            response_sha256=str(raw.get("response_sha256", "")),
            threshold=float(raw.get("threshold", 0.0)),
            passes=int(raw.get("passes", 1 if verdict == "pass" else 0)),
            samples=int(raw.get("samples", 1)),
            response=response,
        )


@dataclass(frozen=True)
class Baseline:
    judge: JudgeIdentity | None
    entries: Mapping[str, BaselineEntry] = field(default_factory=dict)
