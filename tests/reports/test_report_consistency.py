"""Every output shows the numbers the end of the run decided (issue #9): the mixed-judge
reproduction through ``finish_run``, and the committed sample kept in the shape a run writes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import report_samples as samples
from html_tree import parse

from pytest_llmeval.core.gate import GateResult
from pytest_llmeval.reports.html import render_html
from pytest_llmeval.reports.markdown import escape_markdown, render_markdown
from pytest_llmeval.reports.terminal import summary_lines


def history_gate(outcome: Any) -> GateResult:
    gate: GateResult = next(g for g in outcome.decision.gates if g.name == "history")
    return gate


@pytest.mark.parametrize("k", [2.0, None], ids=["mean-k-std", "prediction-bound"])
def test_mixed_judge_history_is_the_same_band_everywhere(k: float | None) -> None:
    """Three runs by this judge (0.9, 0.9, 0.8), two by another (0.3, 0.4), this run 0.7."""
    outcome = samples.mixed_judge_outcome(k)
    gate = history_gate(outcome)
    numbers = gate.numbers
    assert numbers["points"] == 3
    assert numbers["mean"] == pytest.approx(0.8667, abs=5e-5)
    # mean − 2·std fails this run (the line); the wider prediction bound of 3 points not
    assert gate.passed is (k is None) and outcome.verdict.passed is (k is None)
    if k is not None:
        assert gate.detail == ("pass rate 70.0% < 75.1% = mean 86.7% - 2 x std 5.8% over 3 runs")
    report = outcome.report
    mean, lower, std = numbers["mean"], numbers["bound"], numbers["sd"]
    assert isinstance(mean, float) and isinstance(lower, float) and isinstance(std, float)

    # JSON: the gate's own numbers, and only this judge's history lines
    block = report["summary"]["history"]
    assert block["points"] == 3
    assert (block["mean"], block["lower_bound"], block["std"]) == (mean, lower, std)
    assert block["k"] == numbers.get("k") and block["t"] == numbers.get("t")
    assert block["detail"] == gate.detail and block["passed"] is gate.passed
    assert [h["pass_rate"] for h in report["history"]] == [0.9, 0.9, 0.8]

    # HTML: the band from the gate's bound, its three points, its rule
    doc = parse(render_html(report))
    chart = doc.find("svg", cls="trend-chart")
    band = chart.find(cls="trend-band")
    assert float(band.attrs["data-lower"]) == lower
    assert float(band.attrs["data-mean"]) == mean
    assert len(chart.find_all(cls="trend-point")) == 3
    rule = (
        "mean − 2·std"
        if k is not None
        else f"prediction bound (Hahn & Meeker), t = {numbers['t']:.3f}"
    )
    assert chart.find(cls="trend-bound-label").text() == f"gate bound {100 * lower:.1f}% ({rule})"
    legend = doc.find(id="trend-band-legend").text()
    assert "over 3 recorded runs of this judge: mean 86.7%" in legend
    gate_row = next(r for r in doc.find_all("tr", cls="gate") if r.attrs["data-gate"] == "history")
    assert gate.detail in gate_row.text()
    word = "PASSED" if gate.passed else "FAILED"
    assert f"Gate {word}" in doc.find(id="gate-banner").text()

    # Markdown: the same band and the terminal's gate line, word for word
    md = render_markdown(report)
    if gate.passed:
        assert md.startswith("## LLM eval: gate PASSED ✅\n")
    else:
        assert md.startswith("## LLM eval: gate FAILED ❌\n\nFails on: history.\n")
    assert (
        f"History: mean 86.7% over 3 recorded runs of this judge, std {100 * std:.1f}%,"
        f" lower bound {100 * lower:.1f}% ({escape_markdown(rule)}) — the history gate"
        + (" passed." if gate.passed else " **FAILED**.")
    ) in md
    status = "✅ passed" if gate.passed else "❌ FAILED"
    assert f"| `history` | {status} | {escape_markdown(gate.detail)} |" in md

    # Terminal: the same gate line
    lines = summary_lines(report)
    assert f"  {'PASS' if gate.passed else 'FAIL'} history: {gate.detail}" in lines
    if not gate.passed:
        assert lines[-2] == "llmeval gate: FAILED (history)"


def test_the_committed_sample_is_what_the_end_of_a_run_writes() -> None:
    """``tests/data/sample_report.json`` is regenerated, never hand-edited: after a change of
    the report's shape run ``python tests/reports/report_samples.py``."""
    committed: dict[str, Any] = json.loads(samples.SAMPLE_PATH.read_text(encoding="utf-8"))
    assert committed == samples.sample_report()
