"""Decisions: per-case classification against the baseline and history, and the session gates.

Pure: no pytest, no I/O, never prints. The same functions decide a single-machine run and a
merge of shard reports, so both give identical decisions.

The default rules (issue #10: quiet on noise, loud on real regressions), all at one false-alarm
budget ``alpha`` per run of an unchanged application:

* **Per case** (decided when the case's item runs). A case that passed in the baseline and fails
  now is compared with its own recorded history ``k/n`` (passes of recorded samples). The
  suite's cases share a prior of per-case pass rates estimated from all of them (empirical
  Bayes: the nonparametric maximum-likelihood prior of
  :func:`pytest_llmeval.stats.fit_grid_prior`), so a quiet suite makes one failure improbable
  and a noisy suite does not. The p-value is the posterior-predictive lower tail
  ``P[X <= passes now]`` given the case's ``k/n``. One threshold for every case is fixed before
  the run by the discrete Bonferroni refinement of Tarone's procedure
  (:func:`pytest_llmeval.stats.discrete_bonferroni`) over what each case can attain, at the
  share ``case_share`` of ``alpha``: cases that cannot reach significance cost nothing. At or
  below the threshold: ``regression``; above: ``flaky`` (xfailed) with its historical rate. A
  case with fewer recorded runs than ``min_history`` keeps the outcome table's rule and says it
  is unconfirmed (:func:`_classify_thin`); so does a case with no history at all.
  (One beta-binomial prior was tried first: on a suite of stable and noisy cases it is too sure
  of cases that never failed; see benchmarks/bench_gate_noise.py.)
* **Suite** (at the end), on what the per-case family did not spend, split in two
  (``history_share``): the history gate, a lower prediction bound for the pass rate (Hahn &
  Meeker) unless the user set ``std_threshold`` (then the old ``mean - k·std``), and a
  Cochran-Mantel-Haenszel test across cases against their own history, its variance widened by
  the run-level dispersion seen in the history (``suite_drop``). An exact count test of
  regressions vs improvements and the pooled binomial view are shown, informational.

Per-case history comes from the history lines' ``failed`` lists (see :meth:`GateContext.build`
for which lines count for which case, and :func:`history_case_fields` for the fields new lines
carry).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from pytest_llmeval.core.evidence import (
    UNCONFIRMED as UNCONFIRMED,
)
from pytest_llmeval.core.evidence import (
    BaselineView as BaselineView,
)
from pytest_llmeval.core.evidence import (
    CaseEvidence as CaseEvidence,
)
from pytest_llmeval.core.evidence import (
    Classification as Classification,
)
from pytest_llmeval.core.evidence import (
    GateContext as GateContext,
)
from pytest_llmeval.core.evidence import (
    GateDecision as GateDecision,
)
from pytest_llmeval.core.evidence import (
    GateResult as GateResult,
)
from pytest_llmeval.core.evidence import (
    GateSettings as GateSettings,
)
from pytest_llmeval.core.evidence import (
    Number as Number,
)
from pytest_llmeval.core.evidence import (
    _pct,
)
from pytest_llmeval.core.evidence import (
    history_case_fields as history_case_fields,
)
from pytest_llmeval.core.evidence import (
    history_for_judge as history_for_judge,
)
from pytest_llmeval.core.evidence import (
    pass_rate as pass_rate,
)
from pytest_llmeval.core.evidence import (
    suite_digest as suite_digest,
)
from pytest_llmeval.core.words import plural

# ---------------------------------------------------------------------------
# per-case classification
# ---------------------------------------------------------------------------


def _by_table(verdict: str, baseline: BaselineView | None) -> Classification | None:
    """The outcome table's rows that need no evidence (None: passed in the baseline, fails now)."""
    if verdict == "error":
        return Classification("error")
    if verdict == "pass":
        if baseline is not None and not baseline.passed:
            return Classification("improvement")
        return Classification("passed")
    if baseline is None:
        return Classification("new_failure")
    if not baseline.passed:
        return Classification("known_failure")
    return None


