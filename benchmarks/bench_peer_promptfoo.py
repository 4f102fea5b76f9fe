"""promptfoo against this plugin on the same workload, pair by pair (issue #13's peer runs).

Run by hand (not in CI), from the repository root::

    python benchmarks/bench_peer_promptfoo.py [--pairs N] [--quick] [--promptfoo-prefix DIR]

promptfoo (the npm package, ``promptfoo@0.121.20`` by default, ``--promptfoo-version``) is
never one of the project's dependencies: the script installs it with ``npm install --prefix``
into a throwaway folder (``--promptfoo-prefix``, ``/tmp/peer-promptfoo``) when it is missing or
another version is there, and prints the version it used. 0.121.20 is the last release that
runs on Node 20 (``engines``: ``^20.20.0 || >=22.22.0``; 0.122 and later need Node >= 22.22);
it prints a notice that its Node 20 support has ended, and runs.

The workload (issue #13), against the fake Messages API (``tests/fake_anthropic.py``) in its
own process, answering after 200 ms (``--judge-latency``); the judge is Claude
(``claude-haiku-4-5``) through the official SDKs (Python ``anthropic`` for us, the
``@anthropic-ai/sdk`` inside promptfoo); concurrency 16:

1. cold: 200 cases (``--cases``), a SUT that waits 50 ms per case (``--sut-latency``), every
   case judged: ours ``--llmeval-no-cache``; promptfoo with an empty cache folder;
2. warm: the same rerun with every verdict cached: ours from ``.llmeval/cache.sqlite3`` (filled
   by one untimed run), promptfoo from its cache (provider and grader calls, filled by one
   untimed eval); the SUT runs again on both sides and no judge request may reach the server;
3. 100 cases (``--rpm-cases``) against a server enforcing 300 requests per 60 s, and one
   enforcing 50 per 10 s (sliding windows, 429 with ``retry-after`` beyond them). Ours with
   ``llmeval_rpm = 300`` (as ``bench_ratelimit.py``). promptfoo has no requests-per-minute
   setting (its ``evaluateOptions`` has ``maxConcurrency`` and ``delay``); its adaptive scheduler
   retries 429s after ``retry-after`` and lowers its concurrency, and the Anthropic SDK under it
   retries too: it runs with its defaults.

Our side is ``bench_concurrency``'s project (``write_project``: a synchronous SUT sleeping 50 ms,
``llmeval_sut_concurrency = 16``; ``--llmeval-concurrency 16``), run by ``run_against_server``
(cold and rate-limited runs) in a fresh pytest process against ``fake_server.py``'s fake.
promptfoo's side: ``promptfoo eval -c promptfooconfig.json -o out.json -j 16 --no-table
--no-progress-bar``, the SUT a JavaScript provider (``file://sut.js``: ``setTimeout`` 50 ms, then
the same answer text as our SUT), every test asserting ``llm-rubric`` graded by
``anthropic:messages:claude-haiku-4-5``, pointed at the fake by ``ANTHROPIC_BASE_URL``, with a
fake ``ANTHROPIC_API_KEY``, telemetry and update checks off, its config folder (results
database) and cache in the benchmark's temporary folder, its per-run debug log file off
(``PROMPTFOO_DISABLE_DEBUG_LOG=1``: with it on, 0.121.20 on Node 20 wrote some 300 KB a run and
now and then crashed at exit, "write after end" in its winston logger, after writing its
results). Its results database is written, as by default (no ``--no-write``).

promptfoo's fake runs from this script's own boot (``PROMPTFOO_BOOT``, a subprocess like
``fake_server.py``'s): it loads ``tests/fake_anthropic.py`` with importlib, sets the fake's
``responder`` to answer the ``llm-rubric`` requests (those holding ``<Rubric>``) in promptfoo's
format, ``{"reason", "pass", "score"}``, the score read from the answer's ``[[score=x]]`` mark as
the fake's default verdict does for ours; it accepts ``temperature``, which promptfoo sends
(``0``) and the real API takes on claude-haiku-4-5 (the fake refuses it, for the plugin's
tests); same ``--latency`` / ``--rpm`` / ``--rpm-window``, and the same record of every
request's arrival and status. Its port is fixed for the whole benchmark: promptfoo's cache key
holds the base URL, so a new port would turn the warm rerun into a cold one.

Every run is checked: the judge requests answered 200 at the server (cases on a cold run, 0 on
a warm one, no other status than 200 and 429), our JSON report (every case passed, judge calls
or cache hits), promptfoo's ``out.json`` (every result a success, no failure, no error). A run
that fails a check stops the script with exit status 1 and says why, no ratio printed.

The two tools run in turn, ours then promptfoo's, ``--pairs`` times (2; ``--quick``: 1) after
one untimed cold warm-up of each; the ratios are taken pair by pair: the median counts, the
range says how noisy the shared machine was (the load average is printed at start and end).
The last line holds the median ratios ours/promptfoo and the refusals (429s) per 50/10 s run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# the script's folder is on sys.path
import bench_concurrency
from bench_concurrency import environment, pytest_cmd, run_against_server, write_project
from fake_server import FakeServer, boot, fake_server

PROMPTFOO_VERSION = "0.121.20"
PROMPTFOO_PREFIX = "/tmp/peer-promptfoo"
MODEL = "claude-haiku-4-5"
RUN_TIMEOUT = 600.0

# The fake's boot (fake_server.boot) answering promptfoo's rubric in its format and taking
# the temperature promptfoo sends.
PROMPTFOO_BOOT = boot("""
import re
MARK = re.compile(r"\\[\\[score=([01](?:\\.\\d+)?)\\]\\]")
check_params = fake._check_params


