"""Gate noise benchmark: false-alarm rate and power of the default gate, by simulation.

Calls the plugin's own decision functions (``GateContext.build``, ``classify``, ``decide`` from
``pytest_llmeval.core.gate``) on simulated runs, so it measures the rules the plugin applies.

Model (issue #10): a noisy suite in which 70% of cases pass each run with probability 0.97 and
30% with a probability drawn uniformly from (0.2, 0.8); a deterministic app in which every case
always passes. A team accepts a baseline once (that run is also the first history line),
records H - 1 more runs, then runs CI. Every run takes N samples per case (a repeated case
passes when at least half its samples pass). A CI run "fails" when any gate fails (the pytest
exit status 1). Scenarios for the CI run: unchanged (false alarms); 20% of cases lose 0.4 of
their pass probability; 10% lose 0.3; every case loses 0.05; one case of the deterministic app
breaks (always fails). The history is drawn once per replicate and its first 3, 10 and 30 lines
are the three H cells, so the cells of one replicate share their runs. The unchanged cells
with H >= 10 and N >= 3, whose rates sit nearest alpha, get extra replicates of that scenario
alone, so the upper end of their 95% Wilson interval says whether they meet alpha. A case with
fewer recorded runs than ``min_history`` (3) would be decided by the thin-history rule
(``_classify_thin``); with the baseline counted as the first history run no case here has fewer
than 3, and the benchmark counts such decisions to show it.

Usage: ``python benchmarks/bench_gate_noise.py`` (about 8 minutes on one busy core when the grid
prior's EM ran on numpy; since it is plain Python, so that a gate run imports no numpy, each
context costs several times more: ``--quick`` went from 15 s to 96 s, expect the full run to
take about 6 times as long); ``--quick`` for a smoke run. The last line gives the headline figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# one core: the machine is shared, and the simulation is vectorised per run, not per thread
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from pytest_llmeval.core.gate import (  # noqa: E402
    BaselineView,
    GateContext,
    GateSettings,
    classify,
    decide,
    history_case_fields,
)

ALPHA = 0.05
SEED = 20_261_127
HS = (3, 10, 30)
NS = (1, 3, 5)
SCENARIOS = ("unchanged", "20% lose 0.4", "10% lose 0.3", "all lose 0.05")


@dataclass(frozen=True)
class Cell:
    scenario: str
    m: int
    h: int
    n: int
    failed_runs: int
    runs: int
    regressions: float  # mean flagged regressions per run

    @property
    def rate(self) -> float:
        return self.failed_runs / self.runs


def noisy_probs(rng: np.random.Generator, m: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    p = np.full(m, 0.97)
    noisy = rng.random(m) < 0.3
    p[noisy] = rng.uniform(0.2, 0.8, int(noisy.sum()))
    return p


def shifted(
    rng: np.random.Generator, p: np.ndarray[Any, np.dtype[np.float64]], scenario: str
) -> np.ndarray[Any, np.dtype[np.float64]]:
    q = p.copy()
    if scenario == "20% lose 0.4":
        hit = rng.permutation(p.size)[: round(0.2 * p.size)]
        q[hit] = np.maximum(q[hit] - 0.4, 0.0)
    elif scenario == "10% lose 0.3":
        hit = rng.permutation(p.size)[: round(0.1 * p.size)]
        q[hit] = np.maximum(q[hit] - 0.3, 0.0)
    elif scenario == "all lose 0.05":
        q = np.maximum(q - 0.05, 0.0)
    elif scenario == "one breaks":
        q[int(rng.integers(p.size))] = 0.0
    return q


def verdicts(passes: np.ndarray[Any, np.dtype[np.int64]], n: int) -> np.ndarray[Any, Any]:
    """The plugin's verdict rule: all samples without repeats, half of them with repeats."""
    return passes == n if n == 1 else passes / n >= 0.5


def history_line(
    keys: Sequence[str], passes: np.ndarray[Any, np.dtype[np.int64]], n: int
) -> dict[str, Any]:
    ok = verdicts(passes, n)
    failed = [keys[i] for i in np.flatnonzero(~ok)]
    line: dict[str, Any] = {
        "total": len(keys),
        "passed": int(ok.sum()),
        "errors": 0,
        "pass_rate": float(ok.mean()),
        "failed": failed,
    }
    cases = [(k, "pass" if ok[i] else "fail", int(passes[i]), n) for i, k in enumerate(keys)]
    line.update(history_case_fields(cases))
    return line