def _classify(
    ctx: GateContext,
    key: str,
    verdict: str,
    baseline: BaselineView | None,
    passes: int,
    samples: int,
) -> Classification:
    plain = _by_table(verdict, baseline)
    if plain is not None:
        return plain
    method = "empirical-Bayes posterior predictive (NPMLE prior), discrete Bonferroni (Tarone)"
    runs = ctx.history_runs.get(key, 0)
    if 0 < runs < ctx.settings.min_history:
        return _classify_thin(ctx, key, baseline, passes, samples, runs)
    p = ctx.case_p_value(key, passes, samples)
    if p is None:
        evidence = CaseEvidence(
            history_passes=0,
            history_runs=0,
            now_passes=passes,
            now_samples=samples,
            p_value=None,
            adjusted_p=None,
            alpha=ctx.case_alpha,
            method="outcome table: passed in the baseline, fails now",
            unconfirmed=True,
            history_samples=0,
            threshold=None,
        )
        return Classification("regression", UNCONFIRMED, evidence)
    k = ctx.history_passes[key]
    n = ctx.history_samples[key]
    adj = ctx.adjusted(p)
    evidence = CaseEvidence(
        history_passes=k,
        history_runs=ctx.history_runs[key],
        now_passes=passes,
        now_samples=samples,
        p_value=p,
        adjusted_p=adj,
        alpha=ctx.case_alpha,
        method=method,
        unconfirmed=False,
        history_samples=n,
        threshold=ctx.case_threshold,
    )
    numbers = (
        f"{passes}/{samples} now vs {k}/{n} in {plural(ctx.history_runs[key], 'recorded run')}"
        f" ({_pct(k / n)}); p = {p:.3g}, adjusted p = {adj:.3g}"
    )
    family = (
        f"threshold {ctx.case_threshold:.3g} over {ctx.testable} of {ctx.eligible} cases"
        f" that can reach it (alpha {ctx.case_alpha:g})"
    )
    if ctx.prior_degenerate == "all_pass":
        family = f"no failure in the suite's {sum(ctx.history_samples.values())} recorded samples"
    if p <= ctx.case_threshold:
        return Classification("regression", f"{numbers}: a significant drop; {family}", evidence)
    return Classification(
        "flaky",
        f"flaky: passes {_pct(k / n)} of the time ({k}/{n}); {numbers}: not a significant drop"
        f" ({family})",
        evidence,
    )


def _classify_thin(
    ctx: GateContext,
    key: str,
    baseline: BaselineView | None,
    passes: int,
    samples: int,
    runs: int,
) -> Classification:
    """Fewer recorded runs of the case than ``llmeval_min_history``: too little history to
    call a failure noise. One sample: the outcome table's rule (a regression, unconfirmed).
    Repeated samples: the one-sided Fisher exact test of the baseline's k/n against now's, at
    ``alpha``, with ``<=`` so that 3/3 -> 0/3 (p = 0.05) can fire. Such a case is not one of
    the per-case family's cases (:meth:`GateContext.build`): it costs the family nothing."""
    assert baseline is not None
    why = (
        f"unconfirmed: {plural(runs, 'recorded run')} of this case, the history test needs"
        f" {ctx.settings.min_history} (llmeval_min_history); record history or use"
        " --llmeval-repeat"
    )
    alpha = ctx.settings.alpha
    if samples > 1 or baseline.samples > 1:
        from pytest_llmeval.stats import repeat_drop_test

        p = float(repeat_drop_test(baseline.passes, baseline.samples, passes, samples))
        evidence = CaseEvidence(
            history_passes=baseline.passes,
            history_runs=runs,
            now_passes=passes,
            now_samples=samples,
            p_value=p,
            adjusted_p=None,
            alpha=alpha,
            method="one-sided Fisher exact test, baseline samples vs now",
            unconfirmed=True,
            history_samples=baseline.samples,
            threshold=alpha,
        )
        detail = (
            f"{passes}/{samples} now vs {baseline.passes}/{baseline.samples} in the baseline,"
            f" one-sided Fisher p = {p:.4g}"
        )
        if p <= alpha * (1 + 1e-9):  # 3/3 -> 0/3 gives exactly 0.05, up to rounding
            return Classification("regression", f"{detail} <= {alpha:g}; {why}", evidence)
        return Classification(
            "flaky", f"{detail} > {alpha:g}: not a significant drop; {why}", evidence
        )
    evidence = CaseEvidence(
        history_passes=ctx.history_passes.get(key, 0),
        history_runs=runs,
        now_passes=passes,
        now_samples=samples,
        p_value=None,
        adjusted_p=None,
        alpha=alpha,
        method="outcome table: passed in the baseline, fails now",
        unconfirmed=True,
        history_samples=ctx.history_samples.get(key, 0),
        threshold=None,
    )
    return Classification("regression", why, evidence)


