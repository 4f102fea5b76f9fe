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

import hashlib
import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

UNCONFIRMED = "unconfirmed: no history for this case; record history or use --llmeval-repeat"


@dataclass(frozen=True)
class BaselineView:
    """What classification needs to know of a baseline entry."""

    passed: bool
    passes: int = 1
    samples: int = 1


@dataclass(frozen=True)
class GateSettings:
    """The gate's settings.

    ``std_threshold`` ``None`` (default) means the history gate is the prediction bound; a number
    keeps the old ``mean - k·std`` rule. ``alpha`` is the false-alarm budget of one run of an
    unchanged application, ``case_share`` the part of it the per-case tests may use (what they
    cannot use goes to the suite tests, of which ``history_share`` goes to the prediction-bound
    history gate and the rest to the CMH ``suite_drop`` gate). ``samples`` is the number of
    samples each case gets this run (``--llmeval-repeat``) and ``repeat_pass_fraction`` the pass
    fraction a repeated case needs: together they say which outcomes a case can fail with,
    known before it runs.
    """

    max_regressions: int = 0
    min_pass_rate: float | None = None
    std_threshold: float | None = None
    min_history: int = 3
    history_binomial: bool = False
    history_alpha: float = 0.05
    alpha: float = 0.05
    case_share: float = 0.4
    history_share: float = 1 / 3
    samples: int = 1
    repeat_pass_fraction: float = 0.5


@dataclass(frozen=True)
class CaseEvidence:
    """The numbers behind one case's decision (history ``k/n``, now ``k/n``, p, adjusted p)."""

    history_passes: int
    history_runs: int
    now_passes: int
    now_samples: int
    p_value: float | None
    adjusted_p: float | None
    alpha: float
    method: str
    unconfirmed: bool
    history_samples: int = 0
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "history_passes": self.history_passes,
            "history_samples": self.history_samples,
            "history_runs": self.history_runs,
            "now_passes": self.now_passes,
            "now_samples": self.now_samples,
            "p_value": self.p_value,
            "adjusted_p": self.adjusted_p,
            "alpha": self.alpha,
            "threshold": self.threshold,
            "method": self.method,
            "unconfirmed": self.unconfirmed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseEvidence:
        def opt(name: str) -> float | None:
            value = data.get(name)
            return None if value is None else float(value)

        return cls(
            history_passes=int(data["history_passes"]),
            history_runs=int(data["history_runs"]),
            now_passes=int(data["now_passes"]),
            now_samples=int(data["now_samples"]),
            p_value=opt("p_value"),
            adjusted_p=opt("adjusted_p"),
            alpha=float(data["alpha"]),
            method=str(data["method"]),
            unconfirmed=bool(data["unconfirmed"]),
            history_samples=int(data.get("history_samples", data["history_runs"])),
            threshold=opt("threshold"),
        )


@dataclass(frozen=True)
class Classification:
    outcome: str
    detail: str = ""
    evidence: CaseEvidence | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "detail": self.detail,
            "evidence": None if self.evidence is None else self.evidence.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Classification:
        ev = data.get("evidence")
        return cls(
            outcome=str(data["outcome"]),
            detail=str(data.get("detail") or ""),
            evidence=None if ev is None else CaseEvidence.from_dict(ev),
        )


