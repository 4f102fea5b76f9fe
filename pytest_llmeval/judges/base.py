"""The judge protocols. The values they produce live in :mod:`pytest_llmeval.core.verdict`.

A judge that cannot answer raises :class:`~pytest_llmeval.errors.JudgeError`. It never returns a
made-up score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, PairwiseResult

if TYPE_CHECKING:
    from pytest_llmeval.core.cases import Case


@runtime_checkable
class Judge(Protocol):
    """Scores one response. May also define ``async def ascore(case, response)``."""

    identity: JudgeIdentity

    def score(self, case: Case, response: str) -> JudgeResult: ...


@runtime_checkable
class PairwiseJudge(Protocol):
    """Compares two responses to the same question."""

    identity: JudgeIdentity

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseResult: ...
