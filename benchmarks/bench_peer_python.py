"""This plugin against two Python peers, inspect_ai and deepeval, on issue 13's workload.

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_peer_python.py`` (options:
``--pairs N``, default 2; ``--only inspect_ai|deepeval``; ``--quick``: 40 cases cold, 20 under
the rate limits, 1 pair, no warm-up; ``--peer-venv PATH``, default ``/tmp/peer-venv``). About
17 minutes with the defaults.

The peers are never part of this project's dependencies: the script makes a throwaway venv
(``python3 -m venv /tmp/peer-venv``; ``pip install inspect_ai deepeval anthropic`` from PyPI,
reused when present) and runs each peer there as a subprocess; the versions used are printed
(written against inspect_ai 0.3.285, deepeval 4.3.1, anthropic 2.15.0).

Workload, every run a fresh process timed from outside (start-up included, for all three):

1. cold: ``--cases`` (200) cases; the SUT sleeps ``--sut-latency`` (50 ms) and answers; the
   judge is Claude (``claude-haiku-4-5``) answered by the fake Messages API on 127.0.0.1 after
   ``--judge-latency`` (200 ms); concurrency 16.
   - ours: ``bench_concurrency.write_project`` (a synchronous SUT, ``llmeval_sut_concurrency =
     16``) with ``--llmeval-concurrency 16 --llmeval-no-cache``, via ``run_against_server``;
   - inspect_ai: ``eval()`` of a task whose solver sleeps 50 ms (``asyncio.sleep``) and returns
     the answer, scored by ``model_graded_qa(model=get_model("anthropic/claude-haiku-4-5"))``
     with ``max_connections=16`` (samples in flight: its default, ``max_connections + 1``);
     the task model ``mockllm/model`` is never called. The grader gets ``max_tokens=4096`` and
     ``streaming=False``: the fake speaks no SSE, inspect_ai streams from 8192 max_tokens on
     (its default for Claude 4 is 32000) and the SDK refuses 32000 without streaming;
   - deepeval: the SUT on a 16-thread pool, then ``evaluate()`` with a ``GEval`` metric (fixed
     ``evaluation_steps``, so no steps request) whose model is deepeval's ``AnthropicModel``,
     ``AsyncConfig(max_concurrent=16)``; telemetry off (``DEEPEVAL_TELEMETRY_OPT_OUT=1``), no
     update check, no ``deepeval inspect`` prompt, no Confident AI key.
2. rerun: the same run a second time. Ours with its judge cache (a filling run, then the timed
   rerun: every verdict a cache hit, no request). Each peer twice: as it is by default (it
   re-judges everything: neither reads a cache by default; deepeval writes one,
   ``CacheConfig.write_cache``) and with its cache on (inspect_ai: ``GenerateConfig(cache=True)``
   on the grader, in ``INSPECT_CACHE_DIR``; deepeval: ``CacheConfig(use_cache=True)``, in
   ``.deepeval/``): from an empty cache a filling run, then the timed rerun. The ratio takes
   the peer's faster way, pair by pair.
3. ``--rpm-cases`` (100) cases against a server enforcing 300 requests per 60 s, then 50 per
   10 s (sliding window, 429 with ``retry-after``). Ours with ``llmeval_rpm = 300``; the peers
   with their defaults and no rate-limit setting of theirs (inspect_ai retries 429s with its own
   backoff; deepeval's tenacity policy: ``DEEPEVAL_RETRY_MAX_ATTEMPTS`` 2, the SDK's retries
   off). With 50 per 10 s deepeval's defaults give up: ``evaluate()`` raises
   ``tenacity.RetryError`` (``RateLimitError``), so that figure has no ratio and the script
   exits 1; for reference deepeval also runs it with ``DEEPEVAL_RETRY_MAX_ATTEMPTS=10``.

Servers. Ours runs against ``benchmarks/fake_server.py``'s fake (its default reply is this
plugin's verdict JSON). The peers run against the same fake (``tests/fake_anthropic.py``, same
``--latency``/``--rpm``/``--rpm-window``) in its own process, started by this script's own boot
(``PEER_BOOT``, run by ``fake_server.fake_server`` with the same listen backlog as ours): it
sets the fake's ``responder`` to answer inspect_ai's grading prompt with a
``GRADE: C`` text and deepeval's GEval prompts with their JSON (``{"steps": [...]}``,
``{"reason": ..., "score": 9}``), and records each request's arrival, status and kind. Every
run is checked: a judge request per case at the server (of the peer's kind for a peer; none on
a cached rerun) and every case passed in the tool's own results. A run that fails a check is
printed with why; its figure then gives no ratio and the script exits 1.

Offline: only 127.0.0.1 is reached (``NO_PROXY`` set); an audit hook (``sitecustomize`` on the
peer's ``PYTHONPATH``) records every socket a peer connects, and a run that connected anywhere
else fails its check. Both peers work so.

Ours and each peer run in turn, pair by pair (``--pairs``, after one warm-up round); medians
and ranges are printed, and the load average at start and end (the machine is shared: quote
the ratios). The last line: ratios ours/peer (below 1: ours is faster), medians of the pairs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the script's folder is on sys.path
import bench_concurrency
from bench_concurrency import environment, pytest_cmd, run_against_server, write_project
from fake_server import FakeServer, boot, fake_server

PEERS = ("inspect_ai", "deepeval")
PEER_PACKAGES = ("inspect_ai", "deepeval", "anthropic")
JUDGE_MODEL = "claude-haiku-4-5"
ANSWER = "Parcel {id} stays in the locker for five days. [[score=0.9]]"
GROUND_TRUTH = "Five days after delivery."

# argv: the fake's path, the record file, then the fake's own arguments. The responder answers
# each peer's grading prompts in that peer's format; the rest gets the fake's default (this
# plugin's verdict JSON). On SIGTERM: (arrival, status, kind) of every /v1/messages request.
PEER_BOOT = boot("""
def text_of(body):
    return "\\n".join(fake._texts((body or {}).get("messages") or []))


