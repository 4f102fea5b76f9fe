"""Everyday commands keep the state safe and the headline tells the truth (issue #11).

Each test drives pytest (or ``llmeval``) as a user would, in a fresh project.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from pytest_llmeval.cli import main as llmeval_main

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_support.jsonl"
SECRET = "sk-ant-api03-sentinel-0123456789abcdef"


def three_cases(project: Project, bad: tuple[str, ...] = ()) -> list[str]:
    ids = ["a", "b", "c"]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers({i: project.BAD if i in bad else project.GOOD for i in ids})
    return ids


def headline(result: pytest.RunResult) -> str:
    return next(ln for ln in result.outlines if ln.startswith("llmeval gate:"))


# -- data loss -------------------------------------------------------------------------------
def test_lf_update_keeps_every_other_entry_and_appends_no_history(project: Project) -> None:
    """Item 1: the "fix, re-run failures, accept" loop with pytest's last-failed plugin."""
    three_cases(project)
    assert project.run("--llmeval-update-baseline").ret == 0
    project.answers({"a": project.BAD, "b": project.GOOD, "c": project.GOOD})
    with_cache = ("-p", "no:hypothesispytest")  # --lf needs pytest's cache plugin
    assert project.pytester.runpytest(*with_cache).ret == 1
    history_before = project.history_path.read_bytes()
    record = project.pytester.runpytest(*with_cache, "--lf", "--llmeval-record-history")
    assert "history not appended: the run was narrowed" in "\n".join(project.section(record))
    assert project.history_path.read_bytes() == history_before
    update = project.pytester.runpytest(*with_cache, "--lf", "--llmeval-update-baseline")
    update.assert_outcomes(passed=1)  # only the failed case ran (the file was collected)
    section = "\n".join(project.section(update))
    assert "0 created, 1 updated, 0 removed, 3 cases" in section
    assert "history not appended: the run was narrowed" in section
    assert set(project.baseline()["cases"]) == {f"{FILE}::{i}" for i in "abc"}
    assert project.history_path.read_bytes() == history_before


@pytest.mark.parametrize("field", ["question", "id", "ground_truth", "rubric"])
def test_lone_surrogate_is_rejected_at_collection_and_nothing_is_written(
    project: Project, field: str
) -> None:
    """Item 2: a lone surrogate is a file:line:field error, and no baseline loses cases."""
    three_cases(project)
    assert project.run("--llmeval-update-baseline").ret == 0
    before = project.state_bytes()
    value = '"x\\ud800"'
    line = json.dumps({**project.case("d"), field: "PLACEHOLDER"}).replace('"PLACEHOLDER"', value)
    good = "".join(json.dumps(project.case(i)) + "\n" for i in "abc")
    project.raw_cases(FILE, (good + line + "\n").encode())
    result = project.run("--llmeval-update-baseline")
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*{FILE}:4:*{field}*surrogate*"])
    assert "UnicodeEncodeError" not in result.stdout.str()
    assert project.state_bytes() == before


# -- a verdict that matches the exit code ----------------------------------------------------
def test_new_failing_cases_make_every_headline_failed(
    project: Project, run_args: tuple[str, ...]
) -> None:
    """Item 5: a first run with failing cases exits 1, and every output says FAILED."""
    three_cases(project, bad=("b",))
    result = project.run("--llmeval-report=r.json", "--llmeval-report=r.md", *run_args)
    assert result.ret == 1
    assert headline(result) == "llmeval gate: FAILED (1 new failing case)"
    summary = json.loads((project.path / "r.json").read_text())["summary"]
    assert (summary["gate_passed"], summary["verdict"]) == (False, "FAILED")
    assert summary["gates_passed"] is True  # no gate failed: the cases did
    assert (project.path / "r.md").read_text().startswith("## LLM eval: gate FAILED")


