"""The HTML report: structure, charts and escaping, checked on the parsed page.

``report_samples`` and ``html_tree`` are helpers beside this file (pytest and mypy put
``tests/reports`` on the import path).
"""

from __future__ import annotations

import copy
import json
import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import report_samples as samples
from html_tree import Node, parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmeval.reports.html import HTMLExtraMissing, render_html

SAMPLE = Path(__file__).parent.parent / "data" / "sample_report.json"


@pytest.fixture
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


def render(report: dict[str, Any]) -> tuple[str, Node]:
    html = render_html(report)
    return html, parse(html)


def user_strings(report: dict[str, Any]) -> list[str]:
    """Every string in the report that came from a user (cases, tags, gate details, ...)."""
    out: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                out.append(str(k))
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    visit(report["cases"])
    visit(report["summary"]["by_tag"])
    visit(report["summary"]["gates"])
    return out


# -- the verdict and the gates ------------------------------------------------------------


def test_the_banner_is_the_runs_verdict_with_its_reasons(report: dict[str, Any]) -> None:
    html, doc = render(report)
    banner = doc.find(id="gate-banner")
    assert "Gate FAILED" in banner.text()
    reasons = [li.text() for li in banner.find(id="verdict-reasons").find_all("li")]
    assert reasons == report["summary"]["verdict_reasons"]
    assert reasons == ["regressions", "history", "1 new failing case", "1 error (cases not judged)"]
    rows = doc.find_all("tr", cls="gate")
    assert [(r.attrs["data-gate"], r.attrs["data-status"]) for r in rows] == [
        ("regressions", "failed"),
        ("history", "failed"),
        ("history_binomial", "skipped"),
        ("suite_drop", "passed"),
        ("flips", "skipped"),
    ]
    for row, gate in zip(rows, report["summary"]["gates"], strict=True):
        assert gate["detail"] in row.text() and gate["method"] in row.text()
    assert "FAILED" in rows[0].text() and "2 regressions (max 0)" in rows[0].text()
    # The verdict comes before every other section of the page.
    assert html.index('id="gate-banner"') < html.index('id="trend"')


def test_passed_only_when_the_run_passed(report: dict[str, Any]) -> None:
    report["summary"]["gate_passed"] = True
    report["summary"]["verdict"] = "PASSED"
    report["summary"]["verdict_reasons"] = []
    _, doc = render(report)
    banner = doc.find(id="gate-banner")
    assert "Gate PASSED" in banner.text() and "FAILED" not in banner.text()
    assert doc.find("title").text().endswith("PASSED")


def test_new_failures_and_errors_fail_the_banner_though_every_gate_passed() -> None:
    """Issue #11 item 5: a first run with a new failing case and a judge error exits 1."""
    outcome = samples.new_failure_outcome()
    assert outcome.decision.passed and not outcome.verdict.passed
    _, doc = render(outcome.report)
    banner = doc.find(id="gate-banner")
    assert "Gate FAILED" in banner.text() and "PASSED" not in banner.text()
    reasons = [li.text() for li in banner.find_all("li")]
    assert (
        reasons
        == list(outcome.verdict.reasons)
        == [
            "1 new failing case",
            "1 error (cases not judged)",
        ]
    )
    assert {r.attrs["data-status"] for r in doc.find_all("tr", cls="gate")} <= {"passed", "skipped"}
    assert doc.find("title").text().endswith("FAILED")


def test_a_report_of_the_committed_state_has_no_verdict(tmp_path: Path) -> None:
    report = samples.baseline_state_report(tmp_path)
    assert report["source"] == "baseline" and report["summary"]["verdict"] is None
    _, doc = render(report)
    banner = doc.find(id="gate-banner")
    assert "No gates evaluated" in banner.text()
    assert "committed baseline" in banner.text()
    assert doc.find_all("tr", cls="gate") == []
    assert doc.find_all(cls="trend-current") == []  # no run, so no "this run" point


