"""The Claude judge under a rate limit: bursts within ``llmeval_rpm``, paced by the API's headers.

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_ratelimit.py``.

``--cases`` (100) cases through real pytest on a temporary project (built by
``bench_concurrency``'s helpers: sync SUT sleeping 50 ms with ``llmeval_sut_concurrency = 16``,
``--llmeval-concurrency 16``, ``--llmeval-no-cache``), against the standalone fake Messages API
(``tests/fake_anthropic.py``, answering after ``--judge-latency``, 200 ms) in its own process:

1. no limit anywhere: the reference wall time (best of ``--repeat``);
2. ``llmeval_rpm = 300`` and a server enforcing 300 requests per 60 s (sliding window, 429 with
   ``retry-after`` beyond it, ``anthropic-ratelimit-*`` headers on every answer): target wall
   <= 1.2x run 1 and 0 refusals (best of ``--repeat``);
3. ``llmeval_rpm = 300`` and a server enforcing 50 per 10 s: target wall <= 13.1 s (the
   fastest peer measured in issue 13) with 0 failed cases;
4. for reference, run 3 against a server that sends no rate-limit headers (only 429 +
   ``retry-after``: the safety net alone).

Every run prints its wall time, the judge calls, the server's answers by status (read from the
server's own record of every request: ``bench_concurrency``'s summary line held the wrong line
here, so refusals always read 0), the cases that failed or errored and, for the 10 s windows,
when the 50th and the 51st accepted requests arrived. The last line holds the ratios against
the targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the script's folder is on sys.path
from bench_concurrency import run_against_server, write_project

TARGET_RATIO_60 = 1.2
TARGET_WALL_10 = 13.1


@dataclass(frozen=True)
class Run:
    wall: float
    summary: dict[str, Any]
    arrivals: list[tuple[float, int]]  # (seconds after the first request, status)

    @property
    def refusals(self) -> int:
        return sum(1 for _, status in self.arrivals if status == 429)

    @property
    def failed(self) -> int:
        return int(self.summary["failed"] + self.summary["errors"])

    def accepted(self) -> list[float]:
        return [t for t, status in self.arrivals if status == 200]


def run_pytest(project: Path, server_args: list[str], *args: str) -> Run:
    r = run_against_server(project, server_args, *args)
    first = r.server.first_request or 0.0
    return Run(r.wall, r.summary, [(t - first, status) for t, status in r.server.arrivals])


def one(project: Path, server: list[str], concurrency: int, label: str, cases: int) -> Run:
    run = run_pytest(project, server, "--llmeval-concurrency", str(concurrency))
    s = run.summary
    by_status: dict[int, int] = {}
    for _, status in run.arrivals:
        by_status[status] = by_status.get(status, 0) + 1
    span = run.arrivals[-1][0] if run.arrivals else 0.0
    print(
        f"{label:<44} wall {run.wall:6.2f} s; judge calls {s['judge_calls']};"
        f" failed or errored {run.failed}/{cases}; server 429s {run.refusals};"
        f" answers by status {dict(sorted(by_status.items()))}, arriving over {span:.2f} s"
    )
    return run


def timeline(run: Run, per_window: int) -> str:
    """When the request after the first window's allowance got in."""
    accepted = run.accepted()
    if len(accepted) <= per_window:
        return "fewer requests than one window allows"
    last, next_ = accepted[per_window - 1], accepted[per_window]
    return (
        f"accepted #{per_window} at {last:.2f} s, #{per_window + 1} at {next_:.2f} s"
        f" ({next_ - last:.2f} s later), the last at {accepted[-1]:.2f} s"
    )


def best(runs: list[Run]) -> Run:
    return min(runs, key=lambda r: r.wall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--sut-latency", type=float, default=0.05)
    parser.add_argument("--judge-latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rpm", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2, help="runs of scenarios 1 and 2")
    args = parser.parse_args(argv)

    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    print(
        f"{args.cases} cases, SUT {args.sut_latency * 1000:.0f} ms, fake judge"
        f" {args.judge_latency * 1000:.0f} ms, concurrency {args.concurrency}"
    )
    latency = ["--latency", str(args.judge_latency)]
    per_10s = max(1, round(args.rpm * 10 / 60))
    with tempfile.TemporaryDirectory(prefix="bench_ratelimit_") as tmp:
        free = write_project(Path(tmp) / "free", args.cases, args.sut_latency)
        limited = write_project(
            Path(tmp) / "rpm", args.cases, args.sut_latency, f"llmeval_rpm = {args.rpm}\n"
        )
        c, n = args.concurrency, args.cases
        base = best([one(free, latency, c, "1. no limit", n) for _ in range(args.repeat)])
        window_60 = [*latency, "--rpm", str(args.rpm), "--rpm-window", "60"]
        label_60 = f"2. rpm {args.rpm}, server {args.rpm} per 60 s"
        wide = best([one(limited, window_60, c, label_60, n) for _ in range(args.repeat)])
        window_10 = [*latency, "--rpm", str(per_10s), "--rpm-window", "10"]
        narrow = one(limited, window_10, c, f"3. rpm {args.rpm}, server {per_10s} per 10 s", n)
        print(f"   {timeline(narrow, per_10s)}")
        bare = one(
            limited,
            [*window_10, "--no-limit-headers"],
            c,
            "4. as 3, server sends no rate-limit headers",
            n,
        )
        print(f"   {timeline(bare, per_10s)}")

    # Outside the judge requests' span: Python, pytest, collection, the SDK import, the first
    # SUT call, the last answer, the summary. Printed so a loaded machine can be told apart.
    fixed = base.wall - (base.arrivals[-1][0] if base.arrivals else 0.0)
    span = narrow.arrivals[-1][0] if narrow.arrivals else 0.0
    print(
        f"outside the requests' span (run 1): {fixed:.2f} s; run 3's requests arrived over"
        f" {span:.2f} s (the 51st cannot arrive before the 1st's slot frees, 10 s after it)"
    )
    ratio = wide.wall / base.wall
    refusals = wide.refusals
    failed = narrow.failed
    print(f"load at end {os.getloadavg()}")
    print(
        f"ratio rpm-{args.rpm}/60 s vs no limit: {ratio:.2f}x (target <= {TARGET_RATIO_60}x),"
        f" refusals {refusals} (target 0); {per_10s} per 10 s: wall {narrow.wall:.2f} s ="
        f" {narrow.wall / TARGET_WALL_10:.2f}x the fastest peer's {TARGET_WALL_10} s"
        f" (target <= 1.00x), failed cases {failed} (target 0)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