def kind(body):
    text = text_of(body)
    if "GRADE: $LETTER" in text:
        return "inspect_ai"
    if '"steps" key as a list of strings' in text:
        return "deepeval_steps"
    if '"reason": "your concise and informative reason here"' in text:
        return "deepeval"
    return "other"


def responder(body):
    k = kind(body)
    if k == "inspect_ai":
        return fake.Reply.plain("The submission states five days, as the criterion.\\nGRADE: C")
    if k == "deepeval_steps":
        return fake.Reply.json_text({"steps": ["Compare the answer with the expected output."]})
    if k == "deepeval":
        return fake.Reply.json_text({"reason": "It says five days, as expected.", "score": 9})
    return None


def record(r):
    return [r.time, r.status, kind(r.body)]
""")

INSPECT_DRIVER = (
    """\
import asyncio, json, sys
from inspect_ai import Task, eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.model import GenerateConfig, ModelOutput, get_model
from inspect_ai.scorer import model_graded_qa
from inspect_ai.solver import solver

cases, sut_latency, concurrency = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
cache, log_dir = sys.argv[4] == "cache", sys.argv[5]


@solver
def sut():
    async def solve(state, generate):
        await asyncio.sleep(sut_latency)  # the SUT: 50 ms, then its answer
        answer = ANSWER.format(id=state.sample_id)
        state.output = ModelOutput.from_content(model="sut", content=answer)
        return state

    return solve


