"""A compact Markdown summary of a JSON report (``REPORT_SCHEMA.md``), for CI step summaries.

Formats, never decides: gates, outcomes and numbers are read from the report. Every user string
(ids, gate details, reasoning) is escaped so it renders as the text it is: no table can be split by
a ``|``, no ``<script>`` or link can be injected, no emphasis can leak.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmeval.reports.html import GATE_LABELS, SUPPORTED_SCHEMA_VERSIONS, one_line_reason

__all__ = ["escape_markdown", "render_markdown"]

# Characters that start Markdown inline syntax where user text can stand (never at a line start):
# code, emphasis, links/images, GFM table cells and strikethrough.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
# Lists are capped so a broken release cannot produce a multi-megabyte step summary
# (GitHub refuses step summaries over 1 MiB).
MAX_LISTED = 50


def escape_markdown(text: str) -> str:
    """Escape ``text`` for Markdown prose and table cells, on one line.

    HTML-significant characters become entities (``&``, ``<``, ``>``), Markdown punctuation is
    backslash-escaped (``|`` included, which GFM honours inside table cells) and line breaks
    become spaces.
    """
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _code(text: str) -> str:
    """``text`` as an inline code span, or as escaped prose when it holds ``<>&`|``.

    Code spans show their content literally, but some renderers (and GFM table parsing) still
    treat a few characters specially; such ids are written as escaped text instead.
    """
    text = " ".join(str(text).split())
    if not text or any(ch in text for ch in "<>&`|"):
        return escape_markdown(text)
    return f"`{text}`"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _pct(value: Any) -> str:
    number = _num(value)
    return "n/a" if number is None else f"{number * 100:.1f}%"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ids(value: Any) -> list[str]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [str(v) for v in value]
    return []


def _judge_label(judge: Mapping[str, Any]) -> str:
    parts = [str(judge.get("name") or "?")]
    for key, label in (("model", "model"), ("prompt_version", "prompt"), ("version", "version")):
        if judge.get(key):
            parts.append(f"{label}={judge[key]}")
    return " ".join(parts)


