"""A deterministic pairwise judge for offline use (no network, no model).

What it measures, honestly: *coverage*, not correctness. Each response gets a score

* ``similarity(reference, response)`` when a reference answer is known for the question
  (``references``, e.g. the cases' ``ground_truth``): the recall-weighted content-word overlap
  of :mod:`pytest_llmeval.judges.similarity`;
* otherwise ``similarity(question, response)``: how much of the question's content the answer
  addresses — a weak relevance proxy that cannot tell a right answer from a wrong one;

then multiplied by a length factor: 0 for an empty answer, ``0.5`` below ``min_words`` words
(a bare "yes" rarely answers anything) and ``0.5`` above ``max_words`` (rambling). The response
with the higher score wins when the scores differ by at least ``margin``; otherwise it is a tie.

Like a real pairwise judge it is asked in both orders (A-B and B-A) and a disagreement is a tie
with ``consistent=False``. The score of a response does not depend on its position, so this
judge is position-consistent by construction; the two-order protocol is kept so that it is a
drop-in stand-in for :class:`~pytest_llmeval.judges.anthropic.AnthropicPairwiseJudge`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pytest_llmeval.core.verdict import JudgeIdentity, PairwiseResult, Preference

PROMPT_VERSION = "pairwise-local-1"
_AS_AB: dict[str, Preference] = {"first": "a", "second": "b", "tie": "tie"}
_AS_BA: dict[str, Preference] = {"first": "b", "second": "a", "tie": "tie"}


@dataclass
class LocalPairwiseJudge:
    """Offline pairwise judge: compares coverage of the reference (or question), see module doc.

    Example::

        judge = LocalPairwiseJudge(references={"How long is the refund window?": "30 days"})
        judge.compare("How long is the refund window?", "30 days.", "Ask support.").preference
        # -> "a"
    """

    references: Mapping[str, str] = field(default_factory=dict)
    margin: float = 0.05
    min_words: int = 3
    max_words: int = 400
    identity: JudgeIdentity = field(
        default_factory=lambda: JudgeIdentity(name="local-pairwise", prompt_version=PROMPT_VERSION)
    )
    network = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")
        if self.min_words < 0 or self.max_words < self.min_words:
            raise ValueError("need 0 <= min_words <= max_words")

    def score(self, question: str, response: str) -> float:
        """The coverage score of one response in [0, 1] (see module doc)."""
        from pytest_llmeval.judges.similarity import similarity

        words = len(response.split())
        if words == 0:
            return 0.0
        reference = self.references.get(question)
        base = similarity(reference if reference is not None else question, response)
        if words < self.min_words or words > self.max_words:
            base *= 0.5
        return base

    def _prefer(self, question: str, first: str, second: str) -> tuple[str, float, float]:
        s1, s2 = self.score(question, first), self.score(question, second)
        if abs(s1 - s2) < self.margin:
            return "tie", s1, s2
        return ("first" if s1 > s2 else "second"), s1, s2

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        """Which response covers more; asked as A-B and B-A, a disagreement is a tie."""
        ab, sa, sb = self._prefer(question, response_a, response_b)
        ba, _, _ = self._prefer(question, response_b, response_a)
        first, second = _AS_AB[ab], _AS_BA[ba]
        consistent = first == second
        basis = "reference" if question in self.references else "question"
        return PairwiseResult(
            preference=first if consistent else "tie",
            consistent=consistent,
            reasoning=f"coverage of the {basis}: A {sa:.2f}, B {sb:.2f} (margin {self.margin})",
        )
