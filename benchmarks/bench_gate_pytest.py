"""Gate noise on real pytest runs: issue #10's targets measured with ``python -m pytest``.

Each history is a temporary project: one case file, ``llmeval_judge = local``, and a SUT that
answers a case's reference or a wrong answer ("Sorry, no idea.", which the local judge fails)
at random, with a per-case pass probability read from a JSON file. The SUT's random draw is
keyed by the ``BENCH_GATE_RUN`` environment variable and the case id, so runs differ from each
other but every run is reproducible. The workflow is the issue's: one
``--llmeval-update-baseline`` run (it also records the first history line), then
``--llmeval-record-history`` for the next 9 runs (10 history runs), then plain ``pytest`` runs
(default settings, no repeats) whose exit status is counted (1: the run fails).

Scenarios (targets from issue #10):

* (a) unchanged noisy app, 200 cases (70% pass with p = 0.97, 30% with p ~ U(0.2, 0.8)):
  at most 5% of plain runs fail;
* (b) the same app, same history, after 20% of its cases lose 0.4 of their pass
  probability: at least 80% fail;
* (c) a deterministic app (every case always passes): a run in which one case breaks always
  fails (a different case each run), an unchanged run never fails.

Plain runs of one history share that history, so their failures are correlated; several
independent histories (each its own app draw) spread that. The intervals are Wilson 95%
intervals over runs, which ignores that correlation: read them as a lower bound on the
uncertainty. The statistical weight is in ``bench_gate_noise.py`` (thousands of replicates
through the same functions); this benchmark shows the plugin end to end does what the
simulation says.

Runs use ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 -p pytest_llmeval.plugin`` (the dev venv has
other plugins that only add start-up time) and ``-p no:cacheprovider``. The local judge's
cache makes repeated answers free, so a run costs about 1-2 s on a busy core.

Usage: ``python benchmarks/bench_gate_pytest.py`` (about 5 minutes on one busy core);
``--quick`` for a smoke run. The last line gives the four rates against their targets.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20_261_210
CASES = 200
HISTORY_RUNS = 10  # the baseline run + 9 recorded runs

CONFTEST = '''\
"""Benchmark SUT: the reference or a wrong answer, with each case's pass probability."""

from __future__ import annotations

import json
import os
import random

import pytest


@pytest.fixture(scope="session")
def llmeval_sut():
    with open(os.environ["BENCH_GATE_PROBS"], encoding="utf-8") as f:
        probs = json.load(f)
    run = os.environ["BENCH_GATE_RUN"]

    def answer(case):
        draw = random.Random(f"{run}:{case.id}").random()
        return case.ground_truth if draw < probs[case.id] else "Sorry, no idea."

    return answer
