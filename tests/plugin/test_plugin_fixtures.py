"""Fixtures (llmeval_record, llmeval_judge), selection by tag/marker, items and the JSON report."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_support.jsonl"

RECORD_TESTS = """
import pytest
from pytest_llmeval import Verdict

TRUTH = "30 days from delivery for a refund."
GOOD = "You have 30 days from delivery to ask for a refund of your order."
BAD = "Our office is closed on public holidays in the winter months."


def test_good(llmeval_record):
    verdict = llmeval_record(case_id="refund", question="Refund window?", response=GOOD,
                             ground_truth=TRUTH)
    assert isinstance(verdict, Verdict)
    assert verdict.passed and verdict.score >= 0.7
    assert verdict.judge.name == "local"


def test_bad(llmeval_record):
    verdict = llmeval_record(case_id="refund", question="Refund window?", response=BAD,
                             ground_truth=TRUTH)
    assert isinstance(verdict, Verdict)
    assert not verdict.passed
    assert "quality_below_threshold" in verdict.failure_modes


def test_checks(llmeval_record):
    verdict = llmeval_record(case_id="no-fee", question="Any fee?", response=GOOD,
                             checks=[{"type": "not_contains", "value": "fee"}])
    assert verdict.passed and verdict.checks_only
"""


def record_project(project: Project) -> None:
    project.pytester.makepyfile(test_recorded=RECORD_TESTS)


def test_llmeval_record_new_failure_fails(project: Project) -> None:
    record_project(project)
    result = project.run("-rA")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*NEW FAILURE: case refund fails and has no baseline entry*",
            "FAILED test_recorded.py::test_bad*",
        ]
    )
    assert project.sections_count(result) == 1


def test_llmeval_record_follows_the_outcome_table(
    project: Project, run_args: tuple[str, ...]
) -> None:
    record_project(project)
    result = project.run("--llmeval-update-baseline", *run_args)
    keys = list(project.baseline()["cases"])
    assert keys == [
        "test_recorded.py::test_bad::refund",
        "test_recorded.py::test_checks::no-fee",
        "test_recorded.py::test_good::refund",
    ]
    # known failure: xfailed, nothing fails
    result = project.run("-rA", *run_args)
    result.assert_outcomes(passed=2, xfailed=1)
    assert result.ret == 0
    # regression and improvement: swap the baseline verdicts of good and bad
    data = project.baseline()
    cases = data["cases"]
    cases["test_recorded.py::test_good::refund"]["verdict"] = "pass"
    cases["test_recorded.py::test_bad::refund"]["verdict"] = "pass"
    project.baseline_path.write_text(json.dumps(data))
    result = project.run("-rA", *run_args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*REGRESSION: case refund passed in the baseline*"])
    result.stdout.fnmatch_lines(["*regressions (passed in the baseline, fail now): 1: refund*"])


def test_llmeval_record_rejects_a_bad_case(project: Project) -> None:
    project.pytester.makepyfile(
        test_bad_record="""
        def test_it(llmeval_record):
            llmeval_record(case_id="x", question="q", response="r", threshold=3)
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*field 'threshold'*"])


def test_llmeval_record_twice_with_one_id_is_an_error(project: Project) -> None:
    project.pytester.makepyfile(
        test_twice="""
        def test_it(llmeval_record):
            for _ in range(2):
                llmeval_record(case_id="x", question="q", response="some long enough answer")
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*case_id 'x' recorded twice*"])


def test_llmeval_judge_fixture(project: Project) -> None:
    project.pytester.makepyfile(
        test_judge="""
        from pytest_llmeval import Case, JudgeResult

        def test_it(llmeval_judge):
            assert llmeval_judge.identity.name == "local"
            case = Case(id="t", question="Refund?", ground_truth="30 days from delivery.")
            good = llmeval_judge.score(case, "You get 30 days from delivery.")
            bad = llmeval_judge.score(case, "We close at noon on Fridays.")
            assert isinstance(good, JudgeResult)
            assert good.score > 0.7 > bad.score
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1)


def test_llmeval_judge_fixture_is_the_configured_judge(project: Project) -> None:
    project.module("my_judge", "def judge(case, response):\n    return 0.42\n")
    project.ini(llmeval_judge="my_judge:judge")
    project.pytester.makepyfile(
        test_judge="""
        from pytest_llmeval import Case

        def test_it(llmeval_judge):
            assert llmeval_judge.score(Case(id="t", question="q"), "r").score == 0.42
        """
    )
    project.run().assert_outcomes(passed=1)


def tagged_project(project: Project) -> None:
    project.cases(
        FILE,
        [
            project.case("refund", tags=["billing", "refunds"], difficulty="easy"),
            project.case("invoice", tags=["billing"], difficulty="hard"),
            project.case("parcel", tags=["shipping"], difficulty="adversarial"),
        ],
    )
    project.answers({"refund": project.GOOD, "invoice": project.GOOD, "parcel": project.GOOD})
    project.pytester.makepyfile(test_plain="def test_plain():\n    pass\n")


