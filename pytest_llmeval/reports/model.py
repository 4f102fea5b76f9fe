"""The JSON report: the run's decision, counts and case results as plain data.

It formats what the end of a run decided (:mod:`pytest_llmeval.engine.finish`); it recomputes
nothing. Every other renderer (terminal, HTML, Markdown) reads this model, so all of them show
the same numbers. The schema is in the README.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmeval.core.gate import GateDecision
from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.summary import RunCounts
from pytest_llmeval.core.verdict import JudgeIdentity

REPORT_SCHEMA_VERSION = 1


def history_block(decision: GateDecision) -> dict[str, Any] | None:
    """The history gate's own numbers, as the gate used them: ``points``, ``mean``, ``std``,
    ``lower_bound`` (and ``k`` for the mean − k·std rule or ``t`` for the prediction bound).
    None when the gate had fewer than two points."""
    for g in decision.gates:
        if g.name != "history":
            continue
        n = dict(g.numbers)
        if "mean" not in n or "bound" not in n:
            return None
        return {
            "points": n.get("points"),
            "mean": n["mean"],
            "std": n.get("sd"),
            "k": n.get("k"),
            "t": n.get("t"),
            "alpha": n.get("alpha"),
            "lower_bound": n["bound"],
            "method": g.method,
            "detail": g.detail,
            "passed": g.passed,
        }
    return None


def with_cases(head: Mapping[str, Any], results: Sequence[CaseResult]) -> dict[str, Any]:
    """The whole JSON report: ``head`` (from :func:`build_report_head`) and one record per case."""
    return {**head, "cases": [r.to_dict() for r in results]}


def build_report_head(
    *,
    counts: RunCounts,
    decision: GateDecision,
    verdict: Mapping[str, Any],
    judge: JudgeIdentity,
    settings: Mapping[str, Any],
    unused: Sequence[str],
    history: Sequence[Mapping[str, Any]],
    full_run: bool,
    narrowed: Sequence[str] = (),
    cache_problems: Sequence[str] = (),
    comparison: Mapping[str, Any] | None = None,
    flaky_history: Sequence[str] = (),
    cost_usd: float | None = None,
    collected_keys: Sequence[str] | None = None,
    created: str | None = None,
    agreement: Mapping[str, Any] | None = None,
    panel_agreement: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON report (schema in the README) without its per-case records: summary, history,
    settings (all the terminal summary reads); :func:`with_cases` adds the records when a report
    is written.

    ``history`` holds the history lines the gate used (this judge's), oldest first.
    """
    c = counts
    summary = {
        "verdict": verdict["word"],
        "verdict_reasons": list(verdict["reasons"]),
        "gate_passed": bool(verdict["passed"]),
        "total": c.total,
        "passed": c.passed,
        "failed": c.failed,
        "errors": c.errors,
        "xfailed": c.xfailed,
        "pass_rate": c.overall.pass_rate,
        "pass_rate_ci": None if c.overall.ci is None else list(c.overall.ci),
        "mean_score": c.overall.mean_score,
        "checks_only": c.checks_only,
        **{name: list(keys) for name, keys in c.lists.items()},
        "unused_baseline": list(unused),
        "flaky_history": list(flaky_history),
        "rerun": list(c.rerun),
        "repeat": None if c.repeat is None else c.repeat.to_dict(),
        "by_difficulty": {k: g.to_dict() for k, g in c.by_difficulty.items()},
        "by_tag": {k: g.to_dict() for k, g in c.by_tag.items()},
        "failure_modes": dict(c.failure_modes),
        "gates": [g.to_dict() for g in decision.gates],
        "gates_passed": decision.passed,
        "judge_calls": c.judge_calls,
        "cache_hits": c.cache_hits,
        "usage": c.usage.to_dict(),
        "cost_usd": cost_usd,
        "sut_usage": None if c.sut_usage is None else c.sut_usage.to_dict(),
        "history": history_block(decision),
        "agreement": None if agreement is None else dict(agreement),
        "panel_agreement": None if panel_agreement is None else dict(panel_agreement),
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
        "comparison": dict(comparison) if comparison else None,
        "history": [dict(h) for h in history],
        "collected_keys": list(collected_keys) if collected_keys is not None else None,
    }
