"""Full-run speed: 10,000 JSONL cases with cached verdicts vs 10,000 trivial Python tests.

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_run.py``.
The JSONL project has a trivial SUT (it echoes the case's ground truth) and the local judge.
One untimed run with ``--llmeval-update-baseline`` warms the judge cache and writes the baseline,
as CI would find them; then each project runs ``pytest -q -p no:cacheprovider`` ``--repeat``
times in a subprocess and the best wall time counts. The Python project gets one untimed
warm-up run too (bytecode). The last line is the ratio JSONL / Python (target: at most 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_collect import describe  # the script's folder is on sys.path

TARGET_RATIO = 1.5

CONFTEST = """\
import pytest


@pytest.fixture(scope="session")
def llmeval_sut():
    def answer(case):
        return case.ground_truth

    return answer
"""


def write_jsonl_project(root: Path, cases: int) -> Path:
    project = root / "jsonl_project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nllmeval_judge = local\n", encoding="utf-8")
    (project / "conftest.py").write_text(CONFTEST, encoding="utf-8")
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
    project = root / "python_project"
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


def run_seconds(project: Path, expected: int, *extra: str) -> tuple[float, str]:
    """Wall time and stdout of one ``pytest -q`` run of ``project`` in a fresh interpreter."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra]
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=project, capture_output=True, text=True, check=False, timeout=3600
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or f"{expected} passed" not in done.stdout:
        tail = "\n".join(done.stdout.strip().splitlines()[-15:])
        sys.exit(
            f"run of {project.name} failed (exit {done.returncode}):\n{tail}\n{done.stderr[-2000:]}"
        )
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases / tests per project")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per project")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmeval-bench-run-") as tmp:
        root = Path(tmp)
        jsonl = write_jsonl_project(root, args.cases)
        python = write_python_project(root, args.cases)
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
        print(f"running {args.cases:,} items, best of {args.repeat} after one warm-up run each")

        run_seconds(python, args.cases)
        python_runs = [run_seconds(python, args.cases)[0] for _ in range(args.repeat)]
        print(describe("parametrized Python tests", python_runs, 34))

        warm, _ = run_seconds(jsonl, args.cases, "--llmeval-update-baseline")
        print(f"{'JSONL warm-up (judge + baseline)':<34} {warm:7.2f} s")
        jsonl_runs = []
        for _ in range(args.repeat):
            elapsed, stdout = run_seconds(jsonl, args.cases)
            jsonl_runs.append(elapsed)
            hits = re.search(r"cache hits: (\d+)", stdout)
            if hits is None or int(hits.group(1)) != args.cases:
                found = hits.group(0) if hits else "no 'cache hits' in the summary"
                print(f"warning: expected {args.cases} cache hits, got: {found}")
        print(describe("JSONL cases, cached verdicts", jsonl_runs, 34))
        print(f"load after: {os.getloadavg()}")
    ratio = min(jsonl_runs) / min(python_runs)
    verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio JSONL/Python full run: {ratio:.2f}x (target <= {TARGET_RATIO:.1f}x, {verdict})")


if __name__ == "__main__":
    main()
