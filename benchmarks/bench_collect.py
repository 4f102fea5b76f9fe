"""Collection speed: a 100,000-case JSONL file vs 100,000 parametrized no-op Python tests.

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_collect.py``.
Both projects live in a fresh temporary folder with their own ``pytest.ini``; each is collected
with ``pytest --collect-only -q -p no:cacheprovider`` in a subprocess, ``--repeat`` times, and
the best (minimum) wall time counts: the minimum is the least disturbed by other load on the
machine. The last line is the ratio JSONL / Python (target: at most 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_RATIO = 2.0


def write_jsonl_project(root: Path, cases: int) -> Path:
    """A project with one ``llmeval_bench.jsonl`` of ``cases`` cases; returns its folder."""
    project = root / "jsonl_project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nllmeval_judge = local\n", encoding="utf-8")
    with open(project / "llmeval_bench.jsonl", "w", encoding="utf-8") as out:
        for i in range(cases):
            line = {
                "id": f"case-{i:06d}",
                "question": f"How long does parcel {i} stay in the locker?",
                "ground_truth": f"Parcel {i} stays in the locker for five days.",
                "tags": ["bench", f"group-{i % 10}"],
                "difficulty": ("easy", "medium", "hard")[i % 3],
            }
            out.write(json.dumps(line) + "\n")
    return project


def write_python_project(root: Path, tests: int) -> Path:
    """A project with one test module holding ``tests`` parametrized no-op tests."""
    project = root / "python_project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "test_bench.py").write_text(
        "import pytest\n\n\n"
        f"@pytest.mark.parametrize('i', range({tests}))\n"
        "def test_noop(i):\n"
        "    pass\n",
        encoding="utf-8",
    )
    return project


def collect_seconds(project: Path, expected: int) -> float:
    """Wall time of one ``pytest --collect-only -q`` of ``project`` in a fresh interpreter."""
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=project, capture_output=True, text=True, check=False, timeout=3600
    )
    elapsed = time.perf_counter() - start
    tail = done.stdout.strip().splitlines()[-1:] or [""]
    if done.returncode != 0 or f"{expected} tests collected" not in tail[0]:
        sys.exit(
            f"collection of {project.name} failed (exit {done.returncode}): {tail[0]!r}\n"
            f"{done.stderr[-2000:]}"
        )
    return elapsed


def timings(project: Path, expected: int, repeat: int) -> list[float]:
    return [collect_seconds(project, expected) for _ in range(repeat)]


def describe(name: str, runs: list[float], width: int = 28) -> str:
    """One figure line: best and median of the runs (the best counts), then every run."""
    return (
        f"{name:<{width}} best {min(runs):7.2f} s   median {statistics.median(runs):7.2f} s   "
        f"runs: {', '.join(f'{r:.2f}' for r in runs)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases / tests per project")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per project")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmeval-bench-collect-") as tmp:
        root = Path(tmp)
        jsonl = write_jsonl_project(root, args.cases)
        python = write_python_project(root, args.cases)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
        print(f"collecting {args.cases:,} items, best of {args.repeat}")
        python_runs = timings(python, args.cases, args.repeat)
        print(describe("parametrized Python tests", python_runs))
        jsonl_runs = timings(jsonl, args.cases, args.repeat)
        print(describe("JSONL cases", jsonl_runs))
        print(f"load after: {os.getloadavg()}")
    ratio = min(jsonl_runs) / min(python_runs)
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio JSONL/Python collection: {ratio:.2f}x (target <= {TARGET_RATIO:.1f}x, {verdict})")


if __name__ == "__main__":
    main()
