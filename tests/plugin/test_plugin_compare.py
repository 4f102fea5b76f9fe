"""Compare mode (``--llmeval-compare-sut``): a paired comparison of two SUTs on the same cases.

Every number the summary and the JSON report show is recomputed here independently: McNemar's
exact p with ``scipy.stats.binomtest``, Wilson intervals with statsmodels, and Newcombe's paired
interval (method 10) from those Wilson limits.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_cmp.jsonl"
CANDIDATE = "cmp_candidate:sut"
CANDIDATE_MODULE = """
import json
import pathlib

ANSWERS = pathlib.Path(__file__).with_name("candidate.json")


def sut(case):
    return json.loads(ANSWERS.read_text(encoding="utf-8"))[case.id]
"""


def key(case_id: str) -> str:
    return f"{FILE}::{case_id}"


def paired_project(project: Project, base: list[bool], cand: list[bool]) -> list[str]:
    """Cases c00.. where the baseline SUT passes ``base[i]`` and the candidate ``cand[i]``.

    The committed baseline matches the baseline SUT, so every item passes or is a known
    failure: the run's exit status then shows that compare mode never gates.
    """
    ids = [f"c{i:02d}" for i in range(len(base))]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers(
        {i: project.GOOD if ok else project.BAD for i, ok in zip(ids, base, strict=True)}
    )
    (project.path / "candidate.json").write_text(
        json.dumps(
            {i: project.GOOD if ok else project.BAD for i, ok in zip(ids, cand, strict=True)}
        ),
        encoding="utf-8",
    )
    project.module("cmp_candidate", CANDIDATE_MODULE)
    project.write_baseline(
        {key(i): "pass" if ok else "fail" for i, ok in zip(ids, base, strict=True)}
    )
    return ids


def run_compare(project: Project, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = project.run(f"--llmeval-compare-sut={CANDIDATE}", "--llmeval-report=r.json", *args)
    report = json.loads((project.path / "r.json").read_text(encoding="utf-8"))
    return result, report


# -- independent statistics -------------------------------------------------------------------
def mcnemar_exact(b: int, c: int) -> float:
    from scipy.stats import binomtest

    if b + c == 0:
        return 1.0
    return float(binomtest(min(b, c), b + c, 0.5, alternative="two-sided").pvalue)


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

    lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return float(lo), float(hi)


def newcombe_paired(a: int, b: int, c: int, d: int, level: float) -> tuple[float, float]:
    """Newcombe (1998) method 10 for p2 - p1 of a paired table, from statsmodels' Wilson."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, level)
    l2, u2 = wilson(a + c, n, level)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denom) if denom else 0.0
    dl2, du1 = p2 - l2, u1 - p1
    du2, dl1 = u2 - p2, p1 - l1
    lower = (p2 - p1) - math.sqrt(max(dl2**2 - 2 * phi * dl2 * du1 + du1**2, 0.0))
    upper = (p2 - p1) + math.sqrt(max(du2**2 - 2 * phi * du2 * dl1 + dl1**2, 0.0))
    return max(lower, -1.0), min(upper, 1.0)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def rate_line(name: str, k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"  {name}: {k}/{n} = {pct(k / n)} (95% CI {pct(lo)}-{pct(hi)})"


def check_comparison_block(
    comp: dict[str, Any], ids: list[str], base: list[bool], cand: list[bool]
) -> None:
    """The JSON ``comparison`` block against counts derived from the scripted answers."""
    regressions = [key(i) for i, b, c in zip(ids, base, cand, strict=True) if b and not c]
    improvements = [key(i) for i, b, c in zip(ids, base, cand, strict=True) if c and not b]
    n, kb, kc = len(ids), sum(base), sum(cand)
    assert comp["n"] == n
    assert comp["candidate"] == CANDIDATE
    assert comp["regressions"] == regressions
    assert comp["improvements"] == improvements
    assert (comp["b"], comp["c"]) == (len(regressions), len(improvements))
    assert comp["mcnemar_p"] == pytest.approx(
        mcnemar_exact(len(regressions), len(improvements)), rel=1e-9
    )
    assert (comp["baseline_passed"], comp["candidate_passed"]) == (kb, kc)
    assert comp["baseline_pass_rate"] == pytest.approx(kb / n, rel=1e-12)
    assert comp["candidate_pass_rate"] == pytest.approx(kc / n, rel=1e-12)
    assert comp["baseline_ci"] == pytest.approx(list(wilson(kb, n)), rel=1e-9)
    assert comp["candidate_ci"] == pytest.approx(list(wilson(kc, n)), rel=1e-9)


# 14 cases. Better: the candidate fixes 11 of the baseline SUT's failures and breaks 1 case.
BASE_WEAK = [True, True, True] + [False] * 11
CAND_STRONG = [False, True, True] + [True] * 11


def test_better_candidate_is_recommended(project: Project, run_args: tuple[str, ...]) -> None:
    ids = paired_project(project, BASE_WEAK, CAND_STRONG)
    result, report = run_compare(project, *run_args)
    # item outcomes follow the baseline SUT only; the comparison never gates
    result.assert_outcomes(passed=3, xfailed=11)
    assert result.ret == 0
    p = mcnemar_exact(1, 11)
    assert p == pytest.approx(2 * (1 + 12) / 2**12, rel=1e-12)  # 2·P[X <= 1], X ~ Bin(12, 1/2)
    assert p < 0.05
    section = project.section(result)
    start = section.index(f"compare: baseline SUT vs candidate {CANDIDATE} on 14 cases")
    assert section[start + 1 : start + 7] == [
        rate_line("baseline", 3, 14),
        rate_line("candidate", 13, 14),
        "  candidate regressions: 1 c00",
        "  candidate improvements: 11 " + ", ".join(ids[3:13]) + " (+1 more)",
        f"  McNemar exact p = {p:.4g}",
        "  recommendation: candidate (better: 11 improvements vs 1 regression,"
        f" McNemar exact p = {p:.4g} < 0.05)",
    ]
    comp = report["comparison"]
    check_comparison_block(comp, ids, BASE_WEAK, CAND_STRONG)
    assert comp["recommendation"] == "candidate"
    # the per-case record carries the candidate's own verdict and response
    cases = {c["id"]: c for c in report["cases"]}
    assert cases["c00"]["verdict"] == "pass"
    assert cases["c00"]["candidate"]["verdict"] == "fail"
    assert cases["c00"]["candidate"]["response"] == project.BAD
    assert cases["c05"]["candidate"]["verdict"] == "pass"


def test_worse_candidate_keeps_the_baseline(project: Project) -> None:
    ids = paired_project(project, CAND_STRONG, BASE_WEAK)
    result, report = run_compare(project)
    result.assert_outcomes(passed=13, xfailed=1)
    assert result.ret == 0  # a worse candidate is a recommendation, not a failed run
    p = mcnemar_exact(11, 1)
    section = project.section(result)
    assert rate_line("baseline", 13, 14) in section
    assert rate_line("candidate", 3, 14) in section
    assert "  candidate regressions: 11 " + ", ".join(ids[3:13]) + " (+1 more)" in section
    assert "  candidate improvements: 1 c00" in section
    assert f"  McNemar exact p = {p:.4g}" in section
    assert (
        f"  recommendation: baseline (1 improvement vs 11 regressions, McNemar exact p = {p:.4g}"
        " (the candidate is not better))" in section
    )
    comp = report["comparison"]
    check_comparison_block(comp, ids, CAND_STRONG, BASE_WEAK)
    assert comp["recommendation"] == "baseline"


def test_equal_candidate_keeps_the_baseline(project: Project) -> None:
    same = [True] * 8 + [False] * 2
    ids = paired_project(project, same, same)
    result, report = run_compare(project)
    result.assert_outcomes(passed=8, xfailed=2)
    assert result.ret == 0
    section = project.section(result)
    assert rate_line("baseline", 8, 10) in section
    assert rate_line("candidate", 8, 10) in section
    assert "  candidate regressions: 0" in section
    assert "  candidate improvements: 0" in section
    assert "  McNemar exact p = 1" in section
    assert (
        "  recommendation: baseline (0 improvements vs 0 regressions, McNemar exact p = 1"
        " (the candidate is not better))" in section
    )
    comp = report["comparison"]
    check_comparison_block(comp, ids, same, same)
    assert comp["mcnemar_p"] == 1.0
    assert comp["recommendation"] == "baseline"
    assert comp["noninferiority_margin"] is None


def _balanced(n_both: int, n_neither: int) -> tuple[list[bool], list[bool]]:
    """An equally good candidate: same verdicts except one regression and one improvement."""
    base = [True, False] + [True] * n_both + [False] * n_neither
    cand = [False, True] + [True] * n_both + [False] * n_neither
    return base, cand


@pytest.mark.parametrize(
    ("n_both", "n_neither", "expected"),
    [(8, 0, "baseline"), (36, 2, "candidate")],
    ids=["10-cases-too-small", "40-cases-big-enough"],
)
def test_noninferiority_margin_recommends_an_equal_candidate_on_a_big_enough_suite(
    project: Project, n_both: int, n_neither: int, expected: str
) -> None:
    project.ini(llmeval_noninferiority_margin="0.1")
    base, cand = _balanced(n_both, n_neither)
    ids = paired_project(project, base, cand)
    result, report = run_compare(project)
    assert result.ret == 0
    comp = report["comparison"]
    check_comparison_block(comp, ids, base, cand)
    # one-sided alpha 0.05 -> a two-sided 90% Newcombe interval; candidate when lower > -0.1
    lo, hi = newcombe_paired(n_both, 1, 1, n_neither, level=0.90)
    assert comp["difference_ci"] == pytest.approx([lo, hi], rel=1e-9)
    assert comp["difference_ci_level"] == pytest.approx(0.90)
    assert comp["noninferiority_margin"] == 0.1
    assert (lo > -0.1) == (expected == "candidate")  # the parametrization means what it says
    assert comp["recommendation"] == expected
    if expected == "candidate":
        reason = (
            f"not worse than the margin: 90% CI of the pass-rate difference [{lo:+.3f},"
            f" {hi:+.3f}] lies above -0.1"
        )
    else:
        reason = (
            "1 improvement vs 1 regression, McNemar exact p = 1 (the candidate is not better);"
            f" non-inferiority not shown (CI lower bound {lo:+.3f} <= -0.1)"
        )
    assert comp["reason"] == reason
    assert f"  recommendation: {expected} ({reason})" in project.section(result)
