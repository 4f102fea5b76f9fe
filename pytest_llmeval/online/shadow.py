"""Shadow evaluation: a candidate system answers production questions silently, a pairwise
judge compares its answers with production's, and a sign test decides.

Unlike the usual ``ShadowEvaluator`` (one judge call in one order, a raw "more than 55%
preferred" promotion rule), here:

* the judge is a :class:`~pytest_llmeval.judges.base.PairwiseJudge`, which asks in both orders
  and returns a tie when they disagree; the share of consistent answers is reported;
* the shadow preference rate is ``wins / (wins + losses)`` (ties carry no preference) with a
  95% Wilson interval, and the decision is the two-sided exact sign test
  (:func:`pytest_llmeval.stats.sign_test`): ``promote_shadow`` only when the shadow wins more
  often with ``p <= alpha``, ``keep_production`` when it loses more often with ``p <= alpha``,
  otherwise ``inconclusive``;
* both systems run concurrently on a bounded thread pool; a system or judge error is recorded for
  that question and never counted as a preference;
* two bias probes say how far the judge can be trusted: position consistency (the judge asked
  in both orders agrees with itself) and verbosity bias: for up to ``bias_probes`` compared
  questions the answer the judge did *not* prefer (the shadow's on a tie) is padded with
  neutral filler that adds no content (:data:`FILLER`) and judged again; the rate at which the
  preference moves towards the padded answer is reported with its interval (0 for a judge
  that weighs content, not length);
* the shadow answers appear only in the returned report: nothing is written to the event store;
* when the questions come from the event store, production's *stored* answer (the one the user
  saw) is compared by default, so user feedback on it can calibrate the judge: the report says
  how often the judge's preference agrees with the thumbs (thumbs-up and the judge preferring
  production, or thumbs-down and the judge preferring the shadow).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pytest_llmeval.core.cases import Case, Message, content_id
from pytest_llmeval.core.verdict import PairwiseResult
from pytest_llmeval.judges.base import PairwiseJudge
from pytest_llmeval.online.store import EventStore
from pytest_llmeval.online.values import Window, wilson_ci

#: Neutral padding for the verbosity probe: polite, on no topic, no facts.
FILLER = (
    "\n\nI hope this helps. Please let me know if anything is unclear; I am always happy to "
    "go through any part of this again, step by step, in as much detail as you would like."
)
_TOWARDS = {"production": "production", "shadow": "shadow"}

Recommendation = Literal["promote_shadow", "keep_production", "inconclusive"]
Side = Literal["production", "shadow", "tie"]
_SIDES: dict[str, Side] = {"a": "production", "b": "shadow", "tie": "tie"}


@dataclass(frozen=True)
class ShadowItem:
    """One question to answer with both systems.

    ``production_response`` is production's stored answer (when known) and ``feedback`` the
    user's latest thumb on it (``"thumbs_up"``/``"thumbs_down"``); ``reference`` is a known good
    answer (a case's ``ground_truth``), used only by judges that take references.
    """

    question: str
    messages: tuple[Message, ...] | None = None
    case_id: str | None = None
    response_id: str | None = None
    production_response: str | None = None
    feedback: str | None = None
    reference: str | None = None

    def as_case(self) -> Case:
        messages = None if self.messages is None else [[m.role, m.content] for m in self.messages]
        return Case(
            id=self.case_id or content_id(self.question if messages is None else None, messages),
            question=self.question,
            messages=self.messages,
            ground_truth=self.reference,
        )


@dataclass(frozen=True)
class ShadowComparison:
    """Both answers and the judge's verdict for one item (``error`` set when it failed)."""

    item: ShadowItem
    production: str | None
    shadow: str | None
    result: PairwiseResult | None
    error: str | None = None

    @property
    def preference(self) -> Side | None:
        if self.result is None:
            return None
        return _SIDES[self.result.preference]

    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.item.case_id,
            "response_id": self.item.response_id,
            "question": self.item.question,
            "production": self.production,
            "shadow": self.shadow,
            "preference": self.preference,
            "consistent": None if self.result is None else self.result.consistent,
            "reasoning": None if self.result is None else self.result.reasoning,
            "feedback": self.item.feedback,
            "error": self.error,
        }


