"""A compact Markdown summary of a JSON report (``REPORT_SCHEMA.md``), for CI step summaries.

Formats, never decides: the run's verdict, the gate lines (the terminal's details, word for
word), outcomes and numbers are read from the report as the end of the run wrote them. Every user
string (ids, gate details, reasoning) is escaped so it renders as the text it is: no table can be
split by a ``|``, no ``<script>`` or link can be injected, no emphasis can leak.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmeval.core.words import plural
from pytest_llmeval.reports.html import SUPPORTED_SCHEMA_VERSIONS, evidence_text, one_line_reason

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


def _case_name(key: str, case: Mapping[str, Any] | None) -> str:
    """The case's id and where it is (``refund-fees`` (llmeval_support.jsonl:2))."""
    if case is None:
        return _code(key.rsplit("::", 1)[-1])
    name = _code(str(case.get("id") or key.rsplit("::", 1)[-1]))
    file = str(case.get("file") or "")
    line = case.get("line")
    if file:
        where = file.rsplit("/", 1)[-1] + (f":{line}" if isinstance(line, int) and line else "")
        name += f" ({escape_markdown(where)})"
    return name


def _case_lines(
    ids: list[str], cases_by_id: Mapping[str, Mapping[str, Any]], *, evidence: bool = False
) -> list[str]:
    lines = []
    for case_id in ids[:MAX_LISTED]:
        case = cases_by_id.get(case_id)
        parts = []
        if case is not None:
            parts.append(one_line_reason(case))
            if evidence and case.get("evidence"):
                parts.append(evidence_text(case["evidence"]))
        reason = " — ".join(escape_markdown(p) for p in parts if p)
        lines.append(f"- {_case_name(case_id, case)}" + (f" — {reason}" if reason else ""))
    if len(ids) > MAX_LISTED:
        lines.append(f"- … and {len(ids) - MAX_LISTED} more (see the JSON or HTML report)")
    return lines


def _inline_ids(ids: list[str], cases_by_id: Mapping[str, Mapping[str, Any]]) -> str:
    names = []
    for i in ids[:MAX_LISTED]:
        case = cases_by_id.get(i)
        names.append(_code(str(case.get("id")) if case is not None else i.rsplit("::", 1)[-1]))
    shown = ", ".join(names)
    return shown + (f", … and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")


def _title(summary: Mapping[str, Any], from_baseline: bool) -> list[str]:
    """The headline: the run's verdict (gates, new failing cases, judge errors) and why."""
    if from_baseline:
        return ["## LLM eval baseline (committed state, no run)", ""]
    passed = summary.get("gate_passed")
    if passed is True:
        return ["## LLM eval: gate PASSED ✅", ""]
    if passed is not False:
        return ["## LLM eval: no gates evaluated", ""]
    out = ["## LLM eval: gate FAILED ❌", ""]
    reasons = _ids(summary.get("verdict_reasons"))
    if reasons:
        out += ["Fails on: " + "; ".join(escape_markdown(r) for r in reasons) + ".", ""]
    return out


def _gate_table(gates: Sequence[Mapping[str, Any]]) -> list[str]:
    """The gate lines of the terminal summary, as a table (same names, same details)."""
    if not gates:
        return []
    out = ["| Gate | Result | Detail |", "| --- | --- | --- |"]
    for gate in gates:
        name = str(gate.get("name") or "")
        if gate.get("skipped"):
            status = "skipped"
        else:
            status = "✅ passed" if gate.get("passed") is True else "❌ FAILED"
        out.append(
            f"| {_code(name)} | {status} | {escape_markdown(str(gate.get('detail') or ''))} |"
        )
    return [*out, ""]


def _band_rule(history: Mapping[str, Any]) -> str:
    k, t = _num(history.get("k")), _num(history.get("t"))
    if k is not None:
        return f"mean − {k:g}·std"
    method = escape_markdown(str(history.get("method") or "prediction bound"))
    return f"{method}, t = {t:.3f}" if t is not None else method


def _history_lines(
    summary: Mapping[str, Any], gates: Sequence[Mapping[str, Any]], from_baseline: bool
) -> list[str]:
    """The history gate's own band (``summary.history``), or why there is none."""
    history = summary.get("history")
    if isinstance(history, Mapping) and _num(history.get("mean")) is not None:
        points = _int(history.get("points"))
        std = _num(history.get("std"))
        verdict = ""
        if not from_baseline and isinstance(history.get("passed"), bool):
            verdict = " — the history gate " + ("passed" if history["passed"] else "**FAILED**")
        return [
            f"History: mean {_pct(history.get('mean'))} over {plural(points, 'recorded run')}"
            " of this judge"
            + ("" if std is None else f", std {_pct(std)}")
            + f", lower bound {_pct(history.get('lower_bound'))} ({_band_rule(history)})"
            + f"{verdict}.",
            "",
        ]
    gate = next((g for g in gates if g.get("name") == "history"), None)
    if gate is not None:
        return [f"History: {escape_markdown(str(gate.get('detail') or ''))}.", ""]
    return ["History: no history band in this report.", ""]