def classify(
    ctx: GateContext,
    key: str,
    verdict: str,
    baseline: BaselineView | None,
    *,
    passes: int = 1,
    samples: int = 1,
) -> Classification:
    """Outcome of one case from its verdict now (pass/fail/error), its baseline entry and history.

    ``passes`` of ``samples`` samples passed now. A case that passed in the baseline and fails
    now is a ``regression`` only when its posterior-predictive p-value against its own history
    is at or below the context's per-case threshold, else ``flaky``; with fewer recorded runs
    of the case than ``min_history``, the outcome table's rule, marked unconfirmed (see
    :func:`_classify_thin`); with no history for the case, a ``regression`` marked unconfirmed.
    Uses nothing of this run but the case itself.
    """
    return _classify(ctx, key, verdict, baseline, passes, samples)


# ---------------------------------------------------------------------------
# session gates
# ---------------------------------------------------------------------------


def decide(
    ctx: GateContext,
    *,
    outcomes: Sequence[tuple[str, str, int, int]],
    passed: int,
    failed: int,
    full_run: bool,
    update_baseline: bool = False,
) -> GateDecision:
    """The session gates. ``outcomes`` holds ``(key, outcome, passes now, samples now)`` for
    every case judged this run; ``ctx`` was built before the run (its history excludes it).
    """
    outcomes = list(outcomes or ())
    s = ctx.settings
    gates: list[GateResult] = [_regressions_gate(ctx, outcomes, update_baseline)]
    rate = pass_rate(passed, failed)
    if s.min_pass_rate is not None:
        if rate is None:
            gates.append(GateResult("min_pass_rate", True, "no judged cases", skipped=True))
        else:
            ok = rate >= s.min_pass_rate
            gates.append(
                GateResult(
                    "min_pass_rate",
                    ok,
                    f"pass rate {_pct(rate)} {'>=' if ok else '<'} minimum {_pct(s.min_pass_rate)}",
                    method="fixed minimum",
                    numbers={"pass_rate": rate, "minimum": s.min_pass_rate},
                )
            )
    gates.extend(_history_gates(ctx, rate, passed + failed, full_run))
    if full_run:
        gates.append(_suite_drop_gate(ctx, outcomes))
    else:  # a chosen subset (--lf picks the failures) says nothing about the suite
        gates.append(
            GateResult(
                "suite_drop", True, "skipped: the run was narrowed (not every case ran)", True
            )
        )
    gates.append(_flip_gate(outcomes))
    return GateDecision(tuple(gates))