def test_without_gates_the_page_says_none_were_evaluated(report: dict[str, Any]) -> None:
    report["summary"]["gates"] = []
    report["summary"]["gate_passed"] = None
    _, doc = render(report)
    assert "No gates evaluated" in doc.find(id="gate-banner").text()
    assert doc.find_all("tr", cls="gate") == []


# -- trend ----------------------------------------------------------------------------------


@pytest.mark.parametrize("points", [1, 2, 5, 7])
def test_one_trend_point_per_history_entry(report: dict[str, Any], points: int) -> None:
    report["history"] = report["history"][:points]
    _, doc = render(report)
    chart = doc.find("svg", cls="trend-chart")
    dots = chart.find_all(cls="trend-point")
    assert [d.attrs["data-index"] for d in dots] == [str(i) for i in range(points)]
    rates = [float(d.attrs["data-rate"]) for d in dots]
    assert rates == [h["pass_rate"] for h in report["history"]]
    # This run is marked separately, once.
    assert len(chart.find_all(cls="trend-current")) == 1
    assert "this run" in chart.text()


def test_the_trend_shows_only_this_judges_history(report: dict[str, Any]) -> None:
    judges = {json.dumps(h["judge"], sort_keys=True) for h in report["history"]}
    assert judges == {json.dumps(report["judge"], sort_keys=True)}
    assert len(report["history"]) == report["summary"]["history"]["points"] == 7


def test_points_go_up_when_the_pass_rate_does(report: dict[str, Any]) -> None:
    _, doc = render(report)
    dots = doc.find_all(cls="trend-point")
    by_rate = sorted(dots, key=lambda d: float(d.attrs["data-rate"]))
    ys = [float(d.attrs["cy"]) for d in by_rate]
    assert ys == sorted(ys, reverse=True)  # SVG y grows downwards


def test_band_is_the_history_gates_own(report: dict[str, Any]) -> None:
    block = report["summary"]["history"]
    _, doc = render(report)
    chart = doc.find("svg", cls="trend-chart")
    band = chart.find(cls="trend-band")
    assert float(band.attrs["data-lower"]) == block["lower_bound"]
    assert float(band.attrs["data-mean"]) == block["mean"]
    label = chart.find(cls="trend-bound-label").text()
    assert label == (
        f"gate bound {block['lower_bound'] * 100:.1f}%"
        f" (prediction bound (Hahn & Meeker), t = {block['t']:.3f})"
    )
    lower_line = chart.find(cls="trend-lower")
    mean_line = chart.find(cls="trend-mean")
    assert float(lower_line.attrs["y1"]) > float(mean_line.attrs["y1"])  # lower is drawn below
    # the band is symmetric about the mean: from the bound to as far above the mean
    top, bottom = float(band.attrs["y"]), float(band.attrs["y"]) + float(band.attrs["height"])
    mean_y = float(mean_line.attrs["y1"])
    assert abs((mean_y - top) - (bottom - mean_y)) < 0.05
    legend = doc.find(id="trend-band-legend").text()
    assert f"over {block['points']} recorded runs of this judge" in legend
    assert f"mean {block['mean'] * 100:.1f}%" in legend


def test_no_band_without_the_gates_numbers(report: dict[str, Any]) -> None:
    """Renderers recompute nothing: seven points and a k in the settings draw no band when the
    report carries no history block (issue #9)."""
    report["summary"]["history"] = None
    report["settings"]["std_threshold"] = 1.5
    history_gate = next(g for g in report["summary"]["gates"] if g["name"] == "history")
    history_gate["detail"] = "skipped: 2 recorded runs, need 3 (llmeval_min_history)"
    _, doc = render(report)
    chart = doc.find("svg", cls="trend-chart")
    assert chart.find_all(cls="trend-band") == []
    assert chart.find_all(cls="trend-lower") == []
    assert len(chart.find_all(cls="trend-point")) == 7
    legend = doc.find(id="trend-band-legend").text()
    assert legend == "No history band: skipped: 2 recorded runs, need 3 (llmeval_min_history)"


