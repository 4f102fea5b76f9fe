"""The HTML report's charts as numbers: the pass-rate trend, the score histogram and the
per-group pass-rate bars. Only geometry is computed here; the band is the history gate's own
(``summary.history``) and the template draws the SVG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.reports.html_format import integer, mapping, num, pair, text

GROUP_BAR_WIDTH = 160


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


# --------------------------------------------------------------------------- trend


@dataclass(frozen=True)
class _TrendFrame:
    """The trend chart's plot area: ``slots`` x positions, rates from ``lo`` to 1 upwards."""

    slots: int
    lo: float
    hi: float = 1.0
    width: int = 1000
    height: int = 280
    left: int = 56
    right: int = 24
    top: int = 16
    bottom: int = 44

    def y(self, rate: float) -> float:
        plot_h = self.height - self.top - self.bottom
        clipped = min(max(rate, self.lo), self.hi)
        return _r(self.top + (self.hi - clipped) / (self.hi - self.lo) * plot_h)

    def x(self, slot: int) -> float:
        plot_w = self.width - self.left - self.right
        if self.slots <= 1:
            return _r(self.left + plot_w / 2)
        return _r(self.left + slot * plot_w / (self.slots - 1))


def _band_label(block: Mapping[str, Any]) -> str:
    """The history gate's rule, with its factor: ``mean − 2·std`` or the prediction bound."""
    k, t = num(block.get("k")), num(block.get("t"))
    if k is not None:
        return f"mean − {k:g}·std"
    method = text(block.get("method")) or "prediction bound"
    return f"{method}, t = {t:.3f}" if t is not None else method


def _history_band(summary: Mapping[str, Any]) -> tuple[float, float, Mapping[str, Any]] | None:
    """(mean, lower bound, block) of the history gate (``summary.history``), or None.

    Only the gate's own numbers: a report without them (too little history, a narrowed run, an
    older report) draws no band rather than one the gate did not use.
    """
    block = summary.get("history")
    if not isinstance(block, Mapping):
        return None
    mean, lower = num(block.get("mean")), num(block.get("lower_bound"))
    if mean is None or lower is None:
        return None
    return mean, lower, block


def _lowest_rate_axis(values: Sequence[float]) -> float:
    """The bottom of the rate axis: a round step below the lowest value drawn (top is 100%)."""
    low = min(values) if values else 0.0
    lo_axis = max(0.0, min(low, 1.0) - 0.05)
    step = _nice_step(1.0 - lo_axis if lo_axis < 1.0 else 1.0, 5)
    return max(0.0, math.floor(lo_axis / step) * step)


def _trend_points(
    history: Sequence[Mapping[str, Any]], frame: _TrendFrame, last_is_current: bool
) -> tuple[TrendPoint, ...]:
    points = []
    for i, entry in enumerate(history):
        rate = num(entry.get("pass_rate"))
        points.append(
            TrendPoint(
                index=i,
                x=frame.x(i),
                y=None if rate is None else frame.y(rate),
                rate=rate,
                timestamp=text(entry.get("timestamp")),
                commit=text(entry.get("commit")),
                passed=integer(entry.get("passed")),
                total=integer(entry.get("total")),
                current=last_is_current and i == len(history) - 1,
            )
        )
    return tuple(points)


def _band(
    band_values: tuple[float, float, Mapping[str, Any]] | None, frame: _TrendFrame
) -> Band | None:
    if band_values is None:
        return None
    mean, lower, block = band_values
    upper = mean + (mean - lower)  # geometry: the band is drawn symmetric about the mean
    passed = block.get("passed")
    return Band(
        y_top=frame.y(upper),
        y_bottom=frame.y(lower),
        y_mean=frame.y(mean),
        y_lower=frame.y(lower),
        mean=mean,
        std=num(block.get("std")),
        lower=lower,
        upper=upper,
        points=integer(block.get("points")),
        label=_band_label(block),
        passed=passed if isinstance(passed, bool) else None,
    )


def _rate_ticks(frame: _TrendFrame) -> tuple[Tick, ...]:
    step = _nice_step(frame.hi - frame.lo, 5)
    ticks = []
    value = frame.lo
    while value <= frame.hi + 1e-9:
        ticks.append(Tick(frame.y(value), f"{value * 100:.0f}%"))
        value += step
    return tuple(ticks)


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


