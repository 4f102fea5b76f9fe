"""Every row of DESIGN.md's per-item outcome table, as a user sees it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_support.jsonl"


def outcome_table_project(project: Project) -> None:
    P = project
    project.cases(
        FILE,
        [
            P.case("pass-new"),
            P.case("improved"),
            P.case("regressed", tags=["billing"]),
            P.case("known-bad"),
            P.case("new-bad"),
            P.case("sut-raises"),
        ],
    )
    project.answers(
        {
            "pass-new": P.GOOD,
            "improved": P.GOOD,
            "regressed": P.BAD,
            "known-bad": P.BAD,
            "new-bad": P.BAD,
            "sut-raises": "RAISE:database is down",
        }
    )
    project.write_baseline(
        {
            f"{FILE}::improved": "fail",
            f"{FILE}::regressed": "pass",
            f"{FILE}::known-bad": "fail",
        }
    )


def test_outcome_table(project: Project, run_args: tuple[str, ...]) -> None:
    outcome_table_project(project)
    result = project.run("-rA", *run_args)
    result.assert_outcomes(passed=2, failed=3, xfailed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines_random(
        [
            f"PASSED {FILE}::pass-new",
            f"PASSED {FILE}::improved",
            f"FAILED {FILE}::regressed - REGRESSION*",
            f"XFAIL {FILE}::known-bad - known failure*",
            f"FAILED {FILE}::new-bad - NEW FAILURE*",
            f"FAILED {FILE}::sut-raises - NEW FAILURE*",
        ]
    )
    section = "\n".join(project.section(result))
    assert "cases: 6  passed: 2  failed: 4 (of which known failures/flaky: 1)  errors: 0" in (
        section
    )
    assert "regressions (passed in the baseline, fail now): 1: regressed" in section
    assert "improvements (failed in the baseline, pass now): 1: improved" in section
    assert "new failures (not in the baseline): 2: new-bad, sut-raises" in section
    assert "known failures: 1: known-bad" in section
    assert "FAIL regressions: 1 regression (max 0)" in section
    assert "llmeval gate: FAILED (regressions, 2 new failing cases)" in section


def test_pass_only_run_exits_zero(project: Project) -> None:
    project.cases(FILE, [project.case("a"), project.case("b")])
    project.answers({"a": project.GOOD, "b": project.GOOD})
    result = project.run()
    result.assert_outcomes(passed=2)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*llmeval gate: PASSED*"])


def test_known_failures_alone_do_not_fail_the_run(project: Project) -> None:
    project.cases(FILE, [project.case("a"), project.case("b")])
    project.answers({"a": project.GOOD, "b": project.BAD})
    project.write_baseline({f"{FILE}::a": "pass", f"{FILE}::b": "fail"})
    result = project.run()
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == 0


def test_regression_failure_output_is_readable(project: Project) -> None:
    project.cases(
        FILE,
        [
            project.case(
                "regressed",
                question="How long do I have to ask for a refund?",
                checks=[{"type": "contains", "value": "30"}],
            )
        ],
    )
    project.answers({"regressed": project.BAD})
    project.write_baseline({f"{FILE}::regressed": "pass"})
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ case regressed _*",
            "REGRESSION: case regressed passed in the baseline and fails now*",
            "question:  How long do I have to ask for a refund?",
            f"expected:  {project.TRUTH}",
            f"response:  {project.BAD}",
            "score:     0.000 (threshold 0.70)",
            "failed checks: contains '30': not found",
            "failure modes: *check_failed*",
            "reasoning: covers 0% of the expected answer*",
            "baseline:  pass (score 0.900)",
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "items.py" not in out and "runner.py" not in out and "raise " not in out


def test_multi_turn_failure_shows_the_conversation(project: Project) -> None:
    messages = [
        {"role": "user", "content": "I bought a kettle."},
        {"role": "assistant", "content": "How can I help?"},
        {"role": "user", "content": "Can I get my money back?"},
    ]
    project.cases(FILE, [{"id": "conv", "messages": messages, "ground_truth": project.TRUTH}])
    project.answers({"conv": project.BAD})
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "NEW FAILURE: case conv*",
            "conversation:",
            "  user: I bought a kettle.",
            "  assistant: How can I help?",
            "  user: Can I get my money back?",
        ]
    )


def test_sut_exception_is_a_system_error_verdict(project: Project) -> None:
    project.cases(FILE, [project.case("a"), project.case("b")])
    project.answers({"a": "RAISE:connection refused by upstream", "b": project.GOOD})
    project.write_baseline({f"{FILE}::a": "pass", f"{FILE}::b": "pass"})
    report = project.path / "out.json"
    result = project.run(f"--llmeval-report={report}")
    result.assert_outcomes(failed=1, passed=1)  # the other case still runs
    result.stdout.fnmatch_lines(
        [
            "REGRESSION: case a*",
            "failure modes: system_error",
            "reasoning: RuntimeError: connection refused by upstream",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    case = {c["id"]: c for c in json.loads(report.read_text())["cases"]}["a"]
    assert case["verdict"] == "fail"
    assert case["failure_modes"] == ["system_error"]
    assert case["score"] == 0.0


def test_sut_timeout(project: Project) -> None:
    project.ini(llmeval_sut_timeout="0.5")
    project.cases(FILE, [project.case("slow"), project.case("fast")])
    project.answers({"slow": "SLEEP:2", "fast": project.GOOD})
    report = project.path / "out.json"
    result = project.run(f"--llmeval-report={report}")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "NEW FAILURE: case slow*",
            "failure modes: timeout",
            "reasoning: the system under test did not answer within 0.5 s",
        ]
    )
    cases = {c["id"]: c for c in json.loads(report.read_text())["cases"]}
    assert cases["slow"]["failure_modes"] == ["timeout"]
    assert cases["slow"]["verdict"] == "fail"


def test_sut_timeout_does_not_wait_for_the_hung_call(project: Project) -> None:
    """A timed-out SUT call must not block the next case (it ran on past its deadline)."""
    project.ini(llmeval_sut_timeout="0.2")
    project.conftest(
        """
        LOG = pathlib.Path(__file__).with_name("events.log")

        def log(event):
            with LOG.open("a") as fh:
                fh.write(event + "\\n")

        @pytest.fixture(scope="session")
        def llmeval_sut():
            def sut(case):
                log("start " + case.id)
                if case.id == "hangs":
                    time.sleep(2)
                    log("end hangs")
                return "You have 30 days from delivery to ask for a refund of your order."
            return sut
        """
    )
    project.cases(FILE, [project.case("hangs"), project.case("next")])
    result = project.run()
    result.assert_outcomes(failed=1, passed=1)
    events = (project.path / "events.log").read_text().split("\n")
    # the next case started while the hung call was still running
    assert "end hangs" not in events[: events.index("start next")], events


def test_async_sut(project: Project) -> None:
    project.conftest(
        """
        import asyncio

        @pytest.fixture(scope="session")
        def llmeval_sut():
            async def sut(case):
                await asyncio.sleep(0)
                return answer_for(case.id)
            return sut
        """
    )
    project.cases(FILE, [project.case("a"), project.case("b"), project.case("c")])
    project.answers({"a": project.GOOD, "b": project.BAD, "c": "RAISE:async boom"})
    project.write_baseline({f"{FILE}::b": "fail"})
    result = project.run("-rA")
    result.assert_outcomes(passed=1, xfailed=1, failed=1)
    result.stdout.fnmatch_lines(["*reasoning: RuntimeError: async boom*"])


def test_async_sut_timeout(project: Project) -> None:
    project.ini(llmeval_sut_timeout="0.3")
    project.conftest(
        """
        import asyncio

        @pytest.fixture(scope="session")
        def llmeval_sut():
            async def sut(case):
                if case.id == "slow":
                    await asyncio.sleep(30)
                return answer_for(case.id)
            return sut
        """
    )
    project.cases(FILE, [project.case("slow"), project.case("ok")])
    project.answers({"ok": project.GOOD})
    result = project.run()
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["failure modes: timeout"])


def test_sut_returning_a_non_string_is_a_system_error(project: Project) -> None:
    project.conftest(
        """
        @pytest.fixture(scope="session")
        def llmeval_sut():
            return lambda case: 42
        """
    )
    project.cases(FILE, [project.case("a")])
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["failure modes: system_error", "reasoning: *returned int*"])


JUDGE_MODULE = """
from pytest_llmeval.errors import JudgeError

