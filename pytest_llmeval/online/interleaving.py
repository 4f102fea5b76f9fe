"""Team-draft interleaving: two rankings in one list, credited by clicks, and its sign test."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.online.values import wilson_ci


def interleave(
    ranking_a: Sequence[Any],
    ranking_b: Sequence[Any],
    seed: int | str,
    *,
    length: int | None = None,
) -> tuple[list[Any], list[str]]:
    """Team-draft interleaving (Radlinski, Kurup & Joachims, CIKM 2008, Algorithm 2).

    The team with fewer picks (a coin toss when equal) adds its highest-ranked item not yet in
    the list; an item both rankings share belongs to whichever team picked it. Stops when
    either ranking has no unused item left (or at ``length``). Returns the interleaved list and
    the team (``"a"``/``"b"``) of each position. Deterministic for a given ``seed``.
    """
    import random

    rng = random.Random(seed)
    out: list[Any] = []
    teams: list[str] = []
    used: set[Any] = set()
    picks = {"a": 0, "b": 0}
    pos = {"a": 0, "b": 0}
    source = {"a": ranking_a, "b": ranking_b}

    def next_unused(team: str) -> bool:
        while pos[team] < len(source[team]) and source[team][pos[team]] in used:
            pos[team] += 1
        return pos[team] < len(source[team])

    limit = len(set(ranking_a) | set(ranking_b)) if length is None else length
    while len(out) < limit and next_unused("a") and next_unused("b"):
        if picks["a"] < picks["b"] or (picks["a"] == picks["b"] and rng.random() < 0.5):
            team = "a"
        else:
            team = "b"
        item = source[team][pos[team]]
        out.append(item)
        teams.append(team)
        used.add(item)
        picks[team] += 1
    return out, teams


def interleaving_credit(teams: Sequence[str], clicked_positions: Iterable[int]) -> str:
    """Which ranking won one impression: ``"a"``, ``"b"`` or ``"tie"`` (equal clicks or none).

    Each click credits the team that contributed the clicked position (Radlinski et al. 2008).
    """
    counts = {"a": 0, "b": 0}
    for position in set(clicked_positions):
        if not 0 <= position < len(teams):
            raise ValueError(
                f"clicked position {position} is outside the list (0..{len(teams) - 1})"
            )
        counts[teams[position]] += 1
    if counts["a"] == counts["b"]:
        return "tie"
    return "a" if counts["a"] > counts["b"] else "b"


@dataclass(frozen=True)
class InterleavingResult:
    """Preference over many impressions: ties are excluded from the sign test."""

    wins_a: int
    wins_b: int
    ties: int
    p_value: float
    preference_b: float | None
    ci: tuple[float, float] | None
    preferred: str
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
            "p_value": self.p_value,
            "preference_b": self.preference_b,
            "ci": None if self.ci is None else list(self.ci),
            "preferred": self.preferred,
            "alpha": self.alpha,
        }


def interleaving_test(outcomes: Iterable[str], *, alpha: float = 0.05) -> InterleavingResult:
    """Sign test over impression outcomes (``"a"``/``"b"``/``"tie"``).

    ``preference_b = wins_b / (wins_a + wins_b)`` with a Wilson interval; ``preferred`` is the
    winning ranking only when the two-sided exact sign test (:func:`stats.sign_test`) gives
    ``p <= alpha``, otherwise ``"none"``.
    """
    from pytest_llmeval.stats import sign_test

    counts = {"a": 0, "b": 0, "tie": 0}
    for outcome in outcomes:
        if outcome not in counts:
            raise ValueError(f"outcome must be 'a', 'b' or 'tie', got {outcome!r}")
        counts[outcome] += 1
    a, b = counts["a"], counts["b"]
    p = float(sign_test(b, a))
    decisive = a + b
    preferred = "none"
    if decisive and p <= alpha:
        preferred = "b" if b > a else "a"
    return InterleavingResult(
        a,
        b,
        counts["tie"],
        p,
        b / decisive if decisive else None,
        wilson_ci(b, decisive) if decisive else None,
        preferred,
        alpha,
    )
