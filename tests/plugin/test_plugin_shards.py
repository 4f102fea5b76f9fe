"""Sharding across machines: ``--llmeval-shard K/N`` and the ``llmeval gate`` merge.

The merge must decide exactly like a single-machine run of the same cases, refuse shard sets
that do not form one run, and write the same baseline as an unsharded update.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Project

A = "llmeval_a.jsonl"
B = "evals/llmeval_b.jsonl"


def collect(project: Project, *args: str) -> list[str]:
    """Node ids of the case items ``pytest --collect-only -q`` lists."""
    result = project.run("--collect-only", "-q", *args)
    assert result.ret == 0, result.stdout.str()
    return [line for line in result.outlines if ".jsonl::" in line]


def two_files(project: Project, n_a: int = 13, n_b: int = 10) -> list[str]:
    project.cases(A, [project.case(f"a-{i}") for i in range(n_a)])
    project.cases(B, [project.case(f"b-{i}") for i in range(n_b)])
    return [f"{A}::a-{i}" for i in range(n_a)] + [f"{B}::b-{i}" for i in range(n_b)]


# -- the split ---------------------------------------------------------------------------------
def test_every_case_is_in_exactly_one_balanced_shard(project: Project) -> None:
    nodeids = two_files(project)
    assert sorted(collect(project)) == sorted(nodeids)
    # the documented rule: order by sha256 of the node id, deal round-robin
    by_hash = sorted(nodeids, key=lambda n: hashlib.sha256(n.encode("utf-8")).hexdigest())
    for n in range(1, 8):
        shards = [collect(project, f"--llmeval-shard={k}/{n}") for k in range(1, n + 1)]
        seen = [nodeid for shard in shards for nodeid in shard]
        assert sorted(seen) == sorted(nodeids), f"N={n}: a case is missing or in two shards"
        sizes = [len(shard) for shard in shards]
        assert max(sizes) - min(sizes) <= 1, f"N={n}: unbalanced {sizes}"
        for k, shard in enumerate(shards, start=1):
            assert set(shard) == set(by_hash[k - 1 :: n]), f"shard {k}/{n}"


def test_the_split_is_the_same_in_other_processes(project: Project) -> None:
    two_files(project)
    here = collect(project, "--llmeval-shard=2/3")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    outputs = []
    for seed in ("1", "2"):  # str hashing differs between the two interpreters
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "--collect-only",
                "-q",
                "-p",
                "no:cacheprovider",
                "--llmeval-shard=2/3",
            ],
            cwd=project.path,
            env={**env, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outputs.append([line for line in proc.stdout.splitlines() if ".jsonl::" in line])
    assert outputs[0] == outputs[1] == here
    assert 0 < len(here) < 23


# -- the merge -----------------------------------------------------------------------------------
def gate_project(project: Project, *, regression: bool) -> None:
    """12 cases over two files: passes, known failures, an improvement, optionally a regression.

    History and a minimum pass rate make every session gate show numbers.
    """
    project.ini(llmeval_min_pass_rate="0.5")
    a_ids = [f"a-{i}" for i in range(7)]
    b_ids = [f"b-{i}" for i in range(5)]
    project.cases(A, [project.case(i, tags=["billing"]) for i in a_ids])
    project.cases(B, [project.case(i, difficulty="hard") for i in b_ids])
    bad = {"a-5", "b-4"}
    answers = {i: project.BAD if i in bad else project.GOOD for i in a_ids + b_ids}
    if regression:
        answers["a-1"] = project.BAD
    project.answers(answers)
    keys = {i: (A if i.startswith("a") else B) + "::" + i for i in a_ids + b_ids}
    baseline = {keys[i]: "fail" if i in bad or i == "b-3" else "pass" for i in keys}
    project.write_baseline(baseline)  # b-3 passes now: an improvement
    project.write_history([0.8, 0.85, 0.9])


def run_shards(project: Project, n: int, *args: str) -> list[Path]:
    paths = []
    for k in range(1, n + 1):
        path = project.path / "reports" / f"shard-{k}.json"
        result = project.run(f"--llmeval-shard={k}/{n}", f"--llmeval-report={path}", *args)
        assert result.ret in (0, 1), result.stdout.str()
        paths.append(path)
    return paths


def llmeval_gate(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    """``llmeval gate ARGS`` in-process: (exit code, stdout, stderr)."""
    from pytest_llmeval.cli import main

    capsys.readouterr()
    code = main(["gate", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def gate_block(lines: list[str]) -> list[str]:
    """The lines from ``gates:`` through ``llmeval gate: ...``."""
    start = lines.index("gates:")
    end = next(i for i, ln in enumerate(lines) if ln.startswith("llmeval gate: "))
    return lines[start : end + 1]


@pytest.mark.parametrize("regression", [False, True], ids=["gates-pass", "regression-fails"])
def test_merged_shards_decide_exactly_like_the_unsharded_run(
    project: Project, capsys: pytest.CaptureFixture[str], regression: bool
) -> None:
    gate_project(project, regression=regression)
    full_run = project.run("--llmeval-report=full.json")
    full = load(project.path / "full.json")
    shards = run_shards(project, 3)
    merged_path = project.path / "merged.json"
    code, out, err = llmeval_gate(capsys, *shards, "--report", merged_path)
    merged = load(merged_path)
    assert err == ""
    expected_code = 1 if regression else 0
    assert full_run.ret == code == expected_code
    gates = json.dumps(merged["summary"]["gates"], sort_keys=True)
    assert gates == json.dumps(full["summary"]["gates"], sort_keys=True)
    assert merged["summary"]["gate_passed"] is (not regression)
    names = [g["name"] for g in full["summary"]["gates"]]
    assert names == [
        "regressions",
        "min_pass_rate",
        "history",
        "history_binomial",
        "suite_drop",
        "flips",
    ]
    assert not any(g["skipped"] for g in full["summary"]["gates"][:3])  # real decisions
    # the same words on both terminals
    assert gate_block(out.splitlines()) == gate_block(project.section(full_run))
    for field in ("total", "passed", "failed", "xfailed", "errors", "pass_rate", "pass_rate_ci",
                  "mean_score", "regressions", "improvements", "known_failures",
                  "new_failures", "flaky", "by_tag", "by_difficulty", "failure_modes",
                  "full_run"):  # fmt: skip
        assert merged["summary"][field] == full["summary"][field], field
    # the shards ran after the full run, so their verdicts came from its cache
    assert (full["summary"]["judge_calls"], merged["summary"]["cache_hits"]) == (12, 12)
    assert merged["summary"]["regressions"] == ([f"{A}::a-1"] if regression else [])
    assert merged["summary"]["improvements"] == [f"{B}::b-3"]
    # every case, with its per-case classification, exactly once
    assert sorted(c["nodeid"] for c in merged["cases"]) == sorted(
        c["nodeid"] for c in full["cases"]
    )
    full_outcomes = {c["nodeid"]: c["outcome"] for c in full["cases"]}
    assert {c["nodeid"]: c["outcome"] for c in merged["cases"]} == full_outcomes


def _other_judge(path: Path) -> str:
    data = load(path)
    data["judge"]["prompt_version"] = "sim-0"
    path.write_text(json.dumps(data), encoding="utf-8")
    return "judged by local prompt=sim-0"


@pytest.mark.parametrize(
    "problem", ["missing", "duplicated", "other-n", "other-judge", "threshold", "baseline"]
)
def test_merge_refuses_a_set_that_is_not_one_run(
    project: Project, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    gate_project(project, regression=False)
    shards = run_shards(project, 3)
    args: list[Path] = list(shards)
    if problem == "missing":
        args = [shards[0], shards[2]]
        words = "missing shard(s) 2/3"
    elif problem == "duplicated":
        again = project.path / "reports" / "shard-1-again.json"
        shutil.copy(shards[0], again)
        args = [*shards, again]
        words = "shard 1/3 duplicated"
    elif problem == "other-n":
        other = project.path / "reports" / "shard-2-of-4.json"
        project.run("--llmeval-shard=2/4", f"--llmeval-report={other}")
        args = [*shards, other]
        words = "shard 2/4 does not belong to a run of 3 shards"
    elif problem == "other-judge":
        words = _other_judge(shards[1])
    elif problem == "threshold":
        project.run("--llmeval-shard=2/3", f"--llmeval-report={shards[1]}", "-o",
                    "llmeval_threshold=0.6")  # fmt: skip
        words = "setting threshold differs"
    else:
        data = project.baseline()
        data["cases"][f"{A}::a-0"]["score"] = 0.8
        project.baseline_path.write_text(json.dumps(data), encoding="utf-8")
        project.run("--llmeval-shard=2/3", f"--llmeval-report={shards[1]}")
        words = "baseline differs"
    state = project.state_bytes()
    code, out, err = llmeval_gate(capsys, *args, "--update-baseline", "--dir", project.state)
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("llmeval: error: ")
    assert words in lines[0]
    assert "Traceback" not in err
    assert project.state_bytes() == state  # a refused merge writes nothing


def merged_and_single_update(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any], list[dict[str, Any]], str]:
    """From one starting state: ``llmeval gate --update-baseline`` over 3 shards, then (state
    restored) an unsharded ``--llmeval-update-baseline``. Returns both baselines and histories
    and the merge's stdout."""
    before = project.state_bytes()
    shards = run_shards(project, 3)
    assert project.state_bytes() == before  # shard runs are narrowed: they write nothing
    code, out, err = llmeval_gate(capsys, *shards, "--update-baseline", "--dir", project.state)
    assert code == 0, out + err  # updating accepts regressions
    merged = (project.baseline(), project.history())
    for name, content in before.items():
        assert content is not None
        (project.state / name).write_bytes(content)
    single = project.run("--llmeval-update-baseline")
    assert single.ret == 0
    return merged[0], merged[1], project.baseline(), project.history(), out