Number = float | int | str | None


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str
    skipped: bool = False
    method: str = ""
    numbers: Mapping[str, Number] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "detail": self.detail,
            "method": self.method,
            "numbers": dict(self.numbers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateResult:
        return cls(
            name=str(data["name"]),
            passed=bool(data["passed"]),
            detail=str(data.get("detail") or ""),
            skipped=bool(data.get("skipped", False)),
            method=str(data.get("method") or ""),
            numbers=dict(data.get("numbers") or {}),
        )


@dataclass(frozen=True)
class GateDecision:
    gates: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)

    @property
    def failed_gates(self) -> list[GateResult]:
        return [g for g in self.gates if not g.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "gates": [g.to_dict() for g in self.gates]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateDecision:
        return cls(tuple(GateResult.from_dict(g) for g in data.get("gates", [])))


def pass_rate(passed: int, failed: int) -> float | None:
    """passed / (passed + failed); errors are excluded. None when nothing was judged."""
    judged = passed + failed
    return passed / judged if judged else None


def _n(count: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{count} {word if count == 1 else word + 's'}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


# ---------------------------------------------------------------------------
# history lines: what new lines carry, and which lines count for which case
# ---------------------------------------------------------------------------


def suite_digest(keys: Iterable[str]) -> str:
    """sha256 of the sorted, newline-joined case keys: which cases a run had, in 64 characters."""
    return hashlib.sha256("\n".join(sorted(set(keys))).encode("utf-8")).hexdigest()


def history_case_fields(cases: Sequence[tuple[str, str, int, int]]) -> dict[str, Any]:
    """The per-case fields a new history line adds, from ``(key, verdict, passes, samples)``.

    * ``keys_sha256``: :func:`suite_digest` of every case of the run (errors included), so a
      later run knows whether the line covered its cases;
    * ``errored``: sorted keys whose verdict was an error (present but not evidence);
    * ``samples``: the samples per case of the run (the most common count; 1 without repeats);
    * ``sample_passes``: ``{key: [passes, samples]}`` for each judged case with a failed sample
      or another sample count; only when ``samples > 1`` (otherwise ``failed`` says it all).
    """
    judged = [c for c in cases if c[1] != "error"]
    counts = [c[3] for c in judged]
    common = statistics.mode(counts) if counts else 1
    out: dict[str, Any] = {
        "keys_sha256": suite_digest(c[0] for c in cases),
        "errored": sorted(c[0] for c in cases if c[1] == "error"),
        "samples": int(common),
    }
    if common > 1 or any(n > 1 for n in counts):
        out["sample_passes"] = {
            key: [int(k), int(n)] for key, _, k, n in sorted(judged) if k < n or n != common
        }
    return out


def _line_covers(line: Mapping[str, Any], digest: str, keys: frozenset[str]) -> bool:
    """Whether a history line recorded every current case (so it is evidence for each)."""
    failed = line.get("failed")
    if not isinstance(failed, list):
        return False
    recorded = line.get("keys_sha256")
    if isinstance(recorded, str):
        return recorded == digest
    # Lines from before keys_sha256: trust a line whose size is the current suite's and whose
    # failures are all current cases. A line from a suite of another size is left out for every
    # case (counting only its failures would make each case look worse than it is).
    try:
        size = int(line["total"]) + int(line.get("errors") or 0)
    except (KeyError, TypeError, ValueError):
        return False
    return size == len(keys) and all(k in keys for k in failed)


@dataclass(frozen=True)
class GateContext:
    """Everything the gate knows before the run: built once per process from the same files.

    Deterministic: the same history, judge, cases, baseline and settings give the same context
    (the controller and every xdist worker build their own).
    """

    settings: GateSettings
    keys: tuple[str, ...]
    history_lines: int
    lines_used: int
    lines_ignored: int
    history_passes: Mapping[str, int]
    history_samples: Mapping[str, int]
    history_runs: Mapping[str, int]
    prior_support: tuple[float, ...]
    prior_weights: tuple[float, ...]
    prior_mean: float | None
    prior_degenerate: str | None
    tables: Mapping[str, tuple[float, ...]]
    case_alpha: float
    case_threshold: float
    case_spent: float
    eligible: int
    testable: int
    history_alpha: float
    suite_alpha: float
    dispersion: float
    dispersion_df: int
    pass_rates: tuple[float, ...]
    hist_passed: int
    hist_total: int

    @classmethod
    def build(
        cls,
        history: Sequence[Mapping[str, Any]],
        *,
        judge: Mapping[str, Any] | None,
        case_keys: Sequence[str],
        baseline: Mapping[str, BaselineView],
        settings: GateSettings,
    ) -> GateContext:
        """The context of a run of ``case_keys`` (every collected case) against ``history``.

        Only this judge's lines count (:func:`history_for_judge`). For the per-case evidence a
        line counts for all current cases or for none: when its ``keys_sha256`` equals the
        digest of ``case_keys``, or, for lines from before that field, when its size
        (``total + errors``) equals the number of cases and every key it lists as failed is a
        current case. A case is counted as having passed a line unless the line lists it as
        failed (or, with repeats, in ``sample_passes``); keys in ``errored`` do not count.
        Every line with a ``pass_rate`` feeds the history gate, as before.
        """
        import numpy as np  # only where it is used: importing the plugin stays cheap

        from pytest_llmeval.stats import (
            discrete_bonferroni,
            fit_grid_prior,
            grid_predictive_cdf_table,
            run_dispersion,
        )

        lines = history_for_judge(history, judge) if judge is not None else list(history)
        keys = tuple(case_keys)
        index = {k: i for i, k in enumerate(keys)}
        keyset = frozenset(keys)
        digest = suite_digest(keys)
        used_y: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        used_s: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        for line in lines:
            if not keys or not _line_covers(line, digest, keyset):
                continue
            common = int(line.get("samples") or 1)
            y = np.full(len(keys), float(common))
            s = np.full(len(keys), float(common))
            for key in line["failed"]:
                y[index[key]] = 0.0
            sample_passes = line.get("sample_passes")
            if isinstance(sample_passes, Mapping):
                for key, pair in sample_passes.items():
                    if key in index:
                        y[index[key]], s[index[key]] = float(pair[0]), float(pair[1])
            for key in line.get("errored") or ():
                if key in index:
                    y[index[key]] = s[index[key]] = 0.0
            used_y.append(y)
            used_s.append(s)
        if used_y:
            y_tab = np.vstack(used_y)
            s_tab = np.vstack(used_s)
        else:
            y_tab = np.zeros((0, len(keys)))
            s_tab = np.zeros((0, len(keys)))
        k_all = y_tab.sum(axis=0).astype(int)
        n_all = s_tab.sum(axis=0).astype(int)
        runs_all = (s_tab > 0).sum(axis=0).astype(int)
        has = n_all > 0
        prior = fit_grid_prior(k_all[has].tolist(), n_all[has].tolist()) if has.any() else None

        samples = max(1, int(settings.samples))
        if samples == 1:
            fail_x = [0]
        else:
            fail_x = [x for x in range(samples) if x / samples < settings.repeat_pass_fraction]
        # the family: cases that passed in the baseline with enough history for the test
        # (the others keep the outcome table's rule, see _classify_thin)
        eligible = [
            i
            for i, k in enumerate(keys)
            if runs_all[i] >= settings.min_history and k in baseline and baseline[k].passed
        ]
        tables: dict[str, tuple[float, ...]] = {}
        case_alpha = settings.alpha * settings.case_share
        threshold, spent, testable = case_alpha, 0.0, 0
        if prior is not None and eligible:
            cdf = grid_predictive_cdf_table(
                k_all[eligible].tolist(), n_all[eligible].tolist(), samples, prior
            )
            for row, i in enumerate(eligible):
                tables[keys[i]] = tuple(float(v) for v in cdf[row])
            attainable = cdf[:, fail_x].tolist() if fail_x else [[] for _ in eligible]
            family = discrete_bonferroni(attainable, case_alpha)
            threshold, spent, testable = family.threshold, family.spent, family.testable

        points = tuple(float(h["pass_rate"]) for h in lines if h.get("pass_rate") is not None)
        remaining = max(settings.alpha - spent, 0.0)
        prediction_gate = settings.std_threshold is None and len(points) >= settings.min_history
        history_alpha = remaining * settings.history_share
        split = prediction_gate or settings.std_threshold is not None
        suite_alpha = remaining - history_alpha if split else remaining
        disp = run_dispersion(y_tab.tolist(), s_tab.tolist()) if len(used_y) >= 2 else None
        return cls(
            settings=settings,
            keys=keys,
            history_lines=len(lines),
            lines_used=len(used_y),
            lines_ignored=sum(1 for h in lines if isinstance(h.get("failed"), list)) - len(used_y),
            history_passes={k: int(k_all[i]) for i, k in enumerate(keys) if has[i]},
            history_samples={k: int(n_all[i]) for i, k in enumerate(keys) if has[i]},
            history_runs={k: int(runs_all[i]) for i, k in enumerate(keys) if has[i]},
            prior_support=() if prior is None else prior.support,
            prior_weights=() if prior is None else prior.weights,
            prior_mean=None if prior is None else prior.mean,
            prior_degenerate=None if prior is None else prior.degenerate,
            tables=tables,
            case_alpha=case_alpha,
            case_threshold=threshold,
            case_spent=spent,
            eligible=len(eligible),
            testable=testable,
            history_alpha=history_alpha,
            suite_alpha=suite_alpha,
            dispersion=1.0 if disp is None else max(1.0, disp.phi),
            dispersion_df=0 if disp is None else disp.df,
            pass_rates=points,
            hist_passed=sum(int(h.get("passed") or 0) for h in lines),
            hist_total=sum(int(h.get("total") or 0) for h in lines),
        )

    def case_p_value(self, key: str, passes: int, samples: int) -> float | None:
        """Posterior-predictive ``P[X <= passes]`` of the case, or None without its history."""
        n = self.history_samples.get(key, 0)
        if n == 0 or not self.prior_support or samples < 1:
            return None
        table = self.tables.get(key)
        if table is not None and samples == len(table) - 1 and 0 <= passes <= samples:
            return table[passes]
        from pytest_llmeval.stats import GridPrior, grid_predictive_cdf_table

        prior = GridPrior(
            self.prior_support, self.prior_weights, self.prior_mean or 0.0, 0, 0, 0, 0, 0.0,
            self.prior_degenerate,
        )  # fmt: skip
        row = grid_predictive_cdf_table([self.history_passes[key]], [n], samples, prior)
        return float(row[0, min(max(passes, 0), samples)])

    def adjusted(self, p: float) -> float:
        """The case's p on the family's scale: ``<= case_alpha`` exactly when ``p <= threshold``."""
        if self.case_threshold <= 0.0:
            return 0.0 if p <= 0.0 else 1.0
        return min(1.0, p * self.case_alpha / self.case_threshold)


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
        f"{passes}/{samples} now vs {k}/{n} in {_n(ctx.history_runs[key], 'recorded run')}"
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
        f"unconfirmed: {_n(runs, 'recorded run')} of this case, the history test needs"
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
    gates.append(_suite_drop_gate(ctx, outcomes))
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
    why = f"fewer than {_n(s.min_history, 'recorded run')}" if thin else "no history"
    extra = f", {unconfirmed} unconfirmed ({why})" if unconfirmed else ""
    extra += f", {flaky} flaky" if flaky else ""
    if update_baseline:
        return GateResult(
            "regressions",
            True,
            f"{_n(len(regs), 'regression')} accepted (updating the baseline){extra}",
            method=method,
            numbers=numbers,
        )
    ok = len(regs) <= s.max_regressions
    return GateResult(
        "regressions",
        ok,
        f"{_n(len(regs), 'regression')} (max {s.max_regressions}){extra}",
        method=method,
        numbers=numbers,
    )


def _history_gates(
    ctx: GateContext, rate: float | None, n: int, full_run: bool
) -> list[GateResult]:
    s = ctx.settings
    if not full_run:
        return [GateResult("history", True, "skipped: the run was narrowed (-k/-m/ids)", True)]
    if rate is None:
        return [GateResult("history", True, "skipped: no judged cases", True)]
    points = list(ctx.pass_rates)
    if len(points) < s.min_history:
        why = (
            f"skipped: {_n(len(points), 'recorded run')}, need {s.min_history}"
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
        f" over {_n(res.informative, 'varying case')}: CMH z = {res.z:.3f}"
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
        f"{_n(worse, 'case')} passed in the baseline and fail{'s' if worse == 1 else ''} now,"
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
            f"better: {_n(len(improvements), 'improvement')} vs"
            f" {_n(len(regressions), 'regression')},"
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
            f"{_n(len(improvements), 'improvement')} vs {_n(len(regressions), 'regression')},"
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
