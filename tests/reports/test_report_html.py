"""The HTML report: structure, charts and escaping, checked on the parsed page."""

from __future__ import annotations

import copy
import json
import re
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_llmeval.reports.html import HTMLExtraMissing, render_html

SAMPLE = Path(__file__).parent.parent / "data" / "sample_report.json"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}  # fmt: skip


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def text(self) -> str:
        """All text below this node, in document order (parsed, so entities are decoded)."""
        parts: list[str] = []

        def visit(node: Node) -> None:
            for item in node._order:
                if isinstance(item, str):
                    parts.append(item)
                else:
                    visit(item)

        visit(self)
        return "".join(parts)

    def __post_init__(self) -> None:
        self._order: list[str | Node] = []

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [
            n
            for n in self.walk()
            if (tag is None or n.tag == tag)
            and (cls is None or cls in n.classes)
            and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag} class={cls} {attrs}>"
        return found[0]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1]._order.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1]._order.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].texts.append(data)
        self.stack[-1]._order.append(data)


def parse(html: str) -> Node:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


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


# -- gates ----------------------------------------------------------------------------------


def test_failed_gates_are_shown_first_with_each_gates_detail(report: dict[str, Any]) -> None:
    html, doc = render(report)
    banner = doc.find(id="gate-banner")
    assert "Gate FAILED" in banner.text()
    assert "2 of 3 gates failed" in banner.text()
    rows = doc.find_all("tr", cls="gate")
    assert [(r.attrs["data-gate"], r.attrs["data-status"]) for r in rows] == [
        ("regressions", "failed"),
        ("min_pass_rate", "skipped"),
        ("history", "failed"),
    ]
    assert "FAILED" in rows[0].text() and "2 regressions (max 0)" in rows[0].text()
    assert "SKIPPED" in rows[1].text()
    # The verdict comes before every other section of the page.
    assert html.index('id="gate-banner"') < html.index('id="trend"')


def test_passing_gates_say_passed(report: dict[str, Any]) -> None:
    for gate in report["summary"]["gates"]:
        gate["passed"] = True
    report["summary"]["gate_passed"] = True
    _, doc = render(report)
    banner = doc.find(id="gate-banner")
    assert "Gate PASSED" in banner.text() and "FAILED" not in banner.text()
    assert doc.find("title").text().endswith("PASSED")


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


def test_points_go_up_when_the_pass_rate_does(report: dict[str, Any]) -> None:
    _, doc = render(report)
    dots = doc.find_all(cls="trend-point")
    by_rate = sorted(dots, key=lambda d: float(d.attrs["data-rate"]))
    ys = [float(d.attrs["cy"]) for d in by_rate]
    assert ys == sorted(ys, reverse=True)  # SVG y grows downwards


def test_band_uses_the_gates_history_numbers(report: dict[str, Any]) -> None:
    _, doc = render(report)
    chart = doc.find("svg", cls="trend-chart")
    assert len(chart.find_all(cls="trend-band")) == 1
    lower = report["summary"]["history"]["lower_bound"]
    assert f"= {lower * 100:.1f}%" in chart.text()
    lower_line = chart.find(cls="trend-lower")
    mean_line = chart.find(cls="trend-mean")
    assert float(lower_line.attrs["y1"]) > float(mean_line.attrs["y1"])  # lower is drawn below


def test_no_band_below_min_history(report: dict[str, Any]) -> None:
    report["history"] = report["history"][:2]
    rates = [h["pass_rate"] for h in report["history"]]
    report["summary"]["history"] = {
        "points": 2,
        "mean": statistics.fmean(rates),
        "std": statistics.stdev(rates),
        "k": 2.0,
        "lower_bound": statistics.fmean(rates) - 2 * statistics.stdev(rates),
    }
    assert report["settings"]["min_history"] == 3
    _, doc = render(report)
    chart = doc.find("svg", cls="trend-chart")
    assert chart.find_all(cls="trend-band") == []
    assert chart.find_all(cls="trend-lower") == []
    assert "needs at least 3 recorded runs (2 so far)" in doc.find(id="trend").text()


