"""pytest-xdist: -n 2 gives the same outcomes, numbers and files as a run without it."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest
    from conftest import Project


def mixed_project(project: Project) -> None:
    """Two files, every outcome kind, tags and difficulties."""
    project.cases(
        "llmeval_a.jsonl",
        [
            project.case(f"a{i}", tags=["billing"] if i % 2 else ["shipping"], difficulty="easy")
            for i in range(6)
        ],
    )
    project.cases(
        "evals/llmeval_b.jsonl",
        [project.case(f"b{i}", difficulty="hard") for i in range(6)],
    )
    answers = {f"a{i}": project.GOOD for i in range(6)}
    answers.update({f"b{i}": project.GOOD if i < 3 else project.BAD for i in range(6)})
    answers["a5"] = "RAISE:boom"
    project.answers(answers)


def strip_volatile(report: dict[str, Any]) -> dict[str, Any]:
    report = json.loads(json.dumps(report))
    report.pop("created", None)
    for line in report.get("history") or []:
        line.pop("timestamp", None)
    for case in report.get("cases") or []:
        case.pop("latency_s", None)  # wall time of the SUT call: differs run to run
    return report


def run_and_collect(project: Project, *args: str) -> dict[str, Any]:
    """Update the baseline from scratch, then run against it; return files, outcomes, report."""
    if project.state.exists():
        shutil.rmtree(project.state)
    first = project.run("--llmeval-update-baseline", *args)
    history = project.history()
    assert len(history) == 1  # written once, by the controller only
    for line in history:
        line.pop("timestamp")
    baseline = project.baseline_path.read_bytes()
    project.answers({**json.loads((project.path / "answers.json").read_text()), "a0": project.BAD})
    second = project.run("--llmeval-report=report.json", *args)
    report = json.loads((project.path / "report.json").read_text())
    mixed_project(project)  # restore the answers
    return {
        "first": first.parseoutcomes(),
        "first_ret": first.ret,
        "second": second.parseoutcomes(),
        "second_ret": second.ret,
        "second_section": project.section(second),
        "baseline": baseline,
        "history": history,
        "report": strip_volatile(report),
    }


def test_n2_gives_the_same_outcomes_numbers_and_files(project: Project) -> None:
    mixed_project(project)
    plain = run_and_collect(project)
    xdist = run_and_collect(project, "-n", "2")
    for outcomes in (plain, xdist):
        outcomes["first"].pop("seconds", None)
        outcomes["second"].pop("seconds", None)
    assert xdist["first"] == plain["first"]
    assert xdist["second"] == plain["second"]
    assert plain["second"] == {"passed": 7, "failed": 1, "xfailed": 4}
    assert (xdist["first_ret"], xdist["second_ret"]) == (plain["first_ret"], plain["second_ret"])
    assert xdist["baseline"] == plain["baseline"]
    assert xdist["history"] == plain["history"]
    for key in plain["report"]:
        assert xdist["report"][key] == plain["report"][key], key
    assert xdist["second_section"] == plain["second_section"]


def test_summary_printed_once_under_n2(project: Project) -> None:
    mixed_project(project)
    result = project.run("-n", "2")
    assert project.sections_count(result) == 1
    assert sum(1 for ln in result.outlines if ln.startswith("llmeval gate:")) == 1


def test_workers_append_no_history_of_their_own(project: Project) -> None:
    mixed_project(project)
    project.run("-n", "2", "--llmeval-record-history")
    project.run("-n", "2", "--llmeval-record-history")
    assert len(project.history()) == 2
    assert not project.baseline_path.exists()


def test_n2_narrowed_run_appends_no_history(project: Project) -> None:
    mixed_project(project)
    result = project.run("-n", "2", "-k", "billing", "--llmeval-update-baseline")
    # xdist deselects on the workers, so its summary line does not count them;
    # an update run accepts the new failure instead of failing on it
    result.assert_outcomes(passed=3, failed=0)
    assert not project.history_path.exists()
    assert len(project.baseline()["cases"]) == 3
    result.stdout.fnmatch_lines(["history not appended: the run was narrowed*"])


def test_without_xdist_plugin(project: Project) -> None:
    mixed_project(project)
    result = project.run("-p", "no:xdist", "--llmeval-update-baseline")
    result.assert_outcomes(passed=12, failed=0)  # the update run accepts its new failures
    assert len(project.history()) == 1
    result = project.run("-p", "no:xdist")
    result.assert_outcomes(passed=8, xfailed=4)
    assert result.ret == 0


def test_n2_with_a_fixture_that_is_not_picklable(
    project: Project, pytester: pytest.Pytester
) -> None:
    """The SUT lives in each worker; nothing about it crosses the process boundary."""
    project.conftest(
        """
        import threading

        @pytest.fixture(scope="session")
        def llmeval_sut():
            lock = threading.Lock()  # not picklable
            def sut(case):
                with lock:
                    return answer_for(case.id)
            return sut
        """
    )
    mixed_project(project)
    result = project.run("-n", "2")
    result.assert_outcomes(passed=8, failed=4)