# the fake speaks no SSE: inspect_ai streams when max_tokens >= 8192 (its default: 32000), and
# the SDK refuses a non-streamed request of 32000 max_tokens
config = GenerateConfig(
    max_connections=concurrency, max_tokens=4096, cache=True if cache else None
)
grader = get_model("anthropic/JUDGE_MODEL", config=config, streaming=False)
samples = [
    Sample(id=f"case-{i:04d}", input=f"How long does parcel {i} stay in the locker?",
           target="GROUND_TRUTH")
    for i in range(cases)
]
task = Task(dataset=samples, solver=sut(), scorer=model_graded_qa(model=grader))
log = inspect_eval(
    task, model="mockllm/model", max_connections=concurrency, log_dir=log_dir, display="none"
)[0]
values = [s.scores[next(iter(s.scores))].value for s in log.samples or [] if s.scores]
print(json.dumps({
    "status": log.status,
    "cases": len(log.samples or []),
    "passed": sum(1 for v in values if v == "C"),
    "error": str(log.error.message) if log.error else None,
}))
""".replace("ANSWER", repr(ANSWER))
    .replace("JUDGE_MODEL", JUDGE_MODEL)
    .replace("GROUND_TRUTH", GROUND_TRUTH)
)

DEEPEVAL_DRIVER = (
    """\
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from deepeval import evaluate
from deepeval.evaluate import AsyncConfig, CacheConfig, DisplayConfig
from deepeval.metrics import GEval
from deepeval.models import AnthropicModel
from deepeval.test_case import LLMTestCase, SingleTurnParams

cases, sut_latency, concurrency = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
cache = sys.argv[4] == "cache"


def sut(i):
    time.sleep(sut_latency)  # the same synchronous SUT, on a 16-thread pool
    return ANSWER.format(id=f"case-{i:04d}")


with ThreadPoolExecutor(concurrency) as pool:
    answers = list(pool.map(sut, range(cases)))
test_cases = [
    LLMTestCase(name=f"case-{i:04d}", input=f"How long does parcel {i} stay in the locker?",
                actual_output=answer, expected_output="GROUND_TRUTH")
    for i, answer in enumerate(answers)
]
metric = GEval(
    name="Correctness",
    evaluation_steps=["Check that the actual output gives the duration of the expected output."],
    evaluation_params=[SingleTurnParams.INPUT, SingleTurnParams.ACTUAL_OUTPUT,
                       SingleTurnParams.EXPECTED_OUTPUT],
    model=AnthropicModel(model="JUDGE_MODEL"),
    threshold=0.5,
)
result = evaluate(
    test_cases=test_cases,
    metrics=[metric],
    async_config=AsyncConfig(max_concurrent=concurrency),
    cache_config=CacheConfig(use_cache=cache),
    display_config=DisplayConfig(show_indicator=False, print_results=False,
                                 inspect_after_run=False),
)
errors = [m.error for r in result.test_results for m in r.metrics_data or [] if m.error]
print(json.dumps({
    "status": "success" if not errors else "error",
    "cases": len(result.test_results),
    "passed": sum(1 for r in result.test_results if r.success),
    "error": errors[0] if errors else None,
}))
""".replace("ANSWER", repr(ANSWER))
    .replace("JUDGE_MODEL", JUDGE_MODEL)
    .replace("GROUND_TRUTH", GROUND_TRUTH)
)

# Put first on a peer's PYTHONPATH: every address it connects a socket to goes to AUDIT_OUT,
# so each run shows it reached nothing but the fake on 127.0.0.1.
AUDIT_SITECUSTOMIZE = """\
import os, sys


def _audit(event, args):
    if event == "socket.connect":
        with open(os.environ["LLMEVAL_BENCH_AUDIT_OUT"], "a", encoding="utf-8") as out:
            out.write(repr(args[1]) + "\\n")


