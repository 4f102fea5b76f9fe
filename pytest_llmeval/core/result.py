"""The one typed result of one case in one run, built by one pure function.

:class:`CaseResult` is what every output shows: the item's outcome, the terminal summary, the
JSON report (``to_dict`` is its ``cases`` entry), the HTML and Markdown reports, JUnit
properties, the shard merge, the baseline update and the history line. ``to_dict`` /
``from_dict`` is its only wire format (the xdist report attribute, the JSON report).
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pytest_llmeval.core.baseline import BaselineEntry
from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.evaluation import Evaluation
from pytest_llmeval.core.verdict import JudgeIdentity, Usage

VerdictName = Literal["pass", "fail", "error"]
# outcome -> what pytest reports for the item
OUTCOME_PYTEST = {
    "passed": "passed",
    "improvement": "passed",
    "regression": "failed",
    "new_failure": "failed",
    "known_failure": "xfailed",
    "flaky": "xfailed",
    "error": "error",
}
FAILING_OUTCOMES = ("regression", "new_failure")
XFAIL_OUTCOMES = ("known_failure", "flaky")


def response_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _answer_digest(text: str, baseline: BaselineEntry | None) -> str:
    """The answer's sha256; the baseline's own string when they are equal (an unchanged answer
    then costs no second 64-character string)."""
    digest = response_sha256(text)
    if baseline is not None and baseline.response_sha256 == digest:
        return baseline.response_sha256
    return digest


@dataclass(frozen=True, slots=True)
class BaselineSnapshot:
    """The case's baseline entry as this run compared against it."""

    verdict: str
    score: float | None
    passes: int
    samples: int
    response: str | None = None

    @classmethod
    def of(cls, entry: BaselineEntry) -> BaselineSnapshot:
        return cls(entry.verdict, entry.score, entry.passes, entry.samples, entry.response)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": self.score,
            "passes": self.passes,
            "samples": self.samples,
            "response": self.response,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaselineSnapshot:
        return cls(
            verdict=str(data["verdict"]),
            score=None if data.get("score") is None else float(data["score"]),
            passes=int(data.get("passes", 1)),
            samples=int(data.get("samples", 1)),
            response=data.get("response"),
        )


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """Compare mode: the candidate SUT's verdict on the same case."""

    verdict: VerdictName
    score: float | None
    response: str
    failure_modes: tuple[str, ...]
    reasoning: str
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": self.score,
            "response": self.response,
            "failure_modes": list(self.failure_modes),
            "reasoning": self.reasoning,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CandidateResult:
        return cls(
            verdict=data["verdict"],
            score=data.get("score"),
            response=str(data.get("response", "")),
            failure_modes=tuple(data.get("failure_modes", ())),
            reasoning=str(data.get("reasoning", "")),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True)
