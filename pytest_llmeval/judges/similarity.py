"""The local judge: deterministic, reference-based text similarity. No network, no model.

Method (see README, "The local judge"): both texts are normalised (Unicode NFKC, case-folded,
punctuation removed, number words mapped to digits), reduced to content words (stop words removed)
and lightly stemmed. The score is a recall-weighted F-measure (F2, as in ROUGE-1 recall-oriented
scoring, Lin 2004) of the reference's content words found in the response, where a token matches
exactly or, for words of 5+ letters, when they differ by one typo (one substitution, insertion,
deletion or adjacent swap, same first letter: "refnud"/"refund") or their character-trigram Dice
coefficient is at least 0.75. Recall is weighted because a correct answer may
say more than the short reference. Numbers are facts: if the reference contains numbers and the
response mentions none of them, the score is capped at 0.4 ("30 days" is not "14 days").

Why not embeddings: they need a model download (not allowed offline, not deterministic across
versions). Why not plain edit distance: it punishes paraphrase and word order.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Usage

if TYPE_CHECKING:
    from pytest_llmeval.core.cases import Case

PROMPT_VERSION = "sim-1"

_STOP = frozenset(
    """a an the and or but if then else of to in on at by for with from as is are was were be been
    being it its this that these those there here i you he she we they me him her us them my your
    our their do does did doing have has had having can could will would shall should may might
    must not no yes so very just also than too into onto about over under up down out off again
    what which who whom whose when where why how all any both each few more most other some such
    only own same s t don please thanks thank hi hello""".split()
)
_NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100",
}  # fmt: skip
_NON_WORD = re.compile(r"[^\w.]+|(?<!\d)\.|\.(?!\d)")
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "edly", "ed", "es", "ly", "s")


def normalize(text: str) -> str:
    """Canonical form of a text for comparison: NFKC, case-folded, no punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NON_WORD.sub(" ", text).split())


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    if word.isdigit() or len(word) <= 4:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)]
            return stem[:-1] if suffix in ("ies", "ied") else stem
    return word


def content_tokens(text: str) -> list[str]:
    """Stemmed content words of ``text`` (number words become digits)."""
    out = []
    for word in normalize(text).split():
        word = _NUMBER_WORDS.get(word, word)
        if word in _STOP:
            continue
        out.append(_stem(word.replace(",", "")))
    return out


@lru_cache(maxsize=65536)
def _trigrams(word: str) -> frozenset[str]:
    padded = f"#{word}#"
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def _one_edit(a: str, b: str) -> bool:
    """True if ``b`` is ``a`` with one typo: a substitution, insertion, deletion or a swap of
    two adjacent letters (Damerau-Levenshtein distance 1). O(len), no DP table."""
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1:
        return False
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) < len(b):  # one insertion
        return a[i:] == b[i + 1 :]
    if a[i + 1 :] == b[i + 1 :]:  # one substitution
        return True
    swapped = i + 1 < len(a) and a[i] == b[i + 1] and a[i + 1] == b[i]
    return swapped and a[i + 2 :] == b[i + 2 :]


def _fuzzy_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if len(a) < 5 or len(b) < 5 or a.isdigit() or b.isdigit():
        return False
    # trigram Dice alone misses most typos in ordinary-length words (one substitution in an
    # 8-letter word leaves a Dice of 0.625), so a single edit with the same first letter counts
    if a[0] == b[0] and _one_edit(a, b):
        return True
    ta, tb = _trigrams(a), _trigrams(b)
    return 2 * len(ta & tb) / (len(ta) + len(tb)) >= 0.75


def _matched(needles: Iterable[str], haystack: set[str]) -> int:
    count = 0
    for token in needles:
        if token in haystack or any(_fuzzy_equal(token, other) for other in haystack):
            count += 1
    return count


def similarity(reference: str, response: str) -> float:
    """Recall-weighted (F2) fuzzy content-word overlap of ``response`` with ``reference``.

    Returns a value in [0, 1]; 1.0 for identical content. Deterministic.
    """
    ref = set(content_tokens(reference))
    got = set(content_tokens(response))
    if not ref:
        return 1.0 if not got else 0.0
    if not got:
        return 0.0
    recall = _matched(ref, got) / len(ref)
    precision = _matched(got, ref) / len(got)
    if recall == 0.0 or precision == 0.0:
        return 0.0
    beta2 = 4.0  # F2: recall counts four times as much as precision
    score = (1 + beta2) * precision * recall / (beta2 * precision + recall)
    ref_numbers = {t for t in ref if t.isdigit()}
    if ref_numbers and not ref_numbers & {t for t in got if t.isdigit()}:
        score = min(score, 0.4)
    return round(min(1.0, score), 6)


@dataclass
class SimilarityJudge:
    """The built-in ``local`` judge: reference-based similarity against ``ground_truth``.

    A case without ``ground_truth`` is judged by its checks alone (the plugin handles that: this
    judge then returns score 1.0 with reasoning saying so, and the verdict is marked checks_only).
    """

    identity: JudgeIdentity = field(
        default_factory=lambda: JudgeIdentity(name="local", prompt_version=PROMPT_VERSION)
    )
    network: bool = False  # fast and offline: the plugin judges inline, no run-ahead needed
    checks_only_without_ground_truth: bool = True

    def estimate_cost(self, usage: Usage, *, batch: bool = False) -> float:
        """No API is called: judging is free."""
        return 0.0

    def score(self, case: Case, response: str) -> JudgeResult:
        if case.ground_truth is None:
            return JudgeResult(score=1.0, reasoning="no ground_truth: judged by checks alone")
        value = similarity(case.ground_truth, response)
        return JudgeResult(
            score=value,
            reasoning=f"content-word similarity to the expected answer: {value:.2f}",
        )