def _regressions_gate(
    ctx: GateContext, outcomes: Sequence[tuple[str, str, int, int]], update_baseline: bool
) -> GateResult:
    s = ctx.settings
    regs = [o for o in outcomes if o[1] == "regression"]
    # a case with fewer recorded runs than min_history is decided by the outcome table
    confirmed = sum(1 for o in regs if ctx.history_runs.get(o[0], 0) >= s.min_history)
    unconfirmed = len(regs) - confirmed
    flaky = sum(1 for o in outcomes if o[1] == "flaky")
    numbers: dict[str, Number] = {
        "regressions": len(regs),
        "confirmed": confirmed,
        "unconfirmed": unconfirmed,
        "flaky": flaky,
        "max_regressions": s.max_regressions,
        "case_alpha": ctx.case_alpha,
        "case_threshold": ctx.case_threshold,
        "case_spent": ctx.case_spent,
        "testable": ctx.testable,
        "eligible": ctx.eligible,
        "prior_mean": ctx.prior_mean,
    }
    method = "per case: empirical-Bayes posterior predictive vs own history, discrete Bonferroni"
    thin = any(0 < ctx.history_runs.get(o[0], 0) < s.min_history for o in regs)
    why = f"fewer than {plural(s.min_history, 'recorded run')}" if thin else "no history"
    extra = f", {unconfirmed} unconfirmed ({why})" if unconfirmed else ""
    extra += f", {flaky} flaky" if flaky else ""
    if update_baseline:
        return GateResult(
            "regressions",
            True,
            f"{plural(len(regs), 'regression')} accepted (updating the baseline){extra}",
            method=method,
            numbers=numbers,
        )
    ok = len(regs) <= s.max_regressions
    return GateResult(
        "regressions",
        ok,
        f"{plural(len(regs), 'regression')} (max {s.max_regressions}){extra}",
        method=method,
        numbers=numbers,
    )


def _history_gates(
    ctx: GateContext, rate: float | None, n: int, full_run: bool
) -> list[GateResult]:
    s = ctx.settings
    if not full_run:
        return [
            GateResult("history", True, "skipped: the run was narrowed (not every case ran)", True)
        ]
    if rate is None:
        return [GateResult("history", True, "skipped: no judged cases", True)]
    points = list(ctx.pass_rates)
    if len(points) < s.min_history:
        why = (
            f"skipped: {plural(len(points), 'recorded run')}, need {s.min_history}"
            " (llmeval_min_history); record runs with --llmeval-record-history"
        )
        skipped = [GateResult("history", True, why, True, numbers={"points": len(points)})]
        if s.history_binomial:
            skipped.append(GateResult("history_binomial", True, why, True))
        return skipped
    mean = statistics.fmean(points)
    std = statistics.stdev(points)
    numbers: dict[str, Number] = {
        "pass_rate": rate,
        "judged": n,
        "points": len(points),
        "mean": mean,
        "sd": std,
    }
    if s.std_threshold is not None:
        lower = mean - s.std_threshold * std
        ok = rate >= lower or math.isclose(rate, lower, abs_tol=1e-12)
        numbers.update(k=s.std_threshold, bound=lower)
        gate = GateResult(
            "history",
            ok,
            f"pass rate {_pct(rate)} {'>=' if ok else '<'} {_pct(lower)} = mean {_pct(mean)}"
            f" - {s.std_threshold:g} x std {_pct(std)} over {len(points)} runs",
            method="mean - k x std (llmeval_std_threshold)",
            numbers=numbers,
        )
    else:
        from pytest_llmeval.stats import prediction_bound

        pb = prediction_bound(points, ctx.history_alpha)
        ok = rate >= pb.lower or math.isclose(rate, pb.lower, abs_tol=1e-12)
        numbers.update(t=pb.t, bound=pb.lower, alpha=ctx.history_alpha)
        gate = GateResult(
            "history",
            ok,
            f"pass rate {_pct(rate)} {'>=' if ok else '<'} {_pct(pb.lower)}, the lower"
            f" {100 * (1 - ctx.history_alpha):.1f}% prediction bound = mean {_pct(mean)}"
            f" - t {pb.t:.3f} x sd {_pct(std)} x sqrt(1 + 1/{len(points)})"
            f" over {len(points)} runs",
            method="prediction bound (Hahn & Meeker)",
            numbers=numbers,
        )
    # The binomial view is always shown (a 3-point drop means more on 2,000 cases than on 30);
    # it gates the run only with llmeval_history_binomial = true.
    return [gate, _binomial_gate(ctx, rate, n)]


