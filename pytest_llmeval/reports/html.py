"""The self-contained HTML report, rendered from a JSON report dict (``REPORT_SCHEMA.md``).

Formats, never decides: the run's verdict, gate results, outcomes and statistics are read from
the report as the end of the run wrote them (:mod:`pytest_llmeval.engine.finish`). The only
numbers computed here are chart geometry: the history band is the history gate's own
(``summary.history``), and a report without that block has no band.

Safety: the page is rendered by Jinja2 with autoescaping, so every user-provided string (ids,
tags, questions, responses, reasoning, commits) is escaped in text and in attributes. The charts
are inline SVG whose geometry is computed here from numbers only; their labels are rendered by the
template, escaped like everything else. A Content-Security-Policy allows only the page's own
inline script and style (by hash) and no network at all, so even a missed escape could neither run
injected code nor fetch anything.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from pytest_llmeval.core.words import plural

__all__ = ["HTMLExtraMissing", "render_html"]

SUPPORTED_SCHEMA_VERSIONS = (1,)

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

GATE_LABELS: dict[str, str] = {
    "regressions": "Regressions (per case)",
    "min_pass_rate": "Minimum pass rate",
    "history": "Pass rate vs history",
    "history_binomial": "Pass rate vs pooled history (binomial test)",
    "suite_drop": "Suite-wide drop (CMH)",
    "flips": "Regressions vs improvements",
    "judge_agreement": "Judge agreement with people",
}


class HTMLExtraMissing(ImportError):
    """Jinja2 (the optional ``html`` extra) is not installed."""


# --------------------------------------------------------------------------- view values


@dataclass(frozen=True)
class Tick:
    """An axis tick: position in SVG units and its numeric label text."""

    pos: float
    text: str


@dataclass(frozen=True)
class TrendPoint:
    """One history entry on the trend chart (``rate`` is None when the entry has none)."""

    index: int
    x: float
    y: float | None
    rate: float | None
    timestamp: str
    commit: str
    passed: int | None
    total: int | None
    current: bool


@dataclass(frozen=True)
class Band:
    """The history gate's band: from its lower bound to as far above the mean, drawn from the
    gate's own numbers (``summary.history``)."""

    y_top: float
    y_bottom: float
    y_mean: float
    y_lower: float
    mean: float
    std: float | None
    lower: float
    upper: float
    points: int | None
    label: str
    passed: bool | None


@dataclass(frozen=True)
class TrendChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    points: tuple[TrendPoint, ...]
    line: str
    connector: str
    band: Band | None
    current_x: float | None
    current_y: float | None
    current_rate: float | None
    y_ticks: tuple[Tick, ...]
    x_labels: tuple[Tick, ...]


@dataclass(frozen=True)
class HistBin:
    lo: float
    hi: float
    x: float
    width: float
    n_pass: int
    n_fail: int
    y_pass: float
    h_pass: float
    y_fail: float
    h_fail: float


