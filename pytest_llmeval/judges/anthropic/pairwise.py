"""The Claude pairwise judge: which of two responses is better, asked in both orders."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from pytest_llmeval.core.secrets import scrub
from pytest_llmeval.core.verdict import PairwiseResult, Preference, Usage
from pytest_llmeval.judges import prompts
from pytest_llmeval.judges.anthropic.client import ClaudeClient
from pytest_llmeval.judges.anthropic.output import json_output


class AnthropicPairwiseJudge(ClaudeClient):
    """Compares two responses with Claude, asking in both orders to cancel position bias.

    Same constructor arguments as :class:`AnthropicJudge`. When the two orders disagree the
    result is a tie with ``consistent=False``; :func:`position_consistency_rate` summarises
    many results.
    """

    _name = "anthropic-pairwise"
    _answer_schema = prompts.PAIRWISE_SCHEMA

    def request_params(self, question: str, first: str, second: str) -> dict[str, Any]:
        """The ``messages.create`` arguments presenting ``first`` then ``second``."""
        return self._params(
            prompts.build_pairwise_prompt(question, first, second), prompts.PAIRWISE_OUTPUT_SCHEMA
        )

    def _parse(self, message: Any, usage: Usage) -> tuple[str, str, Usage]:
        data = json_output(message, prompts.PAIRWISE_SCHEMA, self.max_tokens)
        return str(data["preference"]), scrub(str(data["reasoning"]).strip()), usage

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        """Which of ``response_a`` / ``response_b`` is better (asked as A-B, then B-A)."""
        ab = self._ask(self.request_params(question, response_a, response_b), self._parse)
        ba = self._ask(self.request_params(question, response_b, response_a), self._parse)
        return _combine(ab, ba)

    async def acompare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        """Async :meth:`compare`; the two orders are asked concurrently."""
        ab, ba = await asyncio.gather(
            self._aask(self.request_params(question, response_a, response_b), self._parse),
            self._aask(self.request_params(question, response_b, response_a), self._parse),
        )
        return _combine(ab, ba)


def _combine(ab: tuple[str, str, Usage], ba: tuple[str, str, Usage]) -> PairwiseResult:
    as_ab: dict[str, Preference] = {"first": "a", "second": "b", "tie": "tie"}
    as_ba: dict[str, Preference] = {"first": "b", "second": "a", "tie": "tie"}
    first, second = as_ab[ab[0]], as_ba[ba[0]]
    consistent = first == second
    reasoning = f"A shown first: {ab[1]} | B shown first: {ba[1]}"
    return PairwiseResult(
        preference=first if consistent else "tie",
        consistent=consistent,
        reasoning=reasoning,
        usage=ab[2] + ba[2],
    )


def position_consistency_rate(results: Iterable[PairwiseResult]) -> float | None:
    """Share of comparisons whose two orders agreed (``None`` for no comparisons)."""
    items = list(results)
    if not items:
        return None
    return sum(1 for r in items if r.consistent) / len(items)
