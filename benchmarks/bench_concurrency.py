"""Run-ahead concurrency with the Claude judge, against the fake Messages API.

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_concurrency.py``.

Scenario 1 (speed-up). ``--cases`` (200) cases; the SUT is synchronous and sleeps
``--sut-latency`` (50 ms) with ``time.sleep``, run with ``llmeval_sut_concurrency = 16`` so SUT
calls overlap in threads; the fake judge answers after ``--judge-latency`` (200 ms). The
standalone fake server (``tests/fake_anthropic.py``) runs in its own process; pytest runs in a
subprocess with ``-p no:cacheprovider --llmeval-no-cache`` (every case is judged) at
``--llmeval-concurrency`` 1 and 16 (16: best of ``--repeat`` runs, 3 by default, like the other
benchmarks; all runs are printed). Each run's raw wall time is printed, and the wall time minus
pytest's start-up (the best wall time of ``pytest --collect-only`` on the same project: Python,
pytest, the plugin and collection). ``import anthropic`` happens at the first judgement, so it
stays inside "wall minus start-up"; its own cost is printed for reference. The ideal is
``N * (sut + judge) / concurrency``.

Scenario 2 (rate limit). ``--rpm-cases`` (100) cases at concurrency 16 with ``llmeval_rpm = 300``
against a server that answers 429 (with ``retry-after``) beyond 300 requests per minute. The
server checks the limit on a sliding ``--rpm-window`` (10 s: 50 requests per 10 s), stricter
than a 60 s window, which 100 requests in about 20 s could never exceed. Printed: failed or
errored cases (target 0), the server's 429 count, and throughput (judgements per second over
the run, raw and excluding start-up) as a fraction of the limit (target >= 85%).

Scenario 3 (issue #13's cold-run target). The same 200 cases against a hand-written
parametrized pytest file doing the same calls (the SUT sleep, then ``messages.create`` with the
SDK) for every case on a 16-thread pool, as plain pytest (``-p no:pytest_llmeval``). The two run
in turn, A B A B, ``--pairs`` times after one warm-up each; the ratio is taken pair by pair.
Also printed for both: the time from process start to the first judge request (the fake server
records each request's ``time.monotonic()``, the system-wide clock on Linux).
``--only-hand-written`` runs this scenario alone.

Bytecode is written to a private ``PYTHONPYCACHEPREFIX`` (as in an installed package, see
``bench_run.py``), so no run recompiles the plugin.

The last line is scenario 3's median ratio llmeval / hand-written (target <= 1.10x) with the
min-max spread, and the time to the first judge request of both.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the script's folder is on sys.path
from fake_server import FakeServer
from fake_server import fake_server as shared_fake_server

BENCH_KEY = "sk-ant-bench-not-a-real-key-0000000000"
TARGET_RATIO = 1.5
TARGET_THROUGHPUT = 0.85
TARGET_HAND_WRITTEN = 1.10

CONFTEST = """\
import time

import pytest

SUT_LATENCY = {sut_latency!r}


@pytest.fixture(scope="session")
def llmeval_sut():
    def answer(case):
        time.sleep(SUT_LATENCY)  # a synchronous, network-bound SUT
        return f"Parcel {{case.id}} stays in the locker for five days. [[score=0.9]]"

    return answer
"""


@dataclass(frozen=True)
class Run:
    wall: float
    summary: dict[str, Any]
    server: str
    tail: str
    first_request: float | None = None  # seconds from process start to the first judge request


LISTEN_BACKLOG = [128]
PYCACHE = [str(Path(tempfile.gettempdir()) / "llmeval-bench-pycache")]


@contextlib.contextmanager
def fake_server(*args: str) -> Iterator[FakeServer]:
    """The standalone fake server (``benchmarks/fake_server.py``) with ``--listen-backlog``."""
    with shared_fake_server(*args, backlog=LISTEN_BACKLOG[0]) as server:
        yield server


def write_project(root: Path, cases: int, sut_latency: float, extra_ini: str = "") -> Path:
    root.mkdir(parents=True)
    ini = (
        "[pytest]\n"
        "llmeval_judge = anthropic\n"
        "llmeval_sut_concurrency = 16\n"
        "llmeval_step_summary = false\n" + extra_ini
    )
    (root / "pytest.ini").write_text(ini, encoding="utf-8")
    (root / "conftest.py").write_text(CONFTEST.format(sut_latency=sut_latency), encoding="utf-8")
    with open(root / "llmeval_bench.jsonl", "w", encoding="utf-8") as out:
        for i in range(cases):
            line = {
                "id": f"case-{i:04d}",
                "question": f"How long does parcel {i} stay in the locker?",
                "ground_truth": "Five days after delivery.",
            }
            out.write(json.dumps(line) + "\n")
    return root


def environment(url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("GITHUB_STEP_SUMMARY", None)
    env.pop("ANTHROPIC_AUTH_TOKEN", None)
    env["ANTHROPIC_API_KEY"] = BENCH_KEY
    if url is not None:
        env["ANTHROPIC_BASE_URL"] = url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE[0]
    return env


def pytest_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]


def startup(project: Path, repeat: int = 3) -> float:
    """Best wall time of ``pytest --collect-only`` on the project (no judging, no SUT)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(
            pytest_cmd("--collect-only"),
            cwd=project,
            env=environment(None),
            check=True,
            capture_output=True,
        )
        best = min(best, time.perf_counter() - t0)
    return best