THIN = "thin-history rule"
THIN_METHODS = (
    "outcome table: passed in the baseline, fails now",
    "one-sided Fisher exact test, baseline samples vs now",
)
thin_decisions = 0


def ci_run(
    ctx: GateContext,
    keys: Sequence[str],
    baseline: dict[str, BaselineView],
    passes: np.ndarray[Any, np.dtype[np.int64]],
    n: int,
) -> tuple[bool, int]:
    """One CI run through the plugin's functions: (run failed, regressions flagged)."""
    global thin_decisions
    ok = verdicts(passes, n)
    outcomes = []
    for i, key in enumerate(keys):
        verdict = "pass" if ok[i] else "fail"
        c = classify(ctx, key, verdict, baseline.get(key), passes=int(passes[i]), samples=n)
        if c.evidence is not None and c.evidence.method in THIN_METHODS:
            thin_decisions += 1
        outcomes.append((key, c.outcome, int(passes[i]), n))
    passed = int(ok.sum())
    decision = decide(
        ctx, outcomes=outcomes, passed=passed, failed=len(keys) - passed, full_run=True
    )
    new_failures = any(o[1] == "new_failure" for o in outcomes)
    regs = sum(1 for o in outcomes if o[1] == "regression")
    return (not decision.passed) or new_failures, regs