def accept_temperature(body):
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k != "temperature"}
    return check_params(body)


def rubric(body):
    text = "\\n".join(fake._texts(body.get("messages", [])))
    if "<Rubric>" not in text:
        return None  # not promptfoo's grader: the fake's default verdict
    mark = MARK.search(text)
    score = float(mark.group(1)) if mark else 0.0
    verdict = {"reason": "fake judge verdict", "pass": score >= 0.5, "score": score}
    return fake.Reply.plain(json.dumps(verdict))


fake._check_params = accept_temperature
responder = rubric
""")

SUT_JS = """\
// The SUT: waits {sut_ms} ms (a network-bound call), then gives bench_concurrency's SUT answer.
module.exports = class BenchSut {{
  id() {{
    return "bench-sut";
  }}

  async callApi(prompt, context) {{
    await new Promise((resolve) => setTimeout(resolve, {sut_ms}));
    const output = `Parcel ${{context.vars.id}} stays in the locker for five days. [[score=0.9]]`;
    return {{ output }};
  }}
}};
"""

RUBRIC = "The response agrees with the ground truth: {{ground_truth}}"


class BenchError(RuntimeError):
    """A run that did not do the whole workload: no ratio may be printed."""


@dataclass(frozen=True)
class Run:
    tool: str
    wall: float
    accepted: int  # judge requests answered 200 at the server
    refused: int  # answered 429
    passed: int
    detail: str

    def line(self, label: str) -> str:
        return (
            f"  {label:<10} {self.tool:<9} wall {self.wall:6.2f} s; judge requests answered"
            f" {self.accepted}, refused (429) {self.refused}; passed {self.passed}; {self.detail}"
        )


@dataclass(frozen=True)
class Promptfoo:
    executable: Path
    version: str
    root: Path  # the benchmark's temporary folder: promptfoo's config folder and caches
    port: int  # the fake's port for every promptfoo run (the cache key holds the base URL)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def statuses(server: FakeServer) -> tuple[int, int, dict[int, int]]:
    by_status: dict[int, int] = {}
    for _, status in server.arrivals:
        by_status[status] = by_status.get(status, 0) + 1
    others = {s: n for s, n in by_status.items() if s not in (200, 429)}
    return by_status.get(200, 0), by_status.get(429, 0), others


def check_server(tool: str, label: str, server: FakeServer, expected: int) -> tuple[int, int]:
    accepted, refused, others = statuses(server)
    if accepted != expected or others:
        raise BenchError(
            f"{tool} {label}: the server answered {accepted} judge requests with 200"
            f" (expected {expected}), other answers {others}; {server.summary}"
        )
    return accepted, refused


# -- promptfoo ---------------------------------------------------------------------------------


def ensure_promptfoo(prefix: Path, version: str) -> tuple[Path, str]:
    """promptfoo's executable under ``prefix`` (``npm install --prefix`` when missing or
    another version) and the version installed there."""
    executable = prefix / "node_modules" / ".bin" / "promptfoo"
    manifest = prefix / "node_modules" / "promptfoo" / "package.json"

    def installed() -> str | None:
        if not executable.exists() or not manifest.exists():
            return None
        return str(json.loads(manifest.read_text(encoding="utf-8"))["version"])

    if installed() != version:
        print(f"installing promptfoo@{version} into {prefix} (npm install --prefix) ...")
        prefix.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund"]
        done = subprocess.run([*command, f"promptfoo@{version}"], capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"npm install promptfoo@{version} failed: {done.stderr[-2000:]}")
    found = installed()
    if found is None:
        raise BenchError(f"no promptfoo under {prefix} after npm install")
    return executable, found


def startup(executable: Path, repeat: int = 3) -> float:
    """Best wall time of ``promptfoo --version``: node and promptfoo's CLI loading, no eval."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run([str(executable), "--version"], capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def promptfoo_server(port: int, *args: str) -> contextlib.AbstractContextManager[FakeServer]:
    """The fake from ``PROMPTFOO_BOOT`` on ``port``, with the fake's own arguments; stopped
    (SIGTERM) on leaving, when its record is read."""
    return fake_server(*args, boot=PROMPTFOO_BOOT, port=port)