@pytest.mark.parametrize(
    ("args", "selected"),
    [
        (("-k", "billing"), ["refund", "invoice"]),
        (("-k", "refunds"), ["refund"]),
        (("-k", "adversarial or hard"), ["invoice", "parcel"]),
        (("-k", "billing and not easy"), ["invoice"]),
        (("-k", "parcel"), ["parcel"]),  # the case id
        (("-m", "llmeval"), ["refund", "invoice", "parcel"]),
        (("-m", "not llmeval"), ["test_plain"]),
    ],
)
def test_selection(project: Project, args: tuple[str, ...], selected: list[str]) -> None:
    tagged_project(project)
    result = project.run("--collect-only", "-q", *args)
    ids = [ln.split("::")[-1] for ln in result.outlines if "::" in ln]
    assert ids == selected


def test_case_items(project: Project) -> None:
    tagged_project(project)
    project.raw_cases(
        "llmeval_second.jsonl",
        b"\n" + json.dumps(project.case("later")).encode() + b"\n",
    )
    reprec = project.pytester.inline_run("--collect-only", "-p", "no:cacheprovider")
    (call,) = reprec.getcalls("pytest_collection_finish")
    items = {item.name: item for item in call.session.items}
    assert items["invoice"].nodeid == f"{FILE}::invoice"
    assert items["invoice"].get_closest_marker("llmeval") is not None
    path, lineno, headline = items["invoice"].reportinfo()
    assert str(path).endswith(FILE)
    assert lineno == 1  # 0-based: the second line of the file
    assert headline == "case invoice"
    assert items["later"].reportinfo()[1] == 1  # line 2, after a blank line
    assert items["invoice"].location == (FILE, 1, "case invoice")
    assert items["test_plain"].get_closest_marker("llmeval") is None


def test_fixtures_are_documented(project: Project) -> None:
    result = project.run("--fixtures")
    result.stdout.fnmatch_lines_random(
        ["llmeval_judge*", "llmeval_record*", "llmeval_sut*", "llmeval_ab*"]
    )


def test_json_report(project: Project, run_args: tuple[str, ...]) -> None:
    project.cases(
        FILE,
        [
            project.case("ok", tags=["billing"], difficulty="easy"),
            project.case("regressed", threshold=0.8),
            project.case("new-bad"),
            project.case("improved"),
        ],
    )
    project.answers(
        {
            "ok": project.GOOD,
            "regressed": project.BAD,
            "new-bad": project.BAD,
            "improved": project.GOOD,
        }
    )
    project.write_baseline(
        {f"{FILE}::ok": "pass", f"{FILE}::regressed": "pass", f"{FILE}::improved": "fail"}
    )
    result = project.run("--llmeval-report=out/report.json", *run_args)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["wrote report out/report.json"])
    data = json.loads((project.path / "out" / "report.json").read_text())
    s = data["summary"]
    assert (s["total"], s["passed"], s["failed"], s["errors"]) == (4, 2, 2, 0)
    assert s["pass_rate"] == 0.5
    assert 0 < s["mean_score"] < 1
    assert s["regressions"] == [f"{FILE}::regressed"]
    assert s["improvements"] == [f"{FILE}::improved"]
    assert s["new_failures"] == [f"{FILE}::new-bad"]
    gates = {g["name"]: g for g in s["gates"]}
    assert gates["regressions"]["passed"] is False
    assert gates["regressions"]["detail"] == "1 regression (max 0), 1 unconfirmed (no history)"
    assert set(gates["regressions"]) >= {"name", "passed", "detail"}
    cases = {c["id"]: c for c in data["cases"]}
    assert list(cases) == ["improved", "new-bad", "ok", "regressed"]
    reg = cases["regressed"]
    assert reg["file"] == FILE
    assert reg["verdict"] == "fail"
    assert reg["outcome"] == "regression"
    assert reg["score"] == 0.0
    assert reg["threshold"] == 0.8
    assert reg["failure_modes"] == ["missing_number", "quality_below_threshold"]
    assert reg["baseline"]["verdict"] == "pass"
    assert reg["judge"] == "local prompt=sim-2"
    assert reg["response"] == project.BAD
    assert cases["new-bad"]["baseline"] is None
    assert cases["ok"]["verdict"] == "pass" and cases["ok"]["outcome"] == "passed"
    assert cases["improved"]["outcome"] == "improvement"


def test_report_of_an_unknown_type_is_not_a_crash(project: Project) -> None:
    project.cases(FILE, [project.case("ok")])
    project.answers({"ok": project.GOOD})
    result = project.run("--llmeval-report=out.txt")
    assert "Traceback" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*report out.txt not written*"])
