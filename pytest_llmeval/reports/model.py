"""Reports: derive counts from case records and format them. Formats, never decides."""

from __future__ import annotations

import datetime as _dt
import json
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_llmeval.core.verdict import JudgeIdentity, Usage
from pytest_llmeval.engine.store import atomic_write

if TYPE_CHECKING:
    from pytest_llmeval.core.gate import GateDecision
    from pytest_llmeval.plugin.options import Settings

REPORT_SCHEMA_VERSION = 1
_OUTCOME_LISTS = {
    "regression": "regressions",
    "improvement": "improvements",
    "new_failure": "new_failures",
    "known_failure": "known_failures",
    "flaky": "flaky",
}


def _wilson(k: int, n: int) -> list[float] | None:
    if n <= 0:
        return None
    from pytest_llmeval.stats import proportion_ci

    lo, hi = proportion_ci(k, n, method="wilson", level=0.95)
    return [lo, hi]


def _group(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    judged = [r for r in records if r["verdict"] != "error"]
    passed = sum(1 for r in judged if r["verdict"] == "pass")
    # a case judged by its checks alone has no quality score worth averaging
    scores = [r["score"] for r in judged if r["score"] is not None and not r.get("checks_only")]
    return {
        "total": len(judged),
        "passed": passed,
        "pass_rate": passed / len(judged) if judged else None,
        "ci": _wilson(passed, len(judged)),
        "mean_score": statistics.fmean(scores) if scores else None,
    }


def build_report(
    *,
    records: Sequence[Mapping[str, Any]],
    decision: GateDecision,
    judge: JudgeIdentity,
    settings: Mapping[str, Any],
    unused: Sequence[str],
    history: Sequence[Mapping[str, Any]],
    full_run: bool,
    narrowed: Sequence[str] = (),
    cache_problems: Sequence[str] = (),
    comparison: Mapping[str, Any] | None = None,
    flaky_history: Sequence[str] = (),
    cost: Callable[[Usage], float | None] | None = None,
    collected_keys: Sequence[str] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """The JSON report (schema in the README): summary, cases, history."""
    totals = _group(records)
    errors = sum(1 for r in records if r["verdict"] == "error")
    failed = sum(1 for r in records if r["verdict"] == "fail")
    xfailed = sum(1 for r in records if r["outcome"] in ("known_failure", "flaky"))
    by_difficulty: dict[str, list[Mapping[str, Any]]] = {}
    by_tag: dict[str, list[Mapping[str, Any]]] = {}
    modes: dict[str, int] = {}
    usage = Usage()
    for r in records:
        by_difficulty.setdefault(r["difficulty"], []).append(r)
        for tag in r["tags"]:
            by_tag.setdefault(tag, []).append(r)
        for mode in r["failure_modes"]:
            modes[mode] = modes.get(mode, 0) + 1
        usage = usage + Usage.from_dict(r.get("usage", {}))
    lists: dict[str, list[str]] = {name: [] for name in _OUTCOME_LISTS.values()}
    for r in records:
        name = _OUTCOME_LISTS.get(r["outcome"])
        if name:
            lists[name].append(r["key"])
    points = [float(h["pass_rate"]) for h in history]
    hist_info = None
    if len(points) >= 2:
        mean, std = statistics.fmean(points), statistics.stdev(points)
        hist_info = {
            "points": len(points),
            "mean": mean,
            "std": std,
            "k": settings["std_threshold"],
            "lower_bound": mean - settings["std_threshold"] * std,
        }
    cost_usd = cost(usage) if cost is not None else None
    summary = {
        "total": len(records),
        "passed": totals["passed"],
        "failed": failed,
        "errors": errors,
        "xfailed": xfailed,
        "pass_rate": totals["pass_rate"],
        "pass_rate_ci": totals["ci"],
        "mean_score": totals["mean_score"],
        "checks_only": sum(1 for r in records if r.get("checks_only")),
        **lists,
        "unused_baseline": list(unused),
        "flaky_history": list(flaky_history),
        "repeat": _repeat_view(records),
        "by_difficulty": {k: _group(v) for k, v in sorted(by_difficulty.items())},
        "by_tag": {k: _group(v) for k, v in sorted(by_tag.items())},
        "failure_modes": dict(sorted(modes.items(), key=lambda kv: (-kv[1], kv[0]))),
        "gates": [g.to_dict() for g in decision.gates],
        "gate_passed": decision.passed,
        "judge_calls": sum(int(r.get("judge_calls", 0)) for r in records),
        "cache_hits": sum(int(r.get("cache_hits", 0)) for r in records),
        "usage": usage.to_dict(),
        "cost_usd": cost_usd,
        "sut_usage": _sut_usage(records),
        "history": hist_info,
        "full_run": full_run,
        "narrowed": list(narrowed),
        "cache_problems": list(cache_problems),
    }
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "created": created or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "judge": judge.to_dict(),
        "settings": {**settings, "full_run": full_run},
        "summary": summary,
        "cases": [_case_view(r) for r in records],
        "comparison": dict(comparison) if comparison else None,
        "history": [dict(h) for h in history],
        "collected_keys": list(collected_keys) if collected_keys is not None else None,
    }


def report_settings(settings: Settings, baseline_sha256: str | None) -> dict[str, Any]:
    """The settings block of a report: what a shard merge must find identical."""
    return {
        "std_threshold": settings.std_threshold,
        "min_history": settings.min_history,
        "max_regressions": settings.max_regressions,
        "min_pass_rate": settings.min_pass_rate,
        "history_binomial": settings.history_binomial,
        "history_alpha": settings.history_alpha,
        "threshold": settings.threshold,
        "min_words": settings.min_words,
        "max_words": settings.max_words,
        "repeat": settings.repeat,
        "repeat_pass_fraction": settings.repeat_pass_fraction,
        "flaky_alpha": settings.flaky_alpha,
        "shard": f"{settings.shard[0]}/{settings.shard[1]}" if settings.shard else None,
        "baseline_sha256": baseline_sha256,
        "update_baseline": settings.update_baseline,
    }


_CASE_FIELDS = (
    "id",
    "nodeid",
    "file",
    "line",
    "question",
    "messages",
    "ground_truth",
    "rubric",
    "tags",
    "difficulty",
    "verdict",
    "outcome",
    "outcome_detail",
    "score",
    "threshold",
    "failure_modes",
    "failed_checks",
    "reasoning",
    "error",
    "baseline",
    "samples",
    "passes",
    "judge",
    "response",
    "response_sha256",
    "checks_only",
    "candidate",
    "judge_calls",
    "cache_hits",
    "usage",
    "sut_usage",
)


def _sut_usage(records: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """Token usage the SUT reported (kept apart from the judge's), or None if it reported none."""
    reported = [r["sut_usage"] for r in records if r.get("sut_usage")]
    if not reported:
        return None
    total = Usage()
    for item in reported:
        total = total + Usage.from_dict(item)
    return total.to_dict()


def _repeat_view(records: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not any(int(r.get("samples", 1)) > 1 for r in records):
        return None
    judged = [r for r in records if r["verdict"] != "error"]
    passes = sum(int(r["passes"]) for r in judged)
    samples = sum(int(r["samples"]) for r in judged)
    return {
        "samples": samples,
        "passes": passes,
        "sample_pass_rate": passes / samples if samples else None,
        "sample_pass_rate_ci": _wilson(passes, samples),
        "per_case": {r["key"]: [r["passes"], r["samples"]] for r in judged},
    }


def _case_view(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: r.get(k) for k in _CASE_FIELDS}


# -- terminal ---------------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ids(keys: Sequence[str], limit: int = 10) -> str:
    shown = [k.split("::")[-1] for k in keys[:limit]]
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(shown) + more


def summary_lines(report: Mapping[str, Any], *, verbose: bool = False) -> list[str]:
    """The terminal section: every number labelled so a newcomer can read it."""
    s = report["summary"]
    out = []
    ci = s["pass_rate_ci"]
    ci_text = f" (95% CI {_pct(ci[0])}-{_pct(ci[1])})" if ci else ""
    mean = "n/a" if s["mean_score"] is None else f"{s['mean_score']:.3f}"
    out.append(
        f"cases: {s['total']}  passed: {s['passed']}  failed: {s['failed']}"
        f" (of which known failures/flaky: {s['xfailed']})  errors: {s['errors']}"
    )
    out.append(f"pass rate: {_pct(s['pass_rate'])}{ci_text}  mean score: {mean}")
    judge = JudgeIdentity.from_dict(report["judge"]).label()
    out.append(f"judge: {judge}  judge calls: {s['judge_calls']}  cache hits: {s['cache_hits']}")
    usage = s["usage"]
    if usage.get("requests"):
        cost = "" if s["cost_usd"] is None else f"  estimated cost: ${s['cost_usd']:.4f}"
        out.append(
            f"judge tokens: input {usage['input_tokens']}, output {usage['output_tokens']},"
            f" cache write {usage['cache_creation_input_tokens']},"
            f" cache read {usage['cache_read_input_tokens']}{cost}"
        )
    sut_usage = s.get("sut_usage")
    if sut_usage:
        out.append(
            f"SUT tokens (reported by the system under test, not judge cost):"
            f" input {sut_usage['input_tokens']}, output {sut_usage['output_tokens']}"
            f" over {sut_usage['requests']} calls"
        )
    if s["checks_only"]:
        out.append(f"judged by checks alone (no ground_truth): {s['checks_only']}")
    for title, key in (("by difficulty", "by_difficulty"), ("by tag", "by_tag")):
        groups = s[key]
        if groups:
            parts = [f"{name} {g['passed']}/{g['total']}" for name, g in groups.items()]
            out.append(f"{title}: " + ", ".join(parts))
    if s["failure_modes"]:
        out.append("failure modes: " + ", ".join(f"{m} {n}" for m, n in s["failure_modes"].items()))
    for title, key in (
        ("regressions (passed in the baseline, fail now)", "regressions"),
        ("new failures (not in the baseline)", "new_failures"),
        ("flaky (changed, not significantly)", "flaky"),
        ("improvements (failed in the baseline, pass now)", "improvements"),
        ("known failures", "known_failures"),
        ("unused baseline entries (cases gone)", "unused_baseline"),
        ("flaky in recorded history (verdict flipped twice or more)", "flaky_history"),
    ):
        keys = s[key]
        if keys:
            out.append(f"{title}: {len(keys)}: {_ids(keys, 50 if verbose else 10)}")
    rep = s.get("repeat")
    if rep:
        ci = rep["sample_pass_rate_ci"]
        out.append(
            f"samples: {rep['passes']}/{rep['samples']} passed"
            f" ({_pct(rep['sample_pass_rate'])}, 95% CI {_pct(ci[0])}-{_pct(ci[1])})"
        )
        mixed = [f"{k.split('::')[-1]} {p}/{n}" for k, (p, n) in rep["per_case"].items() if p != n]
        if mixed:
            out.append(f"cases not passing every sample: {_ids(mixed, 50 if verbose else 15)}")
    comp = report.get("comparison")
    if comp:
        out.extend(_comparison_lines(comp))
    if s["narrowed"]:
        out.append("narrowed run: " + "; ".join(s["narrowed"]))
    for problem in s.get("cache_problems", []):
        out.append(f"warning: {problem}")
    out.append("gates:")
    for g in s["gates"]:
        status = "SKIP" if g["skipped"] else ("PASS" if g["passed"] else "FAIL")
        out.append(f"  {status} {g['name']}: {g['detail']}")
    if s["gate_passed"]:
        out.append("llmeval gate: PASSED")
        new = s["new_failures"]
        if new and not report["settings"].get("update_baseline"):
            out.append(
                f"the run still fails: {len(new)} new failing case(s) have no baseline entry;"
                " fix them, or accept them with pytest --llmeval-update-baseline"
            )
    else:
        failed = [g["name"] for g in s["gates"] if not g["passed"]]
        out.append(f"llmeval gate: FAILED ({', '.join(failed)})")
        out.append(
            "next: read the failures above; fix the application, or accept the new state as"
            " the baseline with pytest --llmeval-update-baseline"
        )
    return out


def _comparison_lines(c: Mapping[str, Any]) -> list[str]:
    lines = [f"compare: baseline SUT vs candidate {c.get('candidate', '')} on {c['n']} cases"]
    if c["n"]:
        for name in ("baseline", "candidate"):
            ci = c[f"{name}_ci"]
            lines.append(
                f"  {name}: {c[f'{name}_passed']}/{c['n']} = {_pct(c[f'{name}_pass_rate'])}"
                f" (95% CI {_pct(ci[0])}-{_pct(ci[1])})"
            )
        lines.append(f"  candidate regressions: {c['b']} {_ids(c['regressions'])}".rstrip())
        lines.append(f"  candidate improvements: {c['c']} {_ids(c['improvements'])}".rstrip())
        lines.append(f"  McNemar exact p = {c['mcnemar_p']:.4g}")
    lines.append(f"  recommendation: {c['recommendation']} ({c['reason']})")
    return lines


def render_case_failure(record: Mapping[str, Any]) -> str:
    """The failure text of a case item: what was asked, expected, answered, and why it failed."""
    outcome = record["outcome"]
    head = {
        "regression": f"REGRESSION: case {record['id']} passed in the baseline and fails now",
        "new_failure": f"NEW FAILURE: case {record['id']} fails and has no baseline entry",
    }.get(outcome, f"case {record['id']} failed ({outcome})")
    if record.get("outcome_detail"):
        head += f" ({record['outcome_detail']})"
    lines = [head]
    if record.get("messages"):
        lines.append("conversation:")
        for m in record["messages"]:
            lines.append(f"  {m['role']}: {_clip(m['content'])}")
    else:
        lines.append(f"question:  {_clip(record['question'])}")
    if record.get("ground_truth") is not None:
        lines.append(f"expected:  {_clip(record['ground_truth'])}")
    if record.get("rubric"):
        lines.append(f"rubric:    {_clip(record['rubric'])}")
    lines.append(f"response:  {_clip(record['response']) or '(empty)'}")
    score = record.get("score")
    if record.get("checks_only"):
        lines.append("score:     n/a (no ground_truth: judged by its checks alone)")
    elif score is not None:
        lines.append(f"score:     {score:.3f} (threshold {record['threshold']:.2f})")
    if record.get("samples", 1) > 1:
        lines.append(f"samples:   {record['passes']}/{record['samples']} passed")
    if record.get("failed_checks"):
        lines.append("failed checks: " + "; ".join(record["failed_checks"]))
    if record.get("failure_modes"):
        lines.append("failure modes: " + ", ".join(record["failure_modes"]))
    if record.get("reasoning"):
        lines.append(f"reasoning: {_clip(record['reasoning'], 600)}")
    base = record.get("baseline")
    if base:
        lines.append(f"baseline:  {base['verdict']} (score {base['score']:.3f})")
    return "\n".join(lines)


def _clip(text: str | None, limit: int = 400) -> str:
    if text is None:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- files ------------------------------------------------------------------------------------
def write_report(path: Path, report: Mapping[str, Any]) -> None:
    """Write ``report`` as JSON, HTML or Markdown, chosen by the file suffix."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        data = json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    elif suffix in (".html", ".htm"):
        from pytest_llmeval.reports.html import render_html

        data = render_html(report)
    elif suffix in (".md", ".markdown"):
        from pytest_llmeval.reports.markdown import render_markdown

        data = render_markdown(report)
    else:
        raise ValueError(f"unknown report type {suffix!r}: use .json, .html or .md")
    atomic_write(path, data.encode("utf-8"))


def write_step_summary(path: Path, report: Mapping[str, Any]) -> None:
    """Append the Markdown summary to GitHub's step summary file."""
    from pytest_llmeval.reports.markdown import render_markdown

    with open(path, "a", encoding="utf-8") as fh:
        fh.write(render_markdown(report) + "\n")
