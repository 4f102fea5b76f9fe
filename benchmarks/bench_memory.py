"""Peak memory of collecting a 100,000-case JSONL file (target: under 1 GiB).

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_memory.py``.
``pytest --collect-only -q -p no:cacheprovider`` runs in a child of a fresh probe interpreter,
which reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the child exits: the peak
resident set of that one child (kilobytes on Linux, bytes on macOS). The same is measured for
100,000 parametrized no-op Python tests, for scale. The last line is the JSONL peak as a
fraction of 1 GiB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_collect import write_jsonl_project, write_python_project

GIB = 1024**3

# Runs in its own interpreter so RUSAGE_CHILDREN sees exactly one child: the pytest run.
PROBE = """
import json, resource, subprocess, sys
done = subprocess.run(
    [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
    capture_output=True, text=True,
)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
scale = 1 if sys.platform == "darwin" else 1024
tail = (done.stdout.strip().splitlines() or [""])[-1]
print(json.dumps({"peak_bytes": peak * scale, "returncode": done.returncode, "tail": tail}))
"""


def peak_rss(project: Path, expected: int) -> int:
    """Peak RSS in bytes of one ``--collect-only`` of ``project``."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["returncode"] != 0 or f"{expected} tests collected" not in result["tail"]:
        sys.exit(f"collection of {project.name} failed: {result}")
    return int(result["peak_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases / tests per project")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="llmeval-bench-memory-") as tmp:
        root = Path(tmp)
        jsonl = write_jsonl_project(root, args.cases)
        python = write_python_project(root, args.cases)
        size = (jsonl / "llmeval_bench.jsonl").stat().st_size
        mib = size / 2**20
        print(f"python {sys.version.split()[0]}; {args.cases:,} items; JSONL file {mib:.1f} MiB")
        python_peak = peak_rss(python, args.cases)
        print(f"parametrized Python tests  peak RSS {python_peak / 2**20:8.1f} MiB")
        jsonl_peak = peak_rss(jsonl, args.cases)
        print(f"JSONL cases                peak RSS {jsonl_peak / 2**20:8.1f} MiB")
    verdict = "OK" if jsonl_peak < GIB else "ABOVE TARGET"
    print(
        f"JSONL collection peak RSS: {jsonl_peak / 2**20:.1f} MiB = "
        f"{jsonl_peak / GIB:.2f} of 1 GiB (target < 1.00, {verdict})"
    )


if __name__ == "__main__":
    main()
