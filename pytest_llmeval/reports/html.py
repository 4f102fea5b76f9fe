"""The self-contained HTML report, rendered from a JSON report dict (``REPORT_SCHEMA.md``).

Formats, never decides: the run's verdict, gate results, outcomes and statistics are read from
the report as the end of the run wrote them (:mod:`pytest_llmeval.engine.finish`). The only
numbers computed here are chart geometry (:mod:`~pytest_llmeval.reports.html_charts`): the
history band is the history gate's own (``summary.history``), and a report without that block
has no band. Each case is read by ``CaseResult.from_dict``
(:mod:`~pytest_llmeval.reports.html_cases`).

Safety: the page is rendered by Jinja2 with autoescaping, so every user-provided string (ids,
tags, questions, responses, reasoning, commits) is escaped in text and in attributes. The charts
are inline SVG whose geometry is computed here from numbers only; their labels are rendered by the
template, escaped like everything else. A Content-Security-Policy allows only the page's own
inline script and style (by hash) and no network at all, so even a missed escape could neither run
injected code nor fetch anything.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

from pytest_llmeval.core.agreement import Agreement
from pytest_llmeval.core.words import plural
from pytest_llmeval.reports.html_cases import (
    OUTCOME_LABELS,
    CaseView,
    case_views,
    evidence_text,
    one_line_reason,
    scored,
    sections,
)
from pytest_llmeval.reports.html_charts import GROUP_BAR_WIDTH, groups, histogram, trend_chart
from pytest_llmeval.reports.html_format import FILTERS, integer, mapping, num, pair, strings, text

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "HTMLExtraMissing",
    "build_context",
    "evidence_text",
    "one_line_reason",
    "render_html",
]

SUPPORTED_SCHEMA_VERSIONS = (1,)

GATE_LABELS: dict[str, str] = {
    "regressions": "Regressions (per case)",
    "min_pass_rate": "Minimum pass rate",
    "history": "Pass rate vs history",
    "history_binomial": "Pass rate vs pooled history (binomial test)",
    "suite_drop": "Suite-wide drop (CMH)",
    "flips": "Regressions vs improvements",
    "judge_agreement": "Judge agreement with people",
}


class HTMLExtraMissing(ImportError):
    """Jinja2 (the optional ``html`` extra) is not installed."""


def _asset(name: str) -> str:
    return (
        resources.files("pytest_llmeval.reports")
        .joinpath("templates")
        .joinpath(name)
        .read_text("utf-8")
    )


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _csp(style: str, script: str) -> str:
    return (
        "default-src 'none'; img-src data:; "
        f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "base-uri 'none'; form-action 'none'"
    )


def _check_version(report: Any) -> None:
    if not isinstance(report, Mapping):
        raise ValueError("a report must be a JSON object")
    version = report.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise ValueError(
            f"unsupported report schema_version {version!r} "
            f"(this version reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})"
        )


def _gates(summary: Mapping[str, Any]) -> list[dict[str, str]]:
    gates = []
    for gate in summary.get("gates") or ():
        if isinstance(gate, Mapping):
            name = text(gate.get("name"))
            skipped = bool(gate.get("skipped"))
            passed = gate.get("passed")
            status = "skipped" if skipped else ("passed" if passed is True else "failed")
            gates.append(
                {
                    "name": name,
                    "label": GATE_LABELS.get(name, name),
                    "status": status,
                    "detail": text(gate.get("detail")),
                    "method": text(gate.get("method")),
                }
            )
    return gates


def _outcome_filters(cases: Sequence[CaseView]) -> list[tuple[str, str, int]]:
    """(outcome, label, cases) of each outcome present: the known ones in rank order first."""
    present = {c.outcome for c in cases}
    filters = [
        (key, label, sum(1 for c in cases if c.outcome == key))
        for key, label in OUTCOME_LABELS.items()
        if key in present
    ]
    filters += [
        (o, o, sum(1 for c in cases if c.outcome == o))
        for o in sorted(present - OUTCOME_LABELS.keys())
    ]
    return filters


def _failure_modes(summary: Mapping[str, Any]) -> list[tuple[str, int]]:
    return sorted(
        ((str(k), integer(v) or 0) for k, v in mapping(summary.get("failure_modes")).items()),
        key=lambda kv: (-kv[1], kv[0]),
    )


def _agreement(raw: Any) -> Agreement | None:
    """``summary.agreement`` as the agreement type reads it; None without one, and for a block
    it cannot read (no counts): the page shows no judge-vs-people numbers it cannot derive."""
    if not isinstance(raw, Mapping):
        return None
    try:
        return Agreement.from_dict(raw)
    except (KeyError, TypeError, ValueError):
        return None


def _optional_mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def build_context(report: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template needs, as plain values (exposed for tests and other renderers)."""
    _check_version(report)
    summary = mapping(report.get("summary"))
    cases = case_views(report.get("cases"))
    from_baseline = report.get("source") == "baseline"
    pass_rate = num(summary.get("pass_rate"))
    gates = _gates(summary)
    # The headline is the run's verdict as the end of the run decided it (gates, new failing
    # cases, judge errors); a report of the committed state has none.
    gate_passed = None if from_baseline else summary.get("gate_passed")
    script, style = _asset("report.js"), _asset("report.css")
    return {
        "report": report,
        "created": text(report.get("created")),
        "judge": mapping(report.get("judge")),
        "settings": mapping(report.get("settings")),
        "summary": summary,
        "from_baseline": from_baseline,
        "gate_passed": gate_passed if isinstance(gate_passed, bool) else None,
        "verdict_reasons": strings(summary.get("verdict_reasons")),
        "gates": gates,
        "history_gate": next((g for g in gates if g["name"] == "history"), None),
        "agreement": _agreement(summary.get("agreement")),
        "rerun": strings(summary.get("rerun")),
        "flaky_history": strings(summary.get("flaky_history")),
        "pass_rate": pass_rate,
        "pass_rate_ci": pair(summary.get("pass_rate_ci")),
        "trend": trend_chart(report, None if from_baseline else pass_rate),
        "histogram": histogram(scored(cases)),
        "by_tag": groups(summary.get("by_tag")),
        "by_difficulty": groups(summary.get("by_difficulty")),
        "group_bar_width": GROUP_BAR_WIDTH,
        "sections": sections(summary, cases),
        "known_failures": tuple(c for c in cases if c.outcome == "known_failure"),
        "unused_baseline": strings(summary.get("unused_baseline")),
        "failure_modes": _failure_modes(summary),
        "cases": cases,
        "outcome_filters": _outcome_filters(cases),
        "tags": sorted({t for c in cases for t in c.tags}),
        "usage": mapping(summary.get("usage")),
        "sut_usage": _optional_mapping(summary.get("sut_usage")),
        "comparison": _optional_mapping(report.get("comparison")),
        "script": script,
        "style": style,
        "csp": _csp(style, script),
    }


@functools.lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_llmeval.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    env.globals.update(plural=plural, evidence_text=evidence_text)
    return env


def render_html(report: Mapping[str, Any]) -> str:
    """Render a report dict (``REPORT_SCHEMA.md``) as one self-contained HTML page.

    The page needs no network: CSS, JavaScript and the SVG charts are inline. Requires Jinja2,
    the optional ``html`` extra. Raises :class:`HTMLExtraMissing` without it and ``ValueError``
    for a report this version cannot read.
    """
    try:
        import jinja2  # noqa: F401
        import markupsafe  # a dependency of Jinja2
    except ModuleNotFoundError as exc:
        raise HTMLExtraMissing(
            "the HTML report needs Jinja2: pip install 'pytest-llmeval-gate[html]'"
        ) from exc
    context = build_context(report)
    # Our own static assets, not user data: inserted verbatim and covered by the CSP hashes.
    context["script"] = markupsafe.Markup(context["script"])
    context["style"] = markupsafe.Markup(context["style"])
    return str(_environment().get_template("report.html.j2").render(context))
