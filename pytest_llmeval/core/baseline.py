"""Baseline values: one entry per case, and what accepting a run does to them. Pure.

Reading and writing the files is :mod:`pytest_llmeval.engine.store`'s job; this module says what
an entry holds and how a run's results change the snapshot and the history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_llmeval.core.verdict import JudgeIdentity

if TYPE_CHECKING:
    from pytest_llmeval.core.result import CaseResult

BASELINE_VERSION = 1
# the accepted answer is kept (cut to this many characters) so a regression can show old vs new
RESPONSE_TEXT_LIMIT = 2000


@dataclass(frozen=True)
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
            verdict=verdict,
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


@dataclass(frozen=True)
class BaselineUpdate:
    baseline: Baseline
    created: int
    updated: int
    removed: int
    kept_errors: int = 0  # cases that errored now and kept their old entry

    def describe(self) -> str:
        kept = (
            f", {self.kept_errors} errored case{'s' if self.kept_errors != 1 else ''} kept as"
            " they were"
            if self.kept_errors
            else ""
        )
        return (
            f"{self.created} created, {self.updated} updated, {self.removed} removed,"
            f" {len(self.baseline.entries)} case{'s' if len(self.baseline.entries) != 1 else ''}"
            + kept
        )


def _cut(text: str) -> str:
    return text if len(text) <= RESPONSE_TEXT_LIMIT else text[:RESPONSE_TEXT_LIMIT] + "…"


def updated_baseline(
    old: Baseline | None,
    results: Iterable[CaseResult],
    judge: JudgeIdentity,
    *,
    unused: Iterable[str] = (),
    drop_unused: bool = False,
) -> BaselineUpdate:
    """The baseline after accepting this run's verdicts.

    A case whose judge errored keeps its old entry (an error is never a verdict); only a full
    run may drop the entries of cases that are gone (``drop_unused``).
    """
    entries = dict(old.entries) if old else {}
    created = updated = removed = kept = 0
    for r in results:
        if r.verdict == "error" or r.score is None:
            kept += r.nodeid in entries
            continue
        new = BaselineEntry(
            verdict=r.verdict,
            score=float(r.score),
            response_sha256=r.response_sha256,
            threshold=float(r.threshold),
            passes=r.passes,
            samples=r.samples,
            response=_cut(r.response),
        )
        if r.nodeid not in entries:
            created += 1
        elif entries[r.nodeid] != new:
            updated += 1
        entries[r.nodeid] = new
    if drop_unused:
        for key in unused:
            if entries.pop(key, None) is not None:
                removed += 1
    return BaselineUpdate(Baseline(judge, entries), created, updated, removed, kept)


def history_line(
    *,
    passed: int,
    failed: int,
    errors: int,
    pass_rate: float | None,
    mean_score: float | None,
    results: Iterable[CaseResult],
    judge: JudgeIdentity,
    commit: str | None,
    timestamp: str,
) -> dict[str, Any]:
    """One history line: the run's counts, its judge, the keys that failed, and the per-case
    fields the gate reads back (:func:`pytest_llmeval.core.gate.history_case_fields`)."""
    from pytest_llmeval.core.gate import history_case_fields

    results = list(results)
    return {
        "timestamp": timestamp,
        "commit": commit,
        "total": passed + failed,
        "passed": passed,
        "errors": errors,
        "pass_rate": pass_rate,
        "mean_score": None if mean_score is None else round(mean_score, 6),
        "judge": judge.to_dict(),
        "failed": sorted(r.nodeid for r in results if r.verdict == "fail"),
        **history_case_fields([(r.nodeid, r.verdict, r.passes, r.samples) for r in results]),
    }