def write_promptfoo(root: Path, cases: int, sut_latency: float, concurrency: int) -> Path:
    """promptfoo's project: the same cases as ``write_project``'s, the SUT, the rubric."""
    root.mkdir(parents=True)
    sut_ms = round(sut_latency * 1000)
    (root / "sut.js").write_text(SUT_JS.format(sut_ms=sut_ms), encoding="utf-8")
    tests = [
        {
            "vars": {
                "id": f"case-{i:04d}",
                "question": f"How long does parcel {i} stay in the locker?",
                "ground_truth": "Five days after delivery.",
            }
        }
        for i in range(cases)
    ]
    config = {
        "description": f"bench_peer_promptfoo: {cases} cases",
        "prompts": ["{{question}}"],
        "providers": ["file://sut.js"],
        "defaultTest": {
            "options": {"provider": f"anthropic:messages:{MODEL}"},
            "assert": [{"type": "llm-rubric", "value": RUBRIC}],
        },
        "tests": tests,
        "evaluateOptions": {"maxConcurrency": concurrency},
    }
    text = json.dumps(config, indent=1) + "\n"
    (root / "promptfooconfig.json").write_text(text, encoding="utf-8")
    return root


def promptfoo_env(pf: Promptfoo, url: str, cache: Path) -> dict[str, str]:
    env = environment(url)
    env.update(
        PROMPTFOO_DISABLE_TELEMETRY="1",
        PROMPTFOO_DISABLE_UPDATE="1",
        PROMPTFOO_CONFIG_DIR=str(pf.root / "promptfoo-config"),
        PROMPTFOO_CACHE_PATH=str(cache),
        PROMPTFOO_DISABLE_DEBUG_LOG="1",
        FORCE_COLOR="0",
    )
    return env


def run_promptfoo(
    pf: Promptfoo,
    project: Path,
    server_args: list[str],
    cache: Path,
    label: str,
    cases: int,
    expected_requests: int,
    concurrency: int,
) -> Run:
    out = project / "out.json"
    out.unlink(missing_ok=True)
    command = [str(pf.executable), "eval", "-c", str(project / "promptfooconfig.json")]
    command += ["-o", str(out), "-j", str(concurrency), "--no-table", "--no-progress-bar"]
    with promptfoo_server(pf.port, *server_args) as server:
        t0 = time.perf_counter()
        proc = subprocess.run(
            command,
            cwd=project,
            env=promptfoo_env(pf, server.url, cache),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        wall = time.perf_counter() - t0
    if not out.exists():
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        raise BenchError(f"promptfoo {label}: no out.json (exit {proc.returncode}): {tail}")
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    stats = results["stats"]
    rows = results["results"]
    passed = sum(1 for row in rows if row.get("success"))
    if len(rows) != cases or passed != cases or stats["failures"] or stats["errors"]:
        reasons = sorted({str(row.get("error") or row.get("failureReason")) for row in rows})
        raise BenchError(
            f"promptfoo {label}: {passed} of {len(rows)} results passed (expected {cases}),"
            f" failures {stats['failures']}, errors {stats['errors']}"
            f" (exit {proc.returncode}); reasons: {reasons[:3]}"
        )
    accepted, refused = check_server("promptfoo", label, server, expected_requests)
    grading = stats.get("tokenUsage", {}).get("assertions", {})
    detail = f"successes {stats['successes']}, grading tokens {grading.get('total', '?')}"
    detail += f", exit {proc.returncode}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no stderr"])[-1]
        detail += f" after writing its results (stderr: {last[:200]})"
    return Run("promptfoo", wall, accepted, refused, passed, detail)


# -- ours --------------------------------------------------------------------------------------


