"""Cached reruns: JSONL cases whose verdicts are all cached vs plain pytest, pair by pair.

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_run.py``.

Each scenario is ``JUDGE:CASES``: ``local`` (the built-in judge), ``custom`` (``--llmeval-judge``
``myjudge:judge``, a plain function) or ``anthropic`` (the Claude judge). The JSONL project's
SUT echoes the case's ground truth. One untimed run with ``--llmeval-update-baseline`` fills
the judge cache and writes the baseline (for ``anthropic`` against the fake Messages API in
``tests/fake_anthropic.py``, which is then stopped: the timed reruns point at a closed port, so
a single request would fail the run). The comparison is plain pytest with as many trivial
parametrized tests. Both run ``pytest -q -p no:cacheprovider`` in a fresh interpreter, A B A B
... ``--pairs`` times after one warm-up each; each run's wall time (``time.perf_counter``) and
peak RSS (``os.wait4``'s ``ru_maxrss`` of the pytest process) are taken, and the ratios
JSONL/plain are taken pair by pair: the median counts, min-max shows the spread.

Bytecode is written (to a private ``PYTHONPYCACHEPREFIX``) even when ``PYTHONDONTWRITEBYTECODE``
is set, as in an installed package: otherwise every run recompiles the plugin and pytest
re-rewrites its asserts, a cost real installs do not pay.

``--history N`` first records N runs of a noisy app (2% of its answers wrong in each run, a
different 2% each time) with ``--llmeval-record-history``, and times the rerun of the last one:
the gate then works on real history (grid prior, predictive tails, prediction bound, CMH test),
as in a project that records its runs. Without it the history holds the fill run alone.

Each rerun is checked: every case a cache hit, no judge call, and (``anthropic``) the SDK never
imported (a conftest prints ``'anthropic' in sys.modules`` at ``pytest_unconfigure``).
The last line holds every scenario's median ratios (targets, issue #13: local and custom
<= 1.10x at 10,000 and 20,000 cases, anthropic <= 1.3x at 2,000; peak RSS <= 1.10x).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# the script's folder is on sys.path
from fake_server import fake_server

BENCH_KEY = "sk-ant-bench-not-a-real-key-0000000000"
TARGETS = {"local": 1.10, "custom": 1.10, "anthropic": 1.30}
RSS_TARGET = 1.10
DEFAULT_SCENARIOS = "local:10000,custom:10000,local:20000,custom:20000,anthropic:2000"

CONFTEST = """\
import hashlib
import os
import sys

import pytest


@pytest.fixture(scope="session")
def llmeval_sut():
    run = os.environ.get("BENCH_RUN")  # --history: a noisy app, 2% of its answers wrong a run

    def answer(case):
        if run and int(hashlib.sha256(f"{case.id}:{run}".encode()).hexdigest(), 16) % 50 == 0:
            return "I do not know."
        return case.ground_truth

    return answer


def pytest_unconfigure(config):
    print(f"bench: anthropic imported: {'anthropic' in sys.modules}")
"""

CUSTOM_JUDGE = """\
def judge(case, response):
    return 1.0 if response == case.ground_truth else 0.0
