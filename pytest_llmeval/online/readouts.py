"""A/B and canary readouts from the event store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pytest_llmeval.online.metrics import check_metric
from pytest_llmeval.online.values import (
    DEFAULT_MAX_DELAY_S,
    METRICS,
    MetricValue,
    StoreError,
    Window,
)

if TYPE_CHECKING:
    from pytest_llmeval.online.store import EventStore


def _direction_of(metric: str) -> Literal["higher", "lower"]:
    return "higher" if METRICS[metric] else "lower"


@dataclass(frozen=True)
class ABReadout:
    """An experiment read from stored events, per user (the randomisation unit).

    ``users``/``hits`` are per variant and per metric (primary first, then guardrails). When
    the sample-ratio check fails, ``valid`` is False and the recommendation is
    ``inconclusive``: a broken assignment makes every comparison untrustworthy.
    """

    experiment: str
    metric: str
    control: str
    treatment: str
    users: Mapping[str, int]
    hits: Mapping[str, Mapping[str, int]]
    users_in_several_variants: int
    responses_without_user: int
    window: Window
    srm: Any  # stats.SRMResult
    analysis: Any  # stats.ExperimentAnalysis
    valid: bool
    recommendation: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "metric": self.metric,
            "unit": "user",
            "control": self.control,
            "treatment": self.treatment,
            "window": self.window.to_dict(),
            "users": dict(self.users),
            "hits": {k: dict(v) for k, v in self.hits.items()},
            "users_in_several_variants": self.users_in_several_variants,
            "responses_without_user": self.responses_without_user,
            "srm": self.srm.to_dict(),
            "analysis": self.analysis.to_dict(),
            "valid": self.valid,
            "recommendation": self.recommendation,
            "reasons": list(self.reasons),
        }


def ab_readout(
    store: EventStore,
    experiment: str,
    metric: str,
    *,
    control: str = "control",
    treatment: str = "treatment",
    guardrails: Sequence[str] = (),
    expected_ratios: Sequence[float] = (1.0, 1.0),
    mde: float | None = None,
    alpha: float = 0.05,
    window: float | None = None,
    until: float | None = None,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
) -> ABReadout:
    """Read an A/B experiment from the store and run :func:`stats.analyze_experiment`.

    Units are users (responses grouped by ``user_id``); a user "converts" on a metric when at
    least one of their responses in the window has the metric's event (for
    ``session_continuation_rate``: a ``continue`` in one of their sessions). The sample-ratio
    check (:func:`stats.srm_check`, threshold 0.001) compares the user counts with
    ``expected_ratios`` (control, treatment). Guardrails use each metric's known direction.
    """
    from pytest_llmeval.stats import analyze_experiment, srm_check

    names = [metric, *dict.fromkeys(g for g in guardrails if g != metric)]
    counts = store.user_counts(
        experiment, names, window=window, until=until, max_delay_s=max_delay_s
    )
    if not counts.users:
        raise StoreError(f"no responses with a user id for experiment {experiment!r} in the window")
    for variant in (control, treatment):
        if variant not in counts.users:
            known = ", ".join(sorted(counts.users))
            raise StoreError(
                f"unknown variant {variant!r} in experiment {experiment!r} (variants: {known})"
            )
    srm = srm_check([counts.users[control], counts.users[treatment]], list(expected_ratios))

    def arm(variant: str) -> dict[str, int]:
        return {"n": counts.users[variant], **counts.hits[variant]}

    analysis = analyze_experiment(
        arm(control),
        arm(treatment),
        metric=metric,
        mde=mde,
        guardrails={g: _direction_of(g) for g in names[1:]},
        alpha=alpha,
        direction=_direction_of(metric),
    )
    reasons = list(analysis.reasons)
    recommendation = str(analysis.recommendation)
    if srm.mismatch:
        recommendation = "inconclusive"
        reasons.insert(
            0,
            f"sample-ratio mismatch: {counts.users[control]} vs {counts.users[treatment]} users "
            f"(chi-square p = {srm.p_value:.3g} < {srm.threshold}); the assignment is broken, "
            "fix it before reading the result",
        )
    return ABReadout(
        experiment=experiment,
        metric=metric,
        control=control,
        treatment=treatment,
        users={v: counts.users[v] for v in (control, treatment)},
        hits={v: dict(counts.hits[v]) for v in (control, treatment)},
        users_in_several_variants=counts.users_in_several_variants,
        responses_without_user=counts.responses_without_user,
        window=counts.window,
        srm=srm,
        analysis=analysis,
        valid=not srm.mismatch,
        recommendation=recommendation,
        reasons=tuple(reasons),
    )


@dataclass(frozen=True)
class GuardrailCheck:
    """One canary guardrail: one-sided test that the candidate is worse than the control."""

    metric: str
    direction: str
    control: MetricValue
    candidate: MetricValue
    p_value: float | None
    worse: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "better": self.direction,
            "control": self.control.to_dict(),
            "candidate": self.candidate.to_dict(),
            "p_value": self.p_value,
            "worse": self.worse,
            "note": self.note,
        }


@dataclass(frozen=True)
class CanaryReadout:
    """The canary verdict: ``passed`` is False when any guardrail is significantly worse."""

    control: str
    candidate: str
    by: str
    alpha: float
    window: Window
    checks: tuple[GuardrailCheck, ...]

    @property
    def passed(self) -> bool:
        return not any(c.worse for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "candidate": self.candidate,
            "by": self.by,
            "alpha": self.alpha,
            "window": self.window.to_dict(),
            "passed": self.passed,
            "guardrails": [c.to_dict() for c in self.checks],
        }


def canary_readout(
    store: EventStore,
    control: str,
    candidate: str,
    guardrails: Sequence[str],
    *,
    by: str = "variant",
    alpha: float = 0.05,
    window: float | None = 24 * 3600.0,
    until: float | None = None,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
) -> CanaryReadout:
    """Compare a canary (``candidate``) with the ``control`` on guardrail metrics.

    Groups are values of ``by`` (``variant`` or ``model``). Each guardrail is the metric as
    defined for the dashboard (unit: response, or session for ``session_continuation_rate``);
    the test is a one-sided pooled two-proportion z-test (:func:`stats.two_proportion_test`)
    of "candidate worse" at ``alpha``, without multiplicity correction (a deploy gate should
    rather stop once too often). A guardrail with no data in either group is reported, not
    failed. Responses of one user are not independent, so with heavy users these p-values are
    optimistic (the gate errs towards stopping); :func:`ab_readout` analyses per user.
    """
    from pytest_llmeval.stats import two_proportion_test

    if not guardrails:
        raise StoreError("give at least one guardrail metric")
    for name in guardrails:
        check_metric(name)
    grouped = store.metrics(window=window, until=until, by=by, max_delay_s=max_delay_s)
    for group in (control, candidate):
        if group not in grouped or grouped[group]["copy_rate"].denominator == 0:
            known = ", ".join(k for k in grouped if grouped[k]["copy_rate"].denominator) or "none"
            raise StoreError(f"no responses for {by} {group!r} in the window ({by}s: {known})")
    checks: list[GuardrailCheck] = []
    for name in guardrails:
        c, t = grouped[control][name], grouped[candidate][name]
        direction = _direction_of(name)
        if c.denominator == 0 or t.denominator == 0:
            checks.append(GuardrailCheck(name, direction, c, t, None, False, "no data"))
            continue
        test = two_proportion_test(
            c.denominator,
            c.numerator,
            t.denominator,
            t.numerator,
            alternative="greater" if direction == "lower" else "less",
        )
        checks.append(GuardrailCheck(name, direction, c, t, test.p_value, test.p_value <= alpha))
    return CanaryReadout(control, candidate, by, alpha, Window.of(window, until), tuple(checks))