class CaseResult:
    """One case's result in one run. ``nodeid`` is also its baseline key."""

    nodeid: str
    id: str
    file: str
    line: int
    question: str | None
    messages: tuple[tuple[str, str], ...] | None
    ground_truth: str | None
    references: tuple[str, ...]
    rubric: str | None
    tags: tuple[str, ...]
    difficulty: str
    human_verdict: str | None
    verdict: VerdictName
    outcome: str
    outcome_detail: str
    evidence: Mapping[str, Any] | None  # the numbers the per-case decision used
    score: float | None
    threshold: float
    failure_modes: tuple[str, ...]
    failed_checks: tuple[str, ...]
    reasoning: str
    error: str | None
    checks_only: bool
    baseline: BaselineSnapshot | None
    samples: int
    passes: int
    sample_verdicts: tuple[bool, ...]
    judge: str
    response: str
    response_sha256: str
    latency_s: float | None
    judge_calls: int
    cache_hits: int
    usage: Usage
    sut_usage: Usage | None
    candidate: CandidateResult | None = None
    attempts: int = 1  # > 1 when a rerun plugin ran the case again
    panel: tuple[Mapping[str, Any], ...] = ()  # a judge panel: {judge, score, passed} per member

    @property
    def judged(self) -> bool:
        return self.verdict != "error"

    @property
    def pytest_outcome(self) -> str:
        return OUTCOME_PYTEST[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "id": self.id,
            "file": self.file,
            "line": self.line,
            "question": self.question,
            "messages": None
            if self.messages is None
            else [{"role": r, "content": c} for r, c in self.messages],
            "ground_truth": self.ground_truth,
            "references": list(self.references),
            "rubric": self.rubric,
            "tags": list(self.tags),
            "difficulty": self.difficulty,
            "human_verdict": self.human_verdict,
            "verdict": self.verdict,
            "outcome": self.outcome,
            "outcome_detail": self.outcome_detail,
            "evidence": None if self.evidence is None else dict(self.evidence),
            "score": self.score,
            "threshold": self.threshold,
            "failure_modes": list(self.failure_modes),
            "failed_checks": list(self.failed_checks),
            "reasoning": self.reasoning,
            "error": self.error,
            "checks_only": self.checks_only,
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "samples": self.samples,
            "passes": self.passes,
            "sample_verdicts": list(self.sample_verdicts),
            "judge": self.judge,
            "response": self.response,
            "response_sha256": self.response_sha256,
            "latency_s": self.latency_s,
            "judge_calls": self.judge_calls,
            "cache_hits": self.cache_hits,
            "usage": self.usage.to_dict(),
            "sut_usage": None if self.sut_usage is None else self.sut_usage.to_dict(),
            "candidate": None if self.candidate is None else self.candidate.to_dict(),
            "attempts": self.attempts,
            "panel": [dict(m) for m in self.panel],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CaseResult:
        """The inverse of :meth:`to_dict`; also reads reports written before a field existed."""
        messages = d.get("messages")
        gt = d.get("ground_truth")
        refs = d.get("references")
        if refs is None:
            refs = [gt] if isinstance(gt, str) else (gt or [])
        baseline = d.get("baseline")
        candidate = d.get("candidate")
        sut_usage = d.get("sut_usage")
        return cls(
            nodeid=str(d["nodeid"]),
            id=str(d["id"]),
            file=str(d.get("file", str(d["nodeid"]).split("::")[0])),
            line=int(d.get("line", 0)),
            question=d.get("question"),
            messages=None
            if messages is None
            else tuple((str(m["role"]), str(m["content"])) for m in messages),
            ground_truth=gt if isinstance(gt, str) or gt is None else (gt[0] if gt else None),
            references=tuple(str(r) for r in refs),
            rubric=d.get("rubric"),
            tags=tuple(d.get("tags", ())),
            difficulty=_text(d, "difficulty", "medium"),
            human_verdict=d.get("human_verdict"),
            verdict=d["verdict"],
            outcome=str(d["outcome"]),
            outcome_detail=_text(d, "outcome_detail"),
            evidence=d.get("evidence"),
            score=None if d.get("score") is None else float(d["score"]),
            threshold=float(d.get("threshold", 0.0)),
            failure_modes=tuple(d.get("failure_modes", ())),
            failed_checks=tuple(d.get("failed_checks", ())),
            reasoning=_text(d, "reasoning"),
            error=d.get("error"),
            checks_only=bool(d.get("checks_only", False)),
            baseline=None if baseline is None else BaselineSnapshot.from_dict(baseline),
            samples=int(d.get("samples", 1)),
            passes=int(d.get("passes", 1 if d["verdict"] == "pass" else 0)),
            sample_verdicts=tuple(bool(v) for v in d.get("sample_verdicts", ())),
            judge=_text(d, "judge"),
            response=_text(d, "response"),
            response_sha256=_text(d, "response_sha256"),
            latency_s=d.get("latency_s"),
            judge_calls=int(d.get("judge_calls", 0)),
            cache_hits=int(d.get("cache_hits", 0)),
            usage=Usage.from_dict(d.get("usage") or {}),
            sut_usage=None if sut_usage is None else Usage.from_dict(sut_usage),
            candidate=None if candidate is None else CandidateResult.from_dict(candidate),
            attempts=int(d.get("attempts", 1)),
            panel=tuple(dict(m) for m in d.get("panel") or ()),
        )


def _text(d: Mapping[str, Any], key: str, default: str = "") -> str:
    """A text field of a stored record; a null reads as absent (never as the text "None")."""
    value = d.get(key)
    return default if value is None else str(value)


@dataclass(frozen=True)
class ResultSettings:
    """The settings a case result depends on."""

    threshold: float = 0.7
    repeat: int = 1
    repeat_pass_fraction: float = 1.0


@dataclass(frozen=True)
class Classified:
    """What the gate said of one case (see :func:`pytest_llmeval.core.gate.classify`)."""

    outcome: str
    detail: str = ""
    evidence: Mapping[str, Any] | None = None


def case_verdict(ev: Evaluation, settings: ResultSettings) -> VerdictName:
    """pass / fail / error of a case from its samples."""
    if ev.error is not None:
        return "error"
    samples, passes = len(ev.samples), ev.passes
    if (
        samples
        and passes / samples >= settings.repeat_pass_fraction
        and (settings.repeat > 1 or passes == samples)
    ):
        return "pass"
    return "fail"


def build_case_result(
    *,
    nodeid: str,
    case: Case,
    evaluation: Evaluation,
    baseline: BaselineEntry | None,
    judge: JudgeIdentity,
    settings: ResultSettings,
    classify: Callable[[VerdictName, BaselineEntry | None, int, int], Classified],
    candidate: Evaluation | None = None,
    attempts: int = 1,
) -> CaseResult:
    """The result of one case: its verdict, the gate's classification and what it showed.

    ``classify(verdict, baseline entry, passes, samples)`` is the gate's per-case decision.
    """
    ev = evaluation
    verdict = case_verdict(ev, settings)
    cls = classify(verdict, baseline, ev.passes, len(ev.samples))
    first = ev.samples[0] if ev.samples else None
    scores = [smp.verdict.score for smp in ev.samples]
    modes: list[str] = []
    checks: list[str] = []
    for smp in ev.samples:
        modes.extend(m for m in smp.verdict.failure_modes if m not in modes)
        checks.extend(c for c in smp.verdict.failed_checks if c not in checks)
    latencies = [smp.latency_s for smp in ev.samples]
    if first is not None:
        threshold = first.verdict.threshold
    else:
        threshold = case.threshold if case.threshold is not None else settings.threshold
    return CaseResult(
        nodeid=nodeid,
        id=case.id,
        file=sys.intern(nodeid.split("::", 1)[0]),  # one string per case file
        line=case.line,
        question=case.question,
        messages=None
        if case.messages is None
        else tuple((m.role, m.content) for m in case.messages),
        ground_truth=case.ground_truth,
        references=tuple(getattr(case, "references", ()) or ()),
        rubric=case.rubric,
        tags=tuple(case.tags),
        difficulty=case.difficulty,
        human_verdict=getattr(case, "human_verdict", None),
        verdict=verdict,
        outcome=cls.outcome,
        outcome_detail=cls.detail,
        evidence=cls.evidence,
        score=(sum(scores) / len(scores)) if scores and verdict != "error" else None,
        threshold=threshold,
        failure_modes=tuple(modes),
        failed_checks=tuple(checks),
        reasoning=first.verdict.reasoning if first else "",
        error=ev.error,
        checks_only=bool(first and first.verdict.checks_only),
        baseline=None if baseline is None else BaselineSnapshot.of(baseline),
        samples=len(ev.samples),
        passes=ev.passes,
        sample_verdicts=tuple(smp.verdict.passed for smp in ev.samples),
        judge=judge.label(),
        response=first.response if first else "",
        response_sha256=_answer_digest(first.response, baseline) if first else "",
        latency_s=(sum(latencies) / len(latencies)) if latencies else None,
        judge_calls=ev.judge_calls,
        cache_hits=ev.cache_hits,
        usage=ev.usage,
        sut_usage=ev.sut_usage,
        candidate=None if candidate is None else _candidate(candidate, settings),
        attempts=attempts,
        panel=tuple(
            {"judge": m.judge, "score": m.score, "passed": m.passed}
            for m in (first.verdict.members if first else ())
        ),
    )


def _candidate(ev: Evaluation, settings: ResultSettings) -> CandidateResult:
    verdict = case_verdict(ev, settings)
    first = ev.samples[0] if ev.samples else None
    scores = [smp.verdict.score for smp in ev.samples]
    modes: list[str] = []
    for smp in ev.samples:
        modes.extend(m for m in smp.verdict.failure_modes if m not in modes)
    return CandidateResult(
        verdict=verdict,
        score=(sum(scores) / len(scores)) if scores and verdict != "error" else None,
        response=first.response if first else "",
        failure_modes=tuple(modes),
        reasoning=first.verdict.reasoning if first else "",
        error=ev.error,
    )


def error_result(
    *, nodeid: str, case: Case, judge: JudgeIdentity, settings: ResultSettings, why: str
) -> CaseResult:
    """A case that started and produced no verdict (stopped by a timeout plugin, crashed in
    setup): an ERROR in every count, never a pass."""
    ev = Evaluation(case, error=why)
    return build_case_result(
        nodeid=nodeid,
        case=case,
        evaluation=ev,
        baseline=None,
        judge=judge,
        settings=settings,
        classify=lambda *_: Classified("error", why),
    )


def baseline_result(key: str, entry: BaselineEntry, judge: JudgeIdentity) -> CaseResult:
    """The committed state of one case as a result (``llmeval report STATE_DIR``: no run)."""
    file, sep, case_id = key.rpartition("::")
    if not sep:
        file, case_id = "", key
    flaky = 0 < entry.passes < entry.samples
    outcome = "flaky" if flaky else ("passed" if entry.passed else "known_failure")
    return CaseResult(
        nodeid=key,
        id=case_id,
        file=file,
        line=0,
        question=None,
        messages=None,
        ground_truth=None,
        references=(),
        rubric=None,
        tags=(),
        difficulty="",
        human_verdict=None,
        verdict="pass" if entry.passed else "fail",
        outcome=outcome,
        outcome_detail="",
        evidence=None,
        score=entry.score,
        threshold=entry.threshold,
        failure_modes=(),
        failed_checks=(),
        reasoning="",
        error=None,
        checks_only=False,
        baseline=BaselineSnapshot.of(entry),
        samples=entry.samples,
        passes=entry.passes,
        sample_verdicts=(),
        judge=judge.label(),
        response=entry.response or "",
        response_sha256=entry.response_sha256,
        latency_s=None,
        judge_calls=0,
        cache_hits=0,
        usage=Usage(),
        sut_usage=None,
    )


def scrubbed(r: CaseResult, clean: Callable[[str], str]) -> CaseResult:
    """``r`` with ``clean`` applied to every free text it carries (answers, reasoning, errors,
    details): what goes to a file or the terminal never carries a secret. When ``clean``
    returns every text unchanged (the same object, as :func:`~pytest_llmeval.core.secrets.scrub`
    does), ``r`` itself is returned: nothing is copied for a result with nothing to hide."""

    def opt(text: str | None) -> str | None:
        return None if text is None else clean(text)

    candidate = r.candidate
    if candidate is not None:
        texts = (candidate.response, candidate.reasoning, candidate.error)
        cleaned = (clean(candidate.response), clean(candidate.reasoning), opt(candidate.error))
        if any(a is not b for a, b in zip(texts, cleaned, strict=True)):
            candidate = dataclasses.replace(
                candidate, response=cleaned[0], reasoning=cleaned[1], error=cleaned[2]
            )
    baseline = r.baseline
    if baseline is not None and baseline.response is not None:
        response = clean(baseline.response)
        if response is not baseline.response:
            baseline = dataclasses.replace(baseline, response=response)
    response, reasoning, error = clean(r.response), clean(r.reasoning), opt(r.error)
    detail = clean(r.outcome_detail)
    checks = tuple(clean(c) for c in r.failed_checks)
    if (
        candidate is r.candidate
        and baseline is r.baseline
        and response is r.response
        and reasoning is r.reasoning
        and error is r.error
        and detail is r.outcome_detail
        and all(a is b for a, b in zip(checks, r.failed_checks, strict=True))
    ):
        return r
    return dataclasses.replace(
        r,
        response=response,
        reasoning=reasoning,
        error=error,
        outcome_detail=detail,
        failed_checks=checks,
        candidate=candidate,
        baseline=baseline,
    )
