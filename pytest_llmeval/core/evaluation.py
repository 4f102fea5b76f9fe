"""What one run learnt about one case: its samples (SUT answer + verdict) and the judge's cost."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.verdict import NO_USAGE, Usage, Verdict


@dataclass
class Sample:
    """One SUT call and its verdict."""

    response: str
    verdict: Verdict
    cached: bool
    latency_s: float


@dataclass
class Evaluation:
    """Everything learnt about one case in this run (filled in by the engine as it goes)."""

    case: Case
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None  # the judge could not answer: an ERROR, never a verdict
    usage: Usage = NO_USAGE  # one shared zero value: a cached rerun adds nothing to it
    judge_calls: int = 0
    cache_hits: int = 0
    sut_usage: Usage | None = None

    @property
    def passes(self) -> int:
        return sum(1 for s in self.samples if s.verdict.passed)
