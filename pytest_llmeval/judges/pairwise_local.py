"""A deterministic pairwise judge for offline use (no network, no model) that abstains when it
cannot know.

With a reference answer for the question (``references``, e.g. the cases' ``ground_truth``,
one string or several acceptable ones) each response gets the local judge's coverage of the
best reference (:func:`pytest_llmeval.judges.similarity.best_match`: numbers and negations
count as facts), and the response with the higher coverage wins when the two differ by at least
``margin``; otherwise it is a tie.

Without a reference it **abstains** (a tie, with the reason in ``reasoning``), except that an
empty answer loses to a non-empty one. Measured on human preference data (LLMBar Natural and
Adversarial, MT-Bench human judgments), the lexical signals available without a reference —
overlap with the question, length — are at or below chance or point in opposite directions on
different sets ("longer wins" is right 0.66 of the time on MT-Bench and 0.18 on Adversarial):
a preference built on them would be noise presented as a judgment. Use the Claude pairwise judge
for reference-free comparisons.

Like a real pairwise judge it is asked in both orders (A-B and B-A) and a disagreement is a tie
with ``consistent=False``. The score of a response does not depend on its position, so this
judge is position-consistent by construction; the two-order protocol is kept so that it is a
drop-in stand-in for :class:`~pytest_llmeval.judges.anthropic.AnthropicPairwiseJudge`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from pytest_llmeval.core.verdict import JudgeIdentity, PairwiseResult, Preference

PROMPT_VERSION = "pairwise-local-2"
_AS_AB: dict[str, Preference] = {"first": "a", "second": "b", "tie": "tie"}
_AS_BA: dict[str, Preference] = {"first": "b", "second": "a", "tie": "tie"}
ABSTAIN_REASON = (
    "no reference answer for this question: a lexical judge cannot tell which answer is"
    " better, so it abstains (tie)"
)


@dataclass
class LocalPairwiseJudge:
    """Offline pairwise judge: compares coverage of the reference, abstains without one.

    Example::

        judge = LocalPairwiseJudge(references={"How long is the refund window?": "30 days"})
        judge.compare("How long is the refund window?", "30 days.", "Ask support.").preference
        # -> "a"
    """

    references: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    margin: float = 0.05
    identity: JudgeIdentity = field(
        default_factory=lambda: JudgeIdentity(name="local-pairwise", prompt_version=PROMPT_VERSION)
    )
    network = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}")

    def _references(self, question: str) -> tuple[str, ...]:
        found = self.references.get(question)
        if found is None:
            return ()
        return (found,) if isinstance(found, str) else tuple(found)

    def score(self, question: str, response: str) -> float | None:
        """Coverage of the question's best reference in [0, 1]; 0.0 for an empty answer;
        None when there is no reference (the judge then abstains)."""
        if not response.strip():
            return 0.0
        references = self._references(question)
        if not references:
            return None
        from pytest_llmeval.judges.similarity import best_match

        return best_match(references, response).coverage

    def _prefer(self, question: str, first: str, second: str) -> tuple[str, str]:
        s1, s2 = self.score(question, first), self.score(question, second)
        if s1 is None or s2 is None:  # no reference: only an empty answer is known to lose
            e1, e2 = not first.strip(), not second.strip()
            if e1 != e2:
                return ("second" if e1 else "first"), "an empty answer loses"
            return "tie", ABSTAIN_REASON
        # in the A-B call "first" is A (only that call's reason is reported)
        detail = f"coverage of the reference: A {s1:.2f}, B {s2:.2f} (margin {self.margin})"
        if abs(s1 - s2) < self.margin:
            return "tie", detail
        return ("first" if s1 > s2 else "second"), detail

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        """Which response covers more of the reference; asked as A-B and B-A, a disagreement
        is a tie."""
        ab, reason = self._prefer(question, response_a, response_b)
        ba, _ = self._prefer(question, response_b, response_a)
        first, second = _AS_AB[ab], _AS_BA[ba]
        consistent = first == second
        return PairwiseResult(
            preference=first if consistent else "tie",
            consistent=consistent,
            reasoning=reason,
        )