def run_ours_cold(
    project: Path, server_args: list[str], label: str, cases: int, concurrency: int
) -> Run:
    r = run_against_server(project, server_args, "--llmeval-concurrency", str(concurrency))
    s = r.summary
    if s["passed"] != cases or s["failed"] or s["errors"] or s["judge_calls"] != cases:
        raise BenchError(f"ours {label}: not every case judged and passed: {r.tail}; {s}")
    accepted, refused = check_server("ours", label, r.server, cases)
    detail = f"judge calls {s['judge_calls']}, cache hits {s['cache_hits']}"
    return Run("ours", r.wall, accepted, refused, s["passed"], detail)


def run_ours_cached(
    project: Path, server_args: list[str], label: str, cases: int, concurrency: int, fill: bool
) -> Run:
    """pytest with the judge cache on (``run_against_server`` always bypasses it): ``fill``
    judges every case, otherwise every verdict must be a cache hit and no request arrive."""
    report = project / "report.json"
    report.unlink(missing_ok=True)
    with bench_concurrency.fake_server(*server_args) as server:
        t0 = time.perf_counter()
        proc = subprocess.run(
            pytest_cmd("--llmeval-report", str(report), "--llmeval-concurrency", str(concurrency)),
            cwd=project,
            env=environment(server.url),
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        wall = time.perf_counter() - t0
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-1500:]
    if not report.exists():
        raise BenchError(f"ours {label}: pytest wrote no report (exit {proc.returncode}): {tail}")
    s = json.loads(report.read_text(encoding="utf-8"))["summary"]
    calls, hits = (cases, 0) if fill else (0, cases)
    if (
        s["passed"] != cases
        or s["failed"]
        or s["errors"]
        or s["judge_calls"] != calls
        or s["cache_hits"] != hits
    ):
        raise BenchError(
            f"ours {label}: expected {cases} passed, {calls} judge calls, {hits} cache hits:"
            f" {tail}; {s}"
        )
    accepted, refused = check_server("ours", label, server, calls)
    detail = f"judge calls {s['judge_calls']}, cache hits {s['cache_hits']}"
    return Run("ours", wall, accepted, refused, s["passed"], detail)


# -- figures -----------------------------------------------------------------------------------


