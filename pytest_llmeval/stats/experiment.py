"""A/B experiment analysis with guardrails, and ``ABTestDesigner`` (familiar method names)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.stats._common import (
    Alternative,
    Direction,
    Recommendation,
    _direction,
    _open_unit,
    _rate,
    _real,
    _Result,
    _size,
    _successes,
)
from pytest_llmeval.stats.design import assign_variant, sample_size, srm_check
from pytest_llmeval.stats.history import history_bounds
from pytest_llmeval.stats.intervals import proportion_ci
from pytest_llmeval.stats.tests import (
    TwoProportionResult,
    _two_proportion,
    binomial_drop_test,
    fisher_exact,
    mcnemar,
    repeat_drop_test,
    sign_test,
    two_proportion_test,
)

#: Metric names whose direction is known when guardrails are given as a plain list of names:
#: for all of these a *rise* in the treatment arm is the harm a guardrail watches for.
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "thumbs_down",
        "thumbs_down_rate",
        "error",
        "errors",
        "error_rate",
        "rephrase_rate",
        "rephrase_retry_rate",
    }
)


# ---------------------------------------------------------------------------
# experiment analysis
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardrailResult(_Result):
    """One guardrail metric: one-sided test that the treatment is worse."""

    name: str
    direction: str
    control_rate: float
    treatment_rate: float
    test: TwoProportionResult
    worse: bool


@dataclass(frozen=True)
class ExperimentAnalysis(_Result):
    """The outcome of :func:`analyze_experiment`.

    ``mde_absolute`` is the smallest worthwhile improvement in rate points (``None`` without an
    MDE); ``practically_significant`` says whether the observed improvement reaches it (``None``
    without an MDE). ``reasons`` explain the recommendation in plain words.
    """

    metric: str
    direction: str
    control_n: int
    control_rate: float
    treatment_n: int
    treatment_rate: float
    alpha: float
    test: TwoProportionResult
    mde: float | None
    mde_relative: bool
    mde_absolute: float | None
    practically_significant: bool | None
    guardrails: tuple[GuardrailResult, ...]
    recommendation: Recommendation
    reasons: tuple[str, ...]


def _arm_rate(arm: Mapping[str, Any], arm_name: str, metric: str) -> tuple[int, float]:
    if "n" not in arm:
        raise ValueError(f"{arm_name} has no 'n' (number of units in the arm)")
    n = _size(f"{arm_name}['n']", arm["n"])
    if metric not in arm:
        raise ValueError(f"{arm_name} has no metric {metric!r}")
    value = arm[metric]
    label = f"{arm_name}[{metric!r}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{label} must be a count (int) or a rate (float), got {value!r}")
    if isinstance(value, numbers.Integral):
        return n, _successes(label, value, f"{arm_name}['n']", n) / n
    return n, _rate(label, value)


def _guardrail_directions(
    guardrails: Mapping[str, str] | Iterable[str] | None,
) -> list[tuple[str, Direction]]:
    if guardrails is None:
        return []
    if isinstance(guardrails, str):
        raise ValueError("guardrails must be a mapping or a list of metric names, not a string")
    if isinstance(guardrails, Mapping):
        return [(name, _direction(f"guardrails[{name!r}]", d)) for name, d in guardrails.items()]
    result: list[tuple[str, Direction]] = []
    for name in guardrails:
        if name not in LOWER_IS_BETTER:
            raise ValueError(
                f"guardrail {name!r} has no known direction; pass a mapping such as "
                f"{{{name!r}: 'lower'}} (lower is better) or {{{name!r}: 'higher'}}"
            )
        result.append((name, "lower"))
    return result


def analyze_experiment(
    control: Mapping[str, Any],
    treatment: Mapping[str, Any],
    *,
    metric: str,
    mde: float | None = None,
    relative: bool = True,
    guardrails: Mapping[str, str] | Iterable[str] | None = None,
    alpha: float = 0.05,
    direction: str = "higher",
) -> ExperimentAnalysis:
    """Analyse a finished A/B test and recommend ``ship``, ``no_ship`` or ``inconclusive``.

    Input shape: each arm is a mapping with ``"n"`` (units in the arm) and one entry per metric,
    either an ``int`` count of units with the event (``{"n": 1000, "thumbs_up": 120}``) or a
    ``float`` rate (``{"n": 1000, "thumbs_up_rate": 0.12}``). ``metric`` names the primary
    metric, ``direction`` says whether higher (default) or lower is better for it.
    ``guardrails`` maps metric names to the better direction (``{"error_rate": "lower"}``); a
    plain list is accepted for names in :data:`LOWER_IS_BETTER`.

    Rules, in order:

    1. Primary metric: two-sided two-proportion z-test (:func:`two_proportion_test`).
    2. Each guardrail: one-sided z-test that the treatment is *worse*; ``p <= alpha`` marks it
       worse. A worse guardrail means ``no_ship`` whatever the primary metric says. (No
       multiplicity correction: that would make guardrails easier to pass.)
    3. Primary significantly worse -> ``no_ship``; not significant -> ``inconclusive``.
    4. Significantly better: with ``mde`` (relative to the control rate by default, else in rate
       points) the observed improvement must reach it, otherwise ``no_ship`` (statistically
       but not practically significant, Kohavi, Tang & Xu 2020, ch. 2); without ``mde`` ->
       ``ship``.
    """
    alpha_ = _open_unit("alpha", alpha)
    primary_direction = _direction("direction", direction)
    if not isinstance(metric, str) or not metric or metric == "n":
        raise ValueError(f"metric must name a metric other than 'n', got {metric!r}")
    n1, p1 = _arm_rate(control, "control", metric)
    n2, p2 = _arm_rate(treatment, "treatment", metric)
    mde_abs: float | None = None
    mde_: float | None = None
    if mde is not None:
        mde_ = _real("mde", mde)
        if mde_ <= 0.0:
            raise ValueError(
                f"mde must be > 0 (the smallest improvement worth shipping), got {mde}"
            )
        mde_abs = mde_ * p1 if relative else mde_

    test = _two_proportion(n1, p1, n2, p2, "two-sided", 0.95)
    guardrail_results: list[GuardrailResult] = []
    for name, better in _guardrail_directions(guardrails):
        if name == metric:
            raise ValueError(f"guardrail {name!r} is also the primary metric")
        g1, r1 = _arm_rate(control, "control", name)
        g2, r2 = _arm_rate(treatment, "treatment", name)
        harm: Alternative = "greater" if better == "lower" else "less"
        g_test = _two_proportion(g1, r1, g2, r2, harm, 0.95)
        guardrail_results.append(
            GuardrailResult(
                name=name,
                direction=better,
                control_rate=r1,
                treatment_rate=r2,
                test=g_test,
                worse=g_test.p_value <= alpha_,
            )
        )

    improvement = test.diff if primary_direction == "higher" else -test.diff
    significant = test.p_value <= alpha_
    practical: bool | None = None
    if mde_abs is not None:
        # isclose: an improvement equal to the MDE (e.g. 0.12 -> 0.138 for 15%) must not fail on
        # the last bit of a float product.
        practical = improvement >= mde_abs or math.isclose(improvement, mde_abs, rel_tol=1e-9)

    reasons: list[str] = []
    recommendation: Recommendation
    worse_guardrails = [g for g in guardrail_results if g.worse]
    for g in worse_guardrails:
        reasons.append(
            f"guardrail {g.name} is significantly worse ({g.control_rate:.4g} -> "
            f"{g.treatment_rate:.4g}, one-sided p = {g.test.p_value:.3g})"
        )
    if significant and improvement < 0:
        reasons.append(f"{metric} is significantly worse (p = {test.p_value:.3g})")
        recommendation = "no_ship"
    elif not significant:
        reasons.append(f"{metric}: no significant difference (p = {test.p_value:.3g} > {alpha_})")
        recommendation = "inconclusive"
    elif practical is False:
        reasons.append(
            f"{metric} improved significantly (p = {test.p_value:.3g}) but by "
            f"{improvement:.4g}, less than the minimum worthwhile effect {mde_abs:.4g}"
        )
        recommendation = "no_ship"
    else:
        reasons.append(f"{metric} improved significantly (p = {test.p_value:.3g})")
        recommendation = "ship"
    if worse_guardrails:
        recommendation = "no_ship"
    return ExperimentAnalysis(
        metric=metric,
        direction=primary_direction,
        control_n=n1,
        control_rate=p1,
        treatment_n=n2,
        treatment_rate=p2,
        alpha=alpha_,
        test=test,
        mde=mde_,
        mde_relative=relative,
        mde_absolute=mde_abs,
        practically_significant=practical,
        guardrails=tuple(guardrail_results),
        recommendation=recommendation,
        reasons=tuple(reasons),
    )


# ---------------------------------------------------------------------------
# the object behind the ``llmeval_ab`` fixture
# ---------------------------------------------------------------------------


class ABTestDesigner:
    """The familiar ``ABTestDesigner`` method names, with exact statistics.

    Drop-in for code written against the usual interface, with these deliberate differences:

    * alpha and power are honoured (exact quantiles, not 1.96/0.842), p-values are exact;
    * ``z_score`` is positive when the treatment (arm 2) is higher, like
      :func:`two_proportion_test` (a common implementation computes ``(p1 - p2)/se``, the
      opposite sign);
    * ``direction`` is ``"no_difference"`` for equal rates, ``relative_lift`` is ``None`` when
      the control rate is 0, and invalid input raises ``ValueError`` instead of returning a
      made-up "not significant";
    * ``assign_variant`` hashes with salted sha256 instead of md5 mod 1000.

    Every module function is also available as a method (``designer.sample_size(...)``,
    ``designer.mcnemar(...)``, ...). ``designer.analyze(...)`` is :func:`analyze_experiment`.
    """

    sample_size = staticmethod(sample_size)
    two_proportion_test = staticmethod(two_proportion_test)
    proportion_ci = staticmethod(proportion_ci)
    mcnemar = staticmethod(mcnemar)
    fisher_exact = staticmethod(fisher_exact)
    repeat_drop_test = staticmethod(repeat_drop_test)
    srm_check = staticmethod(srm_check)
    sign_test = staticmethod(sign_test)
    history_bounds = staticmethod(history_bounds)
    binomial_drop_test = staticmethod(binomial_drop_test)
    analyze = staticmethod(analyze_experiment)

    @staticmethod
    def compute_required_sample_size(
        baseline_rate: float,
        minimum_detectable_effect: float,
        alpha: float = 0.05,
        power: float = 0.80,
    ) -> int:
        """Units per variant; ``minimum_detectable_effect`` is relative. See :func:`sample_size`.

        >>> ABTestDesigner.compute_required_sample_size(0.12, 0.15)
        5443
        """
        return sample_size(baseline_rate, minimum_detectable_effect, alpha=alpha, power=power)

    @staticmethod
    def assign_variant(
        user_id: str | int,
        experiment_id: str,
        traffic_fraction: float = 0.5,
        *,
        weights: Mapping[str, float] | None = None,
    ) -> str:
        """``"treatment"`` for a ``traffic_fraction`` share of users, else ``"control"``.

        With ``weights`` it is :func:`assign_variant` with any number of variants (then
        ``traffic_fraction`` must be left at its default).
        """
        if weights is not None:
            if traffic_fraction != 0.5:
                raise ValueError("pass either traffic_fraction or weights, not both")
            return assign_variant(user_id, experiment_id, weights=weights)
        fraction = _rate("traffic_fraction", traffic_fraction)
        return assign_variant(
            user_id, experiment_id, weights={"control": 1.0 - fraction, "treatment": fraction}
        )

    @staticmethod
    def two_proportion_z_test(
        n1: int, p1: float, n2: int, p2: float, *, alpha: float = 0.05
    ) -> dict[str, Any]:
        """The familiar dict (``z_score``, ``p_value``, ``significant``, ``direction``,
        ``relative_lift``) from observed rates; ``z_score > 0`` when ``p2 > p1``.

        Extra keys: ``diff``, ``ci_low``, ``ci_high`` (Newcombe 95% interval of ``p2 - p1``).
        """
        n1_ = _size("n1", n1)
        n2_ = _size("n2", n2)
        res = _two_proportion(n1_, _rate("p1", p1), n2_, _rate("p2", p2), "two-sided", 0.95)
        return _seed_test_dict(res, _open_unit("alpha", alpha))

    @staticmethod
    def analyze_experiment(
        control_metrics: Mapping[str, Any],
        treatment_metrics: Mapping[str, Any],
        metric_name: str = "thumbs_up_rate",
        *,
        mde: float | None = None,
        relative: bool = True,
        guardrails: Mapping[str, str] | Iterable[str] | None = None,
        alpha: float = 0.05,
        direction: str = "higher",
    ) -> dict[str, Any]:
        """The familiar dict (``metric``, ``control``, ``treatment``, ``statistical_test``,
        ``recommendation`` in ``ship_treatment``/``no_ship``/``inconclusive``).

        Runs :func:`analyze_experiment`, so ``mde`` and ``guardrails`` work here too; extra keys
        ``reasons``, ``practically_significant`` and ``guardrails`` explain the decision. A
        missing metric raises ``ValueError`` (never a silent 0).
        """
        analysis = analyze_experiment(
            control_metrics,
            treatment_metrics,
            metric=metric_name,
            mde=mde,
            relative=relative,
            guardrails=guardrails,
            alpha=alpha,
            direction=direction,
        )
        recommendation = (
            "ship_treatment" if analysis.recommendation == "ship" else analysis.recommendation
        )
        return {
            "metric": analysis.metric,
            "control": {"n": analysis.control_n, "rate": analysis.control_rate},
            "treatment": {"n": analysis.treatment_n, "rate": analysis.treatment_rate},
            "statistical_test": _seed_test_dict(analysis.test, analysis.alpha),
            "recommendation": recommendation,
            "reasons": list(analysis.reasons),
            "practically_significant": analysis.practically_significant,
            "guardrails": [g.to_dict() for g in analysis.guardrails],
        }


def _seed_test_dict(res: TwoProportionResult, alpha: float) -> dict[str, Any]:
    if res.p2 > res.p1:
        direction = "treatment_better"
    elif res.p2 < res.p1:
        direction = "control_better"
    else:
        direction = "no_difference"
    return {
        "z_score": res.z,
        "p_value": res.p_value,
        "significant": res.p_value <= alpha,
        "direction": direction,
        "relative_lift": res.relative_lift,
        "diff": res.diff,
        "ci_low": res.ci_low,
        "ci_high": res.ci_high,
    }