"""


# -- running a command, its wall time and peak RSS ---------------------------------------------
@dataclass(frozen=True)
class Run:
    wall: float
    peak_mib: float
    returncode: int
    stdout: str


def bench_env(pycache: Path, **extra: str) -> dict[str, str]:
    """The environment of a timed run: bytecode written to ``pycache``, no step summary."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("GITHUB_STEP_SUMMARY", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def timed(command: Sequence[str], cwd: Path, env: dict[str, str]) -> Run:
    """Run ``command``; its wall time and the peak RSS of that process (``os.wait4``)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        text = out.read()
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return Run(wall, usage.ru_maxrss * scale / 2**20, proc.returncode, text)


def spread(values: Sequence[float], unit: str = "x", digits: int = 2) -> str:
    """``median (min-max)``."""
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{med:.{digits}f}{unit} ({low:.{digits}f}-{high:.{digits}f})"


@dataclass(frozen=True)
class Pairs:
    a: list[Run]
    b: list[Run]

    @property
    def wall_ratios(self) -> list[float]:
        return [x.wall / y.wall for x, y in zip(self.a, self.b, strict=True)]

    @property
    def rss_ratios(self) -> list[float]:
        return [x.peak_mib / y.peak_mib for x, y in zip(self.a, self.b, strict=True)]


def pairs(run_a: Callable[[], Run], run_b: Callable[[], Run], n: int) -> Pairs:
    """``n`` runs of A and of B in turn (A B A B ...), after one warm-up of each."""
    run_a()
    run_b()
    out_a: list[Run] = []
    out_b: list[Run] = []
    for _ in range(n):
        out_a.append(run_a())
        out_b.append(run_b())
    return Pairs(out_a, out_b)


def describe_runs(name: str, runs: Sequence[Run], width: int = 30) -> str:
    walls = [r.wall for r in runs]
    peaks = [r.peak_mib for r in runs]
    return f"{name:<{width}} wall {spread(walls, ' s')}   peak RSS {spread(peaks, ' MiB', 1)}"


# -- the projects --------------------------------------------------------------------------------
def write_jsonl_project(root: Path, cases: int, judge: str = "local") -> Path:
    project = root / f"jsonl_{judge}_{cases}"
    project.mkdir()
    spec = {"local": "local", "custom": "myjudge:judge", "anthropic": "anthropic"}[judge]
    (project / "pytest.ini").write_text(
        f"[pytest]\nllmeval_judge = {spec}\nllmeval_step_summary = false\n", encoding="utf-8"
    )
    (project / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    (project / "myjudge.py").write_text(CUSTOM_JUDGE, encoding="utf-8")
    with open(project / "llmeval_bench.jsonl", "w", encoding="utf-8") as out:
        for i in range(cases):
            line = {
                "id": f"case-{i:05d}",
                "question": f"How long does parcel {i} stay in the locker?",
                "ground_truth": f"Parcel {i} stays in the locker for five days after delivery.",
                "tags": ["bench"],
                "difficulty": "easy",
            }
            out.write(json.dumps(line) + "\n")
    return project


def write_python_project(root: Path, tests: int) -> Path:
    project = root / f"python_{tests}"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "test_bench.py").write_text(
        "import pytest\n\n\n"
        "def answer(question, ground_truth):\n"
        "    return ground_truth\n\n\n"
        f"@pytest.mark.parametrize('i', range({tests}))\n"
        "def test_case(i):\n"
        "    expected = f'Parcel {i} stays in the locker for five days after delivery.'\n"
        "    assert answer(f'How long does parcel {i} stay?', expected) == expected\n",
        encoding="utf-8",
    )
    return project


def closed_port_url() -> str:
    """A URL nothing listens on: a request there fails at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]


def check_rerun(run: Run, cases: int, judge: str, noisy: bool = False) -> None:
    hits = re.search(r"cache hits: (\d+)", run.stdout)
    calls = re.search(r"judge calls: (\d+)", run.stdout)
    problems = []
    if noisy:  # some answers fail: the gate decides, and any exit it gives is a real run
        if run.returncode not in (0, 1) or "llmeval gate:" not in run.stdout:
            problems.append(f"exit {run.returncode}")
    elif run.returncode != 0 or f"{cases} passed" not in run.stdout:
        problems.append(f"exit {run.returncode}")
    if hits is None or int(hits.group(1)) != cases:
        problems.append(f"cache hits {hits.group(1) if hits else '?'} of {cases}")
    if calls is not None and int(calls.group(1)) != 0:
        problems.append(f"{calls.group(1)} judge calls")
    if judge == "anthropic" and "bench: anthropic imported: False" not in run.stdout:
        problems.append("the anthropic SDK was imported")
    if problems:
        tail = "\n".join(run.stdout.strip().splitlines()[-15:])
        sys.exit(f"{judge} rerun is not a clean cached rerun ({'; '.join(problems)}):\n{tail}")