sys.addaudithook(_audit)
"""

PEER_ENV = {
    "DEEPEVAL_TELEMETRY_OPT_OUT": "1",  # deepeval/telemetry: "Opt out with ...=1"
    "DEEPEVAL_UPDATE_WARNING_OPT_IN": "0",  # no version check against PyPI
    "DEEPEVAL_NO_INSPECT_PROMPT": "1",  # no "deepeval inspect" prompt after a run
    "INSPECT_DISPLAY": "none",
    "INSPECT_LOG_LEVEL": "warning",
}


def peer_server(*args: str) -> contextlib.AbstractContextManager[FakeServer]:
    """The fake with the peers' responder (``PEER_BOOT``: fake_server's arguments, the same
    listen backlog), each request recorded with its kind; stopped (SIGTERM) on leaving."""
    return fake_server(*args, boot=PEER_BOOT)


@dataclass
class Result:
    """One timed run: wall time, judge requests answered 200, 429s, and what went wrong."""

    wall: float
    judged: int
    refused: int
    problem: str = ""
    note: str = ""


def statuses(arrivals: list[tuple[float, int]]) -> tuple[int, int]:
    return sum(1 for _, s in arrivals if s == 200), sum(1 for _, s in arrivals if s == 429)


# -- ours ----------------------------------------------------------------------------------


def ours_cold(project: Path, server_args: list[str], cases: int, concurrency: int) -> Result:
    run = run_against_server(project, server_args, "--llmeval-concurrency", str(concurrency))
    judged, refused = statuses(run.server.arrivals)
    s = run.summary
    problem = ""
    if s["passed"] != cases or s["failed"] or s["errors"] or judged != cases:
        problem = f"{s['passed']}/{cases} passed, {judged} judged at the server: {run.tail}"
    return Result(run.wall, judged, refused, problem)


def ours_rerun(project: Path, server_args: list[str], cases: int, concurrency: int) -> Result:
    """Our plugin with its judge cache: a filling run, then the timed rerun (0 requests)."""
    shutil.rmtree(project / ".llmeval", ignore_errors=True)
    level = ["--llmeval-concurrency", str(concurrency)]
    walls = []
    for _ in range(2):
        with bench_concurrency.fake_server(*server_args) as server:
            t0 = time.perf_counter()
            proc = subprocess.run(
                pytest_cmd(*level),
                cwd=project,
                env=environment(server.url),
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - t0)
    judged, refused = statuses(server.arrivals)
    out = proc.stdout.strip()
    tail = out.splitlines()[-1] if out else proc.stderr
    problem = ""
    if proc.returncode != 0 or f"{cases} passed" not in out or judged:
        problem = f"not a clean cached rerun (exit {proc.returncode}, {judged} requests): {tail}"
    return Result(walls[1], judged, refused, problem, f"filled in {walls[0]:.2f} s")


# -- peers ---------------------------------------------------------------------------------


def ensure_peer_venv(path: Path) -> dict[str, str]:
    """The throwaway venv with the peers (made and installed when absent); their versions."""
    python = path / "bin" / "python"
    if not python.exists():
        print(f"creating {path} and installing {' '.join(PEER_PACKAGES)} from PyPI", flush=True)
        subprocess.run(["python3", "-m", "venv", str(path)], check=True)
        pip = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            sys.exit(f"pip install failed (exit {pip.returncode}):\n{pip.stderr[-3000:]}")
    code = (
        "import importlib.metadata as m, json, sys;"
        f"print(json.dumps({{p: m.version(p) for p in {list(PEER_PACKAGES)!r}}}))"
    )
    probe = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(f"{path} lacks a peer; remove it to reinstall:\n{probe.stderr[-2000:]}")
    return json.loads(probe.stdout)


@dataclass
class Peer:
    name: str
    python: Path
    driver: Path
    workdir: Path

    def run(
        self,
        server_args: list[str],
        cases: int,
        sut: float,
        conc: int,
        cache: str,
        rerun: bool = False,
        extra_env: dict[str, str] | None = None,
    ) -> Result:
        """One run of the peer's driver in ``workdir`` against a fresh peer server; ``rerun``:
        its cache should answer every case (no request); ``extra_env``: settings off its
        defaults."""
        args = [str(self.python), str(self.driver), str(cases), str(sut), str(conc), cache]
        if self.name == "inspect_ai":
            args.append(str(self.workdir / "logs"))
        with peer_server(*server_args) as server:
            env = environment(server.url)
            env.pop("PYTHONPYCACHEPREFIX", None)
            env.pop("VIRTUAL_ENV", None)
            env.update(PEER_ENV)
            env["INSPECT_CACHE_DIR"] = str(self.workdir / "inspect-cache")
            env["PATH"] = f"{self.python.parent}{os.pathsep}{env.get('PATH', '')}"
            env.update(extra_env or {})
            audit = self.workdir / "audit"
            audit.mkdir(exist_ok=True)
            (audit / "sitecustomize.py").write_text(AUDIT_SITECUSTOMIZE, encoding="utf-8")
            connects = self.workdir / "connects.log"
            connects.unlink(missing_ok=True)
            env["PYTHONPATH"] = str(audit)
            env["LLMEVAL_BENCH_AUDIT_OUT"] = str(connects)
            t0 = time.perf_counter()
            proc = subprocess.run(
                args, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=900
            )
            wall = time.perf_counter() - t0
        judged, refused = statuses(server.arrivals)
        reached = (
            set(connects.read_text(encoding="utf-8").splitlines()) if connects.exists() else set()
        )
        elsewhere = sorted(a for a in reached if not a.startswith("('127.0.0.1', "))
        if elsewhere:
            problem = f"connected elsewhere than 127.0.0.1: {', '.join(elsewhere)}"
            return Result(wall, judged, refused, problem)
        ours = sum(
            1
            for (_, s), k in zip(server.arrivals, server.kinds, strict=True)
            if s == 200 and k == self.name
        )
        lines = proc.stdout.strip().splitlines()
        try:
            out: dict[str, Any] = json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            err = proc.stderr.strip().splitlines()
            last = re.sub(r"<Future at 0x[0-9a-f]+ state=finished ", "<", err[-1] if err else "")
            detail = "\n".join(err[-12:])
            problem = f"exit {proc.returncode}, no results: {last}\n{detail}"
            return Result(wall, judged, refused, problem)
        problem = note = ""
        expected = 0 if rerun else cases
        if out["cases"] != cases or out["passed"] != cases or out["status"] != "success":
            problem = (
                f"{out['passed']}/{cases} passed ({out['cases']} results, status"
                f" {out['status']}): {out['error']}"
            )
        elif rerun and ours == cases == judged:
            note = f"its cache served none: all {cases} re-judged"
        elif ours != expected or judged != expected:
            problem = f"{ours} judge requests in its format ({judged} in all), expected {expected}"
        return Result(wall, judged, refused, problem, note)


def peer_reruns(peer: Peer, server_args: list[str], cases: int, sut: float, conc: int) -> dict:
    """Second runs: by default (same settings, same folder, after the cold run) and with the
    peer's cache on (from an empty cache a filling run, then the timed rerun)."""
    default = peer.run(server_args, cases, sut, conc, "default")
    # deepeval writes its cache by default (CacheConfig.write_cache): the fill starts afresh
    for leftover in ("inspect-cache", ".deepeval"):
        shutil.rmtree(peer.workdir / leftover, ignore_errors=True)
    fill = peer.run(server_args, cases, sut, conc, "cache")
    cached = peer.run(server_args, cases, sut, conc, "cache", rerun=True)
    if not cached.problem and not cached.note:
        cached.note = "0 requests: every verdict from its cache"
    return {"default": default, "fill": fill, "cached": cached}