def _binomial_gate(ctx: GateContext, rate: float, n: int) -> GateResult:
    from pytest_llmeval.stats import binomial_drop_test

    s = ctx.settings
    if ctx.hist_total <= 0 or n <= 0:
        return GateResult("history_binomial", True, "skipped: no counts in history", True)
    now = round(rate * n)
    result = binomial_drop_test(ctx.hist_passed, ctx.hist_total, now, n)
    p = float(result.p_value)
    significant = p < s.history_alpha
    detail = (
        f"{now}/{n} now vs {ctx.hist_passed}/{ctx.hist_total} pooled history: one-sided"
        f" two-proportion z = {result.z:.3f}, p = {p:.4g}"
        f" ({'' if significant else 'not '}a significant drop at {s.history_alpha:g})"
    )
    numbers: dict[str, Number] = {
        "now_passed": now,
        "now_total": n,
        "history_passed": ctx.hist_passed,
        "history_total": ctx.hist_total,
        "z": result.z,
        "p_value": p,
        "alpha": s.history_alpha,
    }
    method = "pooled two-proportion z-test"
    if not s.history_binomial:
        return GateResult(
            "history_binomial",
            True,
            detail + "; informational (set llmeval_history_binomial = true to gate on it)",
            skipped=True,
            method=method,
            numbers=numbers,
        )
    return GateResult("history_binomial", not significant, detail, method=method, numbers=numbers)


def _suite_drop_gate(ctx: GateContext, outcomes: Sequence[tuple[str, str, int, int]]) -> GateResult:
    from pytest_llmeval.stats import cmh_drop_test

    rows = [
        (ctx.history_passes[key], ctx.history_samples[key], passes, samples)
        for key, outcome, passes, samples in outcomes
        if outcome != "error" and samples > 0 and ctx.history_samples.get(key, 0) > 0
    ]
    method = "Cochran-Mantel-Haenszel, cases as strata, run-level overdispersion"
    if not rows:
        return GateResult(
            "suite_drop", True, "skipped: no judged case has recorded history", True, method
        )
    k, n, x, m = (list(col) for col in zip(*rows, strict=True))
    res = cmh_drop_test(k, n, x, m, dispersion=ctx.dispersion)
    alpha = ctx.suite_alpha
    numbers: dict[str, Number] = {
        "strata": res.strata,
        "informative": res.informative,
        "observed": res.observed,
        "expected": res.expected,
        "variance": res.variance,
        "dispersion": res.dispersion,
        "dispersion_df": ctx.dispersion_df,
        "z": res.z,
        "p_value": res.p_value,
        "alpha": alpha,
    }
    if res.informative == 0:
        return GateResult(
            "suite_drop",
            True,
            f"skipped: none of {res.strata} cases with history varies",
            True,
            method,
            numbers,
        )
    ok = res.p_value > alpha
    detail = (
        f"{res.observed:g} passes now vs {res.expected:.1f} expected from each case's history"
        f" over {plural(res.informative, 'varying case')}: CMH z = {res.z:.3f}"
        f" (dispersion {res.dispersion:.2f}), p = {res.p_value:.3g}"
        f" {'>' if ok else '<='} {alpha:.3g}"
    )
    return GateResult("suite_drop", ok, detail, method=method, numbers=numbers)


def _flip_gate(outcomes: Sequence[tuple[str, str, int, int]]) -> GateResult:
    from pytest_llmeval.stats import flip_count_test

    worse = sum(1 for o in outcomes if o[1] in ("regression", "flaky"))
    better = sum(1 for o in outcomes if o[1] == "improvement")
    p = flip_count_test(worse, better)
    return GateResult(
        "flips",
        True,
        f"{plural(worse, 'case')} passed in the baseline and fail{'s' if worse == 1 else ''} now,"
        f" {better} the other way:"
        f" one-sided exact count test p = {p:.3g}; informational",
        skipped=True,
        method="exact count test of regressions vs improvements (one-sided McNemar)",
        numbers={"worse": worse, "better": better, "p_value": p},
    )


