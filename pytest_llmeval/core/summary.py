"""The run's counts, derived once from its case results. Pure.

Every output reads these numbers; none of them counts again.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.verdict import Usage

# outcome -> the summary list that names its cases
OUTCOME_LISTS = {
    "regression": "regressions",
    "improvement": "improvements",
    "new_failure": "new_failures",
    "known_failure": "known_failures",
    "flaky": "flaky",
}


def wilson(k: int, n: int) -> tuple[float, float] | None:
    """Wilson 95% interval of k/n (None when n = 0)."""
    if n <= 0:
        return None
    from pytest_llmeval.stats import proportion_ci

    lo, hi = proportion_ci(k, n, method="wilson", level=0.95)
    return float(lo), float(hi)


@dataclass(frozen=True)
class Group:
    """Pass counts of a group of cases (a tag, a difficulty, the whole run)."""

    total: int
    passed: int
    pass_rate: float | None
    ci: tuple[float, float] | None
    mean_score: float | None

    @classmethod
    def of(cls, results: Iterable[CaseResult]) -> Group:
        judged = [r for r in results if r.judged]
        passed = sum(1 for r in judged if r.verdict == "pass")
        # a case judged by its checks alone has no quality score worth averaging
        scores = [r.score for r in judged if r.score is not None and not r.checks_only]
        return cls(
            total=len(judged),
            passed=passed,
            pass_rate=passed / len(judged) if judged else None,
            ci=wilson(passed, len(judged)),
            mean_score=statistics.fmean(scores) if scores else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "passed": self.passed,
            "pass_rate": self.pass_rate,
            "ci": None if self.ci is None else list(self.ci),
            "mean_score": self.mean_score,
        }


@dataclass(frozen=True)
class RepeatView:
    """Repeated sampling: sample-level pass counts."""

    samples: int
    passes: int
    sample_pass_rate: float | None
    sample_pass_rate_ci: tuple[float, float] | None
    per_case: Mapping[str, tuple[int, int]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "passes": self.passes,
            "sample_pass_rate": self.sample_pass_rate,
            "sample_pass_rate_ci": None
            if self.sample_pass_rate_ci is None
            else list(self.sample_pass_rate_ci),
            "per_case": {k: list(v) for k, v in self.per_case.items()},
        }


@dataclass(frozen=True)
class RunCounts:
    """Every count of one run, from its results."""

    total: int
    passed: int
    failed: int
    errors: int
    xfailed: int
    overall: Group
    checks_only: int
    lists: Mapping[str, tuple[str, ...]]
    by_difficulty: Mapping[str, Group]
    by_tag: Mapping[str, Group]
    failure_modes: Mapping[str, int]
    judge_calls: int
    cache_hits: int
    usage: Usage
    sut_usage: Usage | None
    repeat: RepeatView | None
    rerun: tuple[str, ...] = field(default=())  # cases a rerun plugin ran more than once

    @property
    def pass_rate(self) -> float | None:
        return self.overall.pass_rate

    def keys(self, outcome: str) -> tuple[str, ...]:
        return self.lists[OUTCOME_LISTS[outcome]]


def count(results: Sequence[CaseResult]) -> RunCounts:
    """The counts of a run: results are in the order they are shown (sorted by node id)."""
    by_difficulty: dict[str, list[CaseResult]] = {}
    by_tag: dict[str, list[CaseResult]] = {}
    modes: dict[str, int] = {}
    lists: dict[str, list[str]] = {name: [] for name in OUTCOME_LISTS.values()}
    usage = Usage()
    sut_usage: Usage | None = None
    for r in results:
        by_difficulty.setdefault(r.difficulty, []).append(r)
        for tag in r.tags:
            by_tag.setdefault(tag, []).append(r)
        for mode in r.failure_modes:
            modes[mode] = modes.get(mode, 0) + 1
        usage = usage + r.usage
        if r.sut_usage is not None:
            sut_usage = r.sut_usage if sut_usage is None else sut_usage + r.sut_usage
        name = OUTCOME_LISTS.get(r.outcome)
        if name:
            lists[name].append(r.nodeid)
    repeat = None
    if any(r.samples > 1 for r in results):
        judged = [r for r in results if r.judged]
        passes = sum(r.passes for r in judged)
        samples = sum(r.samples for r in judged)
        repeat = RepeatView(
            samples=samples,
            passes=passes,
            sample_pass_rate=passes / samples if samples else None,
            sample_pass_rate_ci=wilson(passes, samples),
            per_case={r.nodeid: (r.passes, r.samples) for r in judged},
        )
    return RunCounts(
        total=len(results),
        passed=sum(1 for r in results if r.verdict == "pass"),
        failed=sum(1 for r in results if r.verdict == "fail"),
        errors=sum(1 for r in results if r.verdict == "error"),
        xfailed=sum(1 for r in results if r.outcome in ("known_failure", "flaky")),
        overall=Group.of(results),
        checks_only=sum(1 for r in results if r.checks_only),
        lists={k: tuple(v) for k, v in lists.items()},
        by_difficulty={k: Group.of(v) for k, v in sorted(by_difficulty.items())},
        by_tag={k: Group.of(v) for k, v in sorted(by_tag.items())},
        failure_modes=dict(sorted(modes.items(), key=lambda kv: (-kv[1], kv[0]))),
        judge_calls=sum(r.judge_calls for r in results),
        cache_hits=sum(r.cache_hits for r in results),
        usage=usage,
        sut_usage=sut_usage,
        repeat=repeat,
        rerun=tuple(r.nodeid for r in results if r.attempts > 1),
    )