def test_judge_errors_make_the_headline_failed(project: Project) -> None:
    project.module(
        "down_judge",
        """
        from pytest_llmeval.errors import JudgeError

        def judge(case, response):
            raise JudgeError("the judge is unreachable")
        """,
    )
    project.ini(llmeval_judge="down_judge:judge")
    three_cases(project)
    result = project.run()
    result.assert_outcomes(errors=3)
    assert headline(result) == "llmeval gate: FAILED (3 errors (cases not judged))"


def test_merged_shards_with_unjudged_cases_fail_unless_allowed(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    """Item 6: the merge has the final word; errors fail it unless explicitly allowed."""
    project.module(
        "half_judge",
        """
        from pytest_llmeval.errors import JudgeError

        def judge(case, response):
            if case.id == "b":
                raise JudgeError("no verdict for b")
            return 1.0
        """,
    )
    project.ini(llmeval_judge="half_judge:judge")
    three_cases(project)
    reports = [project.path / f"shard-{k}.json" for k in (1, 2)]
    for k, path in enumerate(reports, start=1):
        project.run(f"--llmeval-shard={k}/2", f"--llmeval-report={path}")
    capsys.readouterr()
    assert llmeval_main(["gate", *map(str, reports)]) == 1
    assert "llmeval gate: FAILED (1 error (cases not judged))" in capsys.readouterr().out
    assert llmeval_main(["gate", "--allow-errors", *map(str, reports)]) == 0


@pytest.mark.parametrize(
    "args",
    [("--collect-only",), ("--co", "-q"), ("--fixtures",), ("-m", "not llmeval")],
    ids=["collect-only", "co-q", "fixtures", "not-llmeval"],
)
def test_no_case_ran_prints_and_writes_nothing(
    project: Project, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    """Item 7: nothing ran, so there is no verdict to show."""
    step = project.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    three_cases(project)
    project.pytester.makepyfile(test_plain="def test_unit():\n    assert True\n")
    result = project.run(*args)
    assert result.ret in (0, 5)
    assert project.section(result) == []
    assert "llmeval gate" not in result.stdout.str()
    assert not step.exists()
    assert not project.history_path.exists()


def test_a_case_stopped_by_a_timeout_is_an_error_in_every_count(project: Project) -> None:
    """Item 8: pytest-timeout stops a slow SUT; the case is an ERROR, not a missing case."""
    pytest.importorskip("pytest_timeout")
    three_cases(project)
    project.answers({"a": project.GOOD, "b": "SLEEP:5", "c": project.GOOD})
    result = project.run("--timeout=1", "--llmeval-record-history", "--llmeval-report=r.json")
    result.assert_outcomes(passed=2, errors=1)
    summary = json.loads((project.path / "r.json").read_text())["summary"]
    assert (summary["total"], summary["errors"]) == (3, 1)
    assert headline(result).startswith("llmeval gate: FAILED (1 error")
    (line,) = project.history()
    assert line["errors"] == 1 and line["errored"] == [f"{FILE}::b"]  # not a clean 2-case run
    assert line["total"] == 2


def test_marker_selection_in_a_mixed_project_still_records_history(project: Project) -> None:
    """Item 9: deselected Python tests do not narrow the evaluation."""
    three_cases(project)
    project.pytester.makepyfile(test_plain="def test_unit():\n    assert True\n")
    result = project.run("-m", "llmeval", "--llmeval-record-history")
    result.assert_outcomes(passed=3, deselected=1)
    assert "history .llmeval/history.jsonl: 1 run appended" in "\n".join(project.section(result))
    assert len(project.history()) == 1


def test_reruns_are_counted_and_said(project: Project) -> None:
    """Item 10: every attempt's judge calls count, and the summary says cases were rerun."""
    pytest.importorskip("pytest_rerunfailures")
    three_cases(project, bad=("b",))
    result = project.run("--reruns=2", "--llmeval-report=r.json", "--llmeval-no-cache")
    assert result.ret == 1
    report = json.loads((project.path / "r.json").read_text())
    cases = {c["id"]: c for c in report["cases"]}
    assert (cases["b"]["attempts"], cases["b"]["judge_calls"]) == (3, 3)
    assert report["summary"]["judge_calls"] == 5  # a, c once; b three times
    assert report["summary"]["rerun"] == [f"{FILE}::b"]
    section = "\n".join(project.section(result))
    assert "rerun by a rerun plugin: 1 case (b)" in section
    assert "use --llmeval-repeat N" in section


# -- bad input, state files, conventions -----------------------------------------------------
def test_key_text_in_an_answer_is_scrubbed_everywhere(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 15: the key never reaches a file or the terminal, whoever put it in a text."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    project.module(
        "echo_judge",
        """
        network = False

        def judge(case, response):
            from pytest_llmeval import JudgeResult

            return JudgeResult(score=0.9, reasoning="the answer was: " + response)
        """,
    )
    project.ini(llmeval_judge="echo_judge:judge")  # its reasoning repeats the answer
    three_cases(project)
    project.answers({"a": f"30 days from delivery. {SECRET}", "b": SECRET, "c": project.GOOD})
    result = project.run("--llmeval-report=r.json", "--llmeval-report=r.md", "--junitxml=j.xml")
    assert SECRET not in result.stdout.str() + result.stderr.str()
    cases = {c["id"]: c for c in json.loads((project.path / "r.json").read_text())["cases"]}
    assert cases["b"]["response"] == "[redacted]"
    assert cases["b"]["reasoning"] == "the answer was: [redacted]"
    for path in project.path.rglob("*"):
        if path.is_file() and path.suffix != ".py" and path.name != "answers.json":
            assert SECRET.encode() not in path.read_bytes(), path


def test_native_toml_numbers_are_accepted_and_help_shows_defaults(project: Project) -> None:
    """Item 17."""
    (project.path / "pytest.ini").unlink()
    (project.path / "pytest.toml").write_text(
        '[pytest]\nllmeval_judge = "local"\nllmeval_threshold = 0.6\nllmeval_max_regressions = 1\n',
        encoding="utf-8",
    )
    three_cases(project)
    result = project.run("--llmeval-report=r.json")
    assert result.ret == 0, result.stdout.str()
    assert json.loads((project.path / "r.json").read_text())["settings"]["threshold"] == 0.6
    helptext = project.run("--help").stdout.str()
    assert "llmeval_threshold (float)" in helptext
    assert "(default: 0.7)" in helptext


def test_auto_judge_with_a_key_refuses_a_local_baseline_and_says_how_to_pin(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 19: ANTHROPIC_API_KEY on a developer's machine switches ``auto`` to Claude."""
    three_cases(project)
    assert project.run("--llmeval-update-baseline").ret == 0
    project.ini(llmeval_judge="auto")
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "pin the baseline's judge in your ini file: llmeval_judge = local" in (
        result.stderr.str()
    )


def test_the_state_folder_ignores_its_cache(project: Project) -> None:
    """Item 20: as pytest does for .pytest_cache."""
    three_cases(project)
    project.run()
    ignore = (project.state / ".gitignore").read_text()
    assert "cache.sqlite3*" in ignore


def test_llmeval_version(capsys: pytest.CaptureFixture[str]) -> None:
    """Item 22."""
    from pytest_llmeval import __version__

    with pytest.raises(SystemExit) as exit_info:
        llmeval_main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"llmeval {__version__}"


def test_a_case_that_cannot_fail_is_warned_about(project: Project) -> None:
    """Item 22: no ground_truth and no checks: judged by checks alone, it always passes."""
    project.cases(FILE, [{"id": "free", "question": "Anything?"}])
    project.answers({"free": "whatever"})
    result = project.run()
    result.stdout.fnmatch_lines(["*1 case has neither ground_truth nor checks*cannot fail*"])


def test_fixtures_show_their_examples_without_verbose(project: Project) -> None:
    """Item 22: ``pytest --fixtures`` is documentation."""
    result = project.run("--fixtures")
    out = result.stdout.str()
    for name in ("llmeval_judge", "llmeval_record", "llmeval_ab"):
        assert name in out
    assert "def test_" in out  # the usage examples
