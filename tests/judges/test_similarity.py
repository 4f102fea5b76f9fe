"""The local judge: paraphrase and typo tolerance, numbers as facts, determinism, edge cases."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_llmeval.core.cases import Case
from pytest_llmeval.judges.similarity import (
    PROMPT_VERSION,
    SimilarityJudge,
    content_tokens,
    normalize,
    similarity,
)

THRESHOLD = 0.7  # the default llmeval_threshold
REF = "Refunds are accepted within 30 days of delivery."


def test_identical_text_scores_one() -> None:
    assert similarity(REF, REF) == 1.0


def test_normalisation_ignores_case_punctuation_and_width() -> None:
    assert normalize("Hello,  WORLD!!  ＡＢＣ") == "hello world abc"
    assert similarity(REF, "REFUNDS ARE ACCEPTED -- WITHIN 30 DAYS OF DELIVERY!!!") == 1.0
    assert normalize("It costs 4.99 today.") == "it costs 4.99 today"


def test_number_words_become_digits() -> None:
    assert "30" in content_tokens("thirty days")
    assert similarity(REF, "Refunds are accepted within thirty days of delivery.") == 1.0


@pytest.mark.parametrize(
    "paraphrase",
    [
        # word order and inflection
        "Within 30 days of delivering your order, a refund is accepted.",
        # a longer, helpful answer: recall counts more than precision
        "Good news: refunds are accepted within 30 days of delivery. Just open the app, "
        "pick the order and press the refund button; the money arrives in a few days.",
        # stop words and politeness do not matter
        "Hi! So, refunds: they are accepted within 30 days after the delivery. Thanks!",
    ],
)
def test_paraphrases_pass_the_default_threshold(paraphrase: str) -> None:
    assert similarity(REF, paraphrase) >= THRESHOLD


def test_paraphrase_scores_far_above_an_unrelated_answer() -> None:
    unrelated = "Our office is closed on public holidays in the winter months."
    assert similarity(REF, unrelated) == 0.0
    partial = "Refunds are possible, please contact support."
    assert 0.0 < similarity(REF, partial) < THRESHOLD


@pytest.mark.parametrize(
    "typo",
    [
        "Refnuds are accepted within 30 days of delivery.",  # transposition
        "Refunds are acepted within 30 days of delivery.",  # omission
        "Refunds are accepted within 30 days of deliverry.",  # insertion
        "Refunds are accepted within 30 days of delivary.",  # substitution
        "Refunds are acepted within 30 days of delivrey.",  # two words with typos
    ],
)
def test_typos_are_tolerated(typo: str) -> None:
    score = similarity(REF, typo)
    assert score >= THRESHOLD, score


def test_short_words_are_not_fuzzy_matched() -> None:
    # "cat"/"car" are different words, not a typo of each other
    assert similarity("The cat is black.", "The car is black.") < 1.0


def test_a_missing_number_caps_the_score() -> None:
    wrong = "Refunds are accepted within 14 days of delivery."
    assert similarity(REF, wrong) <= 0.4
    assert similarity(REF, wrong) < THRESHOLD
    no_number = "Refunds are accepted within some days of delivery."
    assert similarity(REF, no_number) <= 0.4


def test_one_matching_number_lifts_the_cap() -> None:
    ref = "The plan costs 12 euros a month, or 120 euros a year."
    assert similarity(ref, "The plan costs 12 euros a month.") > 0.4


def test_scores_are_in_the_unit_interval_and_rounded() -> None:
    for response in ("", "x", REF, REF * 20, "30", "days days days"):
        value = similarity(REF, response)
        assert 0.0 <= value <= 1.0
        assert round(value, 6) == value


def test_empty_inputs() -> None:
    assert similarity(REF, "") == 0.0
    assert similarity(REF, "   \n\t ") == 0.0
    assert similarity(REF, "?!.") == 0.0
    assert similarity("", "") == 1.0
    assert similarity("", "Anything at all here") == 0.0
    # a reference of stop words only has no content to recall
    assert similarity("It is.", "It is.") == 1.0


def test_deterministic_in_process() -> None:
    pairs = [(REF, "Refnuds within thirty days of delivrey, no fee."), (REF, REF), (REF, "no")]
    first = [similarity(a, b) for a, b in pairs]
    assert [similarity(a, b) for a, b in pairs] == first


def test_deterministic_across_processes_and_hash_seeds() -> None:
    code = (
        "from pytest_llmeval.judges.similarity import similarity as s;"
        "print(repr(s('Refunds are accepted within 30 days of delivery, no questions asked.',"
        " 'No questions: refnuds accepted for thirty days after delivering the parcel.')))"
    )
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(out.stdout.strip())
    assert len(outputs) == 1, outputs
    assert float(outputs.pop()) > 0.0


def test_the_judge() -> None:
    judge = SimilarityJudge()
    assert judge.identity.name == "local"
    assert judge.identity.prompt_version == PROMPT_VERSION
    assert judge.identity.model is None and judge.identity.source_hash is None
    case = Case(id="r", question="Refund window?", ground_truth=REF)
    good = judge.score(case, "Refunds are accepted within thirty days of delivery.")
    assert good.score == 1.0
    assert "1.00" in good.reasoning
    assert good.passed is None  # the threshold decides
    bad = judge.score(case, "Our office is closed on public holidays.")
    assert bad.score == 0.0


def test_the_judge_without_ground_truth_defers_to_checks() -> None:
    case = Case(id="r", question="Write a haiku.")
    result = SimilarityJudge().score(case, "anything")
    assert result.score == 1.0
    assert "checks alone" in result.reasoning