def test_merge_with_update_writes_the_unsharded_baseline_and_one_history_line(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    gate_project(project, regression=True)
    history_before = project.history()
    merged_baseline, merged_history, single_baseline, single_history, out = (
        merged_and_single_update(project, capsys)
    )
    assert "wrote baseline" in out and "wrote history" in out
    assert merged_baseline["cases"] == single_baseline["cases"]
    assert merged_baseline["cases"][f"{A}::a-1"]["verdict"] == "fail"  # the accepted regression
    assert merged_baseline["cases"][f"{B}::b-3"]["verdict"] == "pass"  # the improvement
    assert merged_baseline["judge"] == single_baseline["judge"]
    assert merged_baseline == single_baseline
    assert len(merged_history) == len(single_history) == len(history_before) + 1
    assert merged_history[:-1] == history_before
    new_merged, new_single = merged_history[-1], single_history[-1]
    for line in (new_merged, new_single):
        line.pop("timestamp")
        line.pop("commit", None)
    assert new_merged == new_single
    assert (new_merged["total"], new_merged["passed"]) == (12, 9)
    assert new_merged["failed"] == sorted([f"{A}::a-1", f"{A}::a-5", f"{B}::b-4"])


def test_merge_with_update_removes_entries_of_deleted_cases_like_a_full_update(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    gate_project(project, regression=False)
    # a baseline entry whose case was deleted from llmeval_a.jsonl
    gone = f"{A}::deleted-case"
    data = project.baseline()
    data["cases"][gone] = dict(data["cases"][f"{A}::a-0"])
    project.baseline_path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    merged_baseline, _, single_baseline, _, out = merged_and_single_update(project, capsys)
    assert gone not in single_baseline["cases"]  # the unsharded full update removes it
    assert gone not in merged_baseline["cases"]
    assert merged_baseline["cases"] == single_baseline["cases"]
    assert "1 removed" in out
