"""Judge-human agreement and judge panels in a pytest run (issue #12, items 4 and 5)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_labelled.jsonl"


def labelled(project: Project) -> None:
    """Four cases people labelled: the local judge agrees on three, not on ``d``."""
    cases = [
        project.case("a", human_verdict="pass"),
        project.case("b", human_verdict="fail"),
        project.case("c", human_verdict="pass"),
        project.case("d", human_verdict="pass"),
        project.case("e"),  # unlabelled: not counted
    ]
    project.cases(FILE, cases)
    project.answers(
        {
            "a": project.GOOD,
            "b": project.BAD,
            "c": project.GOOD,
            "d": project.BAD,
            "e": project.GOOD,
        }
    )


def test_agreement_with_people_is_shown_reported_and_recorded(
    project: Project, run_args: tuple[str, ...]
) -> None:
    labelled(project)
    result = project.run("--llmeval-update-baseline", "--llmeval-report=r.json", *run_args)
    assert result.ret == 0
    report = json.loads((project.path / "r.json").read_text())
    agreement = report["summary"]["agreement"]
    assert (agreement["n"], agreement["tp"], agreement["fn"], agreement["tn"]) == (4, 2, 1, 1)
    assert agreement["accuracy"] == 0.75
    section = "\n".join(project.section(result))
    assert "judge vs people: 4 labelled cases, accuracy 75.0%, Cohen's kappa 0.500" in section
    (line,) = project.history()
    assert line["agreement"]["n"] == 4  # recorded per run, with the judge of that line


def test_min_judge_kappa_gates_on_the_interval_lower_bound(project: Project) -> None:
    labelled(project)
    project.ini(llmeval_min_judge_kappa="0.4")
    project.run("--llmeval-update-baseline")
    result = project.run()
    assert result.ret == 1  # kappa 0.5, but its interval on 4 cases reaches far below 0.4
    result.stdout.fnmatch_lines(
        ["  FAIL judge_agreement: judge vs people on 4 labelled cases: kappa 0.500*< minimum 0.4"]
    )
    assert "llmeval gate: FAILED (judge_agreement)" in "\n".join(project.section(result))


def test_a_panel_keeps_each_judge_and_reports_their_agreement(project: Project) -> None:
    project.module(
        "strict",
        """
        network = False

        def judge(case, response):
            return 1.0 if "refund" in response else 0.0
        """,
    )
    project.ini(llmeval_judge="panel:majority:local,strict:judge,local")
    project.cases(FILE, [project.case(i) for i in ("a", "b")])
    project.answers({"a": project.GOOD, "b": "30 days from delivery."})
    result = project.run("--llmeval-report=r.json")
    report = json.loads((project.path / "r.json").read_text())
    cases = {c["id"]: c for c in report["cases"]}
    assert [m["passed"] for m in cases["b"]["panel"]] == [True, False, True]
    assert cases["b"]["verdict"] == "pass"  # two of three
    panel = report["summary"]["panel_agreement"]
    assert (panel["n"], panel["unanimous"]) == (2, 1)
    assert "judge panel (" in "\n".join(project.section(result))
