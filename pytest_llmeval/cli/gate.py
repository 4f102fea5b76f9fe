"""``llmeval gate``: merge the JSON reports of shards into one gate decision.

The merge reads each shard's case results and hands them to the same end of a run
(:func:`pytest_llmeval.engine.finish.finish_run`) as a single-machine run, so both decide
identically.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_llmeval.core import gate
from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.verdict import JudgeIdentity
from pytest_llmeval.engine.finish import RunInputs, RunOutcome, RunSettings, finish_run, write_state
from pytest_llmeval.engine.outputs import write_report
from pytest_llmeval.engine.store import file_sha256, git_commit, load_baseline
from pytest_llmeval.errors import CLIError, StateFileError
from pytest_llmeval.reports.terminal import summary_lines

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
    p.add_argument(
        "--allow-errors",
        action="store_true",
        help="do not fail the merged gate on cases whose judge errored (they stay unjudged)",
    )
    p.add_argument("--json", action="store_true", help="print the merged report as JSON")
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
    reports: Sequence[tuple[Path, Mapping[str, Any]]],
    *,
    update_baseline: bool = False,
    allow_errors: bool = False,
    state_dir: Path | None = None,
) -> RunOutcome:
    """The merged outcome, with gates decided over all shards."""
    n = check_shards(reports)
    first = reports[0][1]
    results: dict[str, CaseResult] = {}
    for path, rep in reports:
        for raw in rep["cases"]:
            try:
                result = CaseResult.from_dict(raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise CLIError(f"{path}: a case entry is not a case result ({exc!r})") from None
            if result.nodeid in results:
                raise CLIError(f"{path}: case {result.nodeid} also appears in another shard")
            results[result.nodeid] = result
    expected = first.get("collected_keys")
    if expected is not None and set(expected) - set(results):
        missing = sorted(set(expected) - set(results))
        raise CLIError(f"{len(missing)} collected case(s) are in no shard, e.g. {missing[0]}")
    others = [
        reason
        for _, rep in reports
        for reason in rep["summary"].get("narrowed", [])
        if not reason.startswith("shard ")
    ]
    full_run = not others
    judge = JudgeIdentity.from_dict(first["judge"])
    settings = RunSettings.from_report_block(
        first["settings"], update_baseline=update_baseline, allow_errors=allow_errors
    )
    history = list(first.get("history", []))
    baseline = None
    sha = first["settings"].get("baseline_sha256")
    if (
        state_dir is not None
        and sha is not None
        and file_sha256(state_dir / "baseline.json") == sha
    ):
        try:
            baseline = load_baseline(state_dir / "baseline.json")
        except StateFileError as exc:
            raise CLIError(str(exc)) from None
    views = {
        r.nodeid: gate.BaselineView(
            r.baseline.verdict == "pass", r.baseline.passes, r.baseline.samples
        )
        for r in results.values()
        if r.baseline is not None
    }
    context = gate.GateContext.build(
        history,
        judge=judge.to_dict(),
        case_keys=sorted(results),
        baseline=views,
        settings=settings.gate,
    )
    costs = [rep["summary"].get("cost_usd") for _, rep in reports]
    known = [c for c in costs if c is not None]
    import datetime as dt

    outcome = finish_run(
        RunInputs(
            results=list(results.values()),
            judge=judge,
            settings=settings,
            baseline=baseline,
            baseline_sha256=sha,
            history=history,
            context=context,
            full_run=full_run,
            narrowed=others,
            unused=first["summary"].get("unused_baseline", []),
            created=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            commit=git_commit(state_dir) if state_dir is not None and update_baseline else None,
            cost=(lambda _usage: sum(known)) if known else None,
        )
    )
    outcome.report["merged_shards"] = n
    return outcome


def run(args: argparse.Namespace) -> int:
    reports = [(p, _load(p)) for p in args.reports]
    if args.update_baseline:
        check_shards(reports)  # a set that is not one run is refused first, whatever the state
        _check_baseline_unchanged(args.dir, reports[0][1])
    outcome = merge(
        reports,
        update_baseline=args.update_baseline,
        allow_errors=args.allow_errors,
        state_dir=args.dir,
    )
    if args.json:
        print(json.dumps(outcome.report, indent=2, sort_keys=True, ensure_ascii=False))
    else:
        for line in summary_lines(outcome.report):
            print(line)
    for path in args.report:
        write_report(path, outcome.report)
        print(f"wrote report {path}", file=sys.stderr if args.json else sys.stdout)
    if args.update_baseline:
        write_state(
            outcome,
            baseline_path=args.dir / "baseline.json",
            history_path=args.dir / "history.jsonl",
            default_threshold=float(reports[0][1]["settings"]["threshold"]),
            baseline_sha256=reports[0][1]["settings"].get("baseline_sha256"),
        )
        for line in outcome.written:
            print(f"wrote {line}", file=sys.stderr if args.json else sys.stdout)
        for line in outcome.not_written:
            print(line, file=sys.stderr)
    return 0 if outcome.verdict.passed else 1


def _check_baseline_unchanged(state_dir: Path, first: Mapping[str, Any]) -> None:
    baseline_path = state_dir / "baseline.json"
    if file_sha256(baseline_path) != first["settings"].get("baseline_sha256"):
        raise CLIError(
            f"{baseline_path} changed since the shards ran (or is not the one they used);"
            " re-run the shards or pass --dir"
        )