def simulate(m: int, n: int, reps: int, extra: int, rng: np.random.Generator) -> list[Cell]:
    """``reps`` replicates of every scenario, then ``extra`` of the unchanged noisy app alone
    (its H >= 10 cells only)."""
    keys = [f"llmeval_cases.jsonl::case-{i:04d}" for i in range(m)]
    settings = GateSettings(samples=n, alpha=ALPHA)
    apps = [("noisy", s) for s in SCENARIOS] + [("deterministic", "unchanged"),
                                                 ("deterministic", "one breaks")]  # fmt: skip
    tally = {(app, s, h): [0, 0] for app, s in apps for h in HS}
    for _ in range(reps):
        for app in ("noisy", "deterministic"):
            p = noisy_probs(rng, m) if app == "noisy" else np.ones(m)
            runs = rng.binomial(n, p, size=(max(HS), m))
            lines = [history_line(keys, runs[j], n) for j in range(max(HS))]
            ok0 = verdicts(runs[0], n)
            baseline = {
                k: BaselineView(bool(ok0[i]), int(runs[0][i]), n) for i, k in enumerate(keys)
            }
            now = {s: rng.binomial(n, shifted(rng, p, s)) for a, s in apps if a == app}
            for h in HS:
                ctx = GateContext.build(
                    lines[:h], judge=None, case_keys=keys, baseline=baseline, settings=settings
                )
                for s, passes in now.items():
                    failed, regs = ci_run(ctx, keys, baseline, passes, n)
                    t = tally[(app, s, h)]
                    t[0] += int(failed)
                    t[1] += regs
    long_hs = [h for h in HS if h >= 10]
    for _ in range(extra):
        p = noisy_probs(rng, m)
        runs = rng.binomial(n, p, size=(max(HS), m))
        lines = [history_line(keys, runs[j], n) for j in range(max(HS))]
        ok0 = verdicts(runs[0], n)
        baseline = {k: BaselineView(bool(ok0[i]), int(runs[0][i]), n) for i, k in enumerate(keys)}
        passes = rng.binomial(n, p)
        for h in long_hs:
            ctx = GateContext.build(
                lines[:h], judge=None, case_keys=keys, baseline=baseline, settings=settings
            )
            failed, regs = ci_run(ctx, keys, baseline, passes, n)
            t = tally[("noisy", "unchanged", h)]
            t[0] += int(failed)
            t[1] += regs
    cells = []
    for (app, s, h), v in tally.items():
        runs_ = reps + (extra if (app, s) == ("noisy", "unchanged") and h >= 10 else 0)
        name = f"{s}" if app == "noisy" else f"deterministic: {s}"
        cells.append(Cell(name, m, h, n, v[0], runs_, v[1] / runs_))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (smoke run)")
    args = parser.parse_args()
    reps = {50: 600, 200: 300, 1000: 100} if not args.quick else {50: 20, 200: 10, 1000: 4}
    # unchanged, H >= 10, N >= 3: replicates of that scenario alone, up to these totals
    totals = {50: 3000, 200: 3000, 1000: 500} if not args.quick else {50: 40, 200: 20, 1000: 8}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(
        f"alpha {ALPHA}, case_share {GateSettings().case_share}; replicates per cell: "
        + ", ".join(f"M={m}: {r}" for m, r in reps.items())
        + "; unchanged with H>=10, N>=3: "
        + ", ".join(f"M={m}: {r}" for m, r in totals.items())
    )
    rng = np.random.default_rng(SEED)
    cells: list[Cell] = []
    start = time.perf_counter()
    for m, r in reps.items():
        for n in NS:
            cells.extend(simulate(m, n, r, totals[m] - r if n >= 3 else 0, rng))
        print(f"  M={m} done after {time.perf_counter() - start:.0f} s", flush=True)
    names = [*SCENARIOS, "deterministic: unchanged", "deterministic: one breaks"]
    print()
    print("share of CI runs that fail (exit 1); columns H = recorded runs, N = samples per case")
    header = "scenario                   M    " + "  ".join(
        f"H={h:<2} N={n}" for h in HS for n in NS
    )
    print(header)
    index = {(c.scenario, c.m, c.h, c.n): c for c in cells}
    for name in names:
        for m in reps:
            row = "  ".join(f"{index[(name, m, h, n)].rate:8.3f}" for h in HS for n in NS)
            print(f"{name:<25} {m:>5}  {row}")
    from pytest_llmeval.stats import proportion_ci

    print()
    print("unchanged (false alarms), H >= 10: failed/runs and 95% Wilson interval")
    for c in cells:
        if c.scenario == "unchanged" and c.h >= 10:
            lo, hi = proportion_ci(c.failed_runs, c.runs)
            print(
                f"  M={c.m:<4} H={c.h:<2} N={c.n}: {c.failed_runs:>3}/{c.runs:<4} = {c.rate:.3f}"
                f"  ({lo:.3f}-{hi:.3f}){'  upper bound above alpha' if hi > ALPHA else ''}"
            )
    print(f"decisions by the thin-history rule: {thin_decisions}")
    worst_h10 = max(
        (c for c in cells if c.scenario == "unchanged" and c.h >= 10), key=lambda c: c.rate
    )
    worst_all = max((c for c in cells if c.scenario == "unchanged"), key=lambda c: c.rate)
    power = index[("10% lose 0.3", 1000, 10, 1)].rate
    det_ok = all(
        index[("deterministic: one breaks", m, h, n)].rate == 1.0
        for m in reps
        for h in HS
        for n in NS
    )
    det_quiet = all(
        index[("deterministic: unchanged", m, h, n)].rate == 0.0
        for m in reps
        for h in HS
        for n in NS
    )
    low, high = proportion_ci(worst_h10.failed_runs, worst_h10.runs)
    upper = max(
        float(proportion_ci(c.failed_runs, c.runs)[1])
        for c in cells
        if c.scenario == "unchanged" and c.h >= 10
    )
    p_lo, p_hi = proportion_ci(
        index[("10% lose 0.3", 1000, 10, 1)].failed_runs, index[("10% lose 0.3", 1000, 10, 1)].runs
    )
    pooled = [c for c in cells if c.scenario == "unchanged" and c.h >= 10]
    pooled_rate = sum(c.failed_runs for c in pooled) / sum(c.runs for c in pooled)
    print(f"elapsed {time.perf_counter() - start:.0f} s; load after {os.getloadavg()}")
    print(
        f"worst false-alarm rate with H>=10: {worst_h10.rate:.3f} (M={worst_h10.m},"
        f" H={worst_h10.h}, N={worst_h10.n}; 95% CI {low:.3f}-{high:.3f}) vs alpha {ALPHA} ="
        f" {worst_h10.rate / ALPHA:.2f}x; highest upper CI bound of an H>=10 cell {upper:.3f};"
        f" pooled over the H>=10 cells {pooled_rate:.3f}; worst overall {worst_all.rate:.3f}"
        f" (H={worst_all.h}); power for 10% lose 0.3 at M=1000,H=10,N=1: {power:.2f}"
        f" (CI {p_lo:.2f}-{p_hi:.2f}) vs 0.8; deterministic: one break always fails {det_ok},"
        f" unchanged never fails {det_quiet}; thin-history decisions {thin_decisions}"
    )


if __name__ == "__main__":
    main()
