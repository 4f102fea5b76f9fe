"""The cases of the HTML report: one view per case record, and the sections (regressions, new
failures, ...) that list them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.core.words import plural
from pytest_llmeval.reports.html_format import integer, num, strings, text

OUTCOME_LABELS: dict[str, str] = {
    "regression": "regression",
    "new_failure": "new failure",
    "error": "error",
    "flaky": "flaky",
    "improvement": "improvement",
    "known_failure": "known failure",
    "passed": "passed",
}

OUTCOME_RANK = {name: i for i, name in enumerate(OUTCOME_LABELS)}  # sort order: worst first

# outcomes whose baseline answer is worth showing next to this run's
_CHANGED = ("regression", "flaky", "improvement")


@dataclass(frozen=True)
class EvidenceView:
    """The numbers behind a case's per-case decision, as the gate wrote them."""

    history_passes: int | None
    history_samples: int | None
    history_runs: int | None
    now_passes: int | None
    now_samples: int | None
    p_value: float | None
    adjusted_p: float | None
    alpha: float | None
    threshold: float | None
    method: str
    unconfirmed: bool


@dataclass(frozen=True)
class CaseView:
    index: int
    id: str
    nodeid: str
    file: str
    line: int | None
    question: str | None
    messages: tuple[tuple[str, str], ...]
    ground_truth: str | None
    references: tuple[str, ...]
    rubric: str | None
    tags: tuple[str, ...]
    difficulty: str
    human_verdict: str | None
    verdict: str
    outcome: str
    outcome_label: str
    outcome_detail: str
    score: float | None
    threshold: float | None
    failure_modes: tuple[str, ...]
    failed_checks: tuple[str, ...]
    reasoning: str
    error: str | None
    baseline: Mapping[str, Any] | None
    baseline_response: str | None
    side_by_side: bool
    evidence: EvidenceView | None
    samples: int | None
    passes: int | None
    sample_verdicts: tuple[bool, ...]
    judge: str
    response: str | None
    latency_s: float | None
    attempts: int
    headline: str
    found: bool
    rank: int


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    description: str
    cases: tuple[CaseView, ...]


def _reason(
    error: Any, score: Any, threshold: Any, modes: tuple[str, ...], verdict: Any, reasoning: Any,
    limit: int,
) -> str:  # fmt: skip
    error = text(error).strip()
    if error:
        line = error
    else:
        parts = []
        score, threshold = num(score), num(threshold)
        if score is not None and threshold is not None:
            parts.append(f"score {score:.2f} {'<' if score < threshold else '≥'} {threshold:.2f}")
        if modes and verdict != "pass":
            parts.append(", ".join(modes))
        reasoning = text(reasoning).strip()
        if reasoning:
            parts.append(reasoning)
        line = " — ".join(parts)
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def one_line_reason(case: Mapping[str, Any], limit: int = 140) -> str:
    """A one-line why for a case record: its error, else score vs threshold and the judge's
    reasoning. Shared with the Markdown summary so both say the same thing."""
    return _reason(
        case.get("error"),
        case.get("score"),
        case.get("threshold"),
        strings(case.get("failure_modes")),
        case.get("verdict"),
        case.get("reasoning"),
        limit,
    )


def _evidence(raw: Any) -> EvidenceView | None:
    if not isinstance(raw, Mapping):
        return None
    return EvidenceView(
        history_passes=integer(raw.get("history_passes")),
        history_samples=integer(raw.get("history_samples")),
        history_runs=integer(raw.get("history_runs")),
        now_passes=integer(raw.get("now_passes")),
        now_samples=integer(raw.get("now_samples")),
        p_value=num(raw.get("p_value")),
        adjusted_p=num(raw.get("adjusted_p")),
        alpha=num(raw.get("alpha")),
        threshold=num(raw.get("threshold")),
        method=text(raw.get("method")),
        unconfirmed=bool(raw.get("unconfirmed")),
    )


def evidence_text(raw: Any) -> str:
    """The per-case gate numbers on one line (shared with the Markdown summary)."""
    ev = _evidence(raw)
    if ev is None:
        return ""
    if ev.unconfirmed or ev.p_value is None:
        return f"now {_ratio(ev.now_passes, ev.now_samples)}; no recorded history for this case"
    adjusted = "" if ev.adjusted_p is None else f", adjusted p = {ev.adjusted_p:.3g}"
    return (
        f"history {_ratio(ev.history_passes, ev.history_samples)} samples in"
        f" {plural(ev.history_runs or 0, 'run')}, now {_ratio(ev.now_passes, ev.now_samples)};"
        f" p = {ev.p_value:.3g}{adjusted}"
    )


def _ratio(k: int | None, n: int | None) -> str:
    return f"{'?' if k is None else k}/{'?' if n is None else n}"