def decide_comparison(
    pairs: Sequence[tuple[str, bool, bool]],
    *,
    alpha: float = 0.05,
    noninferiority_margin: float | None = None,
) -> dict[str, Any]:
    """Paired comparison of the baseline SUT and a candidate on the same cases.

    ``pairs`` holds ``(case key, baseline SUT passed, candidate passed)`` for cases both judged.
    The candidate is recommended only when it is better with McNemar's exact p below ``alpha``
    or, with a non-inferiority margin, when the lower bound of the (1 - 2·alpha) Newcombe
    paired interval of (candidate - baseline) is above ``-margin``. Never on a raw delta.
    """
    from pytest_llmeval.stats import mcnemar, paired_difference_ci, proportion_ci

    n = len(pairs)
    regressions = [k for k, base, cand in pairs if base and not cand]
    improvements = [k for k, base, cand in pairs if cand and not base]
    both = sum(1 for _, base, cand in pairs if base and cand)
    neither = n - both - len(regressions) - len(improvements)
    base_pass = both + len(regressions)
    cand_pass = both + len(improvements)
    out: dict[str, Any] = {
        "n": n,
        "baseline_passed": base_pass,
        "candidate_passed": cand_pass,
        "baseline_pass_rate": base_pass / n if n else None,
        "candidate_pass_rate": cand_pass / n if n else None,
        "baseline_ci": list(proportion_ci(base_pass, n)) if n else None,
        "candidate_ci": list(proportion_ci(cand_pass, n)) if n else None,
        "regressions": regressions,
        "improvements": improvements,
        "b": len(regressions),
        "c": len(improvements),
        "alpha": alpha,
        "noninferiority_margin": noninferiority_margin,
    }
    if n == 0:
        out.update(mcnemar_p=None, recommendation="baseline", reason="no case judged for both")
        return out
    test = mcnemar(len(regressions), len(improvements), exact=True)
    out["mcnemar_p"] = test.p_value
    lo, hi = paired_difference_ci(both, len(regressions), len(improvements), neither,
                                  level=1 - 2 * alpha)  # fmt: skip
    out["difference_ci"] = [lo, hi]
    out["difference_ci_level"] = 1 - 2 * alpha
    better = len(improvements) > len(regressions)
    if better and test.p_value < alpha:
        rec = "candidate"
        reason = (
            f"better: {plural(len(improvements), 'improvement')} vs"
            f" {plural(len(regressions), 'regression')},"
            f" McNemar exact p = {test.p_value:.4g} < {alpha:g}"
        )
    elif noninferiority_margin is not None and lo > -noninferiority_margin:
        rec = "candidate"
        reason = (
            f"not worse than the margin: {100 * (1 - 2 * alpha):.0f}% CI of the pass-rate"
            f" difference [{lo:+.3f}, {hi:+.3f}] lies above -{noninferiority_margin:g}"
        )
    else:
        rec = "baseline"
        reason = (
            f"{plural(len(improvements), 'improvement')} vs"
            f" {plural(len(regressions), 'regression')},"
            f" McNemar exact p = {test.p_value:.4g}"
            + ("" if better else " (the candidate is not better)")
            + (
                f"; non-inferiority not shown (CI lower bound {lo:+.3f} <="
                f" -{noninferiority_margin:g})"
                if noninferiority_margin is not None
                else ""
            )
        )
    out["recommendation"] = rec
    out["reason"] = reason
    return out


def flaky_from_history(
    history: Sequence[Mapping[str, Any]], keys: set[str], *, window: int = 10
) -> list[str]:
    """Cases whose verdict flipped at least twice over the last ``window`` recorded runs.

    History lines list the keys that failed. After a case's first recorded failure, each change
    between failing and passing is a flip; two flips (fail, pass, fail, or fail, pass after a
    pass) mean the verdict wobbles rather than moved once.
    """
    runs = [set(h["failed"]) for h in history[-window:] if isinstance(h.get("failed"), list)]
    out = []
    for key in sorted(keys):
        states = [key in failed for failed in runs]
        if True not in states:
            continue
        states = states[states.index(True) :]
        flips = sum(1 for a, b in itertools.pairwise(states) if a != b)
        if flips >= 2:
            out.append(key)
    return out
