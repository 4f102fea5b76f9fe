"""Accepting a run: how its case results change the baseline snapshot and the history. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.core.baseline import RESPONSE_TEXT_LIMIT, Baseline, BaselineEntry
from pytest_llmeval.core.gate import history_case_fields
from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.verdict import JudgeIdentity


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