@dataclass(frozen=True)
class Histogram:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    bins: tuple[HistBin, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    threshold: float | None
    threshold_x: float | None
    scored: int


@dataclass(frozen=True)
class GroupRow:
    """Pass rate of one tag or difficulty, with its Wilson interval drawn as a small bar."""

    name: str
    total: int
    passed: int
    pass_rate: float | None
    ci: tuple[float, float] | None
    mean_score: float | None
    bar_width: float
    ci_x1: float | None
    ci_x2: float | None


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
class AgreementView:
    """The judge's agreement with people's labels (``summary.agreement``)."""

    n: int | None
    tp: int | None
    fp: int | None
    fn: int | None
    tn: int | None
    accuracy: float | None
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    tpr: float | None
    tnr: float | None
    confidence: float | None
    method: str


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


# --------------------------------------------------------------------------- helpers


def _num(value: Any) -> float | None:
    """A finite float, or None for null/non-numeric/NaN (never invent a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _pair(value: Any) -> tuple[float, float] | None:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        lo, hi = _num(value[0]), _num(value[1])
        if lo is not None and hi is not None:
            return (lo, hi)
    return None


def _pct(value: Any, digits: int = 1) -> str:
    number = _num(value)
    return "—" if number is None else f"{number * 100:.{digits}f}%"


def _fmt(value: Any, digits: int = 2) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:.{digits}f}"


def _count(value: Any) -> str:
    number = _int(value)
    return "—" if number is None else f"{number:,}"


def _usd(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "unknown"
    return f"${number:,.4f}" if 0 < number < 1 else f"${number:,.2f}"


def _seconds(value: Any) -> str:
    number = _num(value)
    if number is None:
        return "—"
    return f"{number * 1000:.0f} ms" if number < 1 else f"{number:.2f} s"


def _sortnum(value: Any) -> str:
    """A number as a sort key for the case table's script ("" sorts last)."""
    number = _num(value)
    return "" if number is None else repr(number)


def _nice_step(span: float, target: int) -> float:
    """A 1/2/5·10^n step giving about ``target`` intervals over ``span``."""
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return float(factor * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _r(value: float) -> float:
    """SVG coordinates with two decimals keep the file small and diffs stable."""
    return round(value, 2)


# --------------------------------------------------------------------------- charts


def _band_label(block: Mapping[str, Any]) -> str:
    """The history gate's rule, with its factor: ``mean − 2·std`` or the prediction bound."""
    k, t = _num(block.get("k")), _num(block.get("t"))
    if k is not None:
        return f"mean − {k:g}·std"
    method = _str(block.get("method")) or "prediction bound"
    return f"{method}, t = {t:.3f}" if t is not None else method


def _history_band(summary: Mapping[str, Any]) -> tuple[float, float, Mapping[str, Any]] | None:
    """(mean, lower bound, block) of the history gate (``summary.history``), or None.

    Only the gate's own numbers: a report without them (too little history, a narrowed run, an
    older report) draws no band rather than one the gate did not use.
    """
    block = summary.get("history")
    if not isinstance(block, Mapping):
        return None
    mean, lower = _num(block.get("mean")), _num(block.get("lower_bound"))
    if mean is None or lower is None:
        return None
    return mean, lower, block


def _x_labels(points: Sequence[TrendPoint]) -> list[str]:
    """Short labels for history points: the first kind that tells every point apart.

    Commits repeat when several runs are recorded on one commit, dates when they share a day.
    """
    candidates = (
        [p.commit[:7] for p in points],
        [p.timestamp[:10] for p in points],
        [p.timestamp[5:16].replace("T", " ") for p in points],
    )
    for labels in candidates:
        if all(labels) and len(set(labels)) == len(labels):
            return labels
    return [f"#{p.index + 1}" for p in points]


def _trend_chart(report: Mapping[str, Any], current_rate: float | None) -> TrendChart | None:
    raw = report.get("history")
    history = [h for h in raw if isinstance(h, Mapping)] if isinstance(raw, list) else []
    if not history and current_rate is None:
        return None
    summary = _mapping(report.get("summary"))
    created = _str(report.get("created"))
    # A run that updated the baseline may already be the last history line: mark it, not twice.
    last_is_current = (
        current_rate is not None
        and bool(history)
        and bool(created)
        and _str(history[-1].get("timestamp")) == created
    )
    extra_slot = current_rate is not None and not last_is_current
    slots = len(history) + (1 if extra_slot else 0)

    rates = [r for r in (_num(h.get("pass_rate")) for h in history) if r is not None]
    band_values = _history_band(summary)

    values = list(rates)
    if current_rate is not None:
        values.append(current_rate)
    if band_values is not None:
        mean, lower, _ = band_values
        values.extend([lower, min(mean + (mean - lower), 1.0)])
    low = min(values) if values else 0.0
    lo_axis = max(0.0, min(low, 1.0) - 0.05)
    step = _nice_step(1.0 - lo_axis if lo_axis < 1.0 else 1.0, 5)
    lo_axis = max(0.0, math.floor(lo_axis / step) * step)
    hi_axis = 1.0

    width, height = 1000, 280
    left, right, top, bottom = 56, 24, 16, 44
    plot_w = width - left - right
    plot_h = height - top - bottom

    def y_of(rate: float) -> float:
        clipped = min(max(rate, lo_axis), hi_axis)
        return _r(top + (hi_axis - clipped) / (hi_axis - lo_axis) * plot_h)

    def x_of(slot: int) -> float:
        if slots <= 1:
            return _r(left + plot_w / 2)
        return _r(left + slot * plot_w / (slots - 1))

    points = []
    for i, entry in enumerate(history):
        rate = _num(entry.get("pass_rate"))
        points.append(
            TrendPoint(
                index=i,
                x=x_of(i),
                y=None if rate is None else y_of(rate),
                rate=rate,
                timestamp=_str(entry.get("timestamp")),
                commit=_str(entry.get("commit")),
                passed=_int(entry.get("passed")),
                total=_int(entry.get("total")),
                current=last_is_current and i == len(history) - 1,
            )
        )
    line = " ".join(f"{p.x},{p.y}" for p in points if p.y is not None)

    band = None
    if band_values is not None:
        mean, lower, block = band_values
        upper = mean + (mean - lower)  # geometry: the band is drawn symmetric about the mean
        passed = block.get("passed")
        band = Band(
            y_top=y_of(upper),
            y_bottom=y_of(lower),
            y_mean=y_of(mean),
            y_lower=y_of(lower),
            mean=mean,
            std=_num(block.get("std")),
            lower=lower,
            upper=upper,
            points=_int(block.get("points")),
            label=_band_label(block),
            passed=passed if isinstance(passed, bool) else None,
        )

    current_x = current_y = None
    connector = ""
    if current_rate is not None:
        current_x = x_of(slots - 1)
        current_y = y_of(current_rate)
        drawn = [p for p in points if p.y is not None]
        if extra_slot and drawn:
            connector = f"{drawn[-1].x},{drawn[-1].y} {current_x},{current_y}"

    step = _nice_step(hi_axis - lo_axis, 5)
    y_ticks = []
    value = lo_axis
    while value <= hi_axis + 1e-9:
        y_ticks.append(Tick(y_of(value), f"{value * 100:.0f}%"))
        value += step
    # Label at most ~8 x positions so long histories stay legible.
    every = max(1, math.ceil(slots / 8))
    labels = _x_labels(points)
    x_labels = []
    for i, p in enumerate(points):
        if i % every == 0 or i == len(points) - 1:
            x_labels.append(Tick(p.x, labels[i]))
    if extra_slot and current_x is not None:
        x_labels.append(Tick(current_x, "this run"))
    return TrendChart(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        points=tuple(points),
        line=line,
        connector=connector,
        band=band,
        current_x=current_x,
        current_y=current_y,
        current_rate=current_rate,
        y_ticks=tuple(y_ticks),
        x_labels=tuple(x_labels),
    )


def _histogram(cases: Sequence[CaseView]) -> Histogram | None:
    scored = [c for c in cases if c.score is not None and c.verdict in ("pass", "fail")]
    if not scored:
        return None
    n_bins = 10
    counts_pass = [0] * n_bins
    counts_fail = [0] * n_bins
    for c in scored:
        assert c.score is not None
        i = min(max(int(c.score * n_bins), 0), n_bins - 1)
        if c.verdict == "pass":
            counts_pass[i] += 1
        else:
            counts_fail[i] += 1
    width, height = 1000, 250
    left, right, top, bottom = 56, 24, 26, 44
    plot_w = width - left - right
    plot_h = height - top - bottom
    peak = max(p + f for p, f in zip(counts_pass, counts_fail, strict=True))
    step = max(1.0, _nice_step(float(peak), 4))
    y_max = math.ceil(peak / step) * step
    bin_w = plot_w / n_bins
    bins = []
    for i in range(n_bins):
        h_pass = counts_pass[i] / y_max * plot_h
        h_fail = counts_fail[i] / y_max * plot_h
        base = top + plot_h
        bins.append(
            HistBin(
                lo=i / n_bins,
                hi=(i + 1) / n_bins,
                x=_r(left + i * bin_w + 1),
                width=_r(bin_w - 2),
                n_pass=counts_pass[i],
                n_fail=counts_fail[i],
                y_pass=_r(base - h_pass),
                h_pass=_r(h_pass),
                y_fail=_r(base - h_pass - h_fail),
                h_fail=_r(h_fail),
            )
        )
    y_ticks = []
    value = 0.0
    while value <= y_max + 1e-9:
        y_ticks.append(Tick(_r(top + plot_h - value / y_max * plot_h), f"{value:g}"))
        value += step
    x_ticks = tuple(Tick(_r(left + i * bin_w), f"{i / n_bins:.1f}") for i in range(n_bins + 1))
    thresholds = {c.threshold for c in scored}
    threshold = next(iter(thresholds)) if len(thresholds) == 1 else None
    threshold_x = None if threshold is None else _r(left + min(max(threshold, 0.0), 1.0) * plot_w)
    return Histogram(
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        bins=tuple(bins),
        y_ticks=tuple(y_ticks),
        x_ticks=x_ticks,
        threshold=threshold,
        threshold_x=threshold_x,
        scored=len(scored),
    )


GROUP_BAR_WIDTH = 160


def _groups(raw: Any) -> tuple[GroupRow, ...]:
    rows = []
    for name, entry in sorted(_mapping(raw).items(), key=lambda item: str(item[0])):
        if not isinstance(entry, Mapping):
            continue
        rate = _num(entry.get("pass_rate"))
        ci = _pair(entry.get("ci"))
        rows.append(
            GroupRow(
                name=str(name),
                total=_int(entry.get("total")) or 0,
                passed=_int(entry.get("passed")) or 0,
                pass_rate=rate,
                ci=ci,
                mean_score=_num(entry.get("mean_score")),
                bar_width=_r((rate or 0.0) * GROUP_BAR_WIDTH),
                ci_x1=None if ci is None else _r(ci[0] * GROUP_BAR_WIDTH),
                ci_x2=None if ci is None else _r(ci[1] * GROUP_BAR_WIDTH),
            )
        )
    return tuple(rows)


# --------------------------------------------------------------------------- cases


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping)):
        return tuple(str(v) for v in value)
    return ()