def _agreement_lines(agreement: Any) -> list[str]:
    """The judge's agreement with people's labels: the numbers and the confusion counts."""
    if not isinstance(agreement, Mapping):
        return []

    def num(x: Any) -> str:
        value = _num(x)
        return "n/a" if value is None else f"{value:.3f}"

    ci = ""
    if _num(agreement.get("kappa_low")) is not None:
        level = _num(agreement.get("confidence"))
        level_text = "" if level is None else f"{level * 100:.0f}% "
        low, high = num(agreement.get("kappa_low")), num(agreement.get("kappa_high"))
        ci = f" ({level_text}CI {low}–{high})"
    return [
        f"**Judge vs people** ({plural(_int(agreement.get('n')), 'labelled case')}): accuracy"
        f" {_pct(agreement.get('accuracy'))}, Cohen's kappa {num(agreement.get('kappa'))}{ci},"
        f" true-positive rate {_pct(agreement.get('tpr'))}, true-negative rate"
        f" {_pct(agreement.get('tnr'))}.",
        "",
        "| | people: pass | people: fail |",
        "| --- | --- | --- |",
        f"| judge: pass | {_int(agreement.get('tp'))} | {_int(agreement.get('fp'))} |",
        f"| judge: fail | {_int(agreement.get('fn'))} | {_int(agreement.get('tn'))} |",
        "",
    ]


def render_markdown(report: Mapping[str, Any]) -> str:
    """Render the CI summary: the verdict, gates, pass rate vs history, regressions with
    reasons, judge-human agreement, cost."""
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
            if case.get("nodeid"):
                cases_by_id.setdefault(str(case["nodeid"]), case)
            cases_by_id.setdefault(str(case.get("id")), case)

    gates = [g for g in summary.get("gates") or () if isinstance(g, Mapping)]
    from_baseline = report.get("source") == "baseline"
    out = _title(summary, from_baseline)
    if settings.get("shard"):
        out += [f"Shard {escape_markdown(str(settings['shard']))}: partial report.", ""]
    out += _gate_table(gates)

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
        extras.append(plural(_int(summary.get("errors")), "error") + " (not counted)")
    if _int(summary.get("xfailed")):
        extras.append(f"{_int(summary.get('xfailed'))} xfailed")
    if _num(summary.get("mean_score")) is not None:
        extras.append(f"mean score {_num(summary.get('mean_score')):.2f}")
    out += [" · ".join([line, *extras]), ""]
    out += _history_lines(summary, gates, from_baseline)
    out += _agreement_lines(summary.get("agreement"))

    for key, title in (("regressions", "Regressions"), ("new_failures", "New failures")):
        ids = _ids(summary.get(key))
        if ids:
            out += [f"### {title} ({len(ids)})", "", *_case_lines(ids, cases_by_id,
                                                                   evidence=True), ""]  # fmt: skip
    error_ids = [
        str(c.get("nodeid") or c.get("id")) for c in report.get("cases") or ()
        if isinstance(c, Mapping) and c.get("outcome") == "error"
    ]  # fmt: skip
    if error_ids:
        out += [f"### Errors ({len(error_ids)})", "", *_case_lines(error_ids, cases_by_id), ""]
    flaky = _ids(summary.get("flaky"))
    if flaky:
        out += [f"### Flaky ({len(flaky)})", "", *_case_lines(flaky, cases_by_id, evidence=True),
                ""]  # fmt: skip
    for key, title in (("improvements", "Improvements"), ("known_failures", "Known failures")):
        ids = _ids(summary.get(key))
        if ids:
            out += [f"**{title} ({len(ids)}):** {_inline_ids(ids, cases_by_id)}", ""]
    rerun = _ids(summary.get("rerun"))
    if rerun:
        out += [
            f"Run again by a rerun plugin: {plural(len(rerun), 'case')}"
            f" ({_inline_ids(rerun, cases_by_id)}); every attempt's judge calls are counted."
            " A rerun that passes hides a failure: use `--llmeval-repeat N` for a sound verdict.",
            "",
        ]

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
        f"Judge {_code(_judge_label(judge))}: {plural(_int(summary.get('judge_calls')), 'call')}, "
        f"{plural(_int(summary.get('cache_hits')), 'cache hit')}, "
        f"{_int(usage.get('input_tokens')):,} input / {_int(usage.get('output_tokens')):,} "
        f"output tokens, {cost_text}.",
    ]
    return "\n".join(out) + "\n"
