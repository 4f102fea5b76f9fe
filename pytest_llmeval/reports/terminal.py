"""Terminal lines: the summary section and a case's failure text. Formats, never decides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.verdict import JudgeIdentity
from pytest_llmeval.core.words import plural

MAX_GROUPS_SHOWN = 8


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
        " (not judged)"
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
            out.append(_groups_line(title, groups, verbose))
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
    agreement = s.get("agreement")
    if agreement:
        out.append(_agreement_line(agreement))
    panel = s.get("panel_agreement")
    if panel:
        kappa = panel.get("fleiss_kappa")
        out.append(
            f"judge panel ({', '.join(panel.get('judges', []))}): agreed on"
            f" {panel.get('unanimous')}/{panel.get('n')} cases, Fleiss' kappa"
            f" {'n/a' if kappa is None else f'{kappa:.3f}'}"
        )
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
    if s.get("rerun"):
        out.append(
            f"rerun by a rerun plugin: {plural(len(s['rerun']), 'case')} ({_ids(s['rerun'])});"
            " every attempt's judge calls are counted. A rerun that passes hides a failure:"
            " use --llmeval-repeat N for a sound verdict on a nondeterministic case"
        )
    out.append("gates:")
    for g in s["gates"]:
        status = "SKIP" if g["skipped"] else ("PASS" if g["passed"] else "FAIL")
        out.append(f"  {status} {g['name']}: {g['detail']}")
    if s["gate_passed"]:
        out.append("llmeval gate: PASSED")
    else:
        reasons = s.get("verdict_reasons") or [g["name"] for g in s["gates"] if not g["passed"]]
        out.append(f"llmeval gate: FAILED ({', '.join(reasons)})")
        out.append(
            "next: read the failures above; fix the application, or accept the new state as"
            " the baseline with pytest --llmeval-update-baseline"
        )
    return out


def _agreement_line(a: Mapping[str, Any]) -> str:
    """The judge's agreement with human labels (cases with ``human_verdict``)."""

    def num(x: Any, fmt: str = ".3f") -> str:
        return "n/a" if x is None else format(x, fmt)

    ci = (
        f" ({100 * a['confidence']:.0f}% CI {num(a['kappa_low'])}-{num(a['kappa_high'])})"
        if a.get("kappa_low") is not None
        else ""
    )
    return (
        f"judge vs people: {a['n']} labelled cases, accuracy {_pct(a['accuracy'])},"
        f" Cohen's kappa {num(a['kappa'])}{ci}, agrees on passes {_pct(a['tpr'])}"
        f" and on failures {_pct(a['tnr'])} (judge pass/fail vs people: {a['tp']}/{a['fp']}"
        f" pass-pass/pass-fail, {a['fn']}/{a['tn']} fail-pass/fail-fail)"
    )


def _groups_line(title: str, groups: Mapping[str, Any], verbose: bool) -> str:
    """Worst pass rate first, at most MAX_GROUPS_SHOWN unless -v (the report has them all)."""
    order = sorted(
        groups.items(),
        key=lambda kv: (kv[1]["pass_rate"] if kv[1]["pass_rate"] is not None else 2.0, kv[0]),
    )
    limit = len(order) if verbose else MAX_GROUPS_SHOWN
    parts = [f"{name} {g['passed']}/{g['total']}" for name, g in order[:limit]]
    more = len(order) - limit
    tail = f" (+{more} more: -v or the HTML/JSON report)" if more > 0 else ""
    return f"{title} (worst first): " + ", ".join(parts) + tail


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


def render_case_failure(r: CaseResult) -> str:
    """The failure text of a case item: what was asked, expected, answered, and why it failed;
    with the baseline's accepted answer beside the new one when the baseline has it."""
    head = {
        "regression": f"REGRESSION: case {r.id} passed in the baseline and fails now",
        "new_failure": f"NEW FAILURE: case {r.id} fails and has no baseline entry",
    }.get(r.outcome, f"case {r.id} failed ({r.outcome})")
    if r.outcome_detail:
        head += f" ({r.outcome_detail})"
    lines = [head]
    if r.messages:
        lines.append("conversation:")
        for role, content in r.messages:
            lines.append(f"  {role}: {_clip(content)}")
    else:
        lines.append(f"question:  {_clip(r.question)}")
    if len(r.references) > 1:
        lines.append("expected (any of):")
        lines.extend(f"  - {_clip(ref)}" for ref in r.references[:10])
    elif r.ground_truth is not None:
        lines.append(f"expected:  {_clip(r.ground_truth)}")
    if r.rubric:
        lines.append(f"rubric:    {_clip(r.rubric)}")
    lines.append(f"response:  {_clip(r.response) or '(empty)'}")
    if r.baseline is not None and r.baseline.response is not None:
        lines.append(f"baseline answer: {_clip(r.baseline.response) or '(empty)'}")
    if r.checks_only:
        lines.append("score:     n/a (no ground_truth: judged by its checks alone)")
    elif r.score is not None:
        lines.append(f"score:     {r.score:.3f} (threshold {r.threshold:.2f})")
    if r.samples > 1:
        lines.append(f"samples:   {r.passes}/{r.samples} passed")
    if r.failed_checks:
        lines.append("failed checks: " + "; ".join(r.failed_checks))
    if r.failure_modes:
        lines.append("failure modes: " + ", ".join(r.failure_modes))
    if r.reasoning:
        lines.append(f"reasoning: {_clip(r.reasoning, 600)}")
    if r.baseline is not None:
        score = "n/a" if r.baseline.score is None else f"{r.baseline.score:.3f}"
        lines.append(f"baseline:  {r.baseline.verdict} (score {score})")
    return "\n".join(lines)


def _clip(text: str | None, limit: int = 400) -> str:
    if text is None:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