'''

FAIL_LINE = re.compile(r"^\s+FAIL (\w+):", re.MULTILINE)


@dataclass
class Tally:
    """Plain runs of one scenario: how many failed, and which gates failed them."""

    runs: int = 0
    failed: int = 0
    gates: Counter[str] = field(default_factory=Counter)

    def add(self, failed: bool, gates: Sequence[str]) -> None:
        self.runs += 1
        self.failed += int(failed)
        self.gates.update(gates)

    @property
    def rate(self) -> float:
        return self.failed / self.runs if self.runs else float("nan")


class Project:
    """A temporary pytest project with ``CASES`` cases and the benchmark SUT."""

    def __init__(self, root: Path, ids: Sequence[str]) -> None:
        self.root = root
        self.ids = list(ids)
        root.mkdir(parents=True)
        with (root / "llmeval_cases.jsonl").open("w", encoding="utf-8") as f:
            for i, cid in enumerate(ids):
                f.write(
                    json.dumps(
                        {
                            "id": cid,
                            "question": f"Which warehouse ships parcel {i}?",
                            "ground_truth": f"Parcel {i} ships from the northern warehouse.",
                        }
                    )
                    + "\n"
                )
        (root / "pytest.ini").write_text("[pytest]\nllmeval_judge = local\n", encoding="utf-8")
        (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
        self.pytest_runs = 0
        self.seconds = 0.0

    def run(self, probs: dict[str, float], run: str, *flags: str) -> tuple[int, list[str]]:
        """One ``python -m pytest`` run: (exit status, names of the failed gates)."""
        path = self.root / "probs.json"
        path.write_text(json.dumps(probs), encoding="utf-8")
        env = dict(os.environ)
        env.update(
            BENCH_GATE_PROBS=str(path),
            BENCH_GATE_RUN=run,
            PYTEST_DISABLE_PLUGIN_AUTOLOAD="1",
            PYTHONDONTWRITEBYTECODE="1",
        )
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        cmd += ["-p", "pytest_llmeval.plugin", *flags]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=self.root, env=env, capture_output=True, text=True, check=False
        )
        self.seconds += time.perf_counter() - start
        self.pytest_runs += 1
        if proc.returncode not in (0, 1):
            raise SystemExit(
                f"pytest exited {proc.returncode} in {self.root} (run {run}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc.returncode, FAIL_LINE.findall(proc.stdout)

    def record_history(self, probs: dict[str, float], tag: str) -> None:
        """The baseline run, then ``HISTORY_RUNS - 1`` recorded runs."""
        self.run(probs, f"{tag}-h0", "--llmeval-update-baseline")
        for j in range(1, HISTORY_RUNS):
            self.run(probs, f"{tag}-h{j}", "--llmeval-record-history")


def noisy_probs(rng: random.Random, ids: Sequence[str]) -> dict[str, float]:
    return {cid: 0.97 if rng.random() >= 0.3 else rng.uniform(0.2, 0.8) for cid in ids}


def shifted(rng: random.Random, probs: dict[str, float]) -> dict[str, float]:
    """20% of the cases lose 0.4 of their pass probability."""
    ids = sorted(probs)
    hit = set(rng.sample(ids, round(0.2 * len(ids))))
    return {cid: max(p - 0.4, 0.0) if cid in hit else p for cid, p in probs.items()}


def wilson(k: int, n: int) -> tuple[float, float]:
    from pytest_llmeval.stats import proportion_ci

    low, high = proportion_ci(k, n)
    return float(low), float(high)


def show(name: str, t: Tally, target: str) -> str:
    low, high = wilson(t.failed, t.runs)
    gates = ", ".join(f"{g} {c}" for g, c in sorted(t.gates.items())) or "none"
    print(
        f"{name:<40} {t.failed:>4}/{t.runs:<4} = {t.rate:.3f}  (95% CI {low:.3f}-{high:.3f})"
        f"  target {target}; failed gates: {gates}",
        flush=True,
    )
    return f"{t.rate:.3f} ({t.failed}/{t.runs}, CI {low:.3f}-{high:.3f}) vs {target}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", type=int, default=4, help="independent noisy histories")
    parser.add_argument("--plain", type=int, default=20, help="unchanged runs per history")
    parser.add_argument("--shifted", type=int, default=5, help="shifted runs per history")
    parser.add_argument("--det-unchanged", type=int, default=3, help="deterministic, unchanged")
    parser.add_argument("--det-broken", type=int, default=5, help="deterministic, one breaks")
    parser.add_argument("--quick", action="store_true", help="one history, few runs (smoke)")
    args = parser.parse_args()
    if args.quick:
        args.histories, args.plain, args.shifted, args.det_unchanged, args.det_broken = (
            1, 3, 2, 1, 2,
        )  # fmt: skip
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(
        f"{CASES} cases; {HISTORY_RUNS} history runs (baseline + {HISTORY_RUNS - 1} recorded);"
        f" {args.histories} noisy histories x ({args.plain} unchanged + {args.shifted} shifted)"
        f" plain runs; deterministic: {args.det_unchanged} unchanged + {args.det_broken} broken",
        flush=True,
    )
    ids = [f"case-{i:03d}" for i in range(CASES)]
    unchanged, worse, det_same, det_broken = Tally(), Tally(), Tally(), Tally()
    start = time.perf_counter()
    runs = 0
    with tempfile.TemporaryDirectory(prefix="bench_gate_pytest-") as tmp:
        for h in range(args.histories):
            rng = random.Random(f"{SEED}:{h}")
            probs = noisy_probs(rng, ids)
            project = Project(Path(tmp) / f"noisy-{h}", ids)
            project.record_history(probs, f"n{h}")
            for r in range(args.plain):
                code, gates = project.run(probs, f"n{h}-u{r}")
                unchanged.add(code == 1, gates)
            worse_probs = shifted(rng, probs)
            for r in range(args.shifted):
                code, gates = project.run(worse_probs, f"n{h}-s{r}")
                worse.add(code == 1, gates)
            runs += project.pytest_runs
            print(
                f"  history {h}: {project.pytest_runs} pytest runs in {project.seconds:.0f} s;"
                f" so far unchanged {unchanged.failed}/{unchanged.runs} failed,"
                f" shifted {worse.failed}/{worse.runs}",
                flush=True,
            )
        ones = dict.fromkeys(ids, 1.0)
        project = Project(Path(tmp) / "deterministic", ids)
        project.record_history(ones, "d")
        for r in range(args.det_unchanged):
            code, gates = project.run(ones, f"d-u{r}")
            det_same.add(code == 1, gates)
        rng = random.Random(f"{SEED}:deterministic")
        for r, cid in enumerate(rng.sample(ids, args.det_broken)):
            code, gates = project.run({**ones, cid: 0.0}, f"d-b{r}")
            det_broken.add(code == 1, gates)
        runs += project.pytest_runs
    elapsed = time.perf_counter() - start
    print()
    print("share of plain pytest runs that exit 1 (default settings, no repeats)")
    a = show("(a) unchanged noisy app", unchanged, "<= 0.05")
    b = show("(b) 20% of cases lose 0.4", worse, ">= 0.80")
    c1 = show("(c) deterministic, one case breaks", det_broken, "1.00")
    c2 = show("(c) deterministic, unchanged", det_same, "0.00")
    print(f"{runs} pytest runs in {elapsed:.0f} s; load after {os.getloadavg()}")
    print(
        f"real pytest: unchanged noisy {a}; 20% lose 0.4 {b}; deterministic one breaks {c1};"
        f" deterministic unchanged {c2}"
    )


if __name__ == "__main__":
    main()
