"""What the gate knows before a run, and the values its decisions are made of. Pure.

The settings, the baseline view and the per-case evidence a decision carries; which history
lines count for which case, and the fields new lines add (:func:`history_case_fields`); and
:class:`GateContext`, built once per process from the committed history and baseline before any
case runs. The decisions themselves are in :mod:`pytest_llmeval.core.gate`.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import add
from typing import Any

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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
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
        from pytest_llmeval.stats import (
            discrete_bonferroni,
            fit_grid_prior,
            grid_predictive_cdf_rows,
            run_dispersion,
        )

        lines = history_for_judge(history, judge) if judge is not None else list(history)
        keys = tuple(case_keys)
        index = {k: i for i, k in enumerate(keys)}
        keyset = frozenset(keys)
        digest = suite_digest(keys)
        # one list per used line: each case's passes and samples in it (lists, not numpy: a
        # gate run with history imports no numpy)
        used_y: list[list[int]] = []
        used_s: list[list[int]] = []
        for line in lines:
            if not keys or not _line_covers(line, digest, keyset):
                continue
            common = int(line.get("samples") or 1)
            y = [common] * len(keys)
            s = [common] * len(keys)
            for key in line["failed"]:
                y[index[key]] = 0
            sample_passes = line.get("sample_passes")
            if isinstance(sample_passes, Mapping):
                for key, pair in sample_passes.items():
                    if key in index:
                        y[index[key]], s[index[key]] = int(pair[0]), int(pair[1])
            for key in line.get("errored") or ():
                if key in index:
                    y[index[key]] = s[index[key]] = 0
            used_y.append(y)
            used_s.append(s)
        k_all = [0] * len(keys)
        n_all = [0] * len(keys)
        runs_all = [0] * len(keys)
        for y, s in zip(used_y, used_s, strict=True):
            k_all = list(map(add, k_all, y))
            n_all = list(map(add, n_all, s))
            runs_all = list(map(add, runs_all, map(bool, s)))
        has = [i for i, n in enumerate(n_all) if n > 0]
        prior = fit_grid_prior([k_all[i] for i in has], [n_all[i] for i in has]) if has else None

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
        # a product of two settings, rounded off below 1e-15: 0.05 x 0.4 reads as 0.02
        case_alpha = round(settings.alpha * settings.case_share, 15)
        threshold, spent, testable = case_alpha, 0.0, 0
        if prior is not None and eligible:
            # cases with the same history counts share one table (and one attainable row)
            rows = grid_predictive_cdf_rows(
                [k_all[i] for i in eligible], [n_all[i] for i in eligible], samples, prior
            )
            picked: dict[int, list[float]] = {}
            attainable: list[list[float]] = []
            for row, i in zip(rows, eligible, strict=True):
                tables[keys[i]] = row
                fails = picked.get(id(row))
                if fails is None:
                    fails = picked[id(row)] = [row[x] for x in fail_x]
                attainable.append(fails)
            family = discrete_bonferroni(attainable, case_alpha)
            threshold, spent, testable = family.threshold, family.spent, family.testable

        points = tuple(float(h["pass_rate"]) for h in lines if h.get("pass_rate") is not None)
        remaining = max(settings.alpha - spent, 0.0)
        prediction_gate = settings.std_threshold is None and len(points) >= settings.min_history
        history_alpha = remaining * settings.history_share
        split = prediction_gate or settings.std_threshold is not None
        suite_alpha = remaining - history_alpha if split else remaining
        disp = run_dispersion(used_y, used_s) if len(used_y) >= 2 else None
        return cls(
            settings=settings,
            keys=keys,
            history_lines=len(lines),
            lines_used=len(used_y),
            lines_ignored=sum(1 for h in lines if isinstance(h.get("failed"), list)) - len(used_y),
            history_passes={keys[i]: k_all[i] for i in has},
            history_samples={keys[i]: n_all[i] for i in has},
            history_runs={keys[i]: runs_all[i] for i in has},
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
        from pytest_llmeval.stats import GridPrior, grid_predictive_cdf_rows

        prior = GridPrior(
            self.prior_support, self.prior_weights, self.prior_mean or 0.0, 0, 0, 0, 0, 0.0,
            self.prior_degenerate,
        )  # fmt: skip
        row = grid_predictive_cdf_rows([self.history_passes[key]], [n], samples, prior)[0]
        return row[min(max(passes, 0), samples)]

    def adjusted(self, p: float) -> float:
        """The case's p on the family's scale: ``<= case_alpha`` exactly when ``p <= threshold``."""
        if self.case_threshold <= 0.0:
            return 0.0 if p <= 0.0 else 1.0
        return min(1.0, p * self.case_alpha / self.case_threshold)


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
