"""The local pairwise judge: reference coverage decides, and it abstains without a reference."""

from __future__ import annotations

import pytest

from pytest_llmeval.judges.base import PairwiseJudge
from pytest_llmeval.judges.pairwise_local import (
    ABSTAIN_REASON,
    PROMPT_VERSION,
    LocalPairwiseJudge,
)

Q = "Refund window?"


def test_reference_coverage_decides_in_both_orders() -> None:
    judge = LocalPairwiseJudge(references={Q: "You have 30 days to ask for a refund"})
    assert isinstance(judge, PairwiseJudge)
    good = judge.compare(Q, "You can ask for a refund within 30 days.", "No idea.")
    assert (good.preference, good.consistent) == ("a", True)
    assert "A 1.00" in good.reasoning
    assert (
        judge.compare(Q, "No idea.", "You can ask for a refund within 30 days.").preference == "b"
    )
    assert judge.compare(Q, "30 days for refunds", "30 days for refunds").preference == "tie"
    # a wrong number is not "close": numbers are facts
    wrong = judge.compare(Q, "Refunds within 14 days.", "Refunds within 30 days.")
    assert wrong.preference == "b"


def test_several_references_take_the_best() -> None:
    judge = LocalPairwiseJudge(references={"Who?": ["Steven Spielberg", "Spielberg"]})
    assert judge.compare("Who?", "George Lucas", "It was Spielberg.").preference == "b"
    assert judge.score("Who?", "Spielberg") == 1.0


def test_without_a_reference_it_abstains_with_the_reason() -> None:
    judge = LocalPairwiseJudge()
    q = "How do I reset my password?"
    result = judge.compare(q, "Reset it in Settings, then log in again.", "Hello there, friend.")
    assert (result.preference, result.consistent) == ("tie", True)
    assert result.reasoning == ABSTAIN_REASON
    assert judge.score(q, "anything") is None


def test_an_empty_answer_loses_with_or_without_a_reference() -> None:
    plain = LocalPairwiseJudge()
    result = plain.compare("q?", "   ", "Open Settings and reset the password.")
    assert result.preference == "b" and "empty" in result.reasoning
    assert plain.compare("q?", "", "").preference == "tie"
    assert plain.score("q?", "  ") == 0.0
    with_ref = LocalPairwiseJudge(references={"q?": "Open Settings"})
    assert with_ref.compare("q?", "Open Settings.", "").preference == "a"


def test_identity_and_validation() -> None:
    judge = LocalPairwiseJudge()
    assert judge.identity.name == "local-pairwise"
    assert judge.identity.prompt_version == PROMPT_VERSION == "pairwise-local-2"
    assert not judge.network
    with pytest.raises(ValueError):
        LocalPairwiseJudge(margin=1.5)
