"""The HTML report's cases: read by ``CaseResult.from_dict``, and old or trimmed report files.

A saved report (``llmeval report --from``) may be older than a field or trimmed by hand. The page
must still render, and must not show ``from_dict``'s defaults for what the record never said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from html_tree import Node, parse

from pytest_llmeval.core.agreement import Agreement
from pytest_llmeval.core.evidence import CaseEvidence
from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.reports.html import render_html
from pytest_llmeval.reports.html_cases import (
    UNKNOWN_WHEN_ABSENT,
    case_view,
    case_views,
    evidence_text,
)

SAMPLE = Path(__file__).parent.parent / "data" / "sample_report.json"


@pytest.fixture
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


def case_index(report: dict[str, Any], case_id: str) -> int:
    """The case's 1-based position: its table row is ``case-<index>``."""
    return next(i for i, c in enumerate(report["cases"], start=1) if c["id"] == case_id)


def row(doc: Node, index: int) -> list[Node]:
    """The cells of the case table's own row for case ``index``."""
    return [c for c in doc.find("tr", id=f"case-{index}").children if c.tag == "td"]


def section_case(doc: Node, section: str, case_id: str) -> Node:
    return next(
        d
        for d in doc.find(id=section).find_all("details", cls="case")
        if d.find("strong").text() == case_id
    )


def test_each_view_holds_the_result_from_dict_reads(report: dict[str, Any]) -> None:
    views = case_views(report["cases"])
    assert [v.result for v in views] == [CaseResult.from_dict(c) for c in report["cases"]]
    assert [v.index for v in views] == list(range(1, len(report["cases"]) + 1))
    # a complete record: nothing is unknown, the page shows the result's own values
    refund = views[case_index(report, "refund-fees") - 1]
    assert refund.result is not None and refund.absent == frozenset()
    assert (refund.difficulty, refund.threshold, refund.samples, refund.passes) == (
        refund.result.difficulty,
        refund.result.threshold,
        refund.result.samples,
        refund.result.passes,
    )
    assert refund.side_by_side and refund.outcome_label == "regression"


def test_a_trimmed_record_renders_and_invents_nothing(report: dict[str, Any]) -> None:
    i = case_index(report, "cancel-subscription")  # a regression, difficulty "easy"
    record = report["cases"][i - 1]
    for field in ("difficulty", "threshold", "passes", "response", "line", "file"):
        del record[field]
    # the trap: from_dict fills these in, as if the record had said so
    read = CaseResult.from_dict(record)
    assert (read.difficulty, read.threshold, read.passes, read.response) == ("medium", 0.0, 0, "")

    doc = parse(render_html(report))
    cells = row(doc, i)
    assert cells[0].attrs["data-sort"] == "cancel-subscription"
    assert cells[8].text() == "" and cells[8].attrs["data-sort"] == ""  # not "medium"
    assert cells[4].text() == "—" and cells[4].attrs["data-sort"] == ""  # not 0.00
    # the file is the nodeid's own path part (what a case's nodeid is made of); no line number
    assert cells[1].text() == "llmeval_support.jsonl"
    body = section_case(doc, "regressions", "cancel-subscription")
    verdict = next(dd for dd in body.find_all("dd") if dd.text().startswith("fail, score"))
    score = f"score {record['score']:.2f}"
    assert verdict.text().startswith(f"fail, {score} (threshold —); ?/3 samples passed")
    assert "not recorded" in body.text() and body.find_all("pre", cls="response") == []
    assert "medium" not in body.text()
    headline = body.find("summary").text()
    assert score not in headline and "0.00" not in headline  # no "score 0.52 ≥ 0.00"