def _case_lines(ids: list[str], cases_by_id: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = []
    for case_id in ids[:MAX_LISTED]:
        case = cases_by_id.get(case_id)
        reason = one_line_reason(case) if case is not None else ""
        lines.append(f"- {_code(case_id)}" + (f" — {escape_markdown(reason)}" if reason else ""))
    if len(ids) > MAX_LISTED:
        lines.append(f"- … and {len(ids) - MAX_LISTED} more (see the JSON or HTML report)")
    return lines


def _inline_ids(ids: list[str]) -> str:
    shown = ", ".join(_code(i) for i in ids[:MAX_LISTED])
    return shown + (f", … and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render the CI summary: gates, pass rate vs history, regressions with reasons, cost."""
    if not isinstance(report, Mapping):
        raise ValueError("a report must be a JSON object")
    version = report.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(f"unsupported report schema_version {version!r}")
    summary = _mapping(report.get("summary"))
    settings = _mapping(report.get("settings"))
    judge = _mapping(report.get("judge"))
    cases_by_id: dict[str, Mapping[str, Any]] = {}
    for case in report.get("cases") or ():
        if isinstance(case, Mapping):
            cases_by_id.setdefault(str(case.get("id")), case)
            if case.get("nodeid"):
                cases_by_id.setdefault(str(case["nodeid"]), case)

    gates = [g for g in summary.get("gates") or () if isinstance(g, Mapping)]
    gate_passed = summary.get("gate_passed")
    from_baseline = report.get("source") == "baseline"
    if from_baseline:
        title = "LLM eval baseline (committed state, no run)"
    elif gate_passed is True:
        title = "LLM eval: gate PASSED ✅"
    elif gate_passed is False:
        title = "LLM eval: gate FAILED ❌"
    else:
        title = "LLM eval: no gates evaluated"
    out = [f"## {title}", ""]
    if settings.get("shard"):
        out += [f"Shard {escape_markdown(str(settings['shard']))}: partial report.", ""]

    if gates:
        out += ["| Gate | Result | Detail |", "| --- | --- | --- |"]
        for gate in gates:
            name = str(gate.get("name") or "")
            if gate.get("skipped"):
                status = "skipped"
            else:
                status = "✅ passed" if gate.get("passed") is True else "❌ FAILED"
            label = escape_markdown(GATE_LABELS.get(name, name))
            out.append(f"| {label} | {status} | {escape_markdown(str(gate.get('detail') or ''))} |")
        out.append("")

    ci = summary.get("pass_rate_ci")
    ci_text = (
        f", 95% CI {_pct(ci[0])}–{_pct(ci[1])}"
        if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2
        else ""
    )
    line = (
        f"**Pass rate {_pct(summary.get('pass_rate'))}** "
        f"({_int(summary.get('passed'))} passed, {_int(summary.get('failed'))} failed{ci_text})"
    )
    extras = []
    if _int(summary.get("errors")):
        extras.append(_plural(_int(summary.get("errors")), "error") + " (not counted)")
    if _int(summary.get("xfailed")):
        extras.append(f"{_int(summary.get('xfailed'))} xfailed")
    if _num(summary.get("mean_score")) is not None:
        extras.append(f"mean score {_num(summary.get('mean_score')):.2f}")
    out += [" · ".join([line, *extras]), ""]

    history = summary.get("history")
    if isinstance(history, Mapping) and _num(history.get("mean")) is not None:
        lower = _num(history.get("lower_bound"))
        rate = _num(summary.get("pass_rate"))
        verdict = ""
        if lower is not None and rate is not None and not from_baseline:
            verdict = " — this run is " + ("within" if rate >= lower else "**below**") + " it"
        out += [
            f"History: mean {_pct(history.get('mean'))} over {_int(history.get('points'))} runs, "
            f"std {_pct(history.get('std'))}, lower bound {_pct(lower)} "
            f"(mean − {history.get('k')}·std){verdict}.",
            "",
        ]
    else:
        points = len(report.get("history") or ())
        needed = settings.get("min_history")
        out += [f"History: {points} recorded runs (the history gate needs {needed}).", ""]

    for key, title in (("regressions", "Regressions"), ("new_failures", "New failures")):
        ids = _ids(summary.get(key))
        if ids:
            out += [f"### {title} ({len(ids)})", "", *_case_lines(ids, cases_by_id), ""]
    error_ids = [
        str(c.get("id")) for c in report.get("cases") or () if isinstance(c, Mapping)
        and c.get("outcome") == "error"
    ]  # fmt: skip
    if error_ids:
        out += [f"### Errors ({len(error_ids)})", "", *_case_lines(error_ids, cases_by_id), ""]
    for key, title in (("improvements", "Improvements"), ("flaky", "Flaky")):
        ids = _ids(summary.get(key))
        if ids:
            out += [f"**{title} ({len(ids)}):** {_inline_ids(ids)}", ""]

    comparison = report.get("comparison")
    if isinstance(comparison, Mapping):
        p_value = _num(comparison.get("mcnemar_p"))
        p_text = "n/a" if p_value is None else f"{p_value:.4f}"
        reason = comparison.get("reason")
        out += [
            f"**Comparison:** baseline {_pct(comparison.get('baseline_pass_rate'))} vs candidate "
            f"{_pct(comparison.get('candidate_pass_rate'))}; exact McNemar p = {p_text} "
            f"(b = {_int(comparison.get('b'))}, c = {_int(comparison.get('c'))}); "
            f"recommendation: {escape_markdown(str(comparison.get('recommendation') or 'n/a'))}"
            + (f" — {escape_markdown(str(reason))}" if reason else ""),
            "",
        ]

    if from_baseline:
        return "\n".join(out).rstrip("\n") + "\n"
    usage = _mapping(summary.get("usage"))
    cost = _num(summary.get("cost_usd"))
    cost_text = "cost unknown" if cost is None else f"cost ${cost:,.4f}"
    out += [
        f"Judge {_code(_judge_label(judge))}: {_int(summary.get('judge_calls'))} calls, "
        f"{_int(summary.get('cache_hits'))} cache hits, "
        f"{_int(usage.get('input_tokens')):,} input / {_int(usage.get('output_tokens')):,} "
        f"output tokens, {cost_text}.",
    ]
    return "\n".join(out) + "\n"