def import_cost(repeat: int = 3) -> float:
    """Best extra wall time of ``import anthropic`` over an empty interpreter."""

    def best(code: str) -> float:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times.append(time.perf_counter() - t0)
        return min(times)

    return max(0.0, best("import anthropic") - best("pass"))


@dataclass(frozen=True)
class PytestRun:
    """One pytest run of ``project`` against its own fake server (also used by bench_ratelimit)."""

    wall: float
    started: float  # time.monotonic() just before the child started
    proc: subprocess.CompletedProcess[str]
    summary: dict[str, Any]  # the JSON report's summary
    server: FakeServer

    @property
    def tail(self) -> str:
        out = self.proc.stdout.strip()
        return out.splitlines()[-1] if out else self.proc.stderr


def run_against_server(project: Path, server_args: list[str], *args: str) -> PytestRun:
    """pytest with no cache and a JSON report against a fake server started with
    ``server_args``: its wall time, output, report summary and the server's record."""
    report = project / "report.json"
    with fake_server(*server_args) as server:
        t0 = time.perf_counter()
        started = time.monotonic()
        proc = subprocess.run(
            pytest_cmd("--llmeval-no-cache", "--llmeval-report", str(report), *args),
            cwd=project,
            env=environment(server.url),
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
    if not report.exists():
        tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
        raise RuntimeError(f"pytest wrote no report (exit {proc.returncode}): {tail}")
    summary = json.loads(report.read_text(encoding="utf-8"))["summary"]
    report.unlink()
    return PytestRun(wall, started, proc, summary, server)


def run_pytest(project: Path, server_args: list[str], *args: str) -> Run:
    r = run_against_server(project, server_args, *args)
    first = r.server.first_request
    return Run(
        r.wall, r.summary, r.server.summary, r.tail, None if first is None else first - r.started
    )


HAND_WRITTEN = """\
import concurrent.futures
import json
import time

import anthropic
import pytest

N = {cases}
SUT_LATENCY = {sut_latency!r}
client = anthropic.Anthropic(max_retries=4, timeout=60.0)
pool = concurrent.futures.ThreadPoolExecutor(max_workers={concurrency})
futures = {{}}


def sut(i):
    time.sleep(SUT_LATENCY)  # the same synchronous, network-bound SUT
    return f"Parcel case-{{i:04d}} stays in the locker for five days. [[score=0.9]]"


def evaluate(i):
    answer = sut(i)
    message = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=1024,
        system="You grade answers. Reply with JSON: score (0 to 1), passed, reasoning.",
        messages=[{{
            "role": "user",
            "content": "Grade the response against the ground truth.\\n"
            '<untrusted_ground_truth id="0a1b">\\nFive days after delivery.\\n'
            '</untrusted_ground_truth id="0a1b">\\n'
            f'<untrusted_response id="0a1b">\\n{{answer}}\\n</untrusted_response id="0a1b">',
        }}],
    )
    return json.loads(message.content[0].text)


@pytest.mark.parametrize("i", range(N))
def test_case(i):
    if not futures:  # the first test starts every case on the pool
        futures.update({{j: pool.submit(evaluate, j) for j in range(N)}})
    verdict = futures[i].result()
    assert verdict["score"] >= 0.7
"""


def write_hand_written(root: Path, cases: int, sut_latency: float, concurrency: int) -> Path:
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    text = HAND_WRITTEN.format(cases=cases, sut_latency=sut_latency, concurrency=concurrency)
    (root / "test_hand_written.py").write_text(text, encoding="utf-8")
    return root


def run_hand_written(project: Path, server_args: list[str], cases: int) -> Run:
    """The hand-written thread-pool file, as plain pytest (the plugin off)."""
    with fake_server(*server_args) as server:
        t0 = time.perf_counter()
        started = time.monotonic()
        proc = subprocess.run(
            pytest_cmd("-p", "no:pytest_llmeval"),
            cwd=project,
            env=environment(server.url),
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    if proc.returncode != 0 or f"{cases} passed" not in tail:
        raise RuntimeError(f"the hand-written file failed (exit {proc.returncode}): {tail}")
    first = server.first_request
    return Run(wall, {}, server.summary, tail, None if first is None else first - started)


def request_span(server_line: str) -> float | None:
    """Seconds between the first and the last judge request, from the fake server's summary."""
    match = re.search(r"arrived over ([0-9.]+) s", server_line)
    return float(match.group(1)) if match else None


def count_429(server_line: str) -> int:
    match = re.search(r"429: (\d+)", server_line)
    return int(match.group(1)) if match else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--sut-latency", type=float, default=0.05)
    parser.add_argument("--judge-latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rpm-cases", type=int, default=100)
    parser.add_argument("--rpm", type=int, default=300)
    parser.add_argument("--rpm-window", type=float, default=10.0)
    parser.add_argument("--skip-sequential", action="store_true", help="no concurrency-1 run")
    parser.add_argument("--repeat", type=int, default=3, help="runs at the top concurrency")
    parser.add_argument(
        "--pairs", type=int, default=5, help="llmeval / hand-written pairs (scenario 3)"
    )
    parser.add_argument("--only-hand-written", action="store_true", help="scenario 3 only")
    parser.add_argument(
        "--listen-backlog", type=int, default=128, help="fake server's TCP listen backlog"
    )
    args = parser.parse_args(argv)
    LISTEN_BACKLOG[0] = args.listen_backlog

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    per_case = args.sut_latency + args.judge_latency
    with tempfile.TemporaryDirectory(prefix="bench_concurrency_") as tmp:
        PYCACHE[0] = str(Path(tmp) / "pycache")
        speed = write_project(Path(tmp) / "speed", args.cases, args.sut_latency)
        latency = ["--latency", str(args.judge_latency)]
        hand = write_hand_written(
            Path(tmp) / "hand", args.cases, args.sut_latency, args.concurrency
        )
        versus = hand_written_pairs(speed, hand, latency, args)
        if args.only_hand_written:
            print(versus)
            return 0
        base = startup(speed)
        imp = import_cost()
        print(
            f"scenario 1: {args.cases} cases, sync SUT sleeping {args.sut_latency * 1000:.0f} ms"
            f" (llmeval_sut_concurrency = 16), fake judge latency"
            f" {args.judge_latency * 1000:.0f} ms, --llmeval-no-cache"
        )
        print(f"fake server listen backlog: {args.listen_backlog} (socketserver default: 5)")
        print(f"pytest start-up (collect-only, best of 3): {base:.2f} s")
        print(f"import anthropic (paid at the first judgement, inside the run): {imp:.2f} s")
        walls: dict[int, Run] = {}
        levels = [args.concurrency] if args.skip_sequential else [1, args.concurrency]
        for level in levels:
            # the sequential run takes a minute and varies little: one run; the concurrent one
            # is short and sensitive to the shared machine: best of --repeat, like the others
            runs = []
            for _ in range(1 if level == 1 else args.repeat):
                one = run_pytest(speed, latency, "--llmeval-concurrency", str(level))
                s = one.summary
                if s["passed"] != args.cases or s["errors"] or s["judge_calls"] != args.cases:
                    raise RuntimeError(f"concurrency {level}: not every case judged: {one.tail}")
                runs.append(one)
            run = min(runs, key=lambda r: r.wall)
            if len(runs) > 1:
                walls_text = ", ".join(f"{r.wall:.2f}" for r in runs)
                print(f"concurrency {level:>2}: runs {walls_text} s; best counts")
            walls[level] = run
            ideal = args.cases * per_case / level
            print(
                f"concurrency {level:>2}: wall {run.wall:6.2f} s,"
                f" minus start-up {run.wall - base:6.2f} s, ideal {ideal:6.2f} s"
                f" (wall/ideal {run.wall / ideal:.2f}x raw,"
                f" {(run.wall - base) / ideal:.2f}x excluding start-up); {run.server}"
            )
        top = walls[args.concurrency]
        span = request_span(top.server)
        if span is not None:
            # From the first judge request to the last verdict, plus the first case's SUT call:
            # the part of the run the concurrency machinery is responsible for.
            busy = args.sut_latency + span + args.judge_latency
            print(
                f"concurrency {args.concurrency}: judge requests arrived over {span:.2f} s;"
                f" first SUT call to last verdict {busy:.2f} s ="
                f" {busy / (args.cases * per_case / args.concurrency):.2f}x the ideal"
                " (steady state, without start-up and the SDK import)"
            )
        if 1 in walls:
            print(
                f"speed-up 1 -> {args.concurrency}: {walls[1].wall / top.wall:.1f}x raw,"
                f" {(walls[1].wall - base) / (top.wall - base):.1f}x excluding start-up"
            )

        limited = write_project(
            Path(tmp) / "rpm", args.rpm_cases, args.sut_latency, f"llmeval_rpm = {args.rpm}\n"
        )
        window_limit = max(1, round(args.rpm * args.rpm_window / 60.0))
        server = [*latency, "--rpm", str(window_limit), "--rpm-window", str(args.rpm_window)]
        run = run_pytest(limited, server, "--llmeval-concurrency", str(args.concurrency))
        s = run.summary
        failed = s["failed"] + s["errors"]
        limit_per_s = args.rpm / 60.0
        raw = args.rpm_cases / run.wall / limit_per_s
        net = args.rpm_cases / (run.wall - base) / limit_per_s
        print(
            f"scenario 2: {args.rpm_cases} cases, llmeval_rpm = {args.rpm}, server limit"
            f" {window_limit} requests per {args.rpm_window:g} s ({args.rpm}/min),"
            f" concurrency {args.concurrency}"
        )
        print(
            f"wall {run.wall:.2f} s (minus start-up {run.wall - base:.2f} s);"
            f" judge calls {s['judge_calls']}; server 429s: {count_429(run.server)}; {run.server}"
        )
        print(f"failed or errored cases: {failed} (target 0)")
        print(
            f"throughput: {raw:.1%} of the limit raw, {net:.1%} excluding start-up"
            f" (target >= {TARGET_THROUGHPUT:.0%})"
        )

    top = walls[args.concurrency]
    ideal = args.cases * per_case / args.concurrency
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    # The ideal N*(sut+judge)/concurrency has no fixed costs; the SDK import (timed apart,
    # paid once per process) is the largest one after pytest's own start-up.
    print(
        f"ratio wall/ideal at concurrency {args.concurrency}: {top.wall / ideal:.2f}x raw,"
        f" {(top.wall - base) / ideal:.2f}x excluding pytest start-up,"
        f" {(top.wall - base - imp) / ideal:.2f}x excluding start-up and the SDK import"
        f" (target <= {TARGET_RATIO}x)"
    )
    print(versus)
    return 0


def hand_written_pairs(
    speed: Path, hand: Path, latency: list[str], args: argparse.Namespace
) -> str:
    """Scenario 3: llmeval at ``--concurrency`` against the hand-written thread-pool file, A B
    A B ... ``--pairs`` times after one warm-up each; returns the closing line."""
    cases = args.cases
    level = str(args.concurrency)
    run_pytest(speed, latency, "--llmeval-concurrency", level)
    run_hand_written(hand, latency, cases)
    ours: list[Run] = []
    theirs: list[Run] = []
    for _ in range(args.pairs):
        one = run_pytest(speed, latency, "--llmeval-concurrency", level)
        if one.summary["passed"] != cases or one.summary["judge_calls"] != cases:
            raise RuntimeError(f"not every case judged: {one.tail}")
        ours.append(one)
        theirs.append(run_hand_written(hand, latency, cases))
    ratios = [a.wall / b.wall for a, b in zip(ours, theirs, strict=True)]

    def spread(values: list[float], unit: str) -> str:
        return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"

    def firsts(runs: list[Run]) -> str:
        known = [r.first_request for r in runs if r.first_request is not None]
        return spread(known, " s") if known else "n/a"

    print(
        f"scenario 3: {cases} cases, SUT {args.sut_latency * 1000:.0f} ms, judge"
        f" {args.judge_latency * 1000:.0f} ms, concurrency {level}, {args.pairs} pairs"
    )
    print(
        f"llmeval:      wall {spread([r.wall for r in ours], ' s')},"
        f" process start to first judge request {firsts(ours)}"
    )
    print(
        f"hand-written: wall {spread([r.wall for r in theirs], ' s')},"
        f" process start to first judge request {firsts(theirs)}"
        " (a parametrized pytest file, SUT + judge per case on a thread pool)"
    )
    return (
        f"ratio llmeval/hand-written thread pool, cold run, median of {args.pairs} pairs:"
        f" {spread(ratios, 'x')} (target <= {TARGET_HAND_WRITTEN:.2f}x);"
        f" first judge request {firsts(ours)} vs {firsts(theirs)}"
    )


if __name__ == "__main__":
    sys.exit(main())
