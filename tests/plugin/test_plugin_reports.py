"""Reports a user looks at: JSON + Markdown + HTML from one run, the CI step summary, JUnit
properties, and progress lines on a cold cache."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_support.jsonl"


def key(case_id: str) -> str:
    return f"{FILE}::{case_id}"


def mixed(project: Project) -> None:
    """One case of each outcome: passed, improvement, regression, known and new failure."""
    P = project
    project.cases(
        FILE,
        [
            P.case("ok", tags=["billing"], difficulty="easy"),
            P.case("improved", tags=["billing"]),
            P.case("regressed", threshold=0.8, difficulty="hard"),
            P.case("known-bad"),
            P.case("new-bad"),
        ],
    )
    project.answers(
        {
            "ok": P.GOOD,
            "improved": P.GOOD,
            "regressed": P.BAD,
            "known-bad": P.BAD,
            "new-bad": P.BAD,
        }
    )
    project.write_baseline(
        {
            key("ok"): "pass",
            key("improved"): "fail",
            key("regressed"): "pass",
            key("known-bad"): "fail",
        }
    )


# The JSON report's documented fields (README, "The JSON report").
TOP_FIELDS = {"schema_version", "created", "judge", "settings", "summary", "cases", "comparison",
              "history"}  # fmt: skip
SETTINGS_FIELDS = {"threshold", "std_threshold", "min_history", "max_regressions",
                   "min_pass_rate", "repeat", "shard", "baseline_sha256", "full_run"}  # fmt: skip
SUMMARY_FIELDS = {
    "total",
    "passed",
    "failed",
    "errors",
    "xfailed",
    "pass_rate",
    "pass_rate_ci",
    "mean_score",
    "checks_only",
    "regressions",
    "improvements",
    "new_failures",
    "known_failures",
    "flaky",
    "flaky_history",
    "unused_baseline",
    "by_difficulty",
    "by_tag",
    "failure_modes",
    "gates",
    "gate_passed",
    "judge_calls",
    "cache_hits",
    "usage",
    "cost_usd",
    "history",
    "repeat",
    "full_run",
    "narrowed",
}
CASE_FIELDS = {
    "id",
    "nodeid",
    "file",
    "line",
    "question",
    "messages",
    "ground_truth",
    "rubric",
    "tags",
    "difficulty",
    "verdict",
    "outcome",
    "score",
    "threshold",
    "failure_modes",
    "failed_checks",
    "reasoning",
    "error",
    "baseline",
    "samples",
    "passes",
    "judge",
    "response",
    "response_sha256",
    "candidate",
}


def test_json_markdown_and_html_reports_from_one_run(project: Project) -> None:
    mixed(project)
    project.write_history([0.9, 1.0, 0.95])
    baseline_sha = hashlib.sha256(project.baseline_path.read_bytes()).hexdigest()
    result = project.run(
        "--llmeval-report=out/r.json", "--llmeval-report=out/r.md", "--llmeval-report=out/r.html"
    )
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        ["wrote report out/r.json", "wrote report out/r.md", "wrote report out/r.html"]
    )
    data = json.loads((project.path / "out" / "r.json").read_text(encoding="utf-8"))
    assert set(data) >= TOP_FIELDS
    assert set(data["settings"]) >= SETTINGS_FIELDS
    assert set(data["summary"]) >= SUMMARY_FIELDS
    assert set(data["judge"]) == {"name", "model", "prompt_version", "version"}
    for case in data["cases"]:
        assert set(case) >= CASE_FIELDS, case["id"]
    assert data["schema_version"] == 1
    dt.datetime.strptime(data["created"], "%Y-%m-%dT%H:%M:%SZ")
    assert data["settings"]["baseline_sha256"] == baseline_sha
    assert (data["settings"]["threshold"], data["settings"]["repeat"]) == (0.7, 1)
    assert data["settings"]["shard"] is None and data["settings"]["full_run"] is True
    assert data["comparison"] is None
    assert len(data["history"]) == 3
    s = data["summary"]
    assert (s["total"], s["passed"], s["failed"], s["errors"], s["xfailed"]) == (5, 2, 3, 0, 1)
    assert s["pass_rate"] == pytest.approx(2 / 5)
    from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

    assert s["pass_rate_ci"] == pytest.approx(
        list(proportion_confint(2, 5, alpha=0.05, method="wilson")), rel=1e-9
    )
    assert s["regressions"] == [key("regressed")]
    assert s["new_failures"] == [key("new-bad")]
    assert s["known_failures"] == [key("known-bad")]
    assert s["improvements"] == [key("improved")]
    assert s["by_tag"]["billing"]["total"] == 2 and s["by_tag"]["billing"]["passed"] == 2
    assert s["by_difficulty"]["hard"]["passed"] == 0
    assert s["failure_modes"] == {"missing_number": 3, "quality_below_threshold": 3}
    assert (s["judge_calls"], s["cache_hits"]) == (5, 0)
    assert s["history"]["points"] == 3
    assert s["history"]["mean"] == pytest.approx(0.95)
    gates = {g["name"]: g for g in s["gates"]}
    # the band is the gate's own: the prediction bound, with the numbers the gate used
    assert s["history"]["lower_bound"] == gates["history"]["numbers"]["bound"]
    assert s["history"]["t"] == pytest.approx(gates["history"]["numbers"]["t"])
    assert f"{100 * s['history']['lower_bound']:.1f}%" in gates["history"]["detail"]
    assert set(gates) == {"regressions", "history", "history_binomial", "suite_drop", "flips"}
    assert gates["regressions"]["passed"] is False and s["gate_passed"] is False
    assert s["verdict"] == "FAILED" and s["verdict_reasons"][0] == "regressions"
    for gate in s["gates"]:
        assert set(gate) == {"name", "passed", "skipped", "detail", "method", "numbers"}
    reg = {c["id"]: c for c in data["cases"]}["regressed"]
    assert (reg["verdict"], reg["outcome"], reg["threshold"]) == ("fail", "regression", 0.8)
    assert reg["response_sha256"] == hashlib.sha256(project.BAD.encode()).hexdigest()
    assert reg["baseline"]["verdict"] == "pass"
    assert (reg["samples"], reg["passes"], reg["candidate"]) == (1, 0, None)

    md = (project.path / "out" / "r.md").read_text(encoding="utf-8")
    assert md.startswith("## LLM eval: gate FAILED ❌\n")
    assert "| `regressions` | ❌ FAILED | 1 regression (max 0), 1 unconfirmed (no history) |" in md
    assert "**Pass rate 40.0%** (2 passed, 3 failed, 95% CI" in md
    assert "### Regressions (1)" in md and "- `regressed` (llmeval\\_support.jsonl:" in md
    assert "score 0.00 &lt; 0.80" in md
    assert "### New failures (1)" in md and "- `new-bad` (llmeval\\_support.jsonl:" in md
    assert "the history gate **FAILED**" in md

    html = (project.path / "out" / "r.html").read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert "regressed" in html and project.BAD in html
    assert "FAILED" in html.upper()
    # self-contained: no external script, stylesheet, image or link to fetch
    assert re.findall(r"""(?:src|href)\s*=\s*["']?(?!#|data:)[^"'\s>]+""", html) == []
    assert "<link" not in html.lower()


def test_step_summary_is_appended_on_every_run(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    mixed(project)
    step = project.path / "step_summary.md"
    step.write_text("earlier step\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    first = project.run("--llmeval-report=one.md")
    md_one = (project.path / "one.md").read_text(encoding="utf-8")
    project.answers({**json.loads((project.path / "answers.json").read_text()), "new-bad": "x"})
    # the second run under xdist: only the controller appends, once
    second = project.run("--llmeval-report=two.md", "-n", "2")
    md_two = (project.path / "two.md").read_text(encoding="utf-8")
    assert first.ret == second.ret == 1
    assert md_one.startswith("## LLM eval: gate FAILED")
    text = step.read_text(encoding="utf-8")
    assert text == "earlier step\n" + md_one + "\n" + md_two + "\n"
    assert text.count("## LLM eval:") == 2


def test_step_summary_opt_out(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.ini(llmeval_step_summary="false")
    mixed(project)
    step = project.path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    result = project.run()
    assert result.ret == 1
    assert project.section(result)  # the run did report ...
    assert not step.exists()  # ... but not into the step summary


# -- JUnit XML --------------------------------------------------------------------------------
def junit_cases(path: Any) -> dict[str, tuple[dict[str, str], ET.Element]]:
    """``{case id: (llmeval properties, testcase element)}`` from a JUnit XML file."""
    root = ET.parse(path).getroot()
    out: dict[str, tuple[dict[str, str], ET.Element]] = {}
    for tc in root.iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
        llm = {k: v for k, v in props.items() if k.startswith("llmeval_")}
        assert llm, f"testcase {tc.get('name')} carries no llmeval properties"
        out[llm["llmeval_case_id"]] = (llm, tc)
    return out


def test_junit_properties_and_regression_vs_new_failure(
    project: Project, run_args: tuple[str, ...]
) -> None:
    mixed(project)
    project.ini(junit_family="xunit1")  # per-testcase properties exist only in xunit1's schema
    result = project.run("--junitxml=junit.xml", *run_args)
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    cases = junit_cases(project.path / "junit.xml")
    assert set(cases) == {"ok", "improved", "regressed", "known-bad", "new-bad"}
    names = {
        "llmeval_case_id",
        "llmeval_verdict",
        "llmeval_outcome",
        "llmeval_score",
        "llmeval_threshold",
        "llmeval_baseline_verdict",
        "llmeval_failure_modes",
        "llmeval_judge",
    }
    for case_id, (props, tc) in cases.items():
        assert set(props) == names, case_id
        assert props["llmeval_judge"] == "local prompt=sim-2"
        # each property once, even under xdist (teardown and call reports both carry them)
        assert len([p for p in tc.iter("property") if p.get("name") == "llmeval_outcome"]) == 1
    expected = {
        "ok": ("pass", "passed", "pass", ""),
        "improved": ("pass", "improvement", "fail", ""),
        "regressed": ("fail", "regression", "pass", "missing_number,quality_below_threshold"),
        "known-bad": ("fail", "known_failure", "fail", "missing_number,quality_below_threshold"),
        "new-bad": ("fail", "new_failure", "none", "missing_number,quality_below_threshold"),
    }
    for case_id, (verdict, outcome, base, modes) in expected.items():
        props = cases[case_id][0]
        got = (
            props["llmeval_verdict"],
            props["llmeval_outcome"],
            props["llmeval_baseline_verdict"],
            props["llmeval_failure_modes"],
        )
        assert got == (verdict, outcome, base, modes), case_id
    assert cases["regressed"][0]["llmeval_threshold"] == "0.800000"
    assert cases["ok"][0]["llmeval_threshold"] == "0.700000"
    assert cases["regressed"][0]["llmeval_score"] == "0.000000"
    assert 0.7 <= float(cases["ok"][0]["llmeval_score"]) <= 1.0
    # the failure message tells a regression from a new failure
    reg_failure = cases["regressed"][1].find("failure")
    new_failure = cases["new-bad"][1].find("failure")
    assert reg_failure is not None and new_failure is not None
    assert reg_failure.get("message", "").startswith("REGRESSION: case regressed passed")
    assert new_failure.get("message", "").startswith("NEW FAILURE: case new-bad")
    assert cases["known-bad"][1].find("skipped") is not None  # xfail
    assert cases["ok"][1].find("failure") is None


# -- progress lines ---------------------------------------------------------------------------
def progress_lines(result: pytest.RunResult) -> list[str]:
    return [ln for ln in result.outlines if ln.startswith("llmeval: ") and "cases judged" in ln]


def drop_cache(project: Project) -> None:
    for path in project.state.glob("cache.sqlite3*"):
        path.unlink()


def test_junit_under_xunit2_has_no_properties_and_says_why(project: Project) -> None:
    mixed(project)
    result = project.run("--junitxml=junit.xml")
    result.assert_outcomes(passed=2, failed=2, xfailed=1)
    root = ET.parse(project.path / "junit.xml").getroot()
    assert not list(root.iter("property"))  # pytest's junit-10.xsd has no testcase properties
    result.stdout.fnmatch_lines(["*not written to --junitxml under junit_family=xunit2*"])
    assert sum("junit_family=xunit2" in ln for ln in result.outlines) == 1  # warned once


def test_progress_lines_only_while_judging_is_slow(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_llmeval.plugin.hooks import ResultCollector

    ids = [f"p{i:02d}" for i in range(8)]
    project.cases(FILE, [project.case(i) for i in ids[:4]])
    project.cases("llmeval_second.jsonl", [project.case(i) for i in ids[4:]])
    project.answers({i: project.GOOD for i in ids})
    fast = project.run()  # a quick run: pytest's own progress is enough
    fast.assert_outcomes(passed=8)
    assert progress_lines(fast) == []

    monkeypatch.setattr(ResultCollector, "SLOW_S", 0.25)
    project.answers({i: "SLEEP:0.3" for i in ids})
    slow = project.run()
    assert progress_lines(slow), slow.stdout.str()
    for line in progress_lines(slow):
        assert line.endswith(" pending)") and "/8 cases judged (" in line
    # pytest's progress column stays intact: every line of letters ends with its percentage
    # a progress line goes out where a row of letters ended, never inside one
    assert progress_lines(slow) == [
        "llmeval: 4/8 cases judged (4 judge calls, 0 cache hits, 4 pending)"
    ]
    letters = [ln for ln in slow.outlines if ln.startswith("llmeval_")]
    assert letters and all(ln.rstrip().endswith("%]") for ln in letters), letters
    quiet = project.run("-q")
    assert progress_lines(quiet) == []


def test_no_progress_lines_for_a_small_suite(project: Project) -> None:
    ids = [f"s{i:02d}" for i in range(19)]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers({i: project.GOOD for i in ids})
    result = project.run()
    result.assert_outcomes(passed=19)
    assert progress_lines(result) == []


def test_sut_token_usage_is_reported_apart_from_the_judge(
    project: Project, run_args: tuple[str, ...]
) -> None:
    """A SUT that returns SutAnswer(text, usage) gets its own token line and JSON block."""
    project.cases(FILE, [project.case("a"), project.case("b"), project.case("c")])
    project.conftest(
        extra="""
from pytest_llmeval import SutAnswer

@pytest.fixture(scope="session")
def llmeval_sut():
    def sut(case):
        text = answer_for(case.id)
        if case.id == "c":
            return text  # a plain string reports no usage
        return SutAnswer(text, usage={"input_tokens": 100, "output_tokens": 7})
    return sut
"""
    )
    project.answers({"a": project.GOOD, "b": project.GOOD, "c": project.GOOD})
    result = project.run(*run_args, "--llmeval-report", "out.json")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "SUT tokens (reported by the system under test, not judge cost): input 200, output 14"
            " over 2 calls"
        ]
    )
    summary = json.loads((project.path / "out.json").read_text())["summary"]
    assert summary["sut_usage"]["input_tokens"] == 200
    assert summary["sut_usage"]["output_tokens"] == 14
    assert summary["sut_usage"]["requests"] == 2
    assert summary["usage"]["input_tokens"] == 0  # the local judge used no tokens
    assert summary["cost_usd"] == 0.0
