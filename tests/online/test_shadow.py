"""Shadow evaluation with a scripted pairwise judge, and the local pairwise judge."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.verdict import JudgeIdentity, PairwiseResult
from pytest_llmeval.judges.base import PairwiseJudge
from pytest_llmeval.judges.pairwise_local import LocalPairwiseJudge
from pytest_llmeval.online import EventStore
from pytest_llmeval.online.shadow import (
    ShadowEvaluator,
    ShadowItem,
    aggregate,
    items_from_cases,
    items_from_store,
)
from pytest_llmeval.stats import proportion_ci, sign_test

T0 = 1_700_000_000.0


class ScriptedJudge:
    """Answers from a script keyed by question: 'a', 'b', 'tie' or 'flip' (orders disagree)."""

    identity = JudgeIdentity(name="scripted")

    def __init__(self, script: dict[str, str]) -> None:
        self.script = script
        self.seen: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        with self.lock:
            self.seen.append((question, response_a, response_b))
        verdict = self.script[question]
        if verdict == "boom":
            raise RuntimeError("judge exploded")
        if verdict == "flip":
            return PairwiseResult(preference="tie", consistent=False)
        return PairwiseResult(preference=verdict, consistent=True)  # type: ignore[arg-type]


def production(case: Case) -> str:
    return f"prod: {case.question}"


def shadow(case: Case) -> str:
    return f"shadow: {case.question}"


def _items(n: int) -> list[ShadowItem]:
    return [ShadowItem(question=f"q{i}") for i in range(n)]


def test_protocol() -> None:
    assert isinstance(ScriptedJudge({}), PairwiseJudge)
    assert isinstance(LocalPairwiseJudge(), PairwiseJudge)


def test_aggregation_and_promotion_on_a_significant_preference() -> None:
    items = _items(30)
    script = {f"q{i}": "b" for i in range(20)}
    script.update({f"q{i}": "a" for i in range(20, 23)})
    script.update({f"q{i}": "tie" for i in range(23, 27)})
    script.update({f"q{i}": "flip" for i in range(27, 30)})
    judge = ScriptedJudge(script)
    report = ShadowEvaluator(production, shadow, judge, concurrency=4).run(items)
    assert (report.shadow_wins, report.production_wins, report.ties) == (20, 3, 7)
    assert report.errors == 0
    assert report.sign_test_p == pytest.approx(sign_test(20, 3))
    assert report.shadow_preference_rate == pytest.approx(20 / 23)
    assert report.shadow_preference_ci == pytest.approx(proportion_ci(20, 23))
    assert report.position_consistency_rate == pytest.approx(27 / 30)
    assert report.recommendation == "promote_shadow"
    # production is always response A, the shadow response B
    assert all(a.startswith("prod:") and b.startswith("shadow:") for _, a, b in judge.seen)
    # results keep the input order despite the thread pool
    assert [c.item.question for c in report.comparisons] == [i.question for i in items]


def test_a_small_majority_is_not_enough() -> None:
    # The seed promoted at > 55%: 6 wins of 10 is 60% but far from significant.
    script = {f"q{i}": ("b" if i < 6 else "a") for i in range(10)}
    report = ShadowEvaluator(production, shadow, ScriptedJudge(script)).run(_items(10))
    assert report.shadow_preference_rate == pytest.approx(0.6)
    assert report.recommendation == "inconclusive"


def test_keep_production_when_the_shadow_is_significantly_worse() -> None:
    script = {f"q{i}": "a" for i in range(12)}
    report = ShadowEvaluator(production, shadow, ScriptedJudge(script)).run(_items(12))
    assert report.recommendation == "keep_production"
    assert report.shadow_preference_rate == 0.0


def test_errors_are_recorded_and_never_counted() -> None:
    def flaky_shadow(case: Case) -> str:
        if case.question == "q1":
            raise TimeoutError("slow")
        return "s"

    script = {"q0": "b", "q1": "b", "q2": "boom", "q3": "b"}
    report = ShadowEvaluator(production, flaky_shadow, ScriptedJudge(script)).run(_items(4))
    assert (report.n, report.compared, report.errors, report.shadow_wins) == (4, 2, 2, 2)
    errors = {c.item.question: c.error for c in report.comparisons if c.error}
    assert "shadow system: TimeoutError: slow" in errors["q1"]
    assert "judge: RuntimeError: judge exploded" in errors["q2"]


def test_empty_run() -> None:
    report = aggregate([])
    assert report.n == 0
    assert report.shadow_preference_rate is None
    assert report.sign_test_p == 1.0
    assert report.recommendation == "inconclusive"


def test_async_systems_and_question_calling() -> None:
    async def async_shadow(question: str) -> str:
        await asyncio.sleep(0)
        return question.upper()

    judge = ScriptedJudge({"q0": "b"})
    evaluator = ShadowEvaluator(lambda q: q, async_shadow, judge, call_with="question")
    comparison = evaluator.run_shadow("q0")
    assert (comparison.production, comparison.shadow) == ("q0", "Q0")
    assert evaluator.aggregate_results()["shadow_wins"] == 1


def test_concurrency_is_bounded() -> None:
    active = {"now": 0, "max": 0}
    lock = threading.Lock()
    gate = threading.Event()

    def slow(case: Case) -> str:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        gate.wait(0.05)
        with lock:
            active["now"] -= 1
        return "x"

    judge = ScriptedJudge({f"q{i}": "tie" for i in range(12)})
    ShadowEvaluator(production, slow, judge, concurrency=3).run(_items(12))
    assert 1 <= active["max"] <= 3


def _store_with_feedback(tmp_path: Path) -> EventStore:
    s = EventStore(tmp_path / "online.sqlite3")
    for i, thumb in enumerate(["thumbs_up", "thumbs_up", "thumbs_down", "thumbs_down", None]):
        rid = f"r{i}"
        s.record_response(
            rid, session_id="s", question=f"q{i}", response=f"stored {i}", timestamp=T0 + i
        )
        if thumb:
            s.record_event(thumb, rid, timestamp=T0 + i + 1)
    return s


def test_store_items_use_the_answer_users_saw_and_calibrate(tmp_path: Path) -> None:
    store = _store_with_feedback(tmp_path)
    items = items_from_store(store, since=None, until=T0 + 100)
    assert [i.question for i in items] == ["q4", "q3", "q2", "q1", "q0"]  # most recent first
    assert items[0].feedback is None and items[-1].feedback == "thumbs_up"
    # judge: prefers production on q0 (thumb up: agree), shadow on q1 (thumb up: disagree),
    # shadow on q2 and q3 (thumbs down: agree), tie on q4 (no feedback anyway)
    judge = ScriptedJudge({"q0": "a", "q1": "b", "q2": "b", "q3": "b", "q4": "tie"})
    before = store.counts()
    calls: list[str] = []

    def prod(case: Case) -> str:
        calls.append(case.question)
        return "fresh"

    report = ShadowEvaluator(prod, shadow, judge, bias_probes=0).run(items)
    assert calls == []  # the stored answers were compared, production was not called
    assert {a for _, a, _ in judge.seen} == {f"stored {i}" for i in range(5)}
    assert report.verbosity_bias is None
    fa = report.feedback_agreement
    assert fa is not None
    assert (fa.n, fa.agree, fa.ties_skipped) == (4, 3, 0)
    assert fa.rate == 0.75
    assert store.counts() == before  # nothing about the shadow is written to the store
    rerun = ShadowEvaluator(prod, shadow, judge, rerun_production=True).run(items)
    assert len(calls) == 5
    assert rerun.feedback_agreement is None  # thumbs were about another text


def test_items_from_cases(tmp_path: Path) -> None:
    path = tmp_path / "llmeval_c.jsonl"
    path.write_text(
        '{"id": "a", "question": "Refund window?", "ground_truth": "30 days"}\n'
        '{"id": "b", "messages": [{"role": "user", "content": "hi"}]}\n'
    )
    items = items_from_cases(path)
    assert [(i.case_id, i.question, i.reference) for i in items] == [
        ("a", "Refund window?", "30 days"),
        ("b", "hi", None),
    ]
    assert items[1].as_case().messages is not None


def test_local_pairwise_judge() -> None:
    judge = LocalPairwiseJudge(
        references={"Refund window?": "You have 30 days to ask for a refund"}
    )
    good = judge.compare("Refund window?", "You can ask for a refund within 30 days.", "No idea.")
    assert (good.preference, good.consistent) == ("a", True)
    swapped = judge.compare(
        "Refund window?", "No idea.", "You can ask for a refund within 30 days."
    )
    assert swapped.preference == "b"
    same = judge.compare("Refund window?", "30 days for refunds", "30 days for refunds")
    assert same.preference == "tie"
    empty = judge.compare("How do I reset my password?", "", "Open settings and reset the password")
    assert empty.preference == "b"
    assert judge.score("q", "   ") == 0.0
    # without a reference a lexical judge cannot tell: it abstains, and says why
    plain = LocalPairwiseJudge()
    q = "How do I reset my password?"
    abstained = plain.compare(
        q, "Reset your password in settings, then log in again.", "Hello there, friend."
    )
    assert abstained.preference == "tie" and "abstains" in abstained.reasoning
    assert plain.identity.name == "local-pairwise"
    with pytest.raises(ValueError):
        LocalPairwiseJudge(margin=1.5)


class LengthLovingJudge:
    """Prefers the longer answer (the bias the probe must catch)."""

    identity = JudgeIdentity(name="length-loving")

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        if len(response_a) == len(response_b):
            return PairwiseResult(preference="tie", consistent=True)
        return PairwiseResult(
            preference="a" if len(response_a) > len(response_b) else "b", consistent=True
        )


def test_verbosity_probe_catches_a_judge_that_likes_length(tmp_path: Path) -> None:
    from pytest_llmeval.online.shadow import FILLER

    items = [ShadowItem(question=f"q{i}", production_response="short") for i in range(30)]

    def longer(case: Case) -> str:
        return "a longer answer"

    biased = ShadowEvaluator(None, longer, LengthLovingJudge(), bias_probes=25).run(items)
    assert biased.shadow_wins == 30
    vb = biased.verbosity_bias
    assert vb is not None and (vb.probed, vb.moved, vb.rate) == (25, 25, 1.0)
    assert vb.ci == pytest.approx(proportion_ci(25, 25, method="wilson", level=0.95))
    assert biased.to_dict()["verbosity_bias"]["filler"] == FILLER
    # a judge of content: the same answers, padding moves nothing
    content = ScriptedJudge({f"q{i}": "b" for i in range(30)})
    fair = ShadowEvaluator(None, longer, content, bias_probes=10).run(items)
    assert fair.verbosity_bias is not None
    assert (fair.verbosity_bias.probed, fair.verbosity_bias.moved) == (10, 0)
    padded = [a for _, a, _ in content.seen if a.endswith(FILLER)]
    assert len(padded) == 10  # the probe padded the answer that was not preferred
