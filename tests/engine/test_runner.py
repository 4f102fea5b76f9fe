"""The evaluation step, cache first: rows read before the SUT answers, hits never judged."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_anthropic import FakeAnthropic

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.checks import RuleSettings
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult
from pytest_llmeval.engine.cache import JudgeCache, cache_key
from pytest_llmeval.engine.runner import Evaluator, EvaluatorConfig, RunAhead

CASES = [Case(id=f"c{i}", question=f"Question {i}?", ground_truth="30 days") for i in range(5)]


class CountingJudge:
    identity = JudgeIdentity(name="counting", prompt_version="1")
    network = True

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.warmed = threading.Event()

    def score(self, case: Case, response: str) -> JudgeResult:
        self.calls.append(case.id)
        return JudgeResult(score=0.9, reasoning=f"judged {response}")

    def warm_up(self) -> None:
        self.warmed.set()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[JudgeCache]:
    c = JudgeCache(tmp_path / "cache.sqlite3")
    yield c
    c.close()


def evaluator(judge: CountingJudge, cache: JudgeCache | None, repeat: int = 1) -> Evaluator:
    config = EvaluatorConfig(rules=RuleSettings(min_words=1), repeat=repeat)
    return Evaluator(judge, cache, config)


def answer(case: Case) -> str:
    return f"thirty days for {case.id}"


def test_a_cached_rerun_reads_once_and_never_judges(cache: JudgeCache) -> None:
    judge = CountingJudge()
    ev = evaluator(judge, cache, repeat=2)
    cold = ev.prefetch(CASES)
    assert all(k is not None and not k.complete for k in cold)
    for case, known in zip(CASES, cold, strict=True):
        assert ev.evaluate(case, answer, known=known).judge_calls == 2
    assert len(judge.calls) == 10

    warm = ev.prefetch(CASES)
    assert all(k is not None and k.complete for k in warm)
    for case, known in zip(CASES, warm, strict=True):
        done = ev.evaluate(case, answer, known=known)
        assert (done.cache_hits, done.judge_calls, done.error) == (2, 0, None)
        assert done.samples[0].verdict.reasoning == f"judged thirty days for {case.id}"
    assert len(judge.calls) == 10  # no judgement on the rerun
    # the rows written carry their prekey, so a later run finds them in one read
    assert cache.legacy is False


def test_a_changed_answer_is_judged_again_never_replayed(cache: JudgeCache) -> None:
    judge = CountingJudge()
    ev = evaluator(judge, cache)
    ev.evaluate(CASES[0], answer)
    [known] = ev.prefetch(CASES[:1])
    assert known is not None and known.complete  # a row exists for the case...
    done = ev.evaluate(CASES[0], lambda case: "a different answer", known=known)
    assert (done.cache_hits, done.judge_calls) == (0, 1)  # ...but not for this answer
    assert done.samples[0].verdict.reasoning == "judged a different answer"


def test_rows_from_before_prekeys_still_hit(cache: JudgeCache) -> None:
    judge = CountingJudge()
    ev = evaluator(judge, cache)
    key = cache_key(judge.identity, CASES[0], answer(CASES[0]))
    cache.put(key, JudgeResult(score=0.8, reasoning="from version 1"))  # no prekey
    cache.close()  # reopened: the file now holds a row without a prekey
    [known] = ev.prefetch(CASES[:1])
    assert known is not None and not known.complete
    assert cache.legacy is True
    done = ev.evaluate(CASES[0], answer, known=known)
    assert (done.cache_hits, done.judge_calls) == (1, 0)
    assert done.samples[0].verdict.reasoning == "from version 1"
    cache.close()  # the hit row was given its prekey: the next run finds it in one read
    [known] = ev.prefetch(CASES[:1])
    assert known is not None and known.complete
    assert cache.legacy is False


def test_without_a_cache_every_case_is_a_miss() -> None:
    judge = CountingJudge()
    ev = evaluator(judge, None)
    assert ev.prefetch(CASES) == [None] * len(CASES)
    assert ev.evaluate(CASES[0], answer, known=None).judge_calls == 1


def test_warm_up_runs_once_in_the_background_and_never_offline(cache: JudgeCache) -> None:
    judge = CountingJudge()
    ev = evaluator(judge, cache)
    ev.warm_up()
    ev.warm_up()
    assert judge.warmed.wait(5)
    offline_judge = CountingJudge()
    config = EvaluatorConfig(rules=RuleSettings(), offline=True)
    Evaluator(offline_judge, cache, config).warm_up()
    time.sleep(0.05)
    assert not offline_judge.warmed.is_set()


def test_inline_sut_calls_share_the_run_ahead_bound(cache: JudgeCache) -> None:
    """llmeval_sut_concurrency = 1: a cached case called inline never overlaps a SUT call
    made ahead for a case that needs the judge."""
    judge = CountingJudge()
    ev = evaluator(judge, cache)
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def sut(case: Case) -> str:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return answer(case)

    ahead = RunAhead(ev, concurrency=4, sut_concurrency=1)
    try:
        for case in CASES[1:]:
            ahead.submit(case.id, case, sut)
        for _ in range(3):
            ev.call_sut(CASES[0], sut)  # meanwhile, inline
        for case in CASES[1:]:
            assert ahead.result(case.id).judge_calls == 1
    finally:
        ahead.close()
    assert running[1] == 1
    assert ev.sut_slots is None  # closed: inline calls are free again


def test_a_sut_call_waiting_for_a_hung_slot_times_out(cache: JudgeCache) -> None:
    judge = CountingJudge()
    config = EvaluatorConfig(rules=RuleSettings(), sut_timeout=0.1)
    ev = Evaluator(judge, cache, config)
    ev.sut_slots = threading.Semaphore(1)
    ev.sut_slots.acquire()  # held by a call that hangs
    call = ev.call_sut(CASES[0], answer)
    assert call.mode == "timeout"


# -- through the plugin: a cached rerun with the Claude judge ------------------------------------

CLAUDE_CONFTEST = """
import sys

import pytest


@pytest.fixture(scope="session")
def llmeval_sut():
    return lambda case: f"Thirty days from delivery for {case.id}. [[score=0.9]]"


def pytest_unconfigure(config):
    print(f"anthropic imported: {'anthropic' in sys.modules}")
"""


def test_a_cached_rerun_with_the_claude_judge_never_imports_the_sdk(
    pytester: pytest.Pytester, fake_anthropic: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_anthropic
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    pytester.makeini("[pytest]\nllmeval_judge = anthropic\nllmeval_concurrency = 4\n")
    pytester.makeconftest(CLAUDE_CONFTEST)
    lines = [
        f'{{"id": "c{i}", "question": "Question {i}?", "ground_truth": "30 days"}}'
        for i in range(12)
    ]
    pytester.makefile(".jsonl", llmeval_claude="\n".join(lines))
    args = ("-p", "no:cacheprovider", "-s")
    first = pytester.runpytest_subprocess(*args, "--llmeval-update-baseline", timeout=120)
    first.assert_outcomes(passed=12)
    assert len(fake.message_requests()) == 12
    first.stdout.fnmatch_lines(["anthropic imported: True"])

    again = pytester.runpytest_subprocess(*args, timeout=120)
    again.assert_outcomes(passed=12)
    assert len(fake.message_requests()) == 12  # nothing new was sent
    again.stdout.fnmatch_lines(["anthropic imported: False"])
    assert "cache hits: 12" in again.stdout.str()
