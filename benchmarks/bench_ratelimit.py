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

Every run prints its wall time, the judge calls, the server's answers by status and the cases
that failed or errored. The last line holds the ratios against the targets.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

# the script's folder is on sys.path
from bench_concurrency import Run, count_429, request_span, run_pytest, write_project

TARGET_RATIO_60 = 1.2
TARGET_WALL_10 = 13.1


def one(project: Path, server: list[str], concurrency: int, label: str, cases: int) -> Run:
    run = run_pytest(project, server, "--llmeval-concurrency", str(concurrency))
    s = run.summary
    bad = s["failed"] + s["errors"]
    print(
        f"{label:<44} wall {run.wall:6.2f} s; judge calls {s['judge_calls']};"
        f" failed or errored {bad}/{cases}; server 429s {count_429(run.server)}; {run.server}"
    )
    return run


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
        one(
            limited,
            [*window_10, "--no-limit-headers"],
            c,
            "4. as 3, server sends no rate-limit headers",
            n,
        )

    # Outside the judge requests' span: Python, pytest, collection, the SDK import, the first
    # SUT call, the last answer, the summary. Printed so a loaded machine can be told apart.
    fixed = base.wall - (request_span(base.server) or 0.0)
    span = request_span(narrow.server) or 0.0
    print(
        f"outside the requests' span (run 1): {fixed:.2f} s; run 3's requests arrived over"
        f" {span:.2f} s (the ideal for 2 windows of 50: 10 s plus one burst)"
    )
    ratio = wide.wall / base.wall
    refusals = count_429(wide.server)
    failed = narrow.summary["failed"] + narrow.summary["errors"]
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
