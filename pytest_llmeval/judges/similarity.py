"""The local judge: deterministic, reference-based answer matching. No network, no model.

Method (README, "How good is the local judge?"). Texts are normalised (Unicode NFKC, accents
folded, case-folded, punctuation removed, letters split from digits, ``n't`` read as ``not``,
number words mapped to digits), reduced to content words (stop words removed) and lightly
stemmed. A reference's content words *found in the response* give its **coverage** (recall):
a correct answer is not punished for saying more, and a short answer that names the expected
entity ("Spielberg" for "Steven Spielberg") covers half of it. A word matches exactly or, for
words of 5+ letters, when they differ by one typo (same first letter) or their character-trigram
Dice coefficient is at least 0.75.

Facts the coverage alone would miss cap it at :data:`FACT_CAP`:

* numbers: every number of the reference must appear in the response ("30 days" is not
  "14 days", "July 4, 1776" is not "July 2, 1776");
* negation: a negated reference needs a negation in the response, and a response that negates
  a word of a non-negated reference ("refunds are *not* accepted") contradicts it.

With several acceptable references (``ground_truth`` as a list) the best-covered one counts.
The score is the coverage rescaled so that covering half of a reference (:data:`PASS_COVERAGE`,
chosen on the development half of public human-labelled data) lands exactly on the default
threshold 0.7: ``0.7 * c / 0.5`` below, ``0.7 + 0.3 * (c - 0.5) / 0.5`` above.

What it cannot judge: anything that is not word overlap with a reference — a wrong answer that
repeats the reference's words in another sense, a correct paraphrase with other words
("impossible" for "unattainable"), reasoning, tone, safety. Why not embeddings: they need a
model download (not allowed offline, not deterministic across versions).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Usage

if TYPE_CHECKING:
    from pytest_llmeval.core.cases import Case

PROMPT_VERSION = "sim-2"
PASS_COVERAGE = 0.5
"""Coverage of a reference at which an answer passes the default threshold (dev-half choice)."""
DEFAULT_THRESHOLD = 0.7
FACT_CAP = 0.3
"""Coverage cap for a missing number or a contradicted negation (scores 0.42: a failure)."""

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
_NEGATIONS = frozenset(
    "not no never none nothing neither nor cannot without nobody nowhere".split()
)
# a response word that negates what follows it (no "no": "No, refunds are ..." opens a sentence)
_NEGATORS = frozenset("not never cannot neither nor".split())
_NEGATION_WINDOW = 3
_NON_WORD = re.compile(r"[^\w.]+|(?<!\d)\.|\.(?!\d)")
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_NOT = re.compile(r"n[’']t\b")
_NUMBER = re.compile(r"\d[\d.]*")
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


@lru_cache(maxsize=262144)
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


def _found(token: str, haystack: frozenset[str]) -> bool:
    return token in haystack or any(_fuzzy_equal(token, other) for other in haystack)


def _matched(needles: Iterable[str], haystack: set[str] | frozenset[str]) -> int:
    hay = frozenset(haystack)
    return sum(1 for token in needles if _found(token, hay))


def similarity(reference: str, response: str) -> float:
    """Recall-weighted (F2) fuzzy content-word overlap of ``response`` with ``reference``.

    A symmetric-ish text similarity in [0, 1] (1.0 for identical content), used to find near
    duplicates; the judge scores with :func:`match` instead. Deterministic.
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


@dataclass(frozen=True)
class _Text:
    """A text prepared once for matching: its words (with stop words) and content tokens."""

    words: tuple[str, ...]
    tokens: frozenset[str]
    numbers: frozenset[str]
    negated: bool
    literal: bool
    """True when ``tokens`` are plain words: the text has no content word ("No", "Yes")."""


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _LETTER_DIGIT.sub(" ", _NOT.sub(" not", text))


@lru_cache(maxsize=65536)
def _prepare(text: str) -> _Text:
    folded = _fold(text)
    words = tuple(_NUMBER_WORDS.get(w, w) for w in normalize(folded).split())
    tokens = frozenset(content_tokens(folded))
    literal = not tokens
    if literal:  # a reference made of stop words only ("No", "Yes"): match its words
        tokens = frozenset(words)
    numbers = frozenset(t for t in tokens if _NUMBER.fullmatch(t))
    return _Text(words, tokens, numbers, any(w in _NEGATIONS for w in words), literal)


