"""``llmeval ab``: A/B test design and analysis from the shell.

* ``llmeval ab sample-size --baseline 0.12 --mde 0.15`` — units per arm.
* ``llmeval ab analyze --control-n 1000 --control-k 120 --treatment-n 1000 --treatment-k 150``
  or ``llmeval ab analyze --file results.csv|results.json`` — ship / no_ship / inconclusive.
* ``llmeval ab srm --observed 5000 4800 --expected 0.5 0.5`` — sample-ratio mismatch
  (exit status 1 on a mismatch, so it can gate a pipeline).

Human-readable output by default; ``--json`` prints one JSON object for machines. All the
statistics live in :mod:`pytest_llmeval.stats`; this module only parses and formats.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pytest_llmeval import stats
from pytest_llmeval.cli import command_group
from pytest_llmeval.errors import CLIError

_Handler = Callable[[argparse.Namespace], int]

_INT_RE = re.compile(r"[+-]?\d+")

_FILE_FORMAT_HELP = """\
file formats (values: an integer is a count of units with the event, a decimal is a rate):
  CSV   header 'variant,n,<metric>,...' and one row per variant (control, treatment):
            variant,n,thumbs_up,error_rate
            control,1000,120,0.010
            treatment,1000,150,0.012
  JSON  {"control": {"n": 1000, "thumbs_up": 120, "error_rate": 0.010},
         "treatment": {"n": 1000, "thumbs_up": 150, "error_rate": 0.012}}
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``llmeval ab`` and its sub-commands to the ``llmeval`` parser."""
    ab_sub = command_group(
        subparsers,
        "ab",
        help="A/B test sample sizes, analysis and sample-ratio checks",
        description="A/B test design and analysis with exact statistics (scipy).",
    )

    size = ab_sub.add_parser(
        "sample-size",
        help="units needed per arm to detect a minimum effect",
        description=(
            "Units per arm for a two-proportion z-test (pooled null, unpooled alternative, "
            "Fleiss, Levin & Paik 2003, eq. 4.14)."
        ),
    )
    size.add_argument("--baseline", type=float, required=True, help="control rate, e.g. 0.12")
    size.add_argument(
        "--mde",
        type=float,
        required=True,
        help="minimum detectable effect: relative (0.15 = +15%%) unless --absolute",
    )
    size.add_argument("--absolute", action="store_true", help="--mde is in rate points")
    size.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    size.add_argument("--power", type=float, default=0.80, help="power (0.80)")
    _add_alternative(size)
    _add_json(size)
    size.set_defaults(func=_cmd_sample_size)

    analyze = ab_sub.add_parser(
        "analyze",
        help="analyse a finished experiment: ship, no_ship or inconclusive",
        description=(
            "Two-proportion z-test on the primary metric, one-sided harm tests on guardrails, "
            "and practical significance against --mde."
        ),
        epilog=_FILE_FORMAT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analyze.add_argument("--control-n", type=int, help="units in the control arm")
    analyze.add_argument("--control-k", type=int, help="control units with the event")
    analyze.add_argument("--treatment-n", type=int, help="units in the treatment arm")
    analyze.add_argument("--treatment-k", type=int, help="treatment units with the event")
    analyze.add_argument("--file", type=Path, help="CSV or JSON file with both arms (see below)")
    analyze.add_argument(
        "--metric", help="primary metric (required when the file has several metrics)"
    )
    analyze.add_argument(
        "--direction",
        choices=("higher", "lower"),
        default="higher",
        help="which way is better for the primary metric (higher)",
    )
    analyze.add_argument(
        "--mde",
        type=float,
        help="smallest improvement worth shipping: relative unless --absolute",
    )
    analyze.add_argument("--absolute", action="store_true", help="--mde is in rate points")
    analyze.add_argument(
        "--guardrail",
        action="append",
        default=[],
        metavar="NAME[:lower|higher]",
        help="a guardrail metric in --file and which way is better (repeatable); "
        "thumbs_down_rate, error_rate and similar default to lower",
    )
    analyze.add_argument("--alpha", type=float, default=0.05, help="significance level (0.05)")
    _add_json(analyze)
    analyze.set_defaults(func=_cmd_analyze)

    srm = ab_sub.add_parser(
        "srm",
        help="sample-ratio mismatch check (exit 1 on a mismatch)",
        description=(
            "Chi-square goodness of fit of the observed arm sizes to the planned split. "
            "Exit status 1 when p < threshold."
        ),
    )
    srm.add_argument(
        "--observed", type=int, nargs="+", required=True, help="units per arm, e.g. 5000 4800"
    )
    srm.add_argument(
        "--expected",
        type=float,
        nargs="+",
        help="planned ratios in the same order, e.g. 0.5 0.5 (default: an equal split)",
    )
    srm.add_argument(
        "--threshold", type=float, default=0.001, help="p-value below which it is a mismatch"
    )
    _add_json(srm)
    srm.set_defaults(func=_cmd_srm)


def _add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _add_alternative(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alternative",
        choices=("two-sided", "greater", "less"),
        default="two-sided",
        help="two-sided (default) or one-sided test",
    )


def _emit_json(data: Mapping[str, Any]) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, allow_nan=False))


def _user_error(exc: ValueError, flags: Mapping[str, str]) -> CLIError:
    """The stats message with its leading argument name replaced by the option the user typed."""
    message = str(exc)
    match = re.match(r"[a-z_]+", message)
    if match and match.group(0) in flags:
        message = flags[match.group(0)] + message[match.end() :]
    return CLIError(message)


def _pct(rate: float) -> str:
    return f"{rate:.2%}"


def _pts(diff: float) -> str:
    return f"{diff * 100:+.2f}"


def _p(value: float) -> str:
    return f"{value:.3g}"


# ---------------------------------------------------------------------------
# sample-size
# ---------------------------------------------------------------------------


def _cmd_sample_size(args: argparse.Namespace) -> int:
    relative = not args.absolute
    try:
        per_arm = stats.sample_size(
            args.baseline,
            args.mde,
            alpha=args.alpha,
            power=args.power,
            relative=relative,
            alternative=args.alternative,
        )
    except ValueError as exc:
        raise _user_error(
            exc,
            {"baseline_rate": "--baseline", "mde": "--mde", "alpha": "--alpha", "power": "--power"},
        ) from None
    target = args.baseline * (1 + args.mde) if relative else args.baseline + args.mde
    if args.json:
        _emit_json(
            {
                "per_arm": per_arm,
                "total": 2 * per_arm,
                "baseline_rate": args.baseline,
                "target_rate": target,
                "mde": args.mde,
                "relative": relative,
                "alpha": args.alpha,
                "power": args.power,
                "alternative": args.alternative,
            }
        )
        return 0
    kind = f"relative MDE {args.mde:+.2%}" if relative else f"absolute MDE {_pts(args.mde)} points"
    print(f"Sample size: {per_arm:,} per arm ({2 * per_arm:,} in total)")
    print(f"  baseline {_pct(args.baseline)} -> target {_pct(target)} ({kind})")
    print(f"  alpha {args.alpha:g} ({args.alternative}), power {args.power:g}")
    return 0


# ---------------------------------------------------------------------------
# analyze
# ---------------------------------------------------------------------------


def _parse_cell(text: str, where: str) -> int | float:
    value = text.strip()
    if not value:
        raise CLIError(f"{where}: empty value")
    if _INT_RE.fullmatch(value):
        return int(value)
    try:
        return float(value)
    except ValueError:
        raise CLIError(f"{where}: {value!r} is not a number") from None


def _read_csv(path: Path, text: str) -> dict[str, dict[str, Any]]:
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip() for f in reader.fieldnames or []]
    if "variant" not in fields or "n" not in fields:
        raise CLIError(f"{path}: the CSV header needs 'variant' and 'n' columns, got {fields}")
    arms: dict[str, dict[str, Any]] = {}
    for line_no, row in enumerate(reader, start=2):
        clean = {(k or "").strip(): (v or "") for k, v in row.items()}
        variant = clean.pop("variant").strip()
        if variant in arms:
            raise CLIError(f"{path}:{line_no}: variant {variant!r} appears twice")
        arms[variant] = {
            key: _parse_cell(value, f"{path}:{line_no} column {key!r}")
            for key, value in clean.items()
        }
    return arms


def _read_json(path: Path, text: str) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CLIError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise CLIError(f"{path}: expected an object with 'control' and 'treatment'")
    arms: dict[str, dict[str, Any]] = {}
    for variant, values in data.items():
        if not isinstance(values, dict):
            raise CLIError(f"{path}: {variant!r} must be an object like {{'n': 1000, 'k': 120}}")
        arms[variant] = values
    return arms


def _load_arms(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if suffix == ".csv":
        arms = _read_csv(path, text)
    elif suffix == ".json":
        arms = _read_json(path, text)
    else:
        raise CLIError(f"{path}: unknown file type {suffix!r}; use .csv or .json")
    unknown = sorted(set(arms) - {"control", "treatment"})
    if unknown:
        raise CLIError(f"{path}: unknown variant(s) {unknown}; expected control and treatment")
    for needed in ("control", "treatment"):
        if needed not in arms:
            raise CLIError(f"{path}: no {needed!r} variant")
    return arms["control"], arms["treatment"]


def _guardrails(specs: list[str]) -> dict[str, str] | None:
    if not specs:
        return None
    result: dict[str, str] = {}
    for spec in specs:
        name, sep, direction = spec.partition(":")
        if not name:
            raise CLIError(f"--guardrail {spec!r}: empty metric name")
        if sep:
            if direction not in ("lower", "higher"):
                raise CLIError(f"--guardrail {spec!r}: direction must be 'lower' or 'higher'")
            result[name] = direction
        elif name in stats.LOWER_IS_BETTER:
            result[name] = "lower"
        else:
            raise CLIError(
                f"--guardrail {name!r}: unknown direction; write {name}:lower or {name}:higher"
            )
    return result


def _cmd_analyze(args: argparse.Namespace) -> int:
    count_flags = {
        "--control-n": args.control_n,
        "--control-k": args.control_k,
        "--treatment-n": args.treatment_n,
        "--treatment-k": args.treatment_k,
    }
    given = [flag for flag, value in count_flags.items() if value is not None]
    if args.file is not None:
        if given:
            raise CLIError(f"use either --file or the count options, not both ({given[0]})")
        control, treatment = _load_arms(args.file)
        metric = args.metric
        if metric is None:
            names = sorted(k for k in control if k != "n")
            if len(names) != 1:
                raise CLIError(
                    f"{args.file}: choose the primary metric with --metric (found {names})"
                )
            metric = names[0]
    else:
        missing = [flag for flag, value in count_flags.items() if value is None]
        if missing:
            raise CLIError(f"missing {', '.join(missing)} (or give --file)")
        if args.guardrail:
            raise CLIError("--guardrail needs --file (guardrail metrics are read from it)")
        metric = args.metric or "success"
        control = {"n": args.control_n, metric: args.control_k}
        treatment = {"n": args.treatment_n, metric: args.treatment_k}
    try:
        analysis = stats.analyze_experiment(
            control,
            treatment,
            metric=metric,
            mde=args.mde,
            relative=not args.absolute,
            guardrails=_guardrails(args.guardrail),
            alpha=args.alpha,
            direction=args.direction,
        )
    except ValueError as exc:
        raise _user_error(exc, {"mde": "--mde", "alpha": "--alpha"}) from None
    if args.json:
        _emit_json(analysis.to_dict())
        return 0
    _print_analysis(analysis)
    return 0


def _print_analysis(a: stats.ExperimentAnalysis) -> None:
    t = a.test
    better = "higher" if a.direction == "higher" else "lower"
    print(f"Metric: {a.metric} ({better} is better)")
    print(f"  control    n={a.control_n:,}  rate {_pct(a.control_rate)}")
    print(f"  treatment  n={a.treatment_n:,}  rate {_pct(a.treatment_rate)}")
    lift = "n/a" if t.relative_lift is None else f"{t.relative_lift:+.2%}"
    print(
        f"  difference {_pts(t.diff)} points "
        f"({t.ci_level:.0%} CI {_pts(t.ci_low)} to {_pts(t.ci_high)}), relative lift {lift}"
    )
    print(f"  z = {t.z:.3f}, p = {_p(t.p_value)} ({t.alternative}), alpha {a.alpha:g}")
    if a.mde_absolute is not None:
        practical = "reached" if a.practically_significant else "not reached"
        print(f"  minimum worthwhile effect {_pts(a.mde_absolute)} points: {practical}")
    if a.guardrails:
        print("Guardrails (one-sided test that the treatment is worse):")
        for g in a.guardrails:
            status = "WORSE" if g.worse else "ok"
            print(
                f"  {g.name} ({g.direction} is better): {_pct(g.control_rate)} -> "
                f"{_pct(g.treatment_rate)}, p = {_p(g.test.p_value)}  {status}"
            )
    print(f"Recommendation: {a.recommendation}")
    for reason in a.reasons:
        print(f"  - {reason}")


# ---------------------------------------------------------------------------
# srm
# ---------------------------------------------------------------------------


def _cmd_srm(args: argparse.Namespace) -> int:
    expected = args.expected if args.expected is not None else [1.0] * len(args.observed)
    try:
        result = stats.srm_check(args.observed, expected, threshold=args.threshold)
    except ValueError as exc:
        flags = {
            "observed_counts": "--observed",
            "expected_ratios": "--expected",
            "threshold": "--threshold",
        }
        raise _user_error(exc, flags) from None
    if args.json:
        _emit_json(result.to_dict())
    else:
        verdict = "SAMPLE RATIO MISMATCH" if result.mismatch else "no sample-ratio mismatch"
        print(
            f"{verdict}: chi-square {result.statistic:.3f}, df {result.df}, "
            f"p = {_p(result.p_value)} (threshold {result.threshold:g})"
        )
        for i, (obs, exp, share) in enumerate(
            zip(result.observed, result.expected_counts, result.expected_ratios, strict=True),
            start=1,
        ):
            print(f"  arm {i}: {obs:,} observed, {exp:,.1f} expected ({_pct(share)})")
        if result.mismatch:
            print("  The split differs from the plan: check assignment and logging before")
            print("  trusting any result of this experiment.")
    return 1 if result.mismatch else 0
