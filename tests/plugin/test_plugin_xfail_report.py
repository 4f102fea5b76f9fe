"""An xfailed case (a known failure, a flaky case) reports its reason, not a traceback.

pytest builds a report for an xfail from the item's ``repr_failure``; for a case item that was
a traceback through the plugin (2.5 ms a case to format), which no one reads: the reason is
what ``-rx``, JUnit and report plugins show.
"""

from __future__ import annotations

import pytest

CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def llmeval_sut():
    return lambda case: "I do not know." if case.id == "bad" else case.ground_truth

def pytest_runtest_logreport(report):
    if report.when == "call" and hasattr(report, "wasxfail"):
        print("\\nXFAIL REPORT:", repr(report.longreprtext))
"""


def test_a_known_failure_reports_its_reason(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nllmeval_judge = local\n")
    pytester.makefile(
        ".jsonl",
        llmeval_small='{"id": "good", "question": "Refund window?", "ground_truth": "30 days"}\n'
        '{"id": "bad", "question": "Locker?", "ground_truth": "Five days in the locker"}\n',
    )
    first = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--llmeval-update-baseline")
    assert first.ret == 0
    rerun = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "-rx")
    rerun.assert_outcomes(passed=1, xfailed=1)
    line = next(ln for ln in rerun.outlines if ln.startswith("XFAIL REPORT:"))
    # the reason alone: no exception type, no (hidden) traceback
    assert line.startswith("XFAIL REPORT: 'known failure (fails in the baseline too): "), line
    assert "XFailed" not in line and "traceback" not in line.lower(), line
    rerun.stdout.fnmatch_lines(["XFAIL llmeval_small.jsonl::bad - known failure*"])