class FlakyJudge:
    network = False

    def score(self, case, response):
        if case.id.startswith("judge-down"):
            raise JudgeError("judge service unavailable (HTTP 529 after 4 retries)")
        if case.id.startswith("judge-crash"):
            raise ValueError("could not parse the judge's answer")
        return 0.9 if "30 days" in response else 0.1

judge = FlakyJudge()
"""


def test_judge_that_cannot_answer_is_an_error(project: Project, run_args: tuple[str, ...]) -> None:
    project.module("flaky_judge", JUDGE_MODULE)
    project.ini(llmeval_judge="flaky_judge:judge")
    project.cases(
        FILE,
        [
            project.case("ok"),
            project.case("judge-down"),
            project.case("judge-crash"),
        ],
    )
    project.answers({"ok": project.GOOD, "judge-down": project.GOOD, "judge-crash": project.GOOD})
    report = project.path / "out.json"
    result = project.run(f"--llmeval-report={report}", *run_args)
    result.assert_outcomes(passed=1, errors=2)
    assert result.ret == 1
    out = result.stdout.str()
    assert "judge service unavailable (HTTP 529 after 4 retries)" in out
    assert "could not parse the judge's answer" in out
    assert "Traceback" not in out
    section = "\n".join(project.section(result))
    # errors are never counted as a pass or a fail
    assert "cases: 3  passed: 1  failed: 0 (of which known failures/flaky: 0)  errors: 2" in section
    assert "pass rate: 100.0%" in section
    data = json.loads(report.read_text())
    assert data["summary"]["errors"] == 2
    assert data["summary"]["pass_rate"] == 1.0
    cases = {c["id"]: c for c in data["cases"]}
    assert cases["judge-down"]["verdict"] == "error"
    assert cases["judge-down"]["score"] is None
    assert cases["judge-down"]["outcome"] == "error"


def test_judge_error_never_enters_the_baseline(project: Project) -> None:
    project.module("flaky_judge", JUDGE_MODULE)
    project.ini(llmeval_judge="flaky_judge:judge")
    project.cases(FILE, [project.case("ok"), project.case("judge-down")])
    project.answers({"ok": project.GOOD, "judge-down": project.GOOD})
    result = project.run("--llmeval-update-baseline")
    result.assert_outcomes(passed=1, errors=1)
    assert list(project.baseline()["cases"]) == [f"{FILE}::ok"]
    (line,) = project.history()
    assert (line["total"], line["passed"], line["errors"]) == (1, 1, 1)


def test_no_sut_configured_is_a_clear_error(project: Project) -> None:
    (project.path / "conftest.py").write_text("")
    project.cases(FILE, [project.case("a"), project.case("b")])
    result = project.run()
    assert result.ret != 0
    out = result.stdout.str()
    assert "no system under test" in out
    assert "llmeval_sut" in out and "--llmeval-sut module:attr" in out
    assert "Traceback" not in out
    # nothing was judged, so nothing is counted as a pass
    assert "passed" not in result.parseoutcomes()


def test_sut_given_on_the_command_line(project: Project) -> None:
    (project.path / "conftest.py").write_text("")
    project.module(
        "my_app",
        """
        class Bot:
            def answer(self, case):
                return "You have 30 days from delivery to ask for a refund of your order."

        bot = Bot()
        """,
    )
    project.cases(FILE, [project.case("a"), project.case("b")])
    result = project.run("--llmeval-sut", "my_app:bot.answer")
    result.assert_outcomes(passed=2)
    assert result.ret == 0


def test_sut_option_overrides_the_fixture(project: Project) -> None:
    project.module("other_app", "def sut(case):\n    return 'Our office is closed in winter.'\n")
    project.cases(FILE, [project.case("a")])
    project.answers({"a": project.GOOD})
    assert project.run().ret == 0
    result = project.run("--llmeval-sut=other_app:sut")
    result.assert_outcomes(failed=1)


@pytest.mark.parametrize(
    ("spec", "words"),
    [("nope_module:sut", "cannot import 'nope_module'"), ("no-colon", "expected 'module:attr'")],
)
def test_bad_sut_option_is_a_usage_error(project: Project, spec: str, words: str) -> None:
    project.cases(FILE, [project.case("a")])
    result = project.run(f"--llmeval-sut={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert words in result.stderr.str() + result.stdout.str()


def test_checks_only_cases_are_counted(project: Project) -> None:
    project.cases(
        FILE,
        [
            {
                "id": "json-out",
                "question": "Give me my order as JSON",
                "checks": [{"type": "json_schema", "value": {"required": ["order"]}}],
            },
            {
                "id": "no-fee",
                "question": "Is there a fee?",
                "checks": [{"type": "not_contains", "value": "fee"}],
            },
            project.case("with-truth"),
        ],
    )
    project.answers(
        {
            "json-out": '{"order": "A-1", "status": "shipped", "eta": "tomorrow"}',
            "no-fee": "A small fee of five euros applies to every return.",
            "with-truth": project.GOOD,
        }
    )
    result = project.run()
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*failed checks: not_contains 'fee': found*",
            "judged by checks alone (no ground_truth): 2",
        ]
    )