def test_a_block_without_its_bound_draws_no_band(report: dict[str, Any]) -> None:
    del report["summary"]["history"]["lower_bound"]
    _, doc = render(report)
    assert doc.find("svg", cls="trend-chart").find_all(cls="trend-band") == []


def test_a_run_already_in_history_is_marked_not_added(report: dict[str, Any]) -> None:
    report["history"][-1]["timestamp"] = report["created"]
    _, doc = render(report)
    dots = doc.find_all(cls="trend-point")
    assert len(dots) == len(report["history"])
    current = doc.find_all(cls="trend-current")
    assert len(current) == 1 and "trend-point" in current[0].classes
    assert current[0].attrs["data-index"] == str(len(report["history"]) - 1)


def test_without_history_the_trend_section_says_so(report: dict[str, Any]) -> None:
    report["history"] = []
    report["summary"]["history"] = None
    report["summary"]["pass_rate"] = None
    _, doc = render(report)
    assert doc.find_all("svg", cls="trend-chart") == []
    assert "No recorded history for this judge yet" in doc.find(id="trend").text()


# -- judge vs people ------------------------------------------------------------------------


def test_agreement_with_people(report: dict[str, Any]) -> None:
    a = report["summary"]["agreement"]
    _, doc = render(report)
    section = doc.find("section", id="agreement")
    assert doc.find(id="agreement-accuracy").text() == f"{a['accuracy'] * 100:.1f}%"
    assert doc.find(id="agreement-kappa").text() == f"{a['kappa']:.3f}"
    text = section.text()
    assert f"95% CI {a['kappa_low']:.3f} – {a['kappa_high']:.3f}" in text
    assert f"{a['tpr'] * 100:.1f}%" in text and f"{a['tnr'] * 100:.1f}%" in text
    assert f"{a['n']} cases that carry a human label" in text
    cells = {td.attrs["data-cell"]: int(td.text()) for td in section.find_all("td")}
    assert cells == {k: a[k] for k in ("tp", "fp", "fn", "tn")}
    report["summary"]["agreement"] = None
    _, doc = render(report)
    assert doc.find_all("section", id="agreement") == []


# -- other sections -------------------------------------------------------------------------


def test_histogram_counts_every_judged_case(report: dict[str, Any]) -> None:
    _, doc = render(report)
    bins = doc.find("svg", cls="histogram").find_all(cls="hist-bin")
    assert len(bins) == 10
    judged = [c for c in report["cases"] if c["score"] is not None and c["verdict"] != "error"]
    assert sum(int(b.attrs["data-pass"]) for b in bins) == sum(
        c["verdict"] == "pass" for c in judged
    )
    assert sum(int(b.attrs["data-fail"]) for b in bins) == sum(
        c["verdict"] == "fail" for c in judged
    )
    refund_fees_bin = next(b for b in bins if b.attrs["data-lo"] == "0.4")  # score 0.41, failed
    assert int(refund_fees_bin.attrs["data-fail"]) >= 1


def test_groups_show_wilson_intervals_from_the_report(report: dict[str, Any]) -> None:
    _, doc = render(report)
    table = doc.find("table", id="by-tag")
    billing = next(r for r in table.find_all("tr") if r.find_all("td") and "billing" in r.text())
    group = report["summary"]["by_tag"]["billing"]
    lo, hi = group["ci"]
    assert f"{lo * 100:.1f}% – {hi * 100:.1f}%" in billing.text()
    assert f"{group['pass_rate'] * 100:.1f}%" in billing.text()
    rows = doc.find("table", id="by-difficulty").find("tbody").find_all("tr")
    assert len(rows) == len(report["summary"]["by_difficulty"])


def case_of(report: dict[str, Any], case_id: str) -> dict[str, Any]:
    case: dict[str, Any] = next(c for c in report["cases"] if c["id"] == case_id)
    return case


def shown_ids(doc: Node, section: str) -> list[str]:
    return [d.find("strong").text() for d in doc.find(id=section).find_all("details", cls="case")]


