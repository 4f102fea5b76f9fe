"""Session gates: each failing one exits 1 and is named, with its numbers, in the summary."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_support.jsonl"


def half_passing(project: Project, n_pass: int = 1, n_known: int = 1) -> None:
    """``n_pass`` passing cases and ``n_known`` known failures: no item fails."""
    ids = [f"ok-{i}" for i in range(n_pass)] + [f"known-{i}" for i in range(n_known)]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers({i: project.GOOD if i.startswith("ok") else project.BAD for i in ids})
    project.write_baseline({f"{FILE}::{i}": "pass" if i.startswith("ok") else "fail" for i in ids})


def test_regressions_gate(project: Project) -> None:
    ids = ["a", "b", "c"]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers({"a": project.BAD, "b": project.BAD, "c": project.GOOD})
    project.write_baseline({f"{FILE}::{i}": "pass" for i in ids})
    result = project.run()
    result.assert_outcomes(failed=2, passed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "gates:",
            "  FAIL regressions: 2 regressions (max 0), 2 unconfirmed (no history)",
            "*llmeval gate: FAILED (regressions)*",
        ]
    )


def test_max_regressions_allows_some(project: Project) -> None:
    project.ini(llmeval_max_regressions="2")
    ids = ["a", "b", "c"]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers({"a": project.BAD, "b": project.BAD, "c": project.GOOD})
    project.write_baseline({f"{FILE}::{i}": "pass" for i in ids})
    result = project.run()
    result.stdout.fnmatch_lines(["  PASS regressions: 2 regressions (max 2)*"])
    project.answers({"a": project.BAD, "b": project.BAD, "c": project.BAD})
    result = project.run()
    assert result.ret == 1
    result.stdout.fnmatch_lines(["  FAIL regressions: 3 regressions (max 2)*"])


def test_min_pass_rate_gate_fails_the_run(project: Project, run_args: tuple[str, ...]) -> None:
    project.ini(llmeval_min_pass_rate="0.9")
    half_passing(project)
    result = project.run(*run_args)
    result.assert_outcomes(passed=1, xfailed=1)  # no item failed ...
    assert result.ret == 1  # ... but the gate did
    result.stdout.fnmatch_lines(
        [
            "  PASS regressions: 0 regressions (max 0)*",
            "  FAIL min_pass_rate: pass rate 50.0% < minimum 90.0%",
            "*llmeval gate: FAILED (min_pass_rate)*",
        ]
    )


def test_min_pass_rate_gate_passes(project: Project) -> None:
    project.ini(llmeval_min_pass_rate="0.5")
    half_passing(project)
    result = project.run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["  PASS min_pass_rate: pass rate 50.0% >= minimum 50.0%"])


def test_min_pass_rate_ignores_judge_errors(project: Project) -> None:
    project.module(
        "broken_judge",
        """
        from pytest_llmeval.errors import JudgeError

        def judge(case, response):
            if case.id == "err":
                raise JudgeError("no answer")
            return 1.0
        """,
    )
    project.ini(llmeval_min_pass_rate="1.0", llmeval_judge="broken_judge:judge")
    project.cases(FILE, [project.case("ok"), project.case("err")])
    project.answers({"ok": project.GOOD, "err": project.GOOD})
    result = project.run()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["  PASS min_pass_rate: pass rate 100.0% >= minimum 100.0%"])


def test_history_gate_is_a_prediction_bound_by_default(
    project: Project, run_args: tuple[str, ...]
) -> None:
    half_passing(project)
    project.write_history([0.9, 1.0, 0.95])  # mean 95%, sample std 5%
    result = project.run(*run_args)
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "  FAIL history: pass rate 50.0% < *, the lower *% prediction bound = mean 95.0%"
            " - t * x sd 5.0% x sqrt(1 + 1/3) over 3 runs",
            "*llmeval gate: FAILED (history)*",
        ]
    )


def test_history_prediction_bound_passes_a_usual_wobble(project: Project) -> None:
    half_passing(project, n_pass=9, n_known=1)
    project.write_history([0.9, 1.0, 0.95])
    result = project.run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["  PASS history: pass rate 90.0% >= *prediction bound*"])


def test_history_gate_fails_the_run(project: Project, run_args: tuple[str, ...]) -> None:
    project.ini(llmeval_std_threshold="2")  # the old rule, for those who set k
    half_passing(project)
    project.write_history([0.9, 1.0, 0.95])  # mean 95%, sample std 5%: bound 85%
    result = project.run(*run_args)
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "  FAIL history: pass rate 50.0% < 85.0% = mean 95.0% - 2 x std 5.0% over 3 runs",
            "*llmeval gate: FAILED (history)*",
        ]
    )


def test_history_gate_passes_within_the_band(project: Project) -> None:
    project.ini(llmeval_std_threshold="2")
    half_passing(project, n_pass=9, n_known=1)
    project.write_history([0.9, 1.0, 0.95])
    result = project.run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["  PASS history: pass rate 90.0% >= 85.0% = mean 95.0% - 2 x std 5.0% over 3 runs"]
    )


def test_history_gate_std_threshold_is_configurable(project: Project) -> None:
    project.ini(llmeval_std_threshold="10")
    half_passing(project)
    project.write_history([0.9, 1.0, 0.95])
    result = project.run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["  PASS history: pass rate 50.0% >= 45.0%*10 x std 5.0%*"])


def test_history_gate_skipped_below_min_history(project: Project) -> None:
    half_passing(project)
    project.write_history([0.9, 1.0])
    result = project.run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "  SKIP history: skipped: 2 recorded runs, need 3 (llmeval_min_history)*",
            "*llmeval gate: PASSED*",
        ]
    )


def test_min_history_is_configurable(project: Project) -> None:
    project.ini(llmeval_min_history="2", llmeval_std_threshold="2")
    half_passing(project)
    project.write_history([0.9, 1.0])
    result = project.run()
    assert result.ret == 1
    result.stdout.fnmatch_lines(["  FAIL history: pass rate 50.0% < *over 2 runs"])


def test_history_of_another_judge_does_not_count(project: Project) -> None:
    half_passing(project)
    project.write_history([0.9, 1.0, 0.95])
    other = [
        {**line, "judge": {"name": "anthropic", "model": "claude-x", "prompt_version": "p1"}}
        for line in project.history()
    ]
    project.history_path.write_text("".join(json.dumps(h) + "\n" for h in other))
    result = project.run()
    assert result.ret == 0
    result.stdout.fnmatch_lines(["  SKIP history: skipped: 0 recorded runs, need 3*"])


def test_history_gate_skipped_on_a_narrowed_run(project: Project) -> None:
    half_passing(project, n_pass=1, n_known=2)
    project.write_history([0.9, 1.0, 0.95])
    result = project.run("-k", "known")
    result.assert_outcomes(xfailed=2, deselected=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["  SKIP history: skipped: the run was narrowed*"])


def test_several_gates_fail_together(project: Project) -> None:
    project.ini(llmeval_min_pass_rate="0.75")
    project.cases(FILE, [project.case(i) for i in ("a", "b", "c")])
    project.answers({"a": project.BAD, "b": project.BAD, "c": project.GOOD})
    project.write_baseline({f"{FILE}::a": "pass", f"{FILE}::b": "fail", f"{FILE}::c": "pass"})
    project.write_history([0.9, 1.0, 0.95])
    result = project.run()
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "  FAIL regressions: 1 regression (max 0)*",
            "  FAIL min_pass_rate: pass rate 33.3% < minimum 75.0%",
            "  FAIL history: pass rate 33.3% < *",
            "*llmeval gate: FAILED (regressions, min_pass_rate, history)*",
        ]
    )


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("llmeval_min_pass_rate", "1.5", "llmeval_min_pass_rate = 1.5: must be in [0"),
        ("llmeval_max_regressions", "many", "llmeval_max_regressions = 'many': expected a number"),
        ("llmeval_std_threshold", "-1", "llmeval_std_threshold = -1.0: must be in [0"),
    ],
)
def test_bad_gate_setting_is_a_usage_error(
    project: Project, key: str, value: str, words: str
) -> None:
    project.ini(**{key: value})
    half_passing(project)
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert words in result.stderr.str()
