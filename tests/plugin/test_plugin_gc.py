"""While cases run, what collection built is frozen out of the garbage collector's walks.

A cached rerun of 10,000 cases spent 1.5 s in full collections (plain pytest with as many tests:
0.9 s), each one walking every item, case and baseline entry again; :func:`gc.freeze` after
collection takes them out of those walks until the session ends.
"""

from __future__ import annotations

import gc

import pytest

CONFTEST = """
import gc
import pytest

SEEN = []

@pytest.fixture(scope="session")
def llmeval_sut():
    def answer(case):
        SEEN.append(gc.get_freeze_count())
        return case.ground_truth
    return answer

def test_plain():
    SEEN.append(gc.get_freeze_count())

def pytest_unconfigure(config):
    print("FROZEN WHILE RUNNING:", ",".join(str(n) for n in SEEN))
    print("FROZEN AT THE END:", gc.get_freeze_count())
"""

CASES = (
    '{"id": "a", "question": "Refund window?", "ground_truth": "30 days"}\n'
    '{"id": "b", "question": "Locker?", "ground_truth": "Five days in the locker"}\n'
)


def _line(result: pytest.RunResult, head: str) -> str:
    return next(ln for ln in result.outlines if ln.startswith(head))[len(head) :].strip()


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_cases_run_frozen_and_the_session_ends_unfrozen(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nllmeval_judge = local\n")
    pytester.makefile(".jsonl", llmeval_small=CASES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *workers)
    result.assert_outcomes(passed=2)
    if not workers:  # on xdist the SUT runs (and prints) on the workers: their lines are not here
        counts = [int(n) for n in _line(result, "FROZEN WHILE RUNNING:").split(",")]
        assert len(counts) == 2 and all(n > 0 for n in counts), counts
    assert _line(result, "FROZEN AT THE END:") == "0"


def test_a_run_without_cases_freezes_nothing(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_unit="from conftest import test_plain\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "test_unit.py")
    result.assert_outcomes(passed=1)
    assert _line(result, "FROZEN WHILE RUNNING:") == "0"


def test_a_process_that_froze_objects_itself_is_left_frozen(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import gc\ngc.freeze()\n" + CONFTEST)
    pytester.makeini("[pytest]\nllmeval_judge = local\n")
    pytester.makefile(".jsonl", llmeval_small=CASES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=2)
    assert int(_line(result, "FROZEN AT THE END:")) > 0


def test_an_in_process_run_hands_the_objects_back(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini("[pytest]\nllmeval_judge = local\n")
    pytester.makefile(".jsonl", llmeval_small=CASES)
    # An earlier test in this process may have imported the Claude SDK, which freezes its
    # objects (the plugin then leaves the collector alone): start from nothing frozen.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert gc.get_freeze_count() == 0


def test_what_was_frozen_after_collection_stays_frozen(pytester: pytest.Pytester) -> None:
    # the Claude judge freezes the SDK's objects when it imports it during the run: handing
    # everything back at the end would undo that freeze too
    later_freeze = CONFTEST.replace(
        "        SEEN.append(gc.get_freeze_count())\n        return",
        "        SEEN.append(gc.get_freeze_count())\n"
        "        from pytest_llmeval.judges.anthropic.client import import_sdk\n"
        "        import_sdk()\n"
        "        return",
    )
    assert later_freeze != CONFTEST
    pytester.makeconftest(later_freeze)
    pytester.makeini("[pytest]\nllmeval_judge = local\n")
    pytester.makefile(".jsonl", llmeval_small=CASES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=2)
    assert int(_line(result, "FROZEN AT THE END:")) > 0
