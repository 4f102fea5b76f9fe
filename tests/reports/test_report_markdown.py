"""The Markdown CI summary: content and escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import report_samples as samples

from pytest_llmeval.reports.markdown import MAX_LISTED, escape_markdown, render_markdown
from pytest_llmeval.reports.terminal import summary_lines

SAMPLE = Path(__file__).parent.parent / "data" / "sample_report.json"


@pytest.fixture
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("a|b", r"a\|b"),
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("**bold** _it_", r"\*\*bold\*\* \_it\_"),
        ("[click](javascript:x)", r"\[click\](javascript:x)"),
        ("![img](x.png)", r"!\[img\](x.png)"),
        ("a & b &amp;", "a &amp; b &amp;amp;"),
        ("two\nlines\r\n  here", "two lines here"),
        ("`code` ~~gone~~ back\\slash", r"\`code\` \~\~gone\~\~ back\\slash"),
    ],
)
def test_escape_markdown(raw: str, escaped: str) -> None:
    assert escape_markdown(raw) == escaped


def test_failed_run_title_reasons_and_gate_lines(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    lines = md.splitlines()
    assert lines[0] == "## LLM eval: gate FAILED ❌"
    assert lines[2] == (
        "Fails on: regressions; history; 1 new failing case; 1 error (cases not judged)."
    )
    table = [line for line in lines if line.startswith("| ") and "people" not in line]
    table = table[: 2 + len(report["summary"]["gates"])]
    assert table[0] == "| Gate | Result | Detail |"
    assert table[1] == "| --- | --- | --- |"
    assert "| `regressions` | ❌ FAILED | 2 regressions (max 0), 1 flaky |" in md
    assert "| `suite_drop` | ✅ passed |" in md and "| `flips` | skipped |" in md
    for row in table:
        assert unescaped_pipes(row) == 4, row


def test_gate_lines_are_the_terminals(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    lines = summary_lines(report)
    gate_lines = lines[lines.index("gates:") + 1 :]
    gate_lines = [line for line in gate_lines if line.startswith("  ")]
    assert len(gate_lines) == len(report["summary"]["gates"]) == 5
    for line in gate_lines:
        status, rest = line.strip().split(" ", 1)
        name, detail = rest.split(": ", 1)
        word = {"PASS": "✅ passed", "FAIL": "❌ FAILED", "SKIP": "skipped"}[status]
        assert f"| `{name}` | {word} | {escape_markdown(detail)} |" in md


def test_passing_run(report: dict[str, Any]) -> None:
    for gate in report["summary"]["gates"]:
        gate["passed"] = True
    report["summary"]["history"]["passed"] = True
    report["summary"]["gate_passed"] = True
    report["summary"]["verdict_reasons"] = []
    md = render_markdown(report)
    assert md.startswith("## LLM eval: gate PASSED ✅\n")
    assert "FAILED" not in md and "Fails on" not in md


def test_new_failing_cases_and_errors_fail_the_title() -> None:
    """Issue #11 item 5: every gate passes, the run exits 1: the title says FAILED."""
    outcome = samples.new_failure_outcome()
    assert outcome.decision.passed
    md = render_markdown(outcome.report)
    assert md.startswith(
        "## LLM eval: gate FAILED ❌\n\nFails on: 1 new failing case; 1 error (cases not judged).\n"
    )
    assert "### New failures (1)" in md and "### Errors (1)" in md
    assert "History: skipped: 0 recorded runs, need 3" in md


def test_committed_state_has_no_verdict(tmp_path: Path) -> None:
    md = render_markdown(samples.baseline_state_report(tmp_path))
    assert md.startswith("## LLM eval baseline (committed state, no run)\n")
    assert "PASSED" not in md and "FAILED" not in md and "Judge `" not in md


