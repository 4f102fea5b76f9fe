"""``llmeval gate``: merge the JSON reports of shards into one gate decision.

The merge applies the same classification (already on each case) and the same session gates
(:func:`pytest_llmeval.core.gate.decide`) as a single-machine run, so both decide identically.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_llmeval.core import gate
from pytest_llmeval.core.verdict import JudgeIdentity
from pytest_llmeval.engine.store import (
    append_history,
    file_sha256,
    git_commit,
    history_record,
    load_baseline,
    save_baseline,
    updated_baseline,
)
from pytest_llmeval.errors import CLIError, StateFileError
from pytest_llmeval.reports.model import build_report, summary_lines, write_report

# settings every shard must share (besides the shard itself)
_SHARED = (
    "std_threshold",
    "min_history",
    "max_regressions",
    "min_pass_rate",
    "history_binomial",
    "history_alpha",
    "threshold",
    "min_words",
    "max_words",
    "repeat",
    "repeat_pass_fraction",
    "flaky_alpha",
    "baseline_sha256",
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gate",
        help="merge shard reports (--llmeval-shard K/N) into one gate decision",
        description="Merge the JSON reports of all shards of a run and apply the gates.",
    )
    p.add_argument("reports", nargs="+", type=Path, help="shard JSON reports")
    p.add_argument("--update-baseline", action="store_true", help="write the merged baseline")
    p.add_argument("--dir", type=Path, default=Path(".llmeval"), help="state folder")
    p.add_argument("--report", type=Path, action="append", default=[], help="merged report")
    p.set_defaults(func=run)


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CLIError(f"{path}: not a JSON report ({exc})") from None
    if not isinstance(data, dict) or "summary" not in data or "cases" not in data:
        raise CLIError(f"{path}: not a pytest-llmeval JSON report")
    return data


def check_shards(reports: Sequence[tuple[Path, Mapping[str, Any]]]) -> int:
    """Refuse missing, duplicated or mismatched shards; return N."""
    seen: dict[int, Path] = {}
    total: int | None = None
    first_path, first = reports[0]
    for path, rep in reports:
        shard = rep["settings"].get("shard")
        if not shard:
            raise CLIError(f"{path}: not a shard report (run with --llmeval-shard K/N)")
        k, n = (int(x) for x in str(shard).split("/"))
        if total is None:
            total = n
        elif n != total:
            raise CLIError(f"{path}: shard {k}/{n} does not belong to a run of {total} shards")
        if k in seen:
            raise CLIError(f"{path}: shard {k}/{n} duplicated (also {seen[k]})")
        seen[k] = path
        if rep["judge"] != first["judge"]:
            raise CLIError(
                f"{path}: judged by {JudgeIdentity.from_dict(rep['judge']).label()},"
                f" {first_path} by {JudgeIdentity.from_dict(first['judge']).label()}"
            )
        for name in _SHARED:
            if rep["settings"].get(name) != first["settings"].get(name):
                what = "baseline" if name == "baseline_sha256" else f"setting {name}"
                raise CLIError(f"{path}: {what} differs from {first_path}")
    assert total is not None
    missing = sorted(set(range(1, total + 1)) - set(seen))
    if missing:
        raise CLIError(f"missing shard(s) {', '.join(f'{k}/{total}' for k in missing)}")
    return total


def merge(
    reports: Sequence[tuple[Path, Mapping[str, Any]]], *, update_baseline: bool = False
) -> dict[str, Any]:
    """The merged report, with gates decided over all shards."""
    n = check_shards(reports)
    first = reports[0][1]
    settings = dict(first["settings"])
    records: dict[str, dict[str, Any]] = {}
    for path, rep in reports:
        for case in rep["cases"]:
            key = case["nodeid"]
            if key in records:
                raise CLIError(f"{path}: case {key} also appears in another shard")
            records[key] = {**case, "key": key}
    expected = first.get("collected_keys")
    if expected is not None and set(expected) - set(records):
        missing = sorted(set(expected) - set(records))
        raise CLIError(f"{len(missing)} collected case(s) are in no shard, e.g. {missing[0]}")
    others = [
        reason
        for _, rep in reports
        for reason in rep["summary"].get("narrowed", [])
        if not reason.startswith("shard ")
    ]
    full_run = not others
    judge = JudgeIdentity.from_dict(first["judge"])
    history = gate.history_for_judge(first.get("history", []), first["judge"])
    ordered = [records[k] for k in sorted(records)]
    decision = gate.decide(
        passed=sum(1 for r in ordered if r["verdict"] == "pass"),
        failed=sum(1 for r in ordered if r["verdict"] == "fail"),
        regressions=[r["key"] for r in ordered if r["outcome"] == "regression"],
        history=history,
        settings=gate.GateSettings(
            max_regressions=settings["max_regressions"],
            min_pass_rate=settings["min_pass_rate"],
            std_threshold=settings["std_threshold"],
            min_history=settings["min_history"],
            history_binomial=settings["history_binomial"],
            history_alpha=settings["history_alpha"],
        ),
        full_run=full_run,
        update_baseline=update_baseline,
    )
    costs = [rep["summary"].get("cost_usd") for _, rep in reports]
    known = [c for c in costs if c is not None]
    settings["shard"] = None
    merged = build_report(
        records=ordered,
        decision=decision,
        judge=judge,
        settings=settings,
        unused=first["summary"].get("unused_baseline", []),
        history=first.get("history", []),
        full_run=full_run,
        narrowed=others,
        flaky_history=gate.flaky_from_history(history, set(records)),
    )
    merged["summary"]["cost_usd"] = sum(known) if known else None
    merged["merged_shards"] = n
    return merged


def run(args: argparse.Namespace) -> int:
    reports = [(p, _load(p)) for p in args.reports]
    merged = merge(reports, update_baseline=args.update_baseline)
    for line in summary_lines(merged):
        print(line)
    for path in args.report:
        write_report(path, merged)
        print(f"wrote report {path}")
    if args.update_baseline:
        _update(args.dir, merged)
    return 0 if merged["summary"]["gate_passed"] else 1


def _update(state_dir: Path, merged: Mapping[str, Any]) -> None:
    baseline_path = state_dir / "baseline.json"
    if file_sha256(baseline_path) != merged["settings"].get("baseline_sha256"):
        raise CLIError(
            f"{baseline_path} changed since the shards ran (or is not the one they used);"
            " re-run the shards or pass --dir"
        )
    try:
        old = load_baseline(baseline_path)
    except StateFileError as exc:
        raise CLIError(str(exc)) from None
    judge = JudgeIdentity.from_dict(merged["judge"])
    full = bool(merged["summary"]["full_run"])
    cases = merged["cases"]
    records = [{**c, "key": c["nodeid"]} for c in cases]
    update = updated_baseline(
        old, records, judge, unused=merged["summary"]["unused_baseline"], drop_unused=full
    )
    save_baseline(baseline_path, update.baseline, float(merged["settings"]["threshold"]))
    print(f"wrote baseline {baseline_path}: {update.describe()}")
    if not full:
        print("history not appended: the run was narrowed", file=sys.stderr)
        return
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = history_record(merged["summary"], records, judge, git_commit(state_dir), now)
    append_history(state_dir / "history.jsonl", line)
    print(f"wrote history {state_dir / 'history.jsonl'}: 1 run appended")