# -- rounds --------------------------------------------------------------------------------

SCENARIOS = ("cold", "rerun", "300/60", "50/10")
DEEPEVAL_ATTEMPTS = 10
DEEPEVAL_MORE = f"50/10 with DEEPEVAL_RETRY_MAX_ATTEMPTS={DEEPEVAL_ATTEMPTS}"


@dataclass
class Figures:
    """Every timed run by scenario, for ours and each peer."""

    runs: dict[tuple[str, str], list[Result]] = field(default_factory=dict)

    def add(self, who: str, scenario: str, result: Result) -> None:
        self.runs.setdefault((who, scenario), []).append(result)


def show(who: str, scenario: str, r: Result) -> None:
    mark = f" PROBLEM: {r.problem}" if r.problem else ""
    note = f"; {r.note}" if r.note else ""
    print(
        f"  {who:<22} {scenario:<18} wall {r.wall:6.2f} s; judge requests {r.judged},"
        f" 429s {r.refused}{note}{mark}",
        flush=True,
    )


def round_(
    figures: Figures | None,
    projects: dict[str, Path],
    peers: list[Peer],
    args: argparse.Namespace,
) -> None:
    latency = ["--latency", str(args.judge_latency)]
    per_10s = ["--rpm", "50", "--rpm-window", "10"]
    limits = {
        "300/60": [*latency, "--rpm", "300", "--rpm-window", "60"],
        "50/10": [*latency, *per_10s],
    }
    conc, sut = args.concurrency, args.sut_latency

    def record(who: str, scenario: str, r: Result) -> None:
        show(who, scenario, r)
        if figures is not None:
            figures.add(who, scenario, r)

    for peer in peers:
        record("ours", "cold", ours_cold(projects["cold"], latency, args.cases, conc))
        record(peer.name, "cold", peer.run(latency, args.cases, sut, conc, "default"))
        record("ours", "rerun (cache)", ours_rerun(projects["cold"], latency, args.cases, conc))
        reruns = peer_reruns(peer, latency, args.cases, sut, conc)
        record(peer.name, "rerun (default)", reruns["default"])
        show(peer.name, "cache fill", reruns["fill"])
        record(peer.name, "rerun (its cache)", reruns["cached"])
        for scenario, server in limits.items():
            record("ours", scenario, ours_cold(projects["rpm"], server, args.rpm_cases, conc))
            record(peer.name, scenario, peer.run(server, args.rpm_cases, sut, conc, "default"))
        if peer.name == "deepeval":  # for reference: its retry budget raised (not a default)
            more = {"DEEPEVAL_RETRY_MAX_ATTEMPTS": str(DEEPEVAL_ATTEMPTS)}
            run = peer.run(limits["50/10"], args.rpm_cases, sut, conc, "default", extra_env=more)
            record(peer.name, DEEPEVAL_MORE, run)