def _run_ticks(
    points: Sequence[TrendPoint], slots: int, this_run_x: float | None
) -> tuple[Tick, ...]:
    """The x labels: at most ~8 history points so long histories stay legible, the last one,
    and "this run" at ``this_run_x`` when it has a slot of its own."""
    every = max(1, math.ceil(slots / 8))
    labels = _x_labels(points)
    ticks = [
        Tick(p.x, labels[i]) for i, p in enumerate(points) if i % every == 0 or i == len(points) - 1
    ]
    if this_run_x is not None:
        ticks.append(Tick(this_run_x, "this run"))
    return tuple(ticks)


def trend_chart(report: Mapping[str, Any], current_rate: float | None) -> TrendChart | None:
    """The pass-rate trend of the report's history and this run (``current_rate``), or None
    when there is neither."""
    raw = report.get("history")
    history = [h for h in raw if isinstance(h, Mapping)] if isinstance(raw, list) else []
    if not history and current_rate is None:
        return None
    created = text(report.get("created"))
    # A run that updated the baseline may already be the last history line: mark it, not twice.
    last_is_current = (
        current_rate is not None
        and bool(history)
        and bool(created)
        and text(history[-1].get("timestamp")) == created
    )
    extra_slot = current_rate is not None and not last_is_current
    band_values = _history_band(mapping(report.get("summary")))
    values = [r for r in (num(h.get("pass_rate")) for h in history) if r is not None]
    if current_rate is not None:
        values.append(current_rate)
    if band_values is not None:
        mean, lower, _ = band_values
        values.extend([lower, min(mean + (mean - lower), 1.0)])
    frame = _TrendFrame(len(history) + (1 if extra_slot else 0), _lowest_rate_axis(values))
    points = _trend_points(history, frame, last_is_current)

    current_x = current_y = None
    connector = ""
    if current_rate is not None:
        current_x, current_y = frame.x(frame.slots - 1), frame.y(current_rate)
        drawn = [p for p in points if p.y is not None]
        if extra_slot and drawn:
            connector = f"{drawn[-1].x},{drawn[-1].y} {current_x},{current_y}"
    return TrendChart(
        width=frame.width,
        height=frame.height,
        left=frame.left,
        right=frame.right,
        top=frame.top,
        bottom=frame.bottom,
        points=points,
        line=" ".join(f"{p.x},{p.y}" for p in points if p.y is not None),
        connector=connector,
        band=_band(band_values, frame),
        current_x=current_x,
        current_y=current_y,
        current_rate=current_rate,
        y_ticks=_rate_ticks(frame),
        x_labels=_run_ticks(points, frame.slots, current_x if extra_slot else None),
    )


# --------------------------------------------------------------------------- scores, groups


def histogram(scored: Sequence[tuple[float, bool, float | None]]) -> Histogram | None:
    """Ten score bins of the judged cases, ``(score, passed, threshold)`` each, or None."""
    if not scored:
        return None
    n_bins = 10
    counts_pass = [0] * n_bins
    counts_fail = [0] * n_bins
    for score, passed, _ in scored:
        i = min(max(int(score * n_bins), 0), n_bins - 1)
        if passed:
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
    thresholds = {threshold for _, _, threshold in scored}
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


def groups(raw: Any) -> tuple[GroupRow, ...]:
    """The rows of ``summary.by_tag`` or ``summary.by_difficulty``, sorted by name."""
    rows = []
    for name, entry in sorted(mapping(raw).items(), key=lambda item: str(item[0])):
        if not isinstance(entry, Mapping):
            continue
        rate = num(entry.get("pass_rate"))
        ci = pair(entry.get("ci"))
        rows.append(
            GroupRow(
                name=str(name),
                total=integer(entry.get("total")) or 0,
                passed=integer(entry.get("passed")) or 0,
                pass_rate=rate,
                ci=ci,
                mean_score=num(entry.get("mean_score")),
                bar_width=_r((rate or 0.0) * GROUP_BAR_WIDTH),
                ci_x1=None if ci is None else _r(ci[0] * GROUP_BAR_WIDTH),
                ci_x2=None if ci is None else _r(ci[1] * GROUP_BAR_WIDTH),
            )
        )
    return tuple(rows)