def one_line_reason(case: Mapping[str, Any], limit: int = 140) -> str:
    """A one-line why for a case: its error, else score vs threshold and the judge's reasoning.

    Shared with the Markdown summary so both say the same thing.
    """
    error = _str(case.get("error")).strip()
    if error:
        text = error
    else:
        parts = []
        score, threshold = _num(case.get("score")), _num(case.get("threshold"))
        if score is not None and threshold is not None:
            parts.append(f"score {score:.2f} {'<' if score < threshold else '≥'} {threshold:.2f}")
        modes = _strings(case.get("failure_modes"))
        if modes and case.get("verdict") != "pass":
            parts.append(", ".join(modes))
        reasoning = _str(case.get("reasoning")).strip()
        if reasoning:
            parts.append(reasoning)
        text = " — ".join(parts)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _evidence(raw: Any) -> EvidenceView | None:
    if not isinstance(raw, Mapping):
        return None
    return EvidenceView(
        history_passes=_int(raw.get("history_passes")),
        history_samples=_int(raw.get("history_samples")),
        history_runs=_int(raw.get("history_runs")),
        now_passes=_int(raw.get("now_passes")),
        now_samples=_int(raw.get("now_samples")),
        p_value=_num(raw.get("p_value")),
        adjusted_p=_num(raw.get("adjusted_p")),
        alpha=_num(raw.get("alpha")),
        threshold=_num(raw.get("threshold")),
        method=_str(raw.get("method")),
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


def _agreement(raw: Any) -> AgreementView | None:
    if not isinstance(raw, Mapping):
        return None
    return AgreementView(
        n=_int(raw.get("n")),
        tp=_int(raw.get("tp")),
        fp=_int(raw.get("fp")),
        fn=_int(raw.get("fn")),
        tn=_int(raw.get("tn")),
        accuracy=_num(raw.get("accuracy")),
        kappa=_num(raw.get("kappa")),
        kappa_low=_num(raw.get("kappa_low")),
        kappa_high=_num(raw.get("kappa_high")),
        tpr=_num(raw.get("tpr")),
        tnr=_num(raw.get("tnr")),
        confidence=_num(raw.get("confidence")),
        method=_str(raw.get("method")),
    )


# outcomes whose baseline answer is worth showing next to this run's
_CHANGED = ("regression", "flaky", "improvement")


def _case_view(index: int, raw: Mapping[str, Any]) -> CaseView:
    messages: list[tuple[str, str]] = []
    raw_messages = raw.get("messages")
    if isinstance(raw_messages, list):
        for m in raw_messages:
            if isinstance(m, Mapping):
                messages.append((_str(m.get("role")), _str(m.get("content"))))
    outcome = _str(raw.get("outcome")) or "passed"
    raw_baseline = raw.get("baseline")
    baseline = raw_baseline if isinstance(raw_baseline, Mapping) else None
    baseline_response = None if baseline is None else baseline.get("response")
    baseline_response = None if baseline_response is None else str(baseline_response)
    response = None if raw.get("response") is None else str(raw.get("response"))
    question = raw.get("question")
    ground_truth = None if raw.get("ground_truth") is None else str(raw.get("ground_truth"))
    references = _strings(raw.get("references"))
    if not references and ground_truth is not None:
        references = (ground_truth,)
    human = raw.get("human_verdict")
    attempts = _int(raw.get("attempts"))
    return CaseView(
        index=index,
        id=_str(raw.get("id")),
        nodeid=_str(raw.get("nodeid")),
        file=_str(raw.get("file")),
        line=_int(raw.get("line")),
        question=None if question is None else str(question),
        messages=tuple(messages),
        ground_truth=ground_truth,
        references=references,
        rubric=None if raw.get("rubric") is None else str(raw.get("rubric")),
        tags=_strings(raw.get("tags")),
        difficulty=_str(raw.get("difficulty")),
        human_verdict=None if human is None else str(human),
        verdict=_str(raw.get("verdict")),
        outcome=outcome,
        outcome_label=OUTCOME_LABELS.get(outcome, outcome),
        outcome_detail=_str(raw.get("outcome_detail")),
        score=_num(raw.get("score")),
        threshold=_num(raw.get("threshold")),
        failure_modes=_strings(raw.get("failure_modes")),
        failed_checks=_strings(raw.get("failed_checks")),
        reasoning=_str(raw.get("reasoning")),
        error=None if raw.get("error") is None else str(raw.get("error")),
        baseline=baseline,
        baseline_response=baseline_response,
        side_by_side=baseline_response is not None and outcome in _CHANGED,
        evidence=_evidence(raw.get("evidence")),
        samples=_int(raw.get("samples")),
        passes=_int(raw.get("passes")),
        sample_verdicts=tuple(bool(v) for v in _list(raw.get("sample_verdicts"))),
        judge=_str(raw.get("judge")),
        response=response,
        latency_s=_num(raw.get("latency_s")),
        attempts=1 if attempts is None else attempts,
        headline=one_line_reason(raw),
        found=True,
        rank=OUTCOME_RANK.get(outcome, len(OUTCOME_RANK)),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


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


def _sections(summary: Mapping[str, Any], cases: Sequence[CaseView]) -> tuple[Section, ...]:
    sections = []
    for key, outcome, list_key, title, description in _SECTIONS:
        listed = _strings(summary.get(list_key)) if list_key else ()
        listed_set = set(listed)
        chosen = [
            c
            for c in cases
            if c.outcome == outcome or c.id in listed_set or (c.nodeid and c.nodeid in listed_set)
        ]
        seen = {c.id for c in chosen} | {c.nodeid for c in chosen}
        chosen.extend(_stub(i, outcome) for i in listed if i not in seen)
        sections.append(Section(key, title, description, tuple(chosen)))
    return tuple(sections)


# --------------------------------------------------------------------------- rendering


def _asset(name: str) -> str:
    return (
        resources.files("pytest_llmeval.reports")
        .joinpath("templates")
        .joinpath(name)
        .read_text("utf-8")
    )


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def build_context(report: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template needs, as plain values (exposed for tests and other renderers)."""
    if not isinstance(report, Mapping):
        raise ValueError("a report must be a JSON object")
    version = report.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(
            f"unsupported report schema_version {version!r} "
            f"(this version reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})"
        )
    summary = _mapping(report.get("summary"))
    settings = _mapping(report.get("settings"))
    raw_cases = report.get("cases")
    cases = tuple(
        _case_view(i, c)
        for i, c in enumerate(raw_cases if isinstance(raw_cases, list) else [], start=1)
        if isinstance(c, Mapping)
    )
    from_baseline = report.get("source") == "baseline"
    pass_rate = _num(summary.get("pass_rate"))
    outcomes_present = {c.outcome for c in cases}
    outcome_filters = [
        (key, label, sum(1 for c in cases if c.outcome == key))
        for key, label in OUTCOME_LABELS.items()
        if key in outcomes_present
    ]
    outcome_filters += [
        (o, o, sum(1 for c in cases if c.outcome == o))
        for o in sorted(outcomes_present - OUTCOME_LABELS.keys())
    ]
    gates = []
    for gate in summary.get("gates") or ():
        if isinstance(gate, Mapping):
            name = _str(gate.get("name"))
            skipped = bool(gate.get("skipped"))
            passed = gate.get("passed")
            status = "skipped" if skipped else ("passed" if passed is True else "failed")
            gates.append(
                {
                    "name": name,
                    "label": GATE_LABELS.get(name, name),
                    "status": status,
                    "detail": _str(gate.get("detail")),
                    "method": _str(gate.get("method")),
                }
            )
    # The headline is the run's verdict as the end of the run decided it (gates, new failing
    # cases, judge errors); a report of the committed state has none.
    gate_passed = None if from_baseline else summary.get("gate_passed")
    if not isinstance(gate_passed, bool):
        gate_passed = None
    history_gate = next((g for g in gates if g["name"] == "history"), None)
    usage = _mapping(summary.get("usage"))
    sut_usage = summary.get("sut_usage")
    comparison = report.get("comparison")
    failure_modes = sorted(
        ((str(k), _int(v) or 0) for k, v in _mapping(summary.get("failure_modes")).items()),
        key=lambda kv: (-kv[1], kv[0]),
    )
    tags = sorted({t for c in cases for t in c.tags})
    script = _asset("report.js")
    style = _asset("report.css")
    return {
        "report": report,
        "created": _str(report.get("created")),
        "judge": _mapping(report.get("judge")),
        "settings": settings,
        "summary": summary,
        "from_baseline": from_baseline,
        "gate_passed": gate_passed,
        "verdict_reasons": _strings(summary.get("verdict_reasons")),
        "gates": gates,
        "history_gate": history_gate,
        "agreement": _agreement(summary.get("agreement")),
        "rerun": _strings(summary.get("rerun")),
        "flaky_history": _strings(summary.get("flaky_history")),
        "pass_rate": pass_rate,
        "pass_rate_ci": _pair(summary.get("pass_rate_ci")),
        "trend": _trend_chart(report, None if from_baseline else pass_rate),
        "histogram": _histogram(cases),
        "by_tag": _groups(summary.get("by_tag")),
        "by_difficulty": _groups(summary.get("by_difficulty")),
        "group_bar_width": GROUP_BAR_WIDTH,
        "sections": _sections(summary, cases),
        "known_failures": tuple(c for c in cases if c.outcome == "known_failure"),
        "unused_baseline": _strings(summary.get("unused_baseline")),
        "failure_modes": failure_modes,
        "cases": cases,
        "outcome_filters": outcome_filters,
        "tags": tags,
        "usage": usage,
        "sut_usage": sut_usage if isinstance(sut_usage, Mapping) else None,
        "comparison": comparison if isinstance(comparison, Mapping) else None,
        "script": script,
        "style": style,
        "csp": (
            "default-src 'none'; img-src data:; "
            f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
            "base-uri 'none'; form-action 'none'"
        ),
    }


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_llmeval.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        pct=_pct, fmt=_fmt, count=_count, usd=_usd, seconds=_seconds, sortnum=_sortnum
    )
    env.globals.update(plural=plural, evidence_text=evidence_text)
    return env


def render_html(report: Mapping[str, Any]) -> str:
    """Render a report dict (``REPORT_SCHEMA.md``) as one self-contained HTML page.

    The page needs no network: CSS, JavaScript and the SVG charts are inline. Requires Jinja2,
    the optional ``html`` extra. Raises :class:`HTMLExtraMissing` without it and ``ValueError``
    for a report this version cannot read.
    """
    try:
        import jinja2  # noqa: F401
        import markupsafe  # a dependency of Jinja2
    except ModuleNotFoundError as exc:
        raise HTMLExtraMissing(
            "the HTML report needs Jinja2: pip install 'pytest-llmeval-gate[html]'"
        ) from exc
    context = build_context(report)
    # Our own static assets, not user data: inserted verbatim and covered by the CSP hashes.
    context["script"] = markupsafe.Markup(context["script"])
    context["style"] = markupsafe.Markup(context["style"])
    return str(_environment().get_template("report.html.j2").render(context))
