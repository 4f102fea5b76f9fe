"""``llmeval online``, ``llmeval shadow`` and ``llmeval flywheel``: the production side.

* ``llmeval online ingest FILE... [--strict] [--workers N]`` — JSONL events into the store (exit
  1 when a file was rejected; skipped lines are reported on stderr).
* ``llmeval online dashboard --window 24h [--by variant] [--until TS] [--json]``.
* ``llmeval online ab --experiment ID --metric copy_rate [--guardrail M ...] [--json]`` —
  per-user A/B readout (exit 1 on a sample-ratio mismatch).
* ``llmeval online canary --control v1 --candidate v2 --guardrail thumbs_down_rate ...`` —
  exit 1 when a guardrail is significantly worse, so a deploy pipeline can stop a rollout.
* ``llmeval shadow --production mod:attr --shadow mod:attr (--from-store | --cases FILE)``.
* ``llmeval flywheel --since 7d --limit 50 --seed 1 --cases evals/ --out FILE [--dry-run]``.

Every command takes ``--db PATH`` (default ``.llmeval/online.sqlite3``); durations are
``30s``/``30m``/``24h``/``7d``/``2w`` or ``all``. User errors are one line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pytest_llmeval.cli import command_group
from pytest_llmeval.errors import CLIError
from pytest_llmeval.online import (
    DEFAULT_COMPLETION_EVENT,
    DEFAULT_DB_PATH,
    DEFAULT_MAX_DELAY_S,
    GROUP_DIMENSIONS,
    METRICS,
    EventStore,
    RecordError,
    StoreError,
    parse_timestamp,
)

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_MAX_ERRORS_SHOWN = 20


def parse_duration(text: str) -> float | None:
    """Seconds from ``30s``/``30m``/``24h``/``7d``/``2w`` (a bare number is seconds); ``all``
    is None (no limit)."""
    if text.strip().lower() == "all":
        return None
    match = _DURATION_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use e.g. 30m, 24h, 7d, 2w or 'all'"
        )
    return float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]


def _timestamp(text: str) -> float:
    try:
        return parse_timestamp(text, "--until")
    except RecordError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _alpha(text: str) -> float:
    value = _threshold(text)
    if value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text}")
    return value


def _int_at_least(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be >= {least}, got {text}")
    return value


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def _count(text: str) -> int:
    return _int_at_least(text, 0)


def _check_metrics(*names: str) -> None:
    # Checked in the command, not by argparse, so the error is one line without the usage.
    for name in names:
        if name not in METRICS:
            raise CLIError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")


# ---------------------------------------------------------------------------------------------
# parsers


def _common(parser: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    parser.add_argument(
        "--db", default=DEFAULT_DB_PATH, metavar="PATH", help=f"event store ({DEFAULT_DB_PATH})"
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object")


def _window(parser: argparse.ArgumentParser, default: str, name: str = "--window") -> None:
    parser.add_argument(
        name,
        type=parse_duration,
        default=parse_duration(default),
        metavar="DURATION",
        help=f"how far back from --until: 30m, 24h, 7d or 'all' (default {default})",
    )
    parser.add_argument(
        "--until",
        type=_timestamp,
        default=None,
        metavar="TIMESTAMP",
        help="end of the window, ISO 8601 or epoch seconds (default: now)",
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``llmeval online``, ``llmeval shadow`` and ``llmeval flywheel``."""
    online_sub = command_group(
        subparsers,
        "online",
        help="production events: ingest, dashboard, A/B and canary readouts",
        description="The production event store and its implicit-signal metrics.",
    )

    ingest = online_sub.add_parser(
        "ingest",
        help="add JSONL events to the store (idempotent)",
        description=(
            "Ingest JSONL files of responses and events, one transaction per file. Bad lines "
            "are reported as FILE:LINE and skipped; with --strict a file with any bad line is "
            "rejected whole. Re-ingesting a file adds nothing."
        ),
    )
    ingest.add_argument("files", nargs="+", metavar="FILE")
    ingest.add_argument("--strict", action="store_true", help="reject a file with any bad line")
    ingest.add_argument(
        "--workers",
        type=_count,
        default=None,
        help="processes parsing each file of 16 MiB or more (default: one per CPU, at most 4; "
        "0: parse in this process)",
    )
    _common(ingest)
    ingest.set_defaults(func=_cmd_ingest)

    dash = online_sub.add_parser(
        "dashboard",
        help="implicit-signal rates with counts and Wilson intervals",
        description="Every metric over a window of response-shown time, overall or per group.",
    )
    _window(dash, "24h")
    dash.add_argument("--by", choices=GROUP_DIMENSIONS, help="also per variant or model")
    _delay_options(dash)
    _common(dash)
    dash.set_defaults(func=_cmd_dashboard)

    ab = online_sub.add_parser(
        "ab",
        help="A/B readout from stored events (unit: user)",
        description=(
            "Per-variant user counts for an experiment, the sample-ratio check and "
            "analyze_experiment (ship / no_ship / inconclusive) with guardrails. "
            "Exit status 1 on a sample-ratio mismatch."
        ),
    )
    ab.add_argument("--experiment", required=True, metavar="ID")
    ab.add_argument("--metric", required=True, help="primary metric")
    ab.add_argument(
        "--guardrail",
        action="append",
        default=[],
        metavar="METRIC",
        help="guardrail metric (repeatable)",
    )
    ab.add_argument("--control", default="control", help="control variant (control)")
    ab.add_argument("--treatment", default="treatment", help="treatment variant (treatment)")
    ab.add_argument(
        "--ratio",
        nargs=2,
        type=float,
        default=[1.0, 1.0],
        metavar=("CONTROL", "TREATMENT"),
        help="planned traffic split for the sample-ratio check (1 1)",
    )
    ab.add_argument("--mde", type=float, help="minimum worthwhile relative lift, e.g. 0.05")
    ab.add_argument("--alpha", type=_alpha, default=0.05, help="significance level (0.05)")
    _window(ab, "all")
    ab.add_argument("--max-delay", type=float, default=DEFAULT_MAX_DELAY_S, metavar="SECONDS")
    _common(ab)
    ab.set_defaults(func=_cmd_ab)

    canary = online_sub.add_parser(
        "canary",
        help="canary check: exit 1 when a guardrail is significantly worse",
        description=(
            "Compare a candidate with the control on guardrail metrics (one-sided two-proportion "
            "z-tests). Exit status 1 when any guardrail is significantly worse."
        ),
    )
    canary.add_argument("--control", required=True, help="control variant or model version")
    canary.add_argument("--candidate", required=True, help="candidate variant or model version")
    canary.add_argument(
        "--guardrail",
        action="append",
        required=True,
        metavar="METRIC",
        help="guardrail metric (repeatable)",
    )
    canary.add_argument(
        "--by",
        choices=("auto", *GROUP_DIMENSIONS),
        default="auto",
        help="compare variants or models (auto: whichever has both names)",
    )
    canary.add_argument("--alpha", type=_alpha, default=0.05, help="significance level (0.05)")
    _window(canary, "24h")
    canary.add_argument("--max-delay", type=float, default=DEFAULT_MAX_DELAY_S, metavar="SECONDS")
    _common(canary)
    canary.set_defaults(func=_cmd_canary)

    shadow = subparsers.add_parser(
        "shadow",
        help="compare a shadow system with production using a pairwise judge",
        description=(
            "Run production and shadow on the same questions, judge each pair in both orders "
            "and recommend promoting the shadow only on a significant preference (sign test)."
        ),
    )
    shadow.add_argument("--production", metavar="MODULE:ATTR", help="production system")
    shadow.add_argument("--shadow", required=True, metavar="MODULE:ATTR", help="shadow system")
    source = shadow.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-store", action="store_true", help="recent stored responses")
    source.add_argument("--cases", metavar="FILE", help="a JSONL case file")
    shadow.add_argument("--judge", choices=("local", "anthropic"), default="local")
    shadow.add_argument("--judge-model", default=None, help="model of the anthropic judge")
    _window(shadow, "7d", "--since")
    shadow.add_argument("--limit", type=_positive_int, default=100, help="questions (100)")
    shadow.add_argument("--concurrency", type=_positive_int, default=4, help="threads (4)")
    shadow.add_argument("--alpha", type=_alpha, default=0.05, help="significance level (0.05)")
    shadow.add_argument(
        "--bias-probes",
        type=int,
        default=20,
        metavar="N",
        help="re-judge N comparisons with the answer not preferred padded by neutral filler, "
        "to measure verbosity bias (20; 0 turns the probe off)",
    )
    shadow.add_argument(
        "--rerun-production",
        action="store_true",
        help="call --production even where the store has the answer users saw",
    )
    shadow.add_argument(
        "--call-with",
        choices=("case", "question"),
        default="case",
        help="what the systems receive: a Case (default) or the question text",
    )
    _common(shadow)
    shadow.set_defaults(func=_cmd_shadow)

    fly = subparsers.add_parser(
        "flywheel",
        help="turn production failures into new JSONL cases",
        description=(
            "Select failures (thumbs-down, quick rephrase-retries, logged failures), sample "
            "them stratified by reason, drop exact and near duplicates of existing cases and "
            "append the rest to --out atomically. Cases are marked do_not_train."
        ),
    )
    _window(fly, "7d", "--since")
    fly.add_argument("--limit", type=_positive_int, default=50, help="cases to add at most (50)")
    fly.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    fly.add_argument(
        "--cases",
        default=".",
        metavar="PATH",
        help="existing cases: a file, or a folder searched for llmeval_*.jsonl (.)",
    )
    fly.add_argument("--out", required=True, metavar="FILE", help="JSONL file to append to")
    fly.add_argument(
        "--similarity",
        type=_threshold,
        default=0.9,
        metavar="THRESHOLD",
        help="near-duplicate threshold in (0, 1] (0.9)",
    )
    fly.add_argument("--max-delay", type=float, default=DEFAULT_MAX_DELAY_S, metavar="SECONDS")
    fly.add_argument("--dry-run", action="store_true", help="show what would be added")
    _common(fly)
    fly.set_defaults(func=_cmd_flywheel)