def test_case_sections_expand_to_the_full_case(report: dict[str, Any]) -> None:
    _, doc = render(report)
    summary = report["summary"]
    for key, listed in [
        ("regressions", summary["regressions"]),
        ("improvements", summary["improvements"]),
        ("new-failures", summary["new_failures"]),
        ("flaky", summary["flaky"]),
    ]:
        assert shown_ids(doc, key) == [k.rsplit("::", 1)[-1] for k in listed]
    assert shown_ids(doc, "regressions") == ["cancel-subscription", "refund-fees"]
    details = doc.find(id="regressions").find_all("details", cls="case")
    case = case_of(report, "cancel-subscription")
    first = details[0]
    assert "open" not in first.attrs  # collapsed until clicked
    assert first.find("pre", cls="question").text() == case["question"]
    assert first.find("pre", cls="expected").text() == case["ground_truth"]
    assert first.find("pre", cls="response").text() == case["response"]
    assert first.find("pre", cls="reasoning").text() == case["reasoning"]
    assert first.find("dd", cls="baseline").text().startswith("pass, score 0.81")
    assert "quality_below_threshold" in first.find("dd", cls="failure-modes").text()
    # an old baseline without the accepted text: one answer, no side-by-side
    assert case["baseline"]["response"] is None
    assert first.find_all(cls="answers") == [] and first.find_all(cls="baseline-response") == []
    errors = doc.find(id="errors").find_all("details", cls="case")
    assert [e.find("strong").text() for e in errors] == ["shipping-cost"]
    assert "529 overloaded" in errors[0].find("pre", cls="error").text()


def test_a_regression_shows_the_old_and_the_new_answer(report: dict[str, Any]) -> None:
    case = case_of(report, "refund-fees")
    _, doc = render(report)
    details = doc.find(id="regressions").find_all("details", cls="case")[1]
    answers = details.find(cls="answers")
    assert answers.find(cls="answer-old").find("pre").text() == case["baseline"]["response"]
    assert answers.find(cls="answer-new").find("pre", cls="response").text() == case["response"]
    # several references are all listed under "expected"
    assert [p.text() for p in details.find("ul", cls="references").find_all("pre")] == case[
        "references"
    ]
    assert len(case["references"]) == 2
    assert case["human_verdict"] == "fail"
    assert "fail (the judge said fail)" in details.find("dd", cls="human").text()


def test_regressions_and_flaky_cases_show_their_evidence(report: dict[str, Any]) -> None:
    _, doc = render(report)
    for section, case_id in [
        ("regressions", "refund-fees"),
        ("regressions", "cancel-subscription"),
        ("flaky", "shipping-intl"),
    ]:
        ev = case_of(report, case_id)["evidence"]
        details = next(
            d
            for d in doc.find(id=section).find_all("details", cls="case")
            if d.find("strong").text() == case_id
        )
        rows = {
            r.find("th").text(): r.find("td").text()
            for r in details.find("table", cls="evidence-table").find_all("tr")
        }
        assert rows["History"] == (
            f"{ev['history_passes']}/{ev['history_samples']} samples passed in"
            f" {ev['history_runs']} recorded runs"
        )
        assert rows["Now"] == f"{ev['now_passes']}/{ev['now_samples']} samples passed"
        assert rows["p"] == f"{ev['p_value']:.3g}"
        assert rows["Adjusted p"] == f"{ev['adjusted_p']:.3g} (alpha {ev['alpha']:.3g})"
        assert ev["method"] in details.find("dd", cls="evidence").text()
    flaky = doc.find(id="flaky").find("details", cls="case")
    assert "Run again by a rerun plugin" not in flaky.text()
    assert "2 (run again by a rerun plugin" in flaky.find("dd", cls="attempts").text()
    assert "shipping-intl" in doc.find(id="rerun-note").text()


def test_conversation_cases_show_every_turn(report: dict[str, Any]) -> None:
    _, doc = render(report)
    row = next(r for r in doc.find(id="cases-table").find_all("tr") if "warranty" in r.text())
    turns = row.find_all("div", cls="message")
    assert [t.find("pre").text() for t in turns] == [
        m["content"] for m in next(c for c in report["cases"] if c["id"] == "warranty")["messages"]
    ]