def scenario(root: Path, judge: str, cases: int, n: int, pycache: Path, history: int = 0) -> Pairs:
    jsonl = write_jsonl_project(root, cases, judge)
    python = root / f"python_{cases}"
    if not python.exists():
        python = write_python_project(root, cases)
    extra = {"PYTHONPATH": str(jsonl)} if judge == "custom" else {}
    fill = ["--llmeval-update-baseline"]
    if judge == "anthropic":
        with fake_server() as server:
            env = bench_env(pycache, ANTHROPIC_API_KEY=BENCH_KEY, ANTHROPIC_BASE_URL=server.url)
            first = timed([*PYTEST, *fill], jsonl, env)
        extra = {"ANTHROPIC_API_KEY": BENCH_KEY, "ANTHROPIC_BASE_URL": closed_port_url()}
    else:
        first = timed([*PYTEST, *fill], jsonl, bench_env(pycache, **extra))
    if first.returncode != 0:
        sys.exit(f"{judge}: the cache fill failed:\n{first.stdout[-3000:]}")
    print(f"{judge} {cases:,}: cache filled in {first.wall:.2f} s")
    for r in range(1, history + 1):  # recorded runs of a noisy app: the gate's history evidence
        hist = ["--llmeval-record-history"]
        ran = timed([*PYTEST, *hist], jsonl, bench_env(pycache, BENCH_RUN=str(r), **extra))
        if ran.returncode not in (0, 1):
            sys.exit(f"{judge}: history run {r} failed:\n{ran.stdout[-3000:]}")
    if history:
        extra = {**extra, "BENCH_RUN": str(history)}
        print(f"{judge} {cases:,}: {history} runs of a noisy app recorded in the history")
    env_a = bench_env(pycache, **extra)
    env_b = bench_env(pycache)

    def run_a() -> Run:
        run = timed(PYTEST, jsonl, env_a)
        check_rerun(run, cases, judge, noisy=history > 0)
        return run

    def run_b() -> Run:
        run = timed(PYTEST, python, env_b)
        if run.returncode != 0:
            sys.exit(f"plain pytest failed:\n{run.stdout[-2000:]}")
        return run

    return pairs(run_a, run_b, n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--scenarios", default=DEFAULT_SCENARIOS, help="JUDGE:CASES,... (local|custom|anthropic)"
    )
    parser.add_argument("--pairs", type=int, default=5, help="timed A B pairs per scenario")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="record this many runs of a noisy app (2%% of answers wrong a run) before timing, so"
        " the rerun's gate works on real history (local and custom judges)",
    )
    args = parser.parse_args()
    wanted = []
    for item in args.scenarios.split(","):
        judge, _, count = item.strip().partition(":")
        if judge not in TARGETS or not count.isdigit():
            parser.error(f"bad scenario {item!r}: expected JUDGE:CASES")
        wanted.append((judge, int(count)))

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    summary = []
    with tempfile.TemporaryDirectory(prefix="llmeval-bench-run-") as tmp:
        root = Path(tmp)
        pycache = root / "pycache"
        for judge, cases in wanted:
            history = args.history if judge != "anthropic" else 0
            result = scenario(root, judge, cases, args.pairs, pycache, history)
            label = f"{judge} judge, {cases:,} cached cases"
            print(describe_runs(label, result.a, 34))
            print(describe_runs(f"plain pytest, {cases:,} tests", result.b, 34))
            wall, rss = result.wall_ratios, result.rss_ratios
            per_case = [
                (a.wall - b.wall) / cases * 1e6 for a, b in zip(result.a, result.b, strict=True)
            ]
            print(
                f"  ratio llmeval/plain, pair by pair over {args.pairs}: wall {spread(wall)},"
                f" peak RSS {spread(rss)}; extra per case {spread(per_case, ' us', 0)}"
            )
            summary.append(
                f"{judge} {cases:,}: wall {statistics.median(wall):.2f}x"
                f" [{min(wall):.2f}-{max(wall):.2f}] (target <= {TARGETS[judge]:.2f}x),"
                f" RSS {statistics.median(rss):.2f}x [{min(rss):.2f}-{max(rss):.2f}]"
            )
        print(f"load after: {os.getloadavg()}")
    print(
        f"cached rerun vs plain pytest, median of pairs (RSS target <= {RSS_TARGET:.2f}x): "
        + "; ".join(summary)
    )


if __name__ == "__main__":
    main()
