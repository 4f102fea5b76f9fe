"""Decisions: per-case classification against the baseline, and the session gates.

Pure: no pytest, no I/O, never prints. The same functions decide a single-machine run and a
merge of shard reports, so both give identical decisions.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# outcome -> pytest outcome
OUTCOME_PYTEST = {
    "passed": "passed",
    "improvement": "passed",
    "regression": "failed",
    "new_failure": "failed",
    "known_failure": "xfailed",
    "flaky": "xfailed",
    "error": "error",
}


@dataclass(frozen=True)
class BaselineView:
    """What classification needs to know of a baseline entry."""

    passed: bool
    passes: int = 1
    samples: int = 1


@dataclass(frozen=True)
class Classification:
    outcome: str
    detail: str = ""


def classify(
    verdict: str,
    baseline: BaselineView | None,
    *,
    passes: int = 1,
    samples: int = 1,
    flaky_alpha: float = 0.05,
) -> Classification:
    """Outcome of one case from its verdict now (pass/fail/error) and its baseline entry.

    With repeated sampling (``samples`` > 1 now or in the baseline) a case that passed in the
    baseline and fails now is a regression only if its pass fraction dropped significantly
    (one-sided Fisher exact test at ``flaky_alpha``); otherwise it is ``flaky``.
    """
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
    if samples > 1 or baseline.samples > 1:
        from pytest_llmeval.stats import repeat_drop_test

        p = repeat_drop_test(baseline.passes, baseline.samples, passes, samples)
        detail = (
            f"{passes}/{samples} now vs {baseline.passes}/{baseline.samples} in the baseline,"
            f" one-sided Fisher p = {p:.4g}"
        )
        if p >= flaky_alpha:
            return Classification("flaky", detail + f" >= {flaky_alpha}: not a significant drop")
        return Classification("regression", detail + f" < {flaky_alpha}")
    return Classification("regression")


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class GateSettings:
    max_regressions: int = 0
    min_pass_rate: float | None = None
    std_threshold: float = 2.0
    min_history: int = 3
    history_binomial: bool = False
    history_alpha: float = 0.05


@dataclass(frozen=True)
class GateDecision:
    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]


def pass_rate(passed: int, failed: int) -> float | None:
    """passed / (passed + failed); errors are excluded. None when nothing was judged."""
    judged = passed + failed
    return passed / judged if judged else None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def decide(
    *,
    passed: int,
    failed: int,
    regressions: Sequence[str],
    history: Sequence[Mapping[str, Any]],
    settings: GateSettings,
    full_run: bool,
    update_baseline: bool = False,
) -> GateDecision:
    """The session gates. ``history`` excludes the current run."""
    gates: list[GateResult] = []
    n_reg = len(regressions)
    if update_baseline:
        gates.append(
            GateResult("regressions", True, f"{n_reg} regressions accepted (updating the baseline)")
        )
    else:
        ok = n_reg <= settings.max_regressions
        gates.append(
            GateResult("regressions", ok, f"{n_reg} regressions (max {settings.max_regressions})")
        )
    rate = pass_rate(passed, failed)
    if settings.min_pass_rate is not None:
        if rate is None:
            gates.append(GateResult("min_pass_rate", True, "no judged cases", skipped=True))
        else:
            ok = rate >= settings.min_pass_rate
            gates.append(
                GateResult(
                    "min_pass_rate",
                    ok,
                    f"pass rate {_pct(rate)} {'>=' if ok else '<'} minimum "
                    f"{_pct(settings.min_pass_rate)}",
                )
            )
    gates.extend(_history_gates(rate, passed + failed, history, settings, full_run))
    return GateDecision(tuple(gates))


def _history_gates(
    rate: float | None,
    n: int,
    history: Sequence[Mapping[str, Any]],
    settings: GateSettings,
    full_run: bool,
) -> list[GateResult]:
    if not full_run:
        return [GateResult("history", True, "skipped: the run was narrowed (-k/-m/ids)", True)]
    if rate is None:
        return [GateResult("history", True, "skipped: no judged cases", True)]
    points = [float(h["pass_rate"]) for h in history]
    if len(points) < settings.min_history:
        why = (
            f"skipped: {len(points)} recorded runs, need {settings.min_history}"
            " (llmeval_min_history); record runs with --llmeval-record-history"
        )
        skipped = [GateResult("history", True, why, True)]
        if settings.history_binomial:
            skipped.append(GateResult("history_binomial", True, why, True))
        return skipped
    mean = statistics.fmean(points)
    std = statistics.stdev(points)
    lower = mean - settings.std_threshold * std
    ok = rate >= lower or math.isclose(rate, lower, abs_tol=1e-12)
    gates = [
        GateResult(
            "history",
            ok,
            f"pass rate {_pct(rate)} {'>=' if ok else '<'} {_pct(lower)} = mean {_pct(mean)}"
            f" - {settings.std_threshold:g} x std {_pct(std)} over {len(points)} runs",
        )
    ]
    # The binomial view is always shown (a 3-point drop means more on 2,000 cases than on 30);
    # it gates the run only with llmeval_history_binomial = true.
    gates.append(_binomial_gate(rate, n, history, settings))
    return gates


def _binomial_gate(
    rate: float, n: int, history: Sequence[Mapping[str, Any]], settings: GateSettings
) -> GateResult:
    from pytest_llmeval.stats import binomial_drop_test

    hist_passed = sum(int(h["passed"]) for h in history)
    hist_total = sum(int(h["total"]) for h in history)
    if hist_total <= 0 or n <= 0:
        return GateResult("history_binomial", True, "skipped: no counts in history", True)
    result = binomial_drop_test(hist_passed, hist_total, round(rate * n), n)
    p = float(result.p_value)
    significant = p < settings.history_alpha
    detail = (
        f"{round(rate * n)}/{n} now vs {hist_passed}/{hist_total} pooled history: one-sided"
        f" two-proportion z = {result.z:.3f}, p = {p:.4g}"
        f" ({'' if significant else 'not '}a significant drop at {settings.history_alpha:g})"
    )
    if not settings.history_binomial:
        return GateResult(
            "history_binomial",
            True,
            detail + "; informational (set llmeval_history_binomial = true to gate on it)",
            skipped=True,
        )
    return GateResult("history_binomial", not significant, detail)


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
            f"better: {len(improvements)} improvements vs {len(regressions)} regressions,"
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
            f"{len(improvements)} improvements vs {len(regressions)} regressions,"
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


def history_for_judge(
    history: Sequence[Mapping[str, Any]], judge: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    """History lines made by ``judge`` (a JudgeIdentity dict): other judges' rates differ.

    Lines without a judge (hand-written or from before judges were recorded) are kept.
    """
    keys = ("name", "model", "prompt_version", "version")
    wanted = tuple(judge.get(k) for k in keys)
    out = []
    for line in history:
        raw = line.get("judge")
        if (
            not isinstance(raw, dict)
            or "name" not in raw
            or tuple(raw.get(k) for k in keys) == wanted
        ):
            out.append(line)
    return out