def test_nulls_are_not_recorded_not_the_text_none(report: dict[str, Any]) -> None:
    i = case_index(report, "refund-fees")
    record = report["cases"][i - 1]
    record.update(difficulty=None, threshold=None, response=None, reasoning=None, tags=None)
    view = case_view(i, record)
    assert view.result is not None
    assert view.absent == {"difficulty", "threshold", "response"}
    assert (view.difficulty, view.threshold, view.response) == ("", None, None)
    assert (view.result.reasoning, view.result.tags) == ("", ())
    doc = parse(render_html(report))
    body = section_case(doc, "regressions", "refund-fees")
    assert "None" not in body.text()
    assert body.find(cls="answer-new").text() == "This runnot recorded"


def test_a_record_of_an_older_version_renders(report: dict[str, Any]) -> None:
    """Fields added after the first report version are optional to from_dict: every case is
    shown, with what the record has."""
    later = ("references", "human_verdict", "evidence", "attempts", "panel", "sample_verdicts",
             "outcome_detail", "candidate", "response_sha256", "checks_only", "sut_usage",
             "latency_s", "file", "usage", "judge_calls", "cache_hits")  # fmt: skip
    for case in report["cases"]:
        for field in later:
            case.pop(field, None)
    assert not UNKNOWN_WHEN_ABSENT & set(later)
    doc = parse(render_html(report))
    for i, case in enumerate(report["cases"], start=1):
        cells = row(doc, i)
        assert cells[8].text() == case["difficulty"]
        assert cells[5].text() == "—"  # no latency recorded
        assert "×" not in cells[2].text()  # no rerun recorded
    assert doc.find(id="regressions").find_all("table", cls="evidence-table") == []


def test_an_unreadable_record_is_listed_with_the_reason(report: dict[str, Any]) -> None:
    i = case_index(report, "refund-fees")
    del report["cases"][i - 1]["verdict"]
    with pytest.raises(KeyError):
        CaseResult.from_dict(report["cases"][i - 1])
    doc = parse(render_html(report))
    rows = doc.find("table", id="cases-table").find("tbody").find_all("tr", id=f"case-{i}")
    assert len(rows) == 1 and "unreadable" in rows[0].classes
    assert "cannot be read (no 'verdict' field)" in rows[0].text()
    assert rows[0].attrs["data-outcome"] == "regression"
    body = section_case(doc, "regressions", "refund-fees")
    assert "record not readable: no 'verdict' field" in body.find("summary").text()
    assert body.find_all("dl") == []  # nothing shown that the record could not say
    # every other case is shown in full
    assert len(doc.find("table", id="cases-table").find_all("tr", cls="unreadable")) == 1
    other = section_case(doc, "regressions", "cancel-subscription")
    assert other.find("pre", cls="response").text() == report["cases"][1]["response"]


def test_agreement_is_read_by_the_agreement_type(report: dict[str, Any]) -> None:
    block = report["summary"]["agreement"]
    expected = Agreement.from_dict(block)
    block["kappa"] = 0.5  # a hand-edited number the counts do not give: not shown
    doc = parse(render_html(report))
    assert doc.find(id="agreement-kappa").text() == f"{expected.kappa:.3f}" != "0.500"
    del block["tp"]  # no counts: nothing to derive the numbers from, so no section
    doc = parse(render_html(report))
    assert doc.find_all("section", id="agreement") == []


def test_evidence_is_read_by_the_evidence_type(report: dict[str, Any]) -> None:
    i = case_index(report, "refund-fees")
    record = report["cases"][i - 1]
    view = case_view(i, record)
    assert view.evidence == CaseEvidence.from_dict(record["evidence"])
    assert evidence_text(record["evidence"]).startswith(
        f"history {view.evidence.history_passes}/{view.evidence.history_samples} samples in"
    )
    del record["evidence"]["now_samples"]  # a trimmed block: no numbers the gate did not write
    assert case_view(i, record).evidence is None and evidence_text(record["evidence"]) == ""
    body = section_case(parse(render_html(report)), "regressions", "refund-fees")
    assert body.find_all("table", cls="evidence-table") == []
    assert "?" not in body.find("summary").text()