def case_view(index: int, raw: Mapping[str, Any]) -> CaseView:
    """The page's view of the ``index``-th record of the report's ``cases``."""
    messages: list[tuple[str, str]] = []
    raw_messages = raw.get("messages")
    if isinstance(raw_messages, list):
        for m in raw_messages:
            if isinstance(m, Mapping):
                messages.append((text(m.get("role")), text(m.get("content"))))
    outcome = text(raw.get("outcome")) or "passed"
    raw_baseline = raw.get("baseline")
    baseline = raw_baseline if isinstance(raw_baseline, Mapping) else None
    baseline_response = None if baseline is None else baseline.get("response")
    baseline_response = None if baseline_response is None else str(baseline_response)
    response = None if raw.get("response") is None else str(raw.get("response"))
    question = raw.get("question")
    ground_truth = None if raw.get("ground_truth") is None else str(raw.get("ground_truth"))
    references = strings(raw.get("references"))
    if not references and ground_truth is not None:
        references = (ground_truth,)
    human = raw.get("human_verdict")
    attempts = integer(raw.get("attempts"))
    return CaseView(
        index=index,
        id=text(raw.get("id")),
        nodeid=text(raw.get("nodeid")),
        file=text(raw.get("file")),
        line=integer(raw.get("line")),
        question=None if question is None else str(question),
        messages=tuple(messages),
        ground_truth=ground_truth,
        references=references,
        rubric=None if raw.get("rubric") is None else str(raw.get("rubric")),
        tags=strings(raw.get("tags")),
        difficulty=text(raw.get("difficulty")),
        human_verdict=None if human is None else str(human),
        verdict=text(raw.get("verdict")),
        outcome=outcome,
        outcome_label=OUTCOME_LABELS.get(outcome, outcome),
        outcome_detail=text(raw.get("outcome_detail")),
        score=num(raw.get("score")),
        threshold=num(raw.get("threshold")),
        failure_modes=strings(raw.get("failure_modes")),
        failed_checks=strings(raw.get("failed_checks")),
        reasoning=text(raw.get("reasoning")),
        error=None if raw.get("error") is None else str(raw.get("error")),
        baseline=baseline,
        baseline_response=baseline_response,
        side_by_side=baseline_response is not None and outcome in _CHANGED,
        evidence=_evidence(raw.get("evidence")),
        samples=integer(raw.get("samples")),
        passes=integer(raw.get("passes")),
        sample_verdicts=tuple(bool(v) for v in _list(raw.get("sample_verdicts"))),
        judge=text(raw.get("judge")),
        response=response,
        latency_s=num(raw.get("latency_s")),
        attempts=1 if attempts is None else attempts,
        headline=one_line_reason(raw),
        found=True,
        rank=OUTCOME_RANK.get(outcome, len(OUTCOME_RANK)),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def case_views(raw_cases: Any) -> tuple[CaseView, ...]:
    """One view per record of the report's ``cases`` (numbered from 1)."""
    records = raw_cases if isinstance(raw_cases, list) else []
    return tuple(case_view(i, c) for i, c in enumerate(records, start=1) if isinstance(c, Mapping))


def scored(cases: Sequence[CaseView]) -> list[tuple[float, bool, float | None]]:
    """``(score, passed, threshold)`` of every judged case with a score, for the histogram."""
    return [
        (c.score, c.verdict == "pass", c.threshold)
        for c in cases
        if c.score is not None and c.verdict in ("pass", "fail")
    ]


def _stub(case_id: str, outcome: str) -> CaseView:
    """A case named by the summary but absent from ``cases`` (e.g. trimmed reports)."""
    return CaseView(
        index=0,
        id=case_id,
        nodeid="",
        file="",
        line=None,
        question=None,
        messages=(),
        ground_truth=None,
        references=(),
        rubric=None,
        tags=(),
        difficulty="",
        human_verdict=None,
        verdict="",
        outcome=outcome,
        outcome_label=OUTCOME_LABELS.get(outcome, outcome),
        outcome_detail="",
        score=None,
        threshold=None,
        failure_modes=(),
        failed_checks=(),
        reasoning="",
        error=None,
        baseline=None,
        baseline_response=None,
        side_by_side=False,
        evidence=None,
        samples=None,
        passes=None,
        sample_verdicts=(),
        judge="",
        response=None,
        latency_s=None,
        attempts=1,
        headline="not in this report's case list",
        found=False,
        rank=OUTCOME_RANK.get(outcome, len(OUTCOME_RANK)),
    )


_SECTIONS = (
    # key, outcome, summary list, title, description
    ("regressions", "regression", "regressions", "Regressions",
     "Passed in the baseline, fail now."),
    ("new-failures", "new_failure", "new_failures", "New failures",
     "Fail now and have no baseline entry."),
    ("errors", "error", None, "Errors",
     "The judge could not answer: infrastructure, counted neither as pass nor fail."),
    ("flaky", "flaky", "flaky", "Flaky",
     "Mixed verdicts across repeated samples."),
    ("improvements", "improvement", "improvements", "Improvements",
     "Failed in the baseline, pass now."),
)  # fmt: skip


def sections(summary: Mapping[str, Any], cases: Sequence[CaseView]) -> tuple[Section, ...]:
    """The case sections: each outcome's cases, and the cases its summary list names."""
    out = []
    for key, outcome, list_key, title, description in _SECTIONS:
        listed = strings(summary.get(list_key)) if list_key else ()
        listed_set = set(listed)
        chosen = [
            c
            for c in cases
            if c.outcome == outcome or c.id in listed_set or (c.nodeid and c.nodeid in listed_set)
        ]
        seen = {c.id for c in chosen} | {c.nodeid for c in chosen}
        chosen.extend(_stub(i, outcome) for i in listed if i not in seen)
        out.append(Section(key, title, description, tuple(chosen)))
    return tuple(out)
