"""``llmeval report``: HTML and Markdown reports from a JSON report or the committed state.

::

    llmeval report --from report.json --html report.html [--markdown summary.md]
    llmeval report .llmeval/ --html baseline.html

The second form needs no run: it shows the committed baseline snapshot and the pass-rate
history (``baseline.json``, ``history.jsonl``). Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_llmeval.errors import CLIError

# The default of the ini key llmeval_min_history (plugin/options.py), which the CLI cannot read
# without a pytest configuration. llmeval_std_threshold is unset by default (prediction bound).
DEFAULT_MIN_HISTORY = 3


def register(subparsers: Any) -> None:
    """Add ``llmeval report`` to the ``llmeval`` command."""
    parser = subparsers.add_parser(
        "report",
        help="write an HTML and/or Markdown report",
        description=(
            "Render a JSON report (--from, as written by pytest --llmeval-report PATH.json) or the"
            " committed state folder (baseline.json and history.jsonl) as a self-contained HTML"
            " page and/or a Markdown summary."
        ),
    )
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        metavar="STATE_DIR",
        help="state folder with baseline.json and history.jsonl (e.g. .llmeval/)",
    )
    parser.add_argument(
        "--from",
        dest="from_report",
        type=Path,
        metavar="REPORT.json",
        help="JSON report written by pytest --llmeval-report",
    )
    parser.add_argument("--html", type=Path, metavar="OUT.html", help="write the HTML report")
    parser.add_argument(
        "--markdown", type=Path, metavar="OUT.md", help="write the Markdown summary"
    )
    parser.add_argument(
        "--std-threshold",
        type=float,
        default=None,
        metavar="K",
        help="state folder only: use the old history band mean - k*std with this k"
        " (default: the prediction bound, as the pytest gate)",
    )
    parser.add_argument(
        "--min-history",
        type=int,
        default=DEFAULT_MIN_HISTORY,
        metavar="N",
        help="state folder only: history points needed for the band (default %(default)s)",
    )
    parser.add_argument(
        "--json", action="store_true", help="also print the report as JSON on standard output"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.source is None) == (args.from_report is None):
        raise CLIError("give either a state folder (e.g. .llmeval/) or --from REPORT.json")
    if args.html is None and args.markdown is None and not args.json:
        raise CLIError("nothing to write: give --html OUT.html, --markdown OUT.md and/or --json")
    if args.from_report is not None:
        report = load_report(args.from_report)
    else:
        if args.min_history < 2:
            raise CLIError("--min-history must be at least 2 (a standard deviation needs two)")
        report = report_from_state(
            args.source, std_threshold=args.std_threshold, min_history=args.min_history
        )
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False))
    outputs: list[tuple[Path, str]] = []
    try:
        if args.html is not None:
            from pytest_llmeval.reports.html import HTMLExtraMissing, render_html

            try:
                outputs.append((args.html, render_html(report)))
            except HTMLExtraMissing as exc:
                raise CLIError(str(exc)) from None
        if args.markdown is not None:
            from pytest_llmeval.reports.markdown import render_markdown

            outputs.append((args.markdown, render_markdown(report)))
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    # Render everything first, then write: a rendering error leaves no half-set of outputs.
    from pytest_llmeval.engine.store import atomic_write

    for path, text in outputs:
        try:
            atomic_write(path, text.encode("utf-8"))
        except OSError as exc:
            raise CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
        print(f"wrote {path}")
    return 0


def load_report(path: Path) -> dict[str, Any]:
    """Read a JSON report; every problem is one clear :class:`CLIError` line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CLIError(f"report file not found: {path}") from None
    except IsADirectoryError:
        raise CLIError(
            f"{path} is a folder; give a JSON report file, or the folder as STATE_DIR"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise CLIError(f"{path}: not a pytest-llmeval JSON report (no schema_version)")
    return data


def report_from_state(
    state_dir: Path, *, std_threshold: float | None, min_history: int
) -> dict[str, Any]:
    """A report of the committed baseline and history, through the same end of a run as pytest.

    No run is involved, so there are no responses (the baseline may store only their hashes),
    no usage and no verdict; the history numbers are the gate's. ``"source": "baseline"`` tells
    the renderers so.
    """
    from pytest_llmeval.core import gate
    from pytest_llmeval.core.result import baseline_result
    from pytest_llmeval.core.verdict import JudgeIdentity
    from pytest_llmeval.engine.finish import RunInputs, RunSettings, finish_run
    from pytest_llmeval.engine.store import load_baseline, load_history
    from pytest_llmeval.errors import StateFileError

    if not state_dir.is_dir():
        raise CLIError(f"state folder not found: {state_dir}")
    try:
        baseline = load_baseline(state_dir / "baseline.json")
        history = load_history(state_dir / "history.jsonl")
    except StateFileError as exc:
        raise CLIError(str(exc)) from None
    if baseline is None and not history:
        raise CLIError(f"{state_dir}: no baseline.json or history.jsonl to report on")
    judge = JudgeIdentity(name="unknown")
    if baseline is not None and baseline.judge is not None:
        judge = baseline.judge
    elif history and isinstance(history[-1].get("judge"), Mapping):
        judge = JudgeIdentity.from_dict(history[-1]["judge"])
    entries = baseline.entries if baseline else {}
    results = [baseline_result(key, entry, judge) for key, entry in sorted(entries.items())]
    settings = RunSettings(
        gate=gate.GateSettings(std_threshold=std_threshold, min_history=min_history),
        repeat=max((e.samples for e in entries.values()), default=1),
    )
    views = {k: gate.BaselineView(e.passed, e.passes, e.samples) for k, e in entries.items()}
    context = gate.GateContext.build(
        history,
        judge=judge.to_dict(),
        case_keys=sorted(entries),
        baseline=views,
        settings=settings.gate,
    )
    outcome = finish_run(
        RunInputs(
            results=results,
            judge=judge,
            settings=settings,
            baseline=baseline,
            baseline_sha256=None,
            history=history,
            context=context,
            full_run=True,
            created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )
    )
    report = outcome.report
    report["source"] = "baseline"
    summary = report["summary"]
    summary["gate_passed"] = None  # no run: no verdict, no gates
    summary["gates_passed"] = None
    summary["verdict"] = None
    summary["verdict_reasons"] = []
    summary["gates"] = []
    return report