def spread(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.2f}{unit} ({min(values):.2f}-{max(values):.2f})"


def summarize(figures: Figures, peers: list[Peer], pairs: int) -> tuple[str, bool]:
    """Per-scenario medians and ranges; the last line's text; whether every run was clean."""
    clean = True
    parts = []
    for peer in peers:
        items = []
        extra = (DEEPEVAL_MORE,) if peer.name == "deepeval" else ()
        for scenario in SCENARIOS + extra:
            mine = "50/10" if scenario == DEEPEVAL_MORE else scenario
            ours = figures.runs.get(("ours", mine), [])
            if scenario == "rerun":
                ours = figures.runs.get(("ours", "rerun (cache)"), [])
                default = figures.runs.get((peer.name, "rerun (default)"), [])
                cached = figures.runs.get((peer.name, "rerun (its cache)"), [])
                # the peer's better way to rerun, pair by pair
                theirs = [
                    min(a, b, key=lambda r: r.wall) for a, b in zip(default, cached, strict=True)
                ]
                for label, runs in (("default", default), ("its cache", cached)):
                    if runs and not any(r.problem for r in runs):
                        print(
                            f"{peer.name} rerun ({label}): wall"
                            f" {spread([r.wall for r in runs], ' s')},"
                            f" judge requests {[r.judged for r in runs]}"
                        )
            else:
                theirs = figures.runs.get((peer.name, scenario), [])
            # ours runs once per peer in every round: the adjacent ones pair with this peer
            ours = ours[peers.index(peer) :: len(peers)]
            bad = [r.problem for r in ours + theirs if r.problem]
            if bad or not theirs:
                clean = False
                why = bad[0].splitlines()[0] if bad else "no run"
                items.append(f"{scenario} n/a ({why[:120]})")
                print(f"{peer.name} {scenario}: no ratio: {bad[0] if bad else 'no run'}")
                continue
            ratios = [a.wall / b.wall for a, b in zip(ours, theirs, strict=True)]
            a = statistics.median(r.wall for r in ours)
            b = statistics.median(r.wall for r in theirs)
            print(
                f"{peer.name} {scenario}: ours {spread([r.wall for r in ours], ' s')},"
                f" {peer.name} {spread([r.wall for r in theirs], ' s')};"
                f" ratio ours/peer {spread(ratios, 'x')} over {len(ratios)} pairs;"
                f" 429s ours {[r.refused for r in ours]}, peer {[r.refused for r in theirs]}"
            )
            text = f"{scenario} {statistics.median(ratios):.2f}x ({a:.1f} vs {b:.1f} s"
            if scenario == "rerun":
                faster = statistics.median(r.wall for r in cached) < statistics.median(
                    r.wall for r in default
                )
                text += ", peer with its cache" if faster else ", peer by default"
            items.append(text + ")")
        parts.append(f"{peer.name} " + ", ".join(items))
    return f"ratios ours/peer (median of {pairs} pairs): " + "; ".join(parts), clean


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--rpm-cases", type=int, default=100)
    parser.add_argument("--sut-latency", type=float, default=0.05)
    parser.add_argument("--judge-latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--only", choices=PEERS)
    parser.add_argument("--quick", action="store_true", help="40/20 cases, 1 pair, no warm-up")
    parser.add_argument("--peer-venv", type=Path, default=Path("/tmp/peer-venv"))
    args = parser.parse_args(argv)
    if args.quick:
        args.cases, args.rpm_cases, args.pairs = 40, 20, 1

    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    versions = ensure_peer_venv(args.peer_venv)
    print(
        f"peers (in {args.peer_venv}, not the project's dependencies): "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; ours: python {sys.version.split()[0]}",
        flush=True,
    )
    print(
        f"workload: {args.cases} cases cold (SUT {args.sut_latency * 1000:.0f} ms, judge"
        f" {JUDGE_MODEL} on the fake after {args.judge_latency * 1000:.0f} ms, concurrency"
        f" {args.concurrency}); {args.rpm_cases} cases under 300/60 s and 50/10 s (ours:"
        " llmeval_rpm = 300; peers: their defaults)",
        flush=True,
    )
    names = [args.only] if args.only else list(PEERS)
    with tempfile.TemporaryDirectory(prefix="bench_peer_python_") as tmp:
        root = Path(tmp)
        bench_concurrency.PYCACHE[0] = str(root / "pycache")
        projects = {
            "cold": write_project(root / "cold", args.cases, args.sut_latency),
            "rpm": write_project(
                root / "rpm", args.rpm_cases, args.sut_latency, "llmeval_rpm = 300\n"
            ),
        }
        peers = []
        python = args.peer_venv / "bin" / "python"
        for name in names:
            workdir = root / name
            workdir.mkdir()
            driver = workdir / f"{name}_driver.py"
            driver.write_text(
                INSPECT_DRIVER if name == "inspect_ai" else DEEPEVAL_DRIVER, encoding="utf-8"
            )
            peers.append(Peer(name, python, driver, workdir))
        if not args.quick:
            print("warm-up round (not counted):", flush=True)
            round_(None, projects, peers, args)
        figures = Figures()
        for i in range(args.pairs):
            print(f"pair {i + 1} of {args.pairs}:", flush=True)
            round_(figures, projects, peers, args)
        last, clean = summarize(figures, peers, args.pairs)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if not clean:
        print("some runs did not judge or pass every case: those figures give no ratio")
    print(last)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