@dataclass(frozen=True)
class FeedbackAgreement:
    """How often the judge's preference matches users' thumbs on the production answer."""

    n: int
    agree: int
    rate: float | None
    ci: tuple[float, float] | None
    ties_skipped: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "agree": self.agree,
            "rate": self.rate,
            "ci": None if self.ci is None else list(self.ci),
            "ties_skipped": self.ties_skipped,
        }


@dataclass(frozen=True)
class VerbosityProbe:
    """Verbosity bias: of ``probed`` comparisons re-judged with the answer the judge did not
    prefer padded by :data:`FILLER`, ``moved`` flipped (or tied) towards the padded answer."""

    probed: int
    moved: int
    rate: float | None
    ci: tuple[float, float] | None
    errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "probed": self.probed,
            "moved": self.moved,
            "rate": self.rate,
            "ci": None if self.ci is None else list(self.ci),
            "errors": self.errors,
            "filler": FILLER,
        }


def _moved(before: Side, after: Side, padded: Side) -> bool:
    """Did padding ``padded`` move the preference towards it?"""
    if before == padded:
        return False  # never happens: the probe pads the side that was not preferred
    if before == "tie":
        return after == padded
    return after != before


def probe_verbosity(
    judge: PairwiseJudge, comparisons: Sequence[ShadowComparison], limit: int
) -> VerbosityProbe | None:
    """Re-judge up to ``limit`` comparisons with the non-preferred answer padded."""
    done = [c for c in comparisons if c.result is not None and c.production and c.shadow]
    if limit <= 0 or not done:
        return None
    probed = moved = errors = 0
    for c in done[:limit]:
        before = c.preference
        assert before is not None and c.production is not None and c.shadow is not None
        padded: Side = "production" if before == "shadow" else "shadow"
        a, b = c.production, c.shadow
        if padded == "production":
            a += FILLER
        else:
            b += FILLER
        try:
            result = judge.compare(c.item.question, a, b)
        except Exception:  # a probe that fails is counted, never turned into a preference
            errors += 1
            continue
        probed += 1
        moved += _moved(before, _SIDES[result.preference], padded)
    return VerbosityProbe(
        probed,
        moved,
        moved / probed if probed else None,
        wilson_ci(moved, probed) if probed else None,
        errors,
    )


@dataclass(frozen=True)
class ShadowReport:
    """The aggregate of a shadow run (the usual ``aggregate_results``, made sound)."""

    n: int
    compared: int
    errors: int
    shadow_wins: int
    production_wins: int
    ties: int
    shadow_preference_rate: float | None
    shadow_preference_ci: tuple[float, float] | None
    sign_test_p: float
    position_consistency_rate: float | None
    alpha: float
    recommendation: Recommendation
    feedback_agreement: FeedbackAgreement | None
    judge: Mapping[str, Any]
    comparisons: tuple[ShadowComparison, ...] = field(repr=False, default=())
    verbosity_bias: VerbosityProbe | None = None

    def to_dict(self, *, include_comparisons: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n": self.n,
            "compared": self.compared,
            "errors": self.errors,
            "shadow_wins": self.shadow_wins,
            "production_wins": self.production_wins,
            "ties": self.ties,
            "shadow_preference_rate": self.shadow_preference_rate,
            "shadow_preference_ci": (
                None if self.shadow_preference_ci is None else list(self.shadow_preference_ci)
            ),
            "sign_test_p": self.sign_test_p,
            "position_consistency_rate": self.position_consistency_rate,
            "verbosity_bias": (
                None if self.verbosity_bias is None else self.verbosity_bias.to_dict()
            ),
            "alpha": self.alpha,
            "recommendation": self.recommendation,
            "feedback_agreement": (
                None if self.feedback_agreement is None else self.feedback_agreement.to_dict()
            ),
            "judge": dict(self.judge),
        }
        if include_comparisons:
            out["comparisons"] = [c.to_dict() for c in self.comparisons]
        return out


