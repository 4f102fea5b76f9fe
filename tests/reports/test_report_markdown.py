"""The Markdown CI summary: content and escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.reports.markdown import MAX_LISTED, escape_markdown, render_markdown

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


def test_failed_gates_table(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    lines = md.splitlines()
    assert lines[0] == "## LLM eval: gate FAILED ❌"
    table = [line for line in lines if line.startswith("| ")]
    assert table[0] == "| Gate | Result | Detail |"
    assert table[1] == "| --- | --- | --- |"
    assert len(table) == 2 + len(report["summary"]["gates"])
    assert (
        "| Regressions | ❌ FAILED | 2 regressions (max 0): refund-fees, cancel-subscription |"
        in md
    )
    assert "| Minimum pass rate | skipped |" in md
    for row in table:
        assert unescaped_pipes(row) == 4, row


def test_passing_run(report: dict[str, Any]) -> None:
    for gate in report["summary"]["gates"]:
        gate["passed"] = True
    report["summary"]["gate_passed"] = True
    md = render_markdown(report)
    assert md.startswith("## LLM eval: gate PASSED ✅\n")
    assert "FAILED" not in md


def test_pass_rate_and_history(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    assert "**Pass rate 73.7%** (14 passed, 5 failed, 95% CI 51.2%–88.2%)" in md
    assert "1 error (not counted)" in md
    assert (
        "History: mean 87.9% over 7 runs, std 2.4%, lower bound 83.1% (mean − 2.0·std)"
        " — this run is **below** it." in md
    )
    report["summary"]["pass_rate"] = 0.9
    assert "this run is within it." in render_markdown(report)
    report["summary"]["history"] = None
    report["history"] = report["history"][:2]
    assert "History: 2 recorded runs (the history gate needs 3)." in render_markdown(report)


def test_regressions_listed_with_one_line_reasons(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    assert "### Regressions (2)" in md
    line = next(line for line in md.splitlines() if line.startswith("- `refund-fees`"))
    assert "score 0.41 &lt; 0.70" in line
    assert "contradicts\\_ground\\_truth" in line
    assert "handling fee \\| contradicts" in line  # the reasoning's pipe, escaped
    assert "- `cancel-subscription` — score 0.52 &lt; 0.70" in md
    assert "### New failures (1)" in md
    assert "### Errors (1)" in md and "529 overloaded" in md
    assert "**Improvements (2):** `password-reset`, `export-data`" in md
    assert "**Flaky (1):** `shipping-intl`" in md


def test_no_raw_html_from_user_strings(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    assert "<" not in md and ">" not in md.replace("&gt;", "")
    # An id with HTML in it is escaped text, not a code span that some renderer might unwrap.
    assert "- html-&lt;img src=x onerror=alert(1)&gt; — " in md
    assert "&lt;b&gt;wrong&lt;/b&gt;" in md


def test_cost_comparison_and_judge(report: dict[str, Any]) -> None:
    md = render_markdown(report)
    last = md.splitlines()[-1]
    assert last == (
        "Judge `anthropic model=claude-sonnet-4-5 prompt=grader-v3`: 14 calls, 43 cache hits,"
        " 18,234 input / 2,411 output tokens, cost $0.1027."
    )
    assert "exact McNemar p = 1.0000 (b = 2, c = 2); recommendation: baseline" in md
    report["summary"]["cost_usd"] = None
    report["comparison"] = None
    md = render_markdown(report)
    assert "cost unknown" in md and "McNemar" not in md


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