def test_pass_rate_and_history(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    assert "**Pass rate 68.4%** (13 passed, 6 failed, 95% CI 46.0%–84.6%)" in md
    assert "1 error (not counted)" in md
    block = report["summary"]["history"]
    assert (
        "History: mean 77.9% over 7 recorded runs of this judge, std 2.7%, lower bound"
        f" {100 * block['lower_bound']:.1f}% (prediction bound (Hahn &amp; Meeker),"
        f" t = {block['t']:.3f}) — the history gate"
        " **FAILED**." in md
    )
    report["summary"]["history"] = None
    gate = next(g for g in report["summary"]["gates"] if g["name"] == "history")
    gate["detail"] = "skipped: 2 recorded runs, need 3 (llmeval_min_history)"
    assert (
        "History: skipped: 2 recorded runs, need 3 (llmeval\\_min\\_history)."
        in render_markdown(report)
    )
    report["summary"]["gates"] = []
    assert "History: no history band in this report." in render_markdown(report)


def test_regressions_listed_with_reasons_and_evidence(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    assert "### Regressions (2)" in md
    line = next(line for line in md.splitlines() if line.startswith("- `refund-fees`"))
    assert line.startswith("- `refund-fees` (llmeval\\_support.jsonl:2) — score 0.41 &lt; 0.70")
    assert "contradicts\\_ground\\_truth" in line
    assert "handling fee \\| contradicts" in line  # the reasoning's pipe, escaped
    ev = next(c for c in report["cases"] if c["id"] == "refund-fees")["evidence"]
    assert line.endswith(
        f"history {ev['history_passes']}/{ev['history_samples']} samples in 7 runs, now 0/3;"
        f" p = {ev['p_value']:.3g}, adjusted p = {ev['adjusted_p']:.3g}"
    )
    assert "- `cancel-subscription` (llmeval\\_support.jsonl:3) — score 0.52 &lt; 0.70" in md
    assert "### New failures (1)" in md
    assert "### Errors (1)" in md and "529 overloaded" in md
    assert "### Flaky (1)" in md and "- `shipping-intl` (llmeval\\_support.jsonl:8)" in md
    assert "history 18/21 samples in 7 runs, now 2/3" in md
    assert "**Improvements (2):** `export-data`, `password-reset`" in md
    assert "**Known failures (2):** `gdpr-delete`, `loyalty-points`" in md
    assert "Run again by a rerun plugin: 1 case (`shipping-intl`)" in md


def test_agreement_with_people(report: dict[str, Any]) -> None:
    a = report["summary"]["agreement"]
    md = render_markdown(report)
    assert (
        f"**Judge vs people** (7 labelled cases): accuracy {a['accuracy'] * 100:.1f}%,"
        f" Cohen's kappa {a['kappa']:.3f} (95% CI {a['kappa_low']:.3f}–{a['kappa_high']:.3f}),"
        f" true-positive rate {a['tpr'] * 100:.1f}%, true-negative rate {a['tnr'] * 100:.1f}%."
    ) in md
    assert f"| judge: pass | {a['tp']} | {a['fp']} |" in md
    assert f"| judge: fail | {a['fn']} | {a['tn']} |" in md
    report["summary"]["agreement"] = None
    assert "Judge vs people" not in render_markdown(report)


def test_no_raw_html_from_user_strings(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    assert "<" not in md and ">" not in md.replace("&gt;", "")
    # An id with HTML in it is escaped text, not a code span that some renderer might unwrap.
    assert "- html-&lt;img src=x onerror=alert(1)&gt; (llmeval\\_support.jsonl:7) — " in md
    assert "&lt;b&gt;wrong&lt;/b&gt;" in md


def test_cost_comparison_and_judge(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    last = md.splitlines()[-1]
    s = report["summary"]
    assert last == (
        "Judge `anthropic model=claude-sonnet-4-5 prompt=grader-v3`: 2 calls, 55 cache hits,"
        f" {s['usage']['input_tokens']:,} input / {s['usage']['output_tokens']:,} output tokens,"
        " cost $0.1027."
    )
    c = report["comparison"]
    assert f"exact McNemar p = 1.0000 (b = {c['b']}, c = {c['c']}); recommendation: baseline" in md
    report["summary"]["cost_usd"] = None
    report["comparison"] = None
    report["summary"]["judge_calls"] = 1
    report["summary"]["cache_hits"] = 1
    md = render_markdown(report)
    assert "cost unknown" in md and "McNemar" not in md
    assert ": 1 call, 1 cache hit," in md  # singular


def test_long_lists_are_capped(report: dict[str, Any]) -> None:
    ids = [f"case-{i}" for i in range(MAX_LISTED + 10)]
    report["summary"]["regressions"] = ids
    md = render_markdown(report)
    assert f"### Regressions ({MAX_LISTED + 10})" in md
    assert f"- `case-{MAX_LISTED - 1}`" in md and f"- `case-{MAX_LISTED}`" not in md
    assert "- … and 10 more (see the JSON or HTML report)" in md


def test_shard_is_named(report: dict[str, Any]) -> None:
    report["settings"]["shard"] = "2/4"
    assert "Shard 2/4: partial report." in render_markdown(report)


def test_minimal_report() -> None:
    md = render_markdown({"schema_version": 1})
    assert md.startswith("## LLM eval: no gates evaluated\n")
    assert "**Pass rate n/a**" in md


def test_unsupported_schema_version(report: dict[str, Any]) -> None:
    report["schema_version"] = 2
    with pytest.raises(ValueError, match="schema_version 2"):
        render_markdown(report)
