"""Decisions: per-case classification against the baseline, and the session gates.

Pure: no pytest, no I/O, never prints. The same functions decide a single-machine run and a
merge of shard reports, so both give identical decisions.
"""

from __future__ import annotations

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
        return [
            GateResult(
                "history",
                True,
                f"skipped: {len(points)} recorded runs, need {settings.min_history}"
                " (llmeval_min_history); record runs with --llmeval-record-history",
                True,
            )
        ]
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
    if settings.history_binomial:
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
    ok = p >= settings.history_alpha
    return GateResult(
        "history_binomial",
        ok,
        f"{round(rate * n)}/{n} now vs {hist_passed}/{hist_total} in history: one-sided"
        f" two-proportion z = {result.z:.3f}, p = {p:.4g}"
        f" ({'not ' if ok else ''}significant at {settings.history_alpha:g})",
    )