def aggregate(
    comparisons: Sequence[ShadowComparison],
    *,
    alpha: float = 0.05,
    judge: Mapping[str, Any] | None = None,
    feedback_valid: bool = True,
    verbosity_bias: VerbosityProbe | None = None,
) -> ShadowReport:
    """Wins, losses, ties, the sign test and the recommendation over ``comparisons``.

    ``feedback_valid`` is False when production answers were regenerated, so users' thumbs
    (given to the stored answer) say nothing about the compared text.
    """
    from pytest_llmeval.stats import sign_test

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    done = [c for c in comparisons if c.result is not None]
    wins = sum(1 for c in done if c.preference == "shadow")
    losses = sum(1 for c in done if c.preference == "production")
    ties = len(done) - wins - losses
    decisive = wins + losses
    p = float(sign_test(wins, losses))
    recommendation: Recommendation = "inconclusive"
    if decisive and p <= alpha and wins != losses:
        recommendation = "promote_shadow" if wins > losses else "keep_production"
    agreement: FeedbackAgreement | None = None
    rated = [c for c in done if c.item.feedback in ("thumbs_up", "thumbs_down")]
    if feedback_valid and rated:
        decided = [c for c in rated if c.preference != "tie"]
        agree = sum(
            1 for c in decided if (c.item.feedback == "thumbs_up") == (c.preference == "production")
        )
        agreement = FeedbackAgreement(
            n=len(decided),
            agree=agree,
            rate=agree / len(decided) if decided else None,
            ci=wilson_ci(agree, len(decided)) if decided else None,
            ties_skipped=len(rated) - len(decided),
        )
    consistent = [c.result.consistent for c in done if c.result is not None]
    return ShadowReport(
        n=len(comparisons),
        compared=len(done),
        errors=len(comparisons) - len(done),
        shadow_wins=wins,
        production_wins=losses,
        ties=ties,
        shadow_preference_rate=wins / decisive if decisive else None,
        shadow_preference_ci=wilson_ci(wins, decisive) if decisive else None,
        sign_test_p=p,
        position_consistency_rate=sum(consistent) / len(consistent) if consistent else None,
        alpha=alpha,
        recommendation=recommendation,
        feedback_agreement=agreement,
        judge=dict(judge or {}),
        comparisons=tuple(comparisons),
        verbosity_bias=verbosity_bias,
    )


def _call_system(system: Callable[..., Any], item: ShadowItem, call_with: str) -> str:
    arg: Any = item.as_case() if call_with == "case" else item.question
    value = system(arg)
    if inspect.isawaitable(value):
        value = asyncio.run(_await(value))
    if not isinstance(value, str):
        raise TypeError(f"returned {type(value).__name__}, expected str")
    return value


async def _await(value: Any) -> Any:
    return await value


class ShadowEvaluator:
    """Runs a production and a shadow system on the same questions and compares them.

    ``production_sut``/``shadow_sut`` are callables (sync or async) taking a
    :class:`~pytest_llmeval.core.cases.Case` (or the question text with ``call_with="question"``,
    as usual) and returning the answer text. ``judge`` is a
    :class:`~pytest_llmeval.judges.base.PairwiseJudge`; it sees production as response A.

    Example::

        evaluator = ShadowEvaluator(prod, candidate, LocalPairwiseJudge())
        report = evaluator.run(items_from_cases("evals/llmeval_core.jsonl"))
        report.recommendation  # "promote_shadow" only on a significant preference
    """

    def __init__(
        self,
        production_sut: Callable[..., Any] | None,
        shadow_sut: Callable[..., Any],
        judge: PairwiseJudge,
        *,
        concurrency: int = 4,
        alpha: float = 0.05,
        call_with: Literal["case", "question"] = "case",
        rerun_production: bool = False,
        bias_probes: int = 20,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if call_with not in ("case", "question"):
            raise ValueError(f"call_with must be 'case' or 'question', got {call_with!r}")
        self.production = production_sut
        self.shadow = shadow_sut
        self.judge = judge
        self.concurrency = concurrency
        self.alpha = alpha
        self.call_with = call_with
        self.rerun_production = rerun_production
        self.bias_probes = bias_probes
        self._comparisons: list[ShadowComparison] = []

    def _compare(self, item: ShadowItem) -> ShadowComparison:
        production = None if self.rerun_production else item.production_response
        shadow: str | None = None
        try:
            if production is None:
                if self.production is None:
                    raise ValueError("no stored production answer and no production system")
                try:
                    production = _call_system(self.production, item, self.call_with)
                except Exception as exc:
                    raise RuntimeError(f"production system: {type(exc).__name__}: {exc}") from exc
            try:
                shadow = _call_system(self.shadow, item, self.call_with)
            except Exception as exc:
                raise RuntimeError(f"shadow system: {type(exc).__name__}: {exc}") from exc
            try:
                result = self.judge.compare(item.question, production, shadow)
            except Exception as exc:
                raise RuntimeError(f"judge: {type(exc).__name__}: {exc}") from exc
            if not isinstance(result, PairwiseResult):
                raise RuntimeError(f"judge returned {type(result).__name__}, not PairwiseResult")
        except (RuntimeError, ValueError) as exc:
            return ShadowComparison(item, production, shadow, None, str(exc))
        return ShadowComparison(item, production, shadow, result)

    def run_shadow(self, question: str) -> ShadowComparison:
        """The usual single-question call: compare, remember and return one comparison."""
        comparison = self._compare(ShadowItem(question=question))
        self._comparisons.append(comparison)
        return comparison

    def compare_all(self, items: Iterable[ShadowItem]) -> list[ShadowComparison]:
        """Compare every item on a pool of ``concurrency`` threads; results in input order."""
        items = list(items)
        if self.concurrency == 1 or len(items) <= 1:
            return [self._compare(item) for item in items]
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._compare, items))

    def run(self, items: Iterable[ShadowItem]) -> ShadowReport:
        """Compare every item and aggregate (the comparisons are remembered too)."""
        comparisons = self.compare_all(items)
        self._comparisons.extend(comparisons)
        return self.report(comparisons, probe=True)

    def report(
        self, comparisons: Sequence[ShadowComparison] | None = None, *, probe: bool = False
    ) -> ShadowReport:
        """The aggregate; with ``probe``, the verbosity probe re-judges up to
        ``bias_probes`` of the comparisons (``bias_probes`` more judge calls)."""
        chosen = self._comparisons if comparisons is None else comparisons
        return aggregate(
            chosen,
            alpha=self.alpha,
            judge=self.judge.identity.to_dict(),
            feedback_valid=not self.rerun_production,
            verbosity_bias=probe_verbosity(self.judge, chosen, self.bias_probes) if probe else None,
        )

    def aggregate_results(self) -> dict[str, Any]:
        """The usual name: the aggregate of every comparison so far, as plain builtins."""
        return self.report().to_dict(include_comparisons=False)