def spread(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


@dataclass
class Scenario:
    name: str
    short: str  # its name on the last line
    ours: list[Run]
    theirs: list[Run]

    def ratios(self) -> list[float]:
        return [a.wall / b.wall for a, b in zip(self.ours, self.theirs, strict=True)]

    def median_walls(self) -> tuple[float, float]:
        return (
            statistics.median(r.wall for r in self.ours),
            statistics.median(r.wall for r in self.theirs),
        )

    def report(self) -> str:
        ours = spread([r.wall for r in self.ours], " s")
        theirs = spread([r.wall for r in self.theirs], " s")
        refusals = (
            f"; refusals ours {[r.refused for r in self.ours]},"
            f" promptfoo {[r.refused for r in self.theirs]}"
        )
        return (
            f"{self.name}: ours {ours}, promptfoo {theirs};"
            f" ratio ours/promptfoo {spread(self.ratios(), 'x')}{refusals}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=2, help="timed pairs per scenario")
    parser.add_argument("--quick", action="store_true", help="one pair per scenario")
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--rpm-cases", type=int, default=100)
    parser.add_argument("--sut-latency", type=float, default=0.05)
    parser.add_argument("--judge-latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rpm", type=int, default=300, help="ours: llmeval_rpm")
    parser.add_argument("--promptfoo-prefix", type=Path, default=Path(PROMPTFOO_PREFIX))
    parser.add_argument("--promptfoo-version", default=PROMPTFOO_VERSION)
    args = parser.parse_args(argv)
    pairs = 1 if args.quick else args.pairs
    try:
        return bench(args, pairs)
    except (BenchError, subprocess.TimeoutExpired) as exc:
        print(f"load average at end: {load()}")
        print(f"FAILED, no ratio: {exc}")
        return 1


def bench(args: argparse.Namespace, pairs: int) -> int:
    print(f"load average at start: {load()}")
    executable, version = ensure_promptfoo(args.promptfoo_prefix, args.promptfoo_version)
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    print(
        f"promptfoo {version} ({executable}), node {node}; python {sys.version.split()[0]},"
        f" {os.cpu_count()} CPUs; {pairs} pairs per scenario"
    )
    print(f"promptfoo start-up (promptfoo --version, best of 3): {startup(executable):.2f} s")
    n, m, c = args.cases, args.rpm_cases, args.concurrency
    latency = ["--latency", str(args.judge_latency)]
    per_10s = max(1, round(args.rpm * 10 / 60))
    window_60 = [*latency, "--rpm", str(args.rpm), "--rpm-window", "60"]
    window_10 = [*latency, "--rpm", str(per_10s), "--rpm-window", "10"]
    print(
        f"workload: {n} cases cold and warm, {m} cases under {args.rpm} per 60 s and"
        f" {per_10s} per 10 s; SUT {args.sut_latency * 1000:.0f} ms, fake judge"
        f" {args.judge_latency * 1000:.0f} ms ({MODEL}), concurrency {c}"
    )
    with tempfile.TemporaryDirectory(prefix="bench_peer_promptfoo_") as tmp_name:
        tmp = Path(tmp_name)
        bench_concurrency.PYCACHE[0] = str(tmp / "pycache")
        pf = Promptfoo(executable, version, tmp, free_port())
        ours_cold = write_project(tmp / "ours-cold", n, args.sut_latency)
        ours_warm = write_project(tmp / "ours-warm", n, args.sut_latency)
        ours_rpm = write_project(
            tmp / "ours-rpm", m, args.sut_latency, f"llmeval_rpm = {args.rpm}\n"
        )
        pf_full = write_promptfoo(tmp / "promptfoo", n, args.sut_latency, c)
        pf_rpm = write_promptfoo(tmp / "promptfoo-rpm", m, args.sut_latency, c)
        fresh = iter(range(1_000_000))

        def new_cache() -> Path:
            return tmp / f"promptfoo-cache-{next(fresh)}"

        warm_cache = new_cache()

        print("untimed: one cold warm-up of each, and the runs that fill the caches")
        print(run_ours_cold(ours_cold, latency, "warm-up", n, c).line("warm-up"))
        print(run_promptfoo(pf, pf_full, latency, new_cache(), "warm-up", n, n, c).line("warm-up"))
        print(run_ours_cached(ours_warm, latency, "fill", n, c, fill=True).line("fill"))
        print(run_promptfoo(pf, pf_full, latency, warm_cache, "fill", n, n, c).line("fill"))

        scenarios = [
            Scenario(f"cold, {n} cases", "cold", [], []),
            Scenario(f"warm rerun, {n} cases", "warm", [], []),
            Scenario(f"{m} cases, server {args.rpm} per 60 s", f"{args.rpm}/60 s", [], []),
            Scenario(f"{m} cases, server {per_10s} per 10 s", f"{per_10s}/10 s", [], []),
        ]
        for pair in range(1, pairs + 1):
            print(f"pair {pair} of {pairs} (load {load()})")
            steps = [
                (
                    lambda: run_ours_cold(ours_cold, latency, "cold", n, c),
                    lambda: run_promptfoo(pf, pf_full, latency, new_cache(), "cold", n, n, c),
                ),
                (
                    lambda: run_ours_cached(ours_warm, latency, "warm", n, c, fill=False),
                    lambda: run_promptfoo(pf, pf_full, latency, warm_cache, "warm", n, 0, c),
                ),
                (
                    lambda: run_ours_cold(ours_rpm, window_60, "300/60 s", m, c),
                    lambda: run_promptfoo(pf, pf_rpm, window_60, new_cache(), "300/60 s", m, m, c),
                ),
                (
                    lambda: run_ours_cold(ours_rpm, window_10, "50/10 s", m, c),
                    lambda: run_promptfoo(pf, pf_rpm, window_10, new_cache(), "50/10 s", m, m, c),
                ),
            ]
            for scenario, (ours, theirs) in zip(scenarios, steps, strict=True):
                for runs, step in ((scenario.ours, ours), (scenario.theirs, theirs)):
                    run = step()
                    runs.append(run)
                    print(run.line(scenario.short))

    print(f"load average at end: {load()}")
    for scenario in scenarios:
        print(scenario.report())
    parts = []
    for scenario in scenarios:
        ours_wall, their_wall = scenario.median_walls()
        ratio = statistics.median(scenario.ratios())
        parts.append(f"{scenario.short} {ratio:.2f}x ({ours_wall:.1f} s vs {their_wall:.1f} s)")
    narrow = scenarios[-1]
    refused_ours = statistics.median(r.refused for r in narrow.ours)
    refused_theirs = statistics.median(r.refused for r in narrow.theirs)
    print(
        f"ratios ours/promptfoo {version} (median of {pairs} pairs): {', '.join(parts)},"
        f" refusals per {narrow.short} run ours {refused_ours:g} / promptfoo {refused_theirs:g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
