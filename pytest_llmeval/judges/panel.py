"""A panel of judges: several judges score each response and an aggregation decides.

Configured as ``llmeval_judge = panel:AGGREGATION:MEMBER,MEMBER,...`` where each member is any
judge spec except another panel (``local``, ``anthropic``, ``module:attr``), e.g.
``panel:majority:local,anthropic,my_judges:strict``. Aggregations:

* ``majority``: passes when more than half of the members pass; the score is the k-th highest
  member score (k = the majority size), so the score is at or above the threshold exactly
  when a majority scored at or above it;
* ``all``: passes only when every member passes; the score is the lowest member score;
* ``mean``: the mean member score, and the threshold decides (members' own pass/fail ignored).

A member *passes* as it would alone: its score is at or above the case's threshold (or the
panel's) and it did not itself say "fail". Every member's result is kept in the combined
result's ``members`` (with ``judge`` naming it and ``passed`` its decision), and
:func:`inter_judge_agreement` measures how far the members agree over a run (inspect_ai's
grader panels with a majority reducer are the model). A member that cannot answer makes the
panel fail with :class:`~pytest_llmeval.errors.JudgeError`: a missing opinion is never
replaced by a number.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pytest_llmeval.core.agreement import Agreement, fleiss_kappa, pairwise_kappas
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Usage

if TYPE_CHECKING:
    from pytest_llmeval.core.cases import Case
    from pytest_llmeval.judges.base import Judge

Aggregation = Literal["majority", "all", "mean"]
AGGREGATIONS: tuple[Aggregation, ...] = ("majority", "all", "mean")
PANEL_VERSION = "panel-1"


def _identity(aggregation: str, members: Sequence[Judge]) -> JudgeIdentity:
    labels = [m.identity.label() for m in members]
    hashes = [m.identity.source_hash for m in members]
    source_hash = None
    if any(hashes):
        joined = "|".join(h or "" for h in hashes)
        source_hash = hashlib.sha256(joined.encode("utf-8")).hexdigest()[:16]
    return JudgeIdentity(
        name=f"panel:{aggregation}",
        prompt_version=PANEL_VERSION,
        version=" + ".join(labels),
        source_hash=source_hash,
    )


@dataclass
class JudgePanel:
    """Several judges and an aggregation; see the module doc.

    Example::

        panel = JudgePanel((SimilarityJudge(), my_judge), "all")
        panel.score(case, "Refunds are accepted within 30 days.").members  # one per judge
    """

    members: tuple[Judge, ...]
    aggregation: Aggregation = "majority"
    threshold: float = 0.7
    """The pass threshold of a member for a case without its own ``threshold``."""
    identity: JudgeIdentity = field(init=False)

    def __post_init__(self) -> None:
        self.members = tuple(self.members)
        if len(self.members) < 2:
            raise ValueError("a judge panel needs at least two judges")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(
                f"panel aggregation {self.aggregation!r}: expected one of {', '.join(AGGREGATIONS)}"
            )
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"panel threshold must be in [0, 1], got {self.threshold}")
        self.identity = _identity(self.aggregation, self.members)

    @property
    def network(self) -> bool:
        """True when any member calls the network (the plugin then judges ahead)."""
        return any(bool(getattr(m, "network", False)) for m in self.members)

    @property
    def checks_only_without_ground_truth(self) -> bool:
        """Checks alone decide a case without a reference only if every member says so."""
        return all(
            bool(getattr(m, "checks_only_without_ground_truth", False)) for m in self.members
        )

    def estimate_cost(self, usage: Usage, *, batch: bool = False) -> float | None:
        """The cost of the combined usage when at most one member is priced (the others are
        free, like the local judge); None (unknown) when it cannot be split between members."""
        priced = []
        for member in self.members:
            estimate = getattr(member, "estimate_cost", None)
            if estimate is None:
                return None
            if estimate(Usage(input_tokens=1_000_000, output_tokens=1_000_000, requests=1)):
                priced.append(estimate)
        if not priced:
            return 0.0
        if len(priced) > 1:
            return None
        value = priced[0](usage, batch=batch)
        return float(value) if value is not None else None

    def _combine(self, case: Case, results: Sequence[JudgeResult]) -> JudgeResult:
        threshold = case.threshold if case.threshold is not None else self.threshold
        members = tuple(
            JudgeResult(
                score=r.score,
                reasoning=r.reasoning,
                failure_modes=r.failure_modes,
                passed=float(r.score) >= threshold and r.passed is not False,
                usage=r.usage,
                judge=m.identity.label(),
                members=r.members,
            )
            for m, r in zip(self.members, results, strict=True)
        )
        scores = sorted((float(r.score) for r in members), reverse=True)
        votes = sum(1 for r in members if r.passed)
        passed: bool | None
        if self.aggregation == "majority":
            needed = len(members) // 2 + 1
            score, passed = scores[needed - 1], votes >= needed
        elif self.aggregation == "all":
            score, passed = scores[-1], votes == len(members)
        else:
            score, passed = sum(scores) / len(scores), None
        usage = Usage()
        for r in members:
            usage = usage + r.usage
        modes = tuple(dict.fromkeys(m for r in members for m in r.failure_modes))
        if 0 < votes < len(members):
            modes += ("panel_split",)
        detail = "; ".join(
            f"{r.judge}: {float(r.score):.2f} {'pass' if r.passed else 'fail'}" for r in members
        )
        return JudgeResult(
            score=round(min(1.0, max(0.0, score)), 6),
            reasoning=f"panel ({self.aggregation}): {votes} of {len(members)} pass — {detail}",
            failure_modes=modes,
            passed=passed,
            usage=usage,
            members=members,
        )

    def score(self, case: Case, response: str) -> JudgeResult:
        """Ask every member in turn (members with only ``ascore`` are run to completion)."""
        results = []
        for member in self.members:
            ascore = getattr(member, "ascore", None)
            if not hasattr(member, "score") and ascore is not None:
                results.append(asyncio.run(ascore(case, response)))
            else:
                results.append(member.score(case, response))
        return self._combine(case, results)

    async def ascore(self, case: Case, response: str) -> JudgeResult:
        """Ask every member concurrently (sync members in a worker thread)."""

        async def one(member: Judge) -> JudgeResult:
            ascore = getattr(member, "ascore", None)
            if ascore is not None:
                result: JudgeResult = await ascore(case, response)
                return result
            return await asyncio.to_thread(member.score, case, response)

        results = await asyncio.gather(*(one(m) for m in self.members))
        return self._combine(case, results)


@dataclass(frozen=True)
class PanelAgreement:
    """How far a panel's members agreed with each other over ``n`` responses."""

    n: int
    judges: tuple[str, ...]
    fleiss_kappa: float | None
    """Fleiss' kappa of the members' pass/fail (None when undefined: no response, or every
    member always gave the same decision)."""
    pairwise: Mapping[tuple[str, str], Agreement]
    unanimous: int
    """Responses on which every member gave the same decision."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "judges": list(self.judges),
            "fleiss_kappa": self.fleiss_kappa,
            "unanimous": self.unanimous,
            "pairwise": [
                {"judges": [a, b], **agreement.to_dict()}
                for (a, b), agreement in self.pairwise.items()
            ],
        }


def inter_judge_agreement(results: Iterable[JudgeResult]) -> PanelAgreement:
    """Agreement between the members of panel results (results without members are skipped;
    all panel results must come from the same members, in the same order)."""
    rows: list[list[bool]] = []
    judges: tuple[str, ...] = ()
    for result in results:
        if not result.members:
            continue
        names = tuple(m.judge or f"judge {i + 1}" for i, m in enumerate(result.members))
        if not judges:
            judges = names
        elif names != judges:
            raise ValueError(f"panel results from different judges: {names} vs {judges}")
        rows.append([bool(m.passed) for m in result.members])
    columns = {name: [row[i] for row in rows] for i, name in enumerate(judges)}
    return PanelAgreement(
        n=len(rows),
        judges=judges,
        fleiss_kappa=fleiss_kappa(rows) if rows else None,
        pairwise=pairwise_kappas(columns) if rows else {},
        unanimous=sum(1 for row in rows if len(set(row)) == 1),
    )


def parse_panel_spec(spec: str) -> tuple[Aggregation, list[str]]:
    """Split ``panel:AGGREGATION:MEMBER,MEMBER,...`` into the aggregation and member specs.

    Raises ValueError with the expected syntax on any mistake.
    """
    syntax = (
        "expected panel:majority|all|mean:JUDGE,JUDGE[,...] (e.g. panel:majority:local,anthropic)"
    )
    head, _, rest = spec.partition(":")
    aggregation, sep, members = rest.partition(":")
    if head.strip() != "panel" or not sep:
        raise ValueError(f"llmeval_judge {spec!r}: {syntax}")
    aggregation = aggregation.strip()
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"llmeval_judge {spec!r}: unknown aggregation {aggregation!r}; {syntax}")
    names = [m.strip() for m in members.split(",")]
    if len(names) < 2 or not all(names):
        raise ValueError(f"llmeval_judge {spec!r}: a panel needs two or more judges; {syntax}")
    if any(n.startswith("panel:") or n == "panel" for n in names):
        raise ValueError(f"llmeval_judge {spec!r}: a panel cannot contain another panel")
    return aggregation, names