def test_usage_and_cost(report: dict[str, Any]) -> None:
    summary = report["summary"]
    _, doc = render(report)
    usage = doc.find(id="usage").text()
    assert f"{summary['judge_calls']}judge calls" in usage
    assert f"{summary['cache_hits']}cache hits" in usage
    assert f"{summary['usage']['input_tokens']:,}" in usage
    assert f"{summary['usage']['output_tokens']:,}" in usage
    assert doc.find(id="cost").text() == "$0.1027"
    report["summary"]["cost_usd"] = None
    _, doc = render(report)
    assert doc.find(id="cost").text() == "unknown"


def test_comparison_side_by_side_only_in_compare_mode(report: dict[str, Any]) -> None:
    cmp = report["comparison"]
    _, doc = render(report)
    section = doc.find("section", id="comparison")
    assert f"{cmp['baseline_pass_rate'] * 100:.1f}%" in section.find(cls="side-baseline").text()
    assert f"{cmp['candidate_pass_rate'] * 100:.1f}%" in section.find(cls="side-candidate").text()
    mcnemar = section.find("table", cls="mcnemar").text()
    assert f"{cmp['mcnemar_p']:.4f}" in mcnemar and f"b = {cmp['b']}" in mcnemar
    report["comparison"] = None
    _, doc = render(report)
    assert doc.find_all("section", id="comparison") == []


def test_case_table_has_filters_and_every_case(report: dict[str, Any]) -> None:
    _, doc = render(report)
    form = doc.find("form", id="case-filters")
    assert "hidden" in form.attrs  # shown by the script; without JS the full table stays usable
    radios = form.find_all("input", type="radio", name="outcome")
    outcomes = {c["outcome"] for c in report["cases"]}
    assert {r.attrs["value"] for r in radios} == outcomes | {""}
    tags = {t for c in report["cases"] for t in c["tags"]}
    options = doc.find("select", id="case-tag").find_all("option")
    assert {o.attrs["value"] for o in options} == tags | {""}
    assert doc.find("input", id="case-search").attrs["type"] == "search"
    rows = case_rows(doc)
    assert [r.attrs["data-outcome"] for r in rows] == [c["outcome"] for c in report["cases"]]
    assert [json.loads(r.attrs["data-tags"]) for r in rows] == [c["tags"] for c in report["cases"]]
    assert doc.find_all("noscript")


def test_case_table_has_file_latency_and_sort_keys(report: dict[str, Any]) -> None:
    _, doc = render(report)
    table = doc.find("table", id="cases-table")
    headers = [th.text() for th in table.find("thead").find_all("th")]
    assert headers[:6] == ["Case", "File", "Outcome", "Score", "Threshold", "Latency"]
    sortable = [th.attrs.get("data-sort-type") for th in table.find("thead").find_all("th")]
    assert sortable.count(None) == 1  # every column but the tags sorts
    rows = case_rows(doc)
    for row, case in zip(rows, report["cases"], strict=True):
        cells = _cells(row)
        assert cells[1].text() == f"llmeval_support.jsonl:{case['line']}"
        assert cells[1].find("span").attrs["title"] == f"{case['file']}:{case['line']}"
        latency = case["latency_s"]
        assert cells[5].attrs["data-sort"] == ("" if latency is None else repr(latency))
        score = case["score"]
        assert cells[3].attrs["data-sort"] == ("" if score is None else repr(score))
    refund = next(r for r in rows if _cells(r)[0].attrs["data-sort"] == "refund-fees")
    assert _cells(refund)[5].text() == "2.84 s"
    shipping = next(r for r in rows if _cells(r)[0].attrs["data-sort"] == "shipping-cost")
    assert _cells(shipping)[5].text() == "—"  # an error has no answer time


def case_rows(doc: Node) -> list[Node]:
    """The case table's own rows (not the rows of tables inside the case details)."""
    body = doc.find("table", id="cases-table").find("tbody")
    return [r for r in body.children if r.tag == "tr"]


