"""Fixtures: thin wrappers over the per-run state."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from pytest_llmeval.core.cases import case_from_dict, validate_case_dict
from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.verdict import Verdict
from pytest_llmeval.judges.base import Judge

RECORDS_KEY = pytest.StashKey[list[CaseResult]]()


@pytest.fixture(scope="session")
def llmeval_sut() -> Any:
    """The system under test: override it in your conftest.py. Return a callable that takes
    a ``pytest_llmeval.Case`` and returns the answer text (``def`` or ``async def``)::
        @pytest.fixture(scope="session")
        def llmeval_sut():
            app = MyAssistant()
            return lambda case: app.answer(case.question)

    ``--llmeval-sut module:attr`` overrides this fixture.
    """
    return None


@pytest.fixture(scope="session")
def llmeval_judge(request: pytest.FixtureRequest) -> Judge:
    """The configured judge (``llmeval_judge`` ini / ``--llmeval-judge``)::
    def test_tone(llmeval_judge, llmeval_sut):
        case = Case(id="tone", question="Hi?", ground_truth="Hello! How can I help?")
        result = llmeval_judge.score(case, llmeval_sut(case))
        assert result.score >= 0.5
    """
    from pytest_llmeval.plugin.session import get_state

    return get_state(request.config).resources.judge


@pytest.fixture
def llmeval_ab() -> Any:
    """A/B test maths (sample size, significance, SRM), done exactly (scipy)::
    def test_experiment_size(llmeval_ab):
        assert llmeval_ab.compute_required_sample_size(0.12, 0.15) == 5443
    """
    from pytest_llmeval.stats import ABTestDesigner

    return ABTestDesigner()


@pytest.fixture
def llmeval_record(request: pytest.FixtureRequest) -> Callable[..., Verdict]:
    """Judge a response produced in a Python test and gate it like a JSONL case::
        def test_summary(llmeval_record, my_app):
            answer = my_app.summarise(DOC)
            llmeval_record(case_id="summary", question="Summarise DOC",
                           response=answer, ground_truth=EXPECTED)

    The test's outcome follows the same table as case files (regression fails, known failure
    xfails); the call returns the :class:`~pytest_llmeval.Verdict`.
    """
    from pytest_llmeval.plugin.items import JudgeFailure
    from pytest_llmeval.plugin.session import get_state

    state = get_state(request.config)
    node = request.node
    records = node.stash.setdefault(RECORDS_KEY, [])

    def record(
        *,
        case_id: str,
        question: str,
        response: str,
        ground_truth: str | None = None,
        rubric: str | None = None,
        checks: Sequence[Mapping[str, Any]] | None = None,
        tags: Sequence[str] = (),
        difficulty: str = "medium",
        threshold: float | None = None,
    ) -> Verdict:
        __tracebackhide__ = True
        raw: dict[str, Any] = {"id": case_id, "question": question}
        optional = {
            "ground_truth": ground_truth,
            "rubric": rubric,
            "checks": list(checks) if checks else None,
            "tags": list(tags) or None,
            "difficulty": difficulty,
            "threshold": threshold,
        }
        raw.update({k: v for k, v in optional.items() if v is not None})
        validate_case_dict(raw, path=node.nodeid, line=0)
        case = case_from_dict(raw, path=node.nodeid)
        key = f"{node.nodeid}::{case_id}"
        if any(r.nodeid == key for r in records):
            raise ValueError(f"llmeval_record: case_id {case_id!r} recorded twice in this test")
        state.activate()
        evaluation = state.resources.evaluator.judge_response(case, response)
        records.append(state.result_for(key, case, evaluation))
        if evaluation.error is not None:
            raise JudgeFailure(evaluation.error)
        return evaluation.samples[0].verdict

    return record