@dataclass(frozen=True)
class Match:
    """How well a response matches one reference (see the module doc)."""

    reference: str
    coverage: float
    """Share of the reference's content words found in the response, after fact caps."""
    missing_numbers: tuple[str, ...] = ()
    negation: str | None = None
    """Why the negation rule capped the coverage, or None."""

    @property
    def score(self) -> float:
        """The coverage on the judge's scale: :data:`PASS_COVERAGE` maps to 0.7."""
        return coverage_to_score(self.coverage)


def coverage_to_score(coverage: float) -> float:
    """Rescale a coverage so that :data:`PASS_COVERAGE` lands on :data:`DEFAULT_THRESHOLD`."""
    if coverage <= PASS_COVERAGE:
        value = DEFAULT_THRESHOLD * coverage / PASS_COVERAGE
    else:
        value = DEFAULT_THRESHOLD + (1 - DEFAULT_THRESHOLD) * (coverage - PASS_COVERAGE) / (
            1 - PASS_COVERAGE
        )
    return round(min(1.0, max(0.0, value)), 6)


def _negates_reference(response: _Text, reference: _Text) -> bool:
    words = response.words
    for i, word in enumerate(words):
        if word in _NEGATORS:
            following = (_stem(w) for w in words[i + 1 : i + 1 + _NEGATION_WINDOW])
            if any(w in reference.tokens for w in following):
                return True
    return False


def match(reference: str, response: str) -> Match:
    """Coverage of ``reference`` by ``response`` with the number and negation rules."""
    ref, got = _prepare(reference), _prepare(response)
    if not ref.tokens:  # an empty reference: only an empty answer matches it
        return Match(reference, 1.0 if not got.words else 0.0)
    if not got.words:
        return Match(reference, 0.0)
    haystack = got.tokens | frozenset(got.words) if ref.literal else got.tokens
    coverage = _matched(ref.tokens, haystack) / len(ref.tokens)
    missing = tuple(sorted(ref.numbers - got.tokens))
    negation = None
    if ref.negated and not got.negated:
        negation = "the expected answer is negated, the response is not"
    elif not ref.negated and _negates_reference(got, ref):
        negation = "the response negates the expected answer"
    if missing or negation:
        coverage = min(coverage, FACT_CAP)
    return Match(reference, round(coverage, 6), missing, negation)


def best_match(references: Sequence[str], response: str) -> Match:
    """The best :func:`match` over several acceptable references (the first wins a tie)."""
    if not references:
        raise ValueError("best_match needs at least one reference")
    best = match(references[0], response)
    for reference in references[1:]:
        if best.coverage >= 1.0:
            break
        candidate = match(reference, response)
        if candidate.coverage > best.coverage:
            best = candidate
    return best


def _explain(found: Match, n_references: int) -> str:
    which = f" (best of {n_references} references: {found.reference!r})" if n_references > 1 else ""
    text = f"covers {found.coverage:.0%} of the expected answer's content words{which}"
    if found.missing_numbers:
        text += f"; missing number(s): {', '.join(found.missing_numbers)}"
    if found.negation:
        text += f"; {found.negation}"
    return text


@dataclass
class SimilarityJudge:
    """The built-in ``local`` judge: coverage of the case's references (``ground_truth``).

    A case without a reference is judged by its checks alone (the plugin handles that: this
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
        references = case.references or (
            (case.ground_truth,) if case.ground_truth is not None else ()
        )
        if not references:
            return JudgeResult(score=1.0, reasoning="no ground_truth: judged by checks alone")
        found = best_match(references, response)
        modes: tuple[str, ...] = ()
        if found.missing_numbers:
            modes += ("missing_number",)
        if found.negation:
            modes += ("contradicts_negation",)
        return JudgeResult(
            score=found.score, reasoning=_explain(found, len(references)), failure_modes=modes
        )
