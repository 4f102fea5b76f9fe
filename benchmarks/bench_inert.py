"""What the installed plugin adds to a plain pytest run with no case files.

Run by hand (not in CI): ``/work/venv/bin/python benchmarks/bench_inert.py``.

1. ``python -X importtime -c "import pytest, pytest_llmeval.plugin"``: pytest is imported first,
   so the entries under ``pytest_llmeval.plugin`` are what loading the plugin adds. Printed:
   its cumulative import time and the slowest modules it pulls in; heavy ones (scipy, numpy,
   jsonschema, the anthropic SDK, httpx) are named with the module that imported them.
2. A project with one trivial test, ``ANTHROPIC_API_KEY`` and ``GITHUB_STEP_SUMMARY`` set:
   its conftest prints, at ``pytest_unconfigure``, whether ``anthropic`` (and the other heavy
   modules) were imported and whether ``sys.path`` grew. The run with the plugin must print no
   llmeval output, write no step summary, import none of them and leave ``sys.path`` alone.
3. Wall time of that project with the plugin vs ``-p no:pytest_llmeval``, A B A B ...
   ``--pairs`` times after one warm-up each, the ratio taken pair by pair (median, min-max).

Bytecode is written to a private ``PYTHONPYCACHEPREFIX`` as in an installed package (see
``bench_run.py``). The last line is the median wall ratio with / without the plugin.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_run import Run, bench_env, pairs, spread, timed  # the script's folder is on sys.path

HEAVY = ("scipy", "numpy", "jsonschema", "anthropic", "httpx", "httpx2", "pydantic")

CONFTEST = """\
import sys

_PATH_AT_START = list(sys.path)
HEAVY = {heavy!r}


def pytest_unconfigure(config):
    loaded = [name for name in HEAVY if name in sys.modules]
    grew = [p for p in sys.path if p not in _PATH_AT_START]
    print(f"bench-inert: anthropic imported: {{'anthropic' in sys.modules}}")
    print(f"bench-inert: heavy modules: {{','.join(loaded) or 'none'}}")
    print(f"bench-inert: sys.path grew: {{grew or 'no'}}")
"""

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


def import_profile(pycache: Path, top: int) -> tuple[float, list[str]]:
    """Cumulative import time of the plugin (ms, best of 3) and the report lines."""
    best: list[tuple[int, int, int, str]] | None = None
    best_total = float("inf")
    for _ in range(3):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import pytest, pytest_llmeval.plugin"],
            env=bench_env(pycache),
            capture_output=True,
            text=True,
            check=True,
        )
        rows = []
        for line in done.stderr.splitlines():
            found = IMPORT_LINE.match(line)
            if found:
                own, cumulative, indent, name = found.groups()
                rows.append((int(own), int(cumulative), len(indent), name))
        start = next(i for i, r in enumerate(rows) if r[3] == "pytest" and r[2] == 1)
        plugin_rows = rows[start + 1 :]  # everything after pytest's own top-level import
        total = sum(r[1] for r in plugin_rows if r[2] == 1)
        if total < best_total:
            best_total, best = total, plugin_rows
    assert best is not None
    lines = [f"plugin import (after pytest): {best_total / 1000:.1f} ms cumulative, best of 3"]
    lines.append(f"  {len(best)} modules; slowest by cumulative time:")
    for own, cumulative, _, name in sorted(best, key=lambda r: -r[1])[:top]:
        lines.append(f"  {cumulative / 1000:8.1f} ms cumulative {own / 1000:7.1f} ms self  {name}")
    for i, (_, cumulative, depth, name) in enumerate(best):
        if name.split(".")[0] in HEAVY:
            # importtime prints a module after what it imported, one level deeper: the first
            # later row at a lower depth is its importer
            parent = next((r[3] for r in best[i + 1 :] if r[2] < depth), "(top level)")
            lines.append(f"  HEAVY: {name} ({cumulative / 1000:.1f} ms), imported by {parent}")
    return best_total / 1000, lines


def write_project(root: Path) -> Path:
    project = root / "plain_project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    (project / "conftest.py").write_text(CONFTEST.format(heavy=HEAVY), encoding="utf-8")
    (project / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pairs", type=int, default=11, help="timed A B pairs")
    parser.add_argument("--top", type=int, default=12, help="import entries shown")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="llmeval-bench-inert-") as tmp:
        root = Path(tmp)
        pycache = root / "pycache"
        _, lines = import_profile(pycache, args.top)
        print("\n".join(lines))

        project = write_project(root)
        summary = root / "step_summary.md"
        env = bench_env(
            pycache,
            ANTHROPIC_API_KEY="sk-ant-bench-not-a-real-key-0000000000",
            GITHUB_STEP_SUMMARY=str(summary),
        )
        command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider"]
        with_plugin = timed(command, project, env)
        without = timed([*command, "-p", "no:pytest_llmeval"], project, env)
        for name, run in (("with the plugin", with_plugin), ("-p no:pytest_llmeval", without)):
            facts = [ln for ln in run.stdout.splitlines() if ln.startswith("bench-inert:")]
            print(f"{name}: exit {run.returncode}; " + "; ".join(f[13:] for f in facts))
        llmeval_lines = [
            ln
            for ln in with_plugin.stdout.splitlines()
            if "llmeval" in ln.lower() and not ln.startswith("bench-inert:")
        ]
        written = summary.exists() and summary.stat().st_size > 0
        problems = []
        if with_plugin.returncode != 0 or "1 passed" not in with_plugin.stdout:
            problems.append("the run failed")
        if "bench-inert: anthropic imported: False" not in with_plugin.stdout:
            problems.append("anthropic was imported")
        if "bench-inert: sys.path grew: no" not in with_plugin.stdout:
            problems.append("sys.path grew")
        if llmeval_lines:
            problems.append(f"llmeval output: {llmeval_lines[:3]}")
        if written:
            problems.append("a step summary was written")
        heavy = [ln for ln in with_plugin.stdout.splitlines() if "heavy modules:" in ln]
        heavy_without = [ln for ln in without.stdout.splitlines() if "heavy modules:" in ln]
        if heavy != heavy_without:
            problems.append(f"heavy modules differ: {heavy} vs {heavy_without} without it")
        print("inert: " + ("yes" if not problems else "NO: " + "; ".join(problems)))

        def run_a() -> Run:
            return timed(command, project, env)

        def run_b() -> Run:
            return timed([*command, "-p", "no:pytest_llmeval"], project, env)

        result = pairs(run_a, run_b, args.pairs)
    walls_a = [r.wall for r in result.a]
    walls_b = [r.wall for r in result.b]
    extra_ms = [(a - b) * 1000 for a, b in zip(walls_a, walls_b, strict=True)]
    print(f"1-test project, with the plugin:    wall {spread(walls_a, ' s', 3)}")
    print(f"1-test project, -p no:pytest_llmeval: wall {spread(walls_b, ' s', 3)}")
    print(f"the plugin adds {spread(extra_ms, ' ms', 0)} per run (pair by pair)")
    print(f"load after: {os.getloadavg()}")
    ratio = statistics.median(result.wall_ratios)
    low, high = min(result.wall_ratios), max(result.wall_ratios)
    print(
        f"ratio with/without the plugin, 1-test project, median of {args.pairs} pairs:"
        f" {ratio:.3f}x ({low:.3f}-{high:.3f})"
    )


if __name__ == "__main__":
    main()
