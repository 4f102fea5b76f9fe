"""Text helpers for the support bot: tokens, a light stemmer and typo correction.

Deterministic and dependency-free on purpose: the example must run offline with no model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_APOSTROPHES = re.compile(r"['’`]")
_TOKEN = re.compile(r"[a-z0-9]+")


def words(text: str) -> frozenset[str]:
    """A word set written as one whitespace-separated string (easier to read and edit)."""
    return frozenset(text.split())


STOPWORDS = words(
    """
    a about am an and any anything are as at be been being but by can could did do does doing
    for from get got had has have having hello hey hi how i if im in into is it its ive just let
    me might my myself need no not now of off on once only or our ours please should so some still
    than thank thanks that the their them then there these they this those to too us very
    want was we were what when which who whom why will with would you your yours
    many id ill youre theyre
    """
)

# Every question is about parcels and lockers: these words carry no signal for retrieval.
DOMAIN_WORDS = words("parcel parcels package packages locker lockers box parcelly")

# Ordinary English words that must never be "corrected" into a knowledge-base word
# ("mind" is not a typo for "find", nor "free" for "fee").
COMMON_WORDS = words(
    """
    able above across actually after again against ago agree all almost alone along already
    also although always among another answer anyone anywhere around ask asked away back bad
    because become before began behind believe below best better between beyond big both bring
    brought buy call came cannot car care case cause certain change child children city clear
    close come coming company complete consider course cut dark day days dear different does
    done door down during each early easy either else end enough even ever every everyone
    everything example eye face fact family far fast feel few fine first five food four free
    friend full game gave give given glad goes going gone good great group grow half hand happen
    happened happens happy hard head hear heard help here high hold home hope house huge idea
    important inside instead kind knew know large last late later least leave left less life
    light like line little live long look lot love low made main make making man many matter mean
    meant mind minute miss money month more morning most mother move much must name near
    nearly never new next nice night none nothing number often old once one open order other
    others out over own paid part people person place plan play point possible pretty probably
    problem put question quick quite rather read ready real really reason right room run said
    same saw say second see seem seen send sent set several shall short show side since six
    small someone something sometimes soon sorry start stay still stop such sure take talk tell
    ten thing things think third though thought three through time today together told took
    toward tried true try trying turn two under until upon use used using wait walk want wanted
    watch water way week weekend well went while whole wife wish within without woman word
    work world worse worst wrong year yes yet young
    """
)

# Words users say that the knowledge base spells differently.
SYNONYMS = {
    "package": "parcel",
    "packages": "parcel",
    "parcels": "parcel",
    "box": "locker",
    "boxes": "locker",
    "lockers": "locker",
    "pricing": "price",
    "membership": "subscription",
    "yearly": "annual",
    "annually": "annual",
    "terminate": "cancel",
    "unsubscribe": "cancel",
    "colleague": "users",
    "colleagues": "users",
    "team": "users",
    "employees": "users",
    "refrigerated": "frozen",
    "groceries": "food",
}

# Multi-word phrases folded into one token before matching.
PHRASES = (
    ("pick up", "pickup"),
    ("picked up", "pickup"),
    ("money back", "refund"),
    ("per year", "annual"),
    ("a year", "annual"),
    ("how much", "cost"),
    ("sign up", "subscription"),
)


def normalise(text: str) -> str:
    """Lower-case, drop apostrophes (``won't`` -> ``wont``) and fold known phrases."""
    lowered = _APOSTROPHES.sub("", text.lower())
    for phrase, token in PHRASES:
        lowered = re.sub(rf"\b{phrase}\b", token, lowered)
    return lowered


def tokens(text: str) -> list[str]:
    """Alphanumeric tokens of already normalised text."""
    return _TOKEN.findall(text)


def stem(word: str) -> str:
    """A tiny suffix stripper: enough to match ``returns``/``returning``/``returned``."""
    for suffix, min_len in (("ies", 5), ("ing", 6), ("ed", 5), ("es", 5), ("s", 4)):
        if len(word) >= min_len and word.endswith(suffix):
            if suffix == "ies":
                return word[:-3] + "y"
            if suffix == "es" and not word.endswith(("ses", "xes", "ches", "shes")):
                return word[:-1]
            if suffix == "s" and word.endswith("ss"):
                return word
            return word[: -len(suffix)]
    return word


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (transpositions count 1), capped at ``limit + 1``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev_prev: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev_prev[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev_prev, prev = prev, cur
    return prev[-1]


class TypoCorrector:
    """Maps an unknown word to the closest known one (distance 1, or 2 for long words)."""

    def __init__(self, vocabulary: Iterable[str], known: Iterable[str] = ()) -> None:
        self._targets = sorted(set(vocabulary))
        self._known = set(self._targets) | set(known)

    def correct(self, word: str) -> str:
        if word in self._known or len(word) < 4 or word.isdigit():
            return word
        limit = 1 if len(word) <= 6 else 2
        best = word
        best_distance = limit + 1
        for candidate in self._targets:
            distance = edit_distance(word, candidate, limit)
            # Sorted targets + strict "<" make ties resolve the same way on every run.
            if distance < best_distance:
                best, best_distance = candidate, distance
        return best