def _delay_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-delay",
        type=float,
        default=DEFAULT_MAX_DELAY_S,
        metavar="SECONDS",
        help="a rephrase-retry counts within this delay (30)",
    )
    parser.add_argument(
        "--completion-event",
        default=DEFAULT_COMPLETION_EVENT,
        metavar="TYPE",
        help=f"event type marking a completed task ({DEFAULT_COMPLETION_EVENT})",
    )


# ---------------------------------------------------------------------------------------------
# helpers


def _open(path: str) -> EventStore:
    try:
        return EventStore(path, create=False)
    except StoreError as exc:
        raise CLIError(str(exc)) from None


def _run(fn: Callable[[], Any]) -> Any:
    """Turn the library's user-facing errors into one-line CLI errors."""
    try:
        return fn()
    except (StoreError, ValueError, FileNotFoundError) as exc:
        raise CLIError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _emit(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ci(ci: Sequence[float] | None) -> str:
    return "-" if ci is None else f"[{100 * ci[0]:.1f}%, {100 * ci[1]:.1f}%]"


def _window_text(win: dict[str, Any]) -> str:
    since = win["since"] or "the beginning"
    return f"{since} .. {win['until']}"


# ---------------------------------------------------------------------------------------------
# commands


def _cmd_ingest(args: argparse.Namespace) -> int:
    for path in args.files:
        if not os.path.isfile(path):
            raise CLIError(f"no such file: {path}")
    try:
        store = EventStore(args.db)
    except StoreError as exc:
        raise CLIError(str(exc)) from None
    with store:
        report = _run(
            lambda: store.ingest_files(args.files, strict=args.strict, workers=args.workers)
        )
    for error in report.errors[:_MAX_ERRORS_SHOWN]:
        print(f"llmeval: {error}", file=sys.stderr)
    if len(report.errors) > _MAX_ERRORS_SHOWN:
        print(
            f"llmeval: ... and {len(report.errors) - _MAX_ERRORS_SHOWN} more bad lines",
            file=sys.stderr,
        )
    for name in report.rejected_files:
        print(
            f"llmeval: rejected {name} (--strict and bad lines): nothing ingested from it",
            file=sys.stderr,
        )
    if args.json:
        _emit(report.to_dict())
    else:
        skipped = len(report.errors) if not report.rejected_files else 0
        print(
            f"ingested {report.files - len(report.rejected_files)} of {report.files} file(s): "
            f"{report.responses_added:,} responses, {report.events_added:,} events, "
            f"{report.failures_added:,} failures added; {report.duplicates:,} already stored"
            + (f"; {skipped} bad line(s) skipped" if skipped else "")
        )
    return 1 if report.rejected_files else 0


def _cmd_dashboard(args: argparse.Namespace) -> int:
    with _open(args.db) as store:
        dash = _run(
            lambda: store.dashboard(
                window=args.window,
                until=args.until,
                by=args.by,
                max_delay_s=args.max_delay,
                completion_event=args.completion_event,
            )
        )
    if args.json:
        _emit(dash)
        return 0
    print(
        f"online dashboard: {_window_text(dash['window'])}; {dash['responses_shown']:,} "
        f"responses shown, {dash['sessions']:,} sessions"
    )
    groups: list[tuple[str, dict[str, Any]]] = [("all", dash)]
    if args.by:
        groups += sorted(dash[f"by_{args.by}"].items())
    print(f"{'metric':<26} {'group':<14} {'rate':>7}  {'95% CI':<17} {'n/d':>15}")
    for name in (*METRICS, "time_to_task_completion"):
        for i, (group, values) in enumerate(groups):
            m = values[name]
            label = name if i == 0 else ""
            counts = f"{m['numerator']:,}/{m['denominator']:,}"
            line = f"{label:<26} {group:<14} {_pct(m['rate']):>7}  {_ci(m['ci']):<17} {counts:>15}"
            if name == "time_to_task_completion" and m.get("median_seconds") is not None:
                line += f"  median {m['median_seconds']:.1f} s"
            print(line)
    if dash["responses_shown"] == 0:
        print("no responses were shown in this window: every rate is undefined (-)")
    if dash["unattributed_events"]:
        print(
            f"{dash['unattributed_events']:,} event(s) in the window name a response that was "
            "never recorded as shown; they are not counted"
        )
    return 0


def _cmd_ab(args: argparse.Namespace) -> int:
    from pytest_llmeval.online import ab_readout

    _check_metrics(args.metric, *args.guardrail)
    with _open(args.db) as store:
        readout = _run(
            lambda: ab_readout(
                store,
                args.experiment,
                args.metric,
                control=args.control,
                treatment=args.treatment,
                guardrails=args.guardrail,
                expected_ratios=args.ratio,
                mde=args.mde,
                alpha=args.alpha,
                window=args.window,
                until=args.until,
                max_delay_s=args.max_delay,
            )
        )
    if args.json:
        _emit(readout.to_dict())
        return 0 if readout.valid else 1
    a = readout.analysis
    print(f"experiment {readout.experiment}: {_window_text(readout.window.to_dict())}, unit: user")
    for variant, rate in ((readout.control, a.control_rate), (readout.treatment, a.treatment_rate)):
        k = readout.hits[variant][readout.metric]
        n = readout.users[variant]
        print(f"  {variant:<14} {readout.metric} {_pct(rate):>7} ({k:,}/{n:,} users)")
    srm = readout.srm
    print(
        f"  sample ratio: chi-square p = {srm.p_value:.3g}" + (" MISMATCH" if srm.mismatch else "")
    )
    print(f"  difference: {a.test.diff:+.4f}, p = {a.test.p_value:.3g}")
    for g in a.guardrails:
        print(
            f"  guardrail {g.name}: {_pct(g.control_rate)} -> {_pct(g.treatment_rate)}, "
            f"one-sided p = {g.test.p_value:.3g}" + (" WORSE" if g.worse else "")
        )
    if readout.users_in_several_variants or readout.responses_without_user:
        print(
            f"  left out: {readout.users_in_several_variants} user(s) seen in several variants, "
            f"{readout.responses_without_user} response(s) without a user id"
        )
    print(f"recommendation: {readout.recommendation}")
    for reason in readout.reasons:
        print(f"  - {reason}")
    return 0 if readout.valid else 1


def _canary_dimension(store: EventStore, args: argparse.Namespace) -> str:
    if args.by != "auto":
        return str(args.by)
    for dimension in GROUP_DIMENSIONS:
        groups = store.groups(dimension)
        if args.control in groups and args.candidate in groups:
            return dimension
    raise CLIError(
        f"neither variants nor models include both {args.control!r} and {args.candidate!r} "
        f"(variants: {', '.join(store.groups('variant'))}; models: "
        f"{', '.join(store.groups('model'))})"
    )


def _cmd_canary(args: argparse.Namespace) -> int:
    from pytest_llmeval.online import canary_readout

    _check_metrics(*args.guardrail)
    with _open(args.db) as store:
        by = _canary_dimension(store, args)
        readout = _run(
            lambda: canary_readout(
                store,
                args.control,
                args.candidate,
                list(dict.fromkeys(args.guardrail)),
                by=by,
                alpha=args.alpha,
                window=args.window,
                until=args.until,
                max_delay_s=args.max_delay,
            )
        )
    if args.json:
        _emit(readout.to_dict())
    else:
        print(
            f"canary {args.candidate} vs {args.control} ({by}), "
            f"{_window_text(readout.window.to_dict())}, alpha {args.alpha}"
        )
        for c in readout.checks:
            status = "WORSE" if c.worse else ("no data" if c.note else "ok")
            p = "-" if c.p_value is None else f"{c.p_value:.3g}"
            print(
                f"  {c.metric:<26} {_pct(c.control.rate):>7} -> {_pct(c.candidate.rate):>7} "
                f"({c.candidate.numerator:,}/{c.candidate.denominator:,}), one-sided p = {p}  "
                f"{status}"
            )
        print(
            "canary: FAIL (a guardrail is significantly worse)"
            if not readout.passed
            else "canary: pass"
        )
    return 0 if readout.passed else 1


def _load_system(spec: str, what: str) -> Callable[..., Any]:
    import inspect

    from pytest_llmeval.judges import import_object

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like pytest's rootdir: the user's project imports
    try:
        obj = import_object(spec, what)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise CLIError(f"{what} {spec!r} is not callable")
    return obj  # type: ignore[no-any-return]


def _cmd_shadow(args: argparse.Namespace) -> int:
    from pytest_llmeval.judges.pairwise_local import LocalPairwiseJudge
    from pytest_llmeval.online.shadow import (
        ShadowEvaluator,
        ShadowItem,
        items_from_cases,
        items_from_store,
        references,
    )

    items: list[ShadowItem]
    if args.from_store:
        with _open(args.db) as store:
            items = _run(
                lambda: items_from_store(
                    store, since=args.since, until=args.until, limit=args.limit
                )
            )
        if not items:
            raise CLIError("no stored responses with a question in the window")
    else:
        from pytest_llmeval.errors import CaseError

        try:
            items = items_from_cases(args.cases)[: args.limit]
        except OSError as exc:
            raise CLIError(f"cannot read {args.cases}: {exc.strerror or exc}") from None
        except CaseError as exc:
            raise CLIError(str(exc)) from None
        if not items:
            raise CLIError(f"{args.cases} has no cases")
    needs_production = args.rerun_production or any(i.production_response is None for i in items)
    if needs_production and not args.production:
        raise CLIError("--production is required (no stored production answers to compare)")
    production = _load_system(args.production, "--production") if args.production else None
    shadow = _load_system(args.shadow, "--shadow")
    judge: Any
    if args.judge == "anthropic":
        if not os.environ.get("ANTHROPIC_API_KEY"):
            raise CLIError("--judge anthropic needs ANTHROPIC_API_KEY in the environment")
        from pytest_llmeval.judges.anthropic import AnthropicPairwiseJudge

        judge = (
            AnthropicPairwiseJudge(args.judge_model)
            if args.judge_model
            else AnthropicPairwiseJudge()
        )
    else:
        judge = LocalPairwiseJudge(references=references(items))
    evaluator = ShadowEvaluator(
        production,
        shadow,
        judge,
        concurrency=args.concurrency,
        alpha=args.alpha,
        call_with=args.call_with,
        rerun_production=args.rerun_production,
        bias_probes=args.bias_probes,
    )
    report = evaluator.run(items)
    if args.json:
        _emit(report.to_dict())
        return 0
    print(f"shadow evaluation: {report.n} question(s), judge {judge.identity.label()}")
    print(
        f"  shadow wins {report.shadow_wins}, production wins {report.production_wins}, "
        f"ties {report.ties}, errors {report.errors}"
    )
    print(
        f"  shadow preference {_pct(report.shadow_preference_rate)} "
        f"{_ci(report.shadow_preference_ci)} (ties excluded), sign test p = "
        f"{report.sign_test_p:.3g}"
    )
    print(f"  position consistency {_pct(report.position_consistency_rate)}")
    vb = report.verbosity_bias
    if vb is not None:
        print(
            f"  verbosity bias {_pct(vb.rate)} {_ci(vb.ci)}: padding the answer not preferred "
            f"with neutral filler moved the preference in {vb.moved}/{vb.probed} probe(s)"
        )
    fa = report.feedback_agreement
    if fa is not None:
        print(
            f"  judge agrees with user thumbs {_pct(fa.rate)} {_ci(fa.ci)} "
            f"({fa.agree}/{fa.n}; {fa.ties_skipped} ties skipped)"
        )
    for c in report.comparisons:
        if c.error:
            print(
                f"  error: {c.item.case_id or c.item.response_id or c.item.question[:40]}: "
                f"{c.error}"
            )
    print(f"recommendation: {report.recommendation}")
    return 0


def _cmd_flywheel(args: argparse.Namespace) -> int:
    from pytest_llmeval.online.flywheel import run_flywheel

    if not os.path.exists(args.cases):
        raise CLIError(f"--cases {args.cases}: no such file or folder")
    with _open(args.db) as store:
        result = _run(
            lambda: run_flywheel(
                store,
                out=args.out,
                cases=args.cases,
                since=args.since,
                until=args.until,
                limit=args.limit,
                seed=args.seed,
                similarity_threshold=args.similarity,
                max_delay_s=args.max_delay,
                dry_run=args.dry_run,
            )
        )
    if args.json:
        _emit(result.to_dict())
        return 0
    data = result.to_dict()
    verb = "would add" if args.dry_run else "added"
    reasons = ", ".join(f"{k} {v}" for k, v in data["by_reason"].items()) or "none"
    print(
        f"flywheel: {result.candidates} failure(s) in {_window_text(data['window'])} "
        f"(by reason: {reasons})"
    )
    exact = sum(1 for d in result.duplicates if d.kind == "exact")
    near = len(result.duplicates) - exact
    print(
        f"  skipped: {exact} exact and {near} near duplicate(s), "
        f"{result.skipped_no_question} without a question, {len(result.invalid)} invalid"
    )
    for case in result.added:
        text = case.get("question") or case["messages"][-1]["content"]
        print(f"  + {case['id']} [{case['tags'][-1]}] {text[:70]}")
    target = args.out
    print(
        f"{verb} {len(result.added)} case(s) to {target}"
        + (" (dry run: nothing written)" if args.dry_run else "")
    )
    return 0