def test_band_computed_with_sample_std_when_the_report_has_none(report: dict[str, Any]) -> None:
    report["summary"]["history"] = None
    report["history"] = report["history"][:6]
    report["settings"]["std_threshold"] = 1.5
    rates = [h["pass_rate"] for h in report["history"]]
    expected = statistics.fmean(rates) - 1.5 * statistics.stdev(rates)  # n - 1 denominator
    _, doc = render(report)
    chart = doc.find("svg", cls="trend-chart")
    assert len(chart.find_all(cls="trend-band")) == 1
    assert f"mean − 1.5·std = {expected * 100:.1f}%" in chart.text()

    report["history"] = report["history"][:2]
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
    assert "No recorded history yet" in doc.find(id="trend").text()


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
    lo, hi = report["summary"]["by_tag"]["billing"]["ci"]
    assert f"{lo * 100:.1f}% – {hi * 100:.1f}%" in billing.text()
    assert "57.1%" in billing.text()
    rows = doc.find("table", id="by-difficulty").find("tbody").find_all("tr")
    assert len(rows) == len(report["summary"]["by_difficulty"])


def test_case_sections_expand_to_the_full_case(report: dict[str, Any]) -> None:
    _, doc = render(report)
    section = doc.find("section", id="regressions")
    details = section.find_all("details", cls="case")
    assert len(details) == len(report["summary"]["regressions"]) == 2
    first = details[0]
    case = next(c for c in report["cases"] if c["id"] == "refund-fees")
    assert "open" not in first.attrs  # collapsed until clicked
    assert first.find("summary").find("strong").text() == "refund-fees"
    assert first.find("pre", cls="question").text() == case["question"]
    assert first.find("pre", cls="expected").text() == case["ground_truth"]
    assert first.find("pre", cls="response").text() == case["response"]
    assert first.find("pre", cls="reasoning").text() == case["reasoning"]
    assert first.find("dd", cls="baseline").text().startswith("pass, score 0.88")
    assert "contradicts_ground_truth" in first.find("dd", cls="failure-modes").text()
    for key, ids in [
        ("improvements", report["summary"]["improvements"]),
        ("new-failures", report["summary"]["new_failures"]),
        ("flaky", report["summary"]["flaky"]),
    ]:
        shown = [d.find("strong").text() for d in doc.find(id=key).find_all("details", cls="case")]
        assert shown == ids
    errors = doc.find(id="errors").find_all("details", cls="case")
    assert [e.find("strong").text() for e in errors] == ["shipping-cost"]
    assert "529 overloaded" in errors[0].find("pre", cls="error").text()


def test_conversation_cases_show_every_turn(report: dict[str, Any]) -> None:
    _, doc = render(report)
    row = next(r for r in doc.find(id="cases-table").find_all("tr") if "warranty" in r.text())
    turns = row.find_all("div", cls="message")
    assert [t.find("pre").text() for t in turns] == [
        m["content"] for m in next(c for c in report["cases"] if c["id"] == "warranty")["messages"]
    ]


def test_usage_and_cost(report: dict[str, Any]) -> None:
    _, doc = render(report)
    usage = doc.find(id="usage").text()
    assert "14" in usage and "judge calls" in usage and "43" in usage and "cache hits" in usage
    assert "18,234" in usage and "2,411" in usage
    assert doc.find(id="cost").text() == "$0.1027"
    report["summary"]["cost_usd"] = None
    _, doc = render(report)
    assert doc.find(id="cost").text() == "unknown"


def test_comparison_side_by_side_only_in_compare_mode(report: dict[str, Any]) -> None:
    _, doc = render(report)
    section = doc.find("section", id="comparison")
    assert "88.2%" in section.find(cls="side-baseline").text()
    assert "73.7%" in section.find(cls="side-candidate").text()
    mcnemar = section.find("table", cls="mcnemar").text()
    assert "1.0000" in mcnemar and "b = 2" in mcnemar and "baseline" in mcnemar
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
    rows = doc.find("table", id="cases-table").find("tbody").find_all("tr")
    assert [r.attrs["data-outcome"] for r in rows] == [c["outcome"] for c in report["cases"]]
    assert [json.loads(r.attrs["data-tags"]) for r in rows] == [c["tags"] for c in report["cases"]]
    assert doc.find_all("noscript")


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