# ---------------------------------------------------------------------------------------------
# where the questions come from


def items_from_store(
    store: EventStore,
    *,
    since: float | None = 7 * 24 * 3600.0,
    until: float | None = None,
    limit: int = 100,
) -> list[ShadowItem]:
    """The ``limit`` most recent shown responses that have a question, with production's
    stored answer and the user's latest thumb on it."""
    import json

    win = Window.of(since, until)
    sql = """
        SELECT r.response_id, r.question, r.messages, r.response,
            (SELECT MAX(e.ts) FROM events e WHERE e.response_id = r.response_id
                AND e.type = 'thumbs_up' AND e.ts <= :until),
            (SELECT MAX(e.ts) FROM events e WHERE e.response_id = r.response_id
                AND e.type = 'thumbs_down' AND e.ts <= :until)
        FROM responses r
        WHERE r.ts > :since AND r.ts <= :until AND r.question IS NOT NULL
        ORDER BY r.ts DESC, r.response_id LIMIT :limit
    """
    items: list[ShadowItem] = []
    for rid, question, messages, response, up, down in store.query(
        sql, {**win.params(), "limit": limit}
    ):
        feedback = None
        if down is not None and (up is None or down >= up):
            feedback = "thumbs_down"
        elif up is not None:
            feedback = "thumbs_up"
        msgs = (
            tuple(Message(m["role"], m["content"]) for m in json.loads(messages))
            if messages
            else None
        )
        items.append(
            ShadowItem(
                question=question,
                messages=msgs,
                response_id=rid,
                production_response=response,
                feedback=feedback,
            )
        )
    return items


def items_from_cases(path: str | os.PathLike[str]) -> list[ShadowItem]:
    """Every case of a JSONL case file (validated by the case loader; the first bad line
    raises :class:`~pytest_llmeval.core.cases.CaseError`)."""
    from pytest_llmeval.core.cases import iter_cases
    from pytest_llmeval.errors import CaseError

    name = os.fspath(path)
    with open(name, "rb") as handle:
        data = handle.read()
    items: list[ShadowItem] = []
    for entry in iter_cases(name, data):
        if isinstance(entry, CaseError):
            raise entry
        items.append(
            ShadowItem(
                question=entry.question,
                messages=entry.messages,
                case_id=entry.id,
                reference=entry.ground_truth,
            )
        )
    return items


def references(items: Iterable[ShadowItem]) -> dict[str, str]:
    """question -> reference answer, for judges that take references."""
    return {i.question: i.reference for i in items if i.reference is not None}
