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
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_llmeval.errors import CLIError

# The defaults of the ini keys llmeval_std_threshold and llmeval_min_history (options.py), which
# the CLI cannot read without a pytest configuration.
DEFAULT_STD_THRESHOLD = 2.0
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
        default=DEFAULT_STD_THRESHOLD,
        metavar="K",
        help="state folder only: k of the history band mean - k*std (default %(default)s)",
    )
    parser.add_argument(
        "--min-history",
        type=int,
        default=DEFAULT_MIN_HISTORY,
        metavar="N",
        help="state folder only: history points needed for the band (default %(default)s)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if (args.source is None) == (args.from_report is None):
        raise CLIError("give either a state folder (e.g. .llmeval/) or --from REPORT.json")
    if args.html is None and args.markdown is None:
        raise CLIError("nothing to write: give --html OUT.html and/or --markdown OUT.md")
    if args.from_report is not None:
        report = load_report(args.from_report)
    else:
        if args.min_history < 2:
            raise CLIError("--min-history must be at least 2 (a standard deviation needs two)")
        report = report_from_state(
            args.source, std_threshold=args.std_threshold, min_history=args.min_history
        )
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


def _case_from_entry(key: str, entry: Any) -> dict[str, Any]:
    file, sep, case_id = key.rpartition("::")
    if not sep:
        file, case_id = "", key
    flaky = 0 < entry.passes < entry.samples
    outcome = "flaky" if flaky else ("passed" if entry.passed else "known_failure")
    return {
        "id": case_id,
        "nodeid": key if sep else None,
        "file": file or None,
        "line": None,
        "question": None,
        "messages": None,
        "ground_truth": None,
        "rubric": None,
        "tags": [],
        "difficulty": "",
        "verdict": entry.verdict,
        "outcome": outcome,
        "score": entry.score,
        "threshold": entry.threshold,
        "failure_modes": [],
        "failed_checks": [],
        "reasoning": "",
        "error": None,
        "baseline": {
            "verdict": entry.verdict,
            "score": entry.score,
            "passes": entry.passes,
            "samples": entry.samples,
        },
        "samples": entry.samples,
        "passes": entry.passes,
        "judge": "",
        "response": None,
        "response_sha256": entry.response_sha256,
    }


def report_from_state(state_dir: Path, *, std_threshold: float, min_history: int) -> dict[str, Any]:
    """A report dict (``REPORT_SCHEMA.md`` shape) of the committed baseline and history.

    No run is involved, so there are no gates, no usage and no responses (the baseline stores
    only their hashes). The extra key ``"source": "baseline"`` tells the renderers so.
    """
    from pytest_llmeval.engine.store import load_baseline, load_history
    from pytest_llmeval.errors import StateFileError
    from pytest_llmeval.stats import history_bounds, proportion_ci

    if not state_dir.is_dir():
        raise CLIError(f"state folder not found: {state_dir}")
    baseline_path = state_dir / "baseline.json"
    history_path = state_dir / "history.jsonl"
    try:
        baseline = load_baseline(baseline_path)
        history = load_history(history_path)
    except StateFileError as exc:
        raise CLIError(str(exc)) from None
    if baseline is None and not history:
        raise CLIError(f"{state_dir}: no baseline.json or history.jsonl to report on")

    cases = [
        _case_from_entry(key, entry)
        for key, entry in sorted((baseline.entries if baseline else {}).items())
    ]
    passed = sum(1 for c in cases if c["verdict"] == "pass")
    failed = sum(1 for c in cases if c["verdict"] == "fail")
    judged = passed + failed
    scores = [float(c["score"]) for c in cases if c["verdict"] in ("pass", "fail")]
    rates = [float(h["pass_rate"]) for h in history]
    history_info: Mapping[str, Any] | None = None
    if len(rates) >= 2:
        bounds = history_bounds(rates, std_threshold)
        history_info = {
            "points": len(rates),
            "mean": bounds.mean,
            "std": bounds.sample_std,
            "k": std_threshold,
            "lower_bound": bounds.lower_bound,
        }
    judge: Mapping[str, Any] = {}
    if baseline is not None and baseline.judge is not None:
        judge = baseline.judge.to_dict()
    elif history and isinstance(history[-1].get("judge"), Mapping):
        judge = history[-1]["judge"]

    def ids(outcome: str) -> list[str]:
        return [c["nodeid"] or c["id"] for c in cases if c["outcome"] == outcome]

    summary = {
        "total": len(cases),
        "passed": passed,
        "failed": failed,
        "errors": 0,
        "xfailed": sum(1 for c in cases if c["outcome"] in ("known_failure", "flaky")),
        "pass_rate": passed / judged if judged else None,
        "pass_rate_ci": list(proportion_ci(passed, judged)) if judged else None,
        "mean_score": statistics.fmean(scores) if scores else None,
        "checks_only": 0,
        "regressions": [],
        "improvements": [],
        "new_failures": [],
        "known_failures": ids("known_failure"),
        "flaky": ids("flaky"),
        "unused_baseline": [],
        "by_difficulty": {},
        "by_tag": {},
        "failure_modes": {},
        "gates": [],
        "gate_passed": None,
        "judge_calls": None,
        "cache_hits": None,
        "usage": {},
        "cost_usd": None,
        "sut_usage": None,
        "history": history_info,
    }
    return {
        "schema_version": 1,
        "source": "baseline",
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "judge": dict(judge),
        "settings": {
            "std_threshold": std_threshold,
            "min_history": min_history,
            "max_regressions": None,
            "min_pass_rate": None,
            "repeat": max((c["samples"] for c in cases), default=1),
            "shard": None,
            "full_run": True,
        },
        "summary": summary,
        "cases": cases,
        "comparison": None,
        "history": history,
    }
