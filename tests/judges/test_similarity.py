"""The local judge: paraphrase and typo tolerance, numbers and negations as facts, several
references, short answers, determinism, edge cases."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.checks import RuleSettings, finalize
from pytest_llmeval.judges.similarity import (
    FACT_CAP,
    PASS_COVERAGE,
    PROMPT_VERSION,
    SimilarityJudge,
    best_match,
    content_tokens,
    coverage_to_score,
    match,
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
    assert "covers 100%" in good.reasoning
    assert good.passed is None  # the threshold decides
    bad = judge.score(case, "Our office is closed on public holidays.")
    assert bad.score == 0.0


def test_the_judge_without_ground_truth_defers_to_checks() -> None:
    case = Case(id="r", question="Write a haiku.")
    result = SimilarityJudge().score(case, "anything")
    assert result.score == 1.0
    assert "checks alone" in result.reasoning


# -- the judge's decision (issue #12): through the same path as the plugin -----------------------


def verdict(references: str | tuple[str, ...], response: str) -> bool:
    refs = (references,) if isinstance(references, str) else references
    case = Case(id="c", question="q?", references=refs)
    judge = SimilarityJudge()
    return finalize(
        case, response, judge.score(case, response), judge.identity, RuleSettings()
    ).passed


def test_the_version_is_bumped_so_old_verdicts_never_replay() -> None:
    assert PROMPT_VERSION != "sim-1"


@pytest.mark.parametrize(
    ("reference", "answer"),
    [
        ("Steven Spielberg", "Steven Spielberg"),  # the exact match the old rule failed
        ("Steven Spielberg", "Spielberg"),  # half of a name
        ("Steven Spielberg", "The film was directed by Steven Spielberg in 1993."),
        ("Chateau d'If", "Château d'If"),  # accents folded
        ("10", "Season 4 has a total of10 episodes."),  # letters split from digits
        (REF, "Thirty days from delivery."),
        (REF, "You can get a refund within 30 days of delivery; after that, sorry, no."),
    ],
)
def test_correct_answers_pass_at_the_defaults(reference: str, answer: str) -> None:
    assert verdict(reference, answer)


@pytest.mark.parametrize(
    ("reference", "answer"),
    [
        ("Steven Spielberg", "George Lucas"),
        ("July 2, 1776", "The Congress voted on July 4, 1776."),  # every number counts
        ("3.5 acres", "About 3 acres."),
        (REF, "Refunds are accepted within 14 days of delivery."),
        (REF, "Refunds are not accepted."),  # a negated reference word
        (REF, "Refunds aren't accepted, even within 30 days of delivery."),
        ("Refunds are not possible after 30 days.", "Refunds are possible after 30 days."),
        (REF, ""),
        (REF, "Our office is closed on public holidays."),
    ],
)
def test_wrong_answers_fail_at_the_defaults(reference: str, answer: str) -> None:
    assert not verdict(reference, answer)


def test_numbers_and_negations_are_reported() -> None:
    missing = match("July 2, 1776", "July 4, 1776")
    assert missing.missing_numbers == ("2",) and missing.coverage <= FACT_CAP
    negated = match(REF, "Refunds are not accepted within 30 days of delivery.")
    assert negated.negation is not None and negated.coverage <= FACT_CAP
    case = Case(id="c", question="q?", ground_truth="July 2, 1776")
    result = SimilarityJudge().score(case, "July 4, 1776")
    assert "missing_number" in result.failure_modes and "missing number(s): 2" in result.reasoning
    both = match("Refunds are not possible.", "No: refunds are not possible.")
    assert both.negation is None and both.coverage == 1.0


def test_a_yes_no_reference_matches_its_words() -> None:
    assert verdict("No", "No, that is not possible.")
    assert not verdict("Yes", "No, that is not possible.")


def test_several_references_take_the_best() -> None:
    refs = ("Jennifer Aniston", "Jen Aniston", "Rachel Green")
    found = best_match(refs, "It was Rachel Green, of course.")
    assert found.reference == "Rachel Green" and found.coverage == 1.0
    assert verdict(refs, "It was Rachel Green, of course.")
    assert not verdict(refs, "Monica Geller")
    case = Case(id="c", question="q?", references=refs)
    result = SimilarityJudge().score(case, "Rachel Green")
    assert "best of 3 references: 'Rachel Green'" in result.reasoning
    with pytest.raises(ValueError):
        best_match((), "x")


def test_the_score_scale_puts_half_coverage_on_the_default_threshold() -> None:
    assert PASS_COVERAGE == 0.5
    assert coverage_to_score(0.0) == 0.0
    assert coverage_to_score(PASS_COVERAGE) == THRESHOLD
    assert coverage_to_score(1.0) == 1.0
    values = [coverage_to_score(c / 20) for c in range(21)]
    assert values == sorted(values)  # monotone: a user's own threshold keeps its meaning
    assert coverage_to_score(FACT_CAP) < THRESHOLD


def test_the_judge_is_deterministic_across_processes() -> None:
    code = (
        "from pytest_llmeval.judges.similarity import best_match as b;"
        "print(repr(b(('Refunds within 30 days', 'thirty days'),"
        " 'Refnuds are accepted for thirty days, not more.').coverage))"
    )
    outputs = set()
    for seed in ("0", "7"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        outputs.add(out.stdout.strip())
    assert len(outputs) == 1, outputs
