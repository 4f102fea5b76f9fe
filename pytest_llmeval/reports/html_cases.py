"""The cases of the HTML report: each one's :class:`~pytest_llmeval.core.result.CaseResult`, read
by its own ``from_dict``, with what only the page adds (label, sort rank, headline, side by side),
and the sections (regressions, new failures, ...) that list them.

A report file may be older than a field, or trimmed by hand. ``CaseResult.from_dict`` fills a
missing field with a default; where that default would read as a fact the record never stated
(difficulty "medium", threshold 0, one sample, an empty answer) the page shows it as unknown
instead. A record ``from_dict`` cannot read at all is listed by id, with the reason. The gate's
per-case numbers are read by ``CaseEvidence.from_dict`` the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.core.evidence import CaseEvidence
from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.words import plural
from pytest_llmeval.reports.html_format import num, strings, text

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

# Fields CaseResult.from_dict defaults when a record lacks them, whose default the page would
# show as a value ("medium", "threshold 0.00", "1/1 samples passed", an empty answer).
UNKNOWN_WHEN_ABSENT = frozenset({"difficulty", "threshold", "samples", "passes", "response"})

# outcomes whose baseline answer is worth showing next to this run's
_CHANGED = ("regression", "flaky", "improvement")

NOT_LISTED = "This case is named in the summary but not included in the report's case list."


@dataclass(frozen=True)
class CaseView:
    """One case as the page shows it. ``result`` is the case's result as ``CaseResult.from_dict``
    read it (the template reads its fields there); None for a case the summary names but the
    report does not list, or whose record cannot be read (``note`` says which).

    The properties below are the page's reading of the result: the fields in
    :data:`UNKNOWN_WHEN_ABSENT` are None (or "") when the record did not carry them.
    """

    index: int
    id: str
    outcome: str
    result: CaseResult | None
    headline: str
    side_by_side: bool = False
    evidence: CaseEvidence | None = None
    absent: frozenset[str] = frozenset()
    note: str = ""

    @property
    def found(self) -> bool:
        return self.result is not None

    @property
    def outcome_label(self) -> str:
        return OUTCOME_LABELS.get(self.outcome, self.outcome) or "unknown"

    @property
    def rank(self) -> int:
        return OUTCOME_RANK.get(self.outcome, len(OUTCOME_RANK))

    @property
    def nodeid(self) -> str:
        return "" if self.result is None else self.result.nodeid

    @property
    def tags(self) -> tuple[str, ...]:
        return () if self.result is None else self.result.tags

    def _known(self, name: str) -> CaseResult | None:
        return None if name in self.absent else self.result

    @property
    def difficulty(self) -> str:
        r = self._known("difficulty")
        return "" if r is None else r.difficulty

    @property
    def threshold(self) -> float | None:
        r = self._known("threshold")
        return None if r is None else num(r.threshold)

    @property
    def samples(self) -> int | None:
        r = self._known("samples")
        return None if r is None else r.samples

    @property
    def passes(self) -> int | None:
        r = self._known("passes")
        return None if r is None else r.passes

    @property
    def response(self) -> str | None:
        r = self._known("response")
        return None if r is None else r.response

    @property
    def baseline_response(self) -> str | None:
        baseline = None if self.result is None else self.result.baseline
        return None if baseline is None or baseline.response is None else str(baseline.response)


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    description: str
    cases: tuple[CaseView, ...]


def _reason(
    error: Any,
    score: Any,
    threshold: Any,
    modes: tuple[str, ...],
    verdict: Any,
    reasoning: Any,
    limit: int,
) -> str:
    """The one-line why of :func:`one_line_reason`, from the values it reads."""
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


def _evidence(raw: Any) -> CaseEvidence | None:
    """The per-case gate numbers as the evidence type reads them; None without them, and for a
    block it cannot read: the page shows no decision numbers the record does not carry."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return CaseEvidence.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None


def evidence_text(raw: Any) -> str:
    """The per-case gate numbers on one line (shared with the Markdown summary)."""
    ev = _evidence(raw)
    if ev is None:
        return ""
    if ev.unconfirmed or ev.p_value is None:
        return f"now {ev.now_passes}/{ev.now_samples}; no recorded history for this case"
    adjusted = "" if ev.adjusted_p is None else f", adjusted p = {ev.adjusted_p:.3g}"
    return (
        f"history {ev.history_passes}/{ev.history_samples} samples in"
        f" {plural(ev.history_runs, 'run')}, now {ev.now_passes}/{ev.now_samples};"
        f" p = {ev.p_value:.3g}{adjusted}"
    )


def _unreadable(index: int, raw: Mapping[str, Any], exc: Exception) -> CaseView:
    if isinstance(exc, KeyError) and exc.args:
        why = f"no {exc.args[0]!r} field"
    else:
        why = f"a field it cannot read: {exc}"
    return CaseView(
        index=index,
        id=text(raw.get("id")) or f"#{index}",
        outcome=text(raw.get("outcome")),
        result=None,
        headline=f"record not readable: {why}",
        note=f"This case's record in the report cannot be read ({why}).",
    )


def case_view(index: int, raw: Mapping[str, Any]) -> CaseView:
    """The page's view of the ``index``-th record of the report's ``cases``."""
    # A null stands for "not recorded": dropped, so from_dict reads the field as absent (its
    # nullable fields read None either way) rather than as the text "None".
    record = {k: v for k, v in raw.items() if v is not None}
    try:
        result = CaseResult.from_dict(record)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return _unreadable(index, raw, exc)
    absent = UNKNOWN_WHEN_ABSENT - record.keys()
    view = CaseView(
        index=index,
        id=result.id,
        outcome=result.outcome,
        result=result,
        headline="",
        evidence=_evidence(result.evidence),
        absent=frozenset(absent),
    )
    reason = _reason(
        result.error,
        result.score,
        view.threshold,
        tuple(str(m) for m in result.failure_modes),
        result.verdict,
        result.reasoning,
        140,
    )
    side_by_side = view.baseline_response is not None and result.outcome in _CHANGED
    return dataclasses.replace(view, headline=reason, side_by_side=side_by_side)


def case_views(raw_cases: Any) -> tuple[CaseView, ...]:
    """One view per record of the report's ``cases`` (numbered from 1)."""
    records = raw_cases if isinstance(raw_cases, list) else []
    return tuple(case_view(i, c) for i, c in enumerate(records, start=1) if isinstance(c, Mapping))


def scored(cases: Sequence[CaseView]) -> list[tuple[float, bool, float | None]]:
    """``(score, passed, threshold)`` of every judged case with a score, for the histogram."""
    out = []
    for c in cases:
        r = c.result
        score = None if r is None else num(r.score)
        if r is not None and score is not None and r.verdict in ("pass", "fail"):
            out.append((score, r.verdict == "pass", c.threshold))
    return out


def _stub(case_id: str, outcome: str) -> CaseView:
    """A case named by the summary but absent from ``cases`` (e.g. trimmed reports)."""
    return CaseView(
        index=0,
        id=case_id,
        outcome=outcome,
        result=None,
        headline="not in this report's case list",
        note=NOT_LISTED,
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