def _cells(row: Node) -> list[Node]:
    """The row's own cells (not the cells of tables inside its case details)."""
    return [c for c in row.children if c.tag == "td"]


def test_minimal_report_renders() -> None:
    minimal = {"schema_version": 1, "summary": {}, "cases": [], "history": []}
    _, doc = render(minimal)
    assert "No gates evaluated" in doc.find(id="gate-banner").text()
    assert "No judged scores" in doc.find(id="scores").text()


def test_unsupported_schema_version_is_refused(report: dict[str, Any]) -> None:
    report["schema_version"] = 99
    with pytest.raises(ValueError, match="schema_version 99"):
        render_html(report)


def test_missing_jinja2_names_the_extra(
    report: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    with pytest.raises(HTMLExtraMissing, match=r"pip install 'pytest-llmeval-gate\[html\]'"):
        render_html(report)


# -- safety ---------------------------------------------------------------------------------


def test_script_in_a_response_is_text_not_code(report: dict[str, Any]) -> None:
    html, doc = render(report)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    scripts = doc.find_all("script")
    assert len(scripts) == 1 and "src" not in scripts[0].attrs
    own_script = (
        resources.files("pytest_llmeval.reports")
        .joinpath("templates")
        .joinpath("report.js")
        .read_text()
    )
    assert scripts[0].text() == own_script
    responses = [p.text() for p in doc.find_all("pre", cls="response")]
    assert (
        'Sure! <script>alert("x")</script> Refunds cost a 5 € handling fee and take 45 days.'
        in (responses)
    )


def test_no_element_or_attribute_comes_from_user_data(report: dict[str, Any]) -> None:
    _, doc = render(report)
    for node in doc.walk():
        assert node.tag not in {"img", "iframe", "object", "embed", "link", "base"}, node.tag
        for name in node.attrs:
            assert not name.startswith("on"), f"<{node.tag} {name}=...>"
    # Quotes in a tag survive as the attribute's value, not as new attributes.
    option = next(o for o in doc.find_all("option") if "onerror" in o.attrs.get("value", ""))
    assert option.attrs["value"] == '"onerror="alert(1)'
    assert set(option.attrs) == {"value"}


def test_every_user_string_is_escaped(report: dict[str, Any]) -> None:
    html, doc = render(report)
    text = doc.text()
    risky = [s for s in user_strings(report) if re.search(r"[<>\"'&]", s)]
    assert len(risky) >= 6  # the sample really carries hostile strings
    for value in risky:
        if "<" in value or "&" in value:
            assert value not in html, f"unescaped: {value!r}"
        assert value in text, f"not shown as text: {value!r}"


def test_no_network_resources(report: dict[str, Any]) -> None:
    html, doc = render(report)
    assert "http://" not in html and "https://" not in html
    for node in doc.walk():
        for name in ("src", "href", "action", "xlink:href", "poster", "data"):
            value = node.attrs.get(name)
            assert value is None or value.startswith("#"), f"<{node.tag} {name}={value!r}>"
    csp = doc.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
    assert "unsafe-inline" not in csp


TEXT = st.text(min_size=1, max_size=40)  # no lone surrogates: they cannot be UTF-8


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case_id=TEXT, tag=TEXT, response=TEXT)
def test_any_string_round_trips_as_text(case_id: str, tag: str, response: str) -> None:
    report: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    case = copy.deepcopy(report["cases"][1])
    case.update(id=case_id, tags=[tag], response=response)
    report["cases"] = [case]
    report["summary"]["regressions"] = [case_id]
    _, doc = render(report)
    tags_in_page = {n.tag for n in doc.walk()}
    assert not tags_in_page & {"img", "iframe", "object", "embed", "link"}
    assert len(doc.find_all("script")) == 1
    row = doc.find("table", id="cases-table").find("tbody").find("tr")
    assert json.loads(row.attrs["data-tags"]) == [tag]
    assert [p.text() for p in row.find_all("pre", cls="response")] == [response]
