"""Repeated sampling (``--llmeval-repeat N``), flaky cases, and the history gates' numbers.

The SUT here answers from a per-case script such as ``"GGB"``: its i-th call for a case gives
the good answer when the script's i-th letter (mod its length) is ``G``. The call counter lives
in a file per case, so it survives processes and shows exactly how often the SUT was called.
Expected p-values are computed independently (scipy's Fisher test, statsmodels' z-test and
Wilson interval).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Project

FILE = "llmeval_rep.jsonl"
SUT = "--llmeval-sut=rep_sut:sut"
REP_SUT = """
import json
import pathlib

HERE = pathlib.Path(__file__).parent
GOOD = {good!r}
BAD = {bad!r}


def sut(case):
    script = json.loads((HERE / "script.json").read_text(encoding="utf-8"))[case.id]
    counter = HERE / "calls" / case.id
    counter.parent.mkdir(exist_ok=True)
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    return GOOD if script[n % len(script)] == "G" else BAD
"""


def key(case_id: str) -> str:
    return f"{FILE}::{case_id}"


def scripted(project: Project, scripts: Mapping[str, str]) -> None:
    """Cases named after ``scripts``' keys, answered by the scripted SUT; counters reset."""
    project.cases(FILE, [project.case(i) for i in scripts])
    project.module("rep_sut", REP_SUT.format(good=project.GOOD, bad=project.BAD))
    (project.path / "script.json").write_text(json.dumps(dict(scripts)), encoding="utf-8")
    shutil.rmtree(project.path / "calls", ignore_errors=True)


def calls(project: Project) -> dict[str, int]:
    folder = project.path / "calls"
    return {p.name: int(p.read_text()) for p in sorted(folder.iterdir())}


def run_report(project: Project, *args: str) -> tuple[pytest.RunResult, dict[str, Any]]:
    result = project.run("--llmeval-report=r.json", *args)
    report = json.loads((project.path / "r.json").read_text(encoding="utf-8"))
    return result, report


def fisher_drop_p(base_passes: int, base_n: int, now_passes: int, now_n: int) -> float:
    """One-sided Fisher exact p that the pass fraction is lower now than in the baseline."""
    from scipy.stats import fisher_exact

    table = [[base_passes, base_n - base_passes], [now_passes, now_n - now_passes]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def samples_line(k: int, n: int) -> str:
    from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return f"samples: {k}/{n} passed ({pct(k / n)}, 95% CI {pct(lo)}-{pct(hi)})"


# -- repeat mode ----------------------------------------------------------------------------
def test_wobble_from_2_of_3_to_1_of_3_is_flaky(project: Project, run_args: tuple[str, ...]) -> None:
    scripted(project, {"wobbly": "GGB", "steady": "GGG"})
    first = project.run(SUT, "--llmeval-repeat=3", "--llmeval-update-baseline", *run_args)
    assert first.ret == 0
    assert calls(project) == {"steady": 3, "wobbly": 3}
    entries = project.baseline()["cases"]
    # the baseline stores pass counts: 2 of 3 samples passed, which reaches the 0.5 fraction
    assert (entries[key("wobbly")]["passes"], entries[key("wobbly")]["samples"]) == (2, 3)
    assert entries[key("wobbly")]["verdict"] == "pass"
    assert (entries[key("steady")]["passes"], entries[key("steady")]["samples"]) == (3, 3)

    scripted(project, {"wobbly": "GBB", "steady": "GGG"})
    result, report = run_report(project, SUT, "--llmeval-repeat=3", "-rx", *run_args)
    result.assert_outcomes(passed=1, xfailed=1)
    assert result.ret == 0  # a wobble does not fail the run
    p = fisher_drop_p(2, 3, 1, 3)
    assert p == pytest.approx(0.5, rel=1e-12)
    detail = (
        f"1/3 now vs 2/3 in the baseline, one-sided Fisher p = {p:.4g} > 0.05:"
        " not a significant drop; unconfirmed: 1 recorded run of this case*"
    )
    result.stdout.fnmatch_lines([f"XFAIL {key('wobbly')} - flaky: {detail}"])
    section = project.section(result)
    assert "flaky (changed, not significantly): 1: wobbly" in section
    assert samples_line(4, 6) in section
    assert "cases not passing every sample: wobbly 1/3" in section
    assert "  PASS regressions: 0 regressions (max 0), 1 flaky" in section
    s = report["summary"]
    assert s["flaky"] == [key("wobbly")]
    assert s["regressions"] == []
    assert s["repeat"]["per_case"] == {key("steady"): [3, 3], key("wobbly"): [1, 3]}
    cases = {c["id"]: c for c in report["cases"]}
    case = cases["wobbly"]
    assert (case["outcome"], case["verdict"], case["passes"], case["samples"]) == (
        "flaky",
        "fail",
        1,
        3,
    )
    # a repeated case's score is the mean over its samples (bad answers score 0)
    good = cases["steady"]["score"]
    assert case["score"] == pytest.approx(good / 3, abs=1e-6)
    assert {k: v for k, v in case["baseline"].items() if k != "response"} == {
        "verdict": "pass",
        "score": pytest.approx(2 * good / 3, abs=1e-6),
        "passes": 2,
        "samples": 3,
    }
    assert case["baseline"]["response"]  # the accepted answer's text, to show old vs new


@pytest.mark.parametrize(
    ("n", "outcome"),
    [(5, "regression"), (3, "regression")],
    ids=["5-of-5-to-0-of-5-regression", "3-of-3-to-0-of-3-p-is-0.05-regression"],
)
def test_total_collapse_is_a_regression_only_with_enough_samples(
    project: Project, n: int, outcome: str
) -> None:
    scripted(project, {"solid": "G" * n, "other": "G" * n})
    assert project.run(SUT, f"--llmeval-repeat={n}", "--llmeval-update-baseline").ret == 0
    scripted(project, {"solid": "B" * n, "other": "G" * n})
    result, report = run_report(project, SUT, f"--llmeval-repeat={n}")
    assert calls(project) == {"other": n, "solid": n}
    p = fisher_drop_p(n, n, 0, n)
    case = {c["id"]: c for c in report["cases"]}["solid"]
    assert case["outcome"] == outcome
    if outcome == "regression":
        # 1 / C(10, 5), and 1 / C(6, 3) = 0.05 exactly: with repeats even N = 3 can fire
        assert p == pytest.approx({5: 1 / 252, 3: 0.05}[n], rel=1e-12)
        result.assert_outcomes(passed=1, failed=1)
        assert result.ret == 1
        result.stdout.fnmatch_lines(
            [
                f"REGRESSION: case solid passed in the baseline and fails now (0/{n} now vs"
                f" {n}/{n} in the baseline, one-sided Fisher p = {p:.4g} <= 0.05; unconfirmed: *",
                "*",
                f"samples:   0/{n} passed",
            ]
        )
        assert (
            "  FAIL regressions: 1 regression (max 0), 1 unconfirmed (fewer than 3 recorded runs)"
            in project.section(result)
        )
        assert report["summary"]["regressions"] == [key("solid")]
    else:
        # 1 / C(6, 3) = 0.05 exactly, and a drop is significant only when p < alpha
        assert p == pytest.approx(0.05, rel=1e-12)
        result.assert_outcomes(passed=1, xfailed=1)
        assert result.ret == 0
        assert f"p = {p:.4g} >= 0.05" in case["outcome_detail"]
        assert report["summary"]["flaky"] == [key("solid")]


def test_each_sample_is_judged_and_cached_separately(project: Project) -> None:
    # the ini key instead of the flag; every sample of a case gets the same good answer text,
    # so only the sample index tells their cache entries apart
    project.ini(llmeval_repeat="3")
    scripts = {"all": "GGG", "two": "GBG", "one": "BBG", "none": "BBB"}
    scripted(project, scripts)
    cold, cold_report = run_report(project, SUT, "--llmeval-update-baseline")
    assert cold.ret == 0
    assert calls(project) == {i: 3 for i in scripts}
    section = project.section(cold)
    assert "judge: local prompt=sim-2  judge calls: 12  cache hits: 0" in section
    assert samples_line(6, 12) in section
    assert "cases not passing every sample: none 0/3, one 1/3, two 2/3" in section
    cases = {c["id"]: c for c in cold_report["cases"]}
    assert {i: (c["passes"], c["samples"], c["verdict"]) for i, c in cases.items()} == {
        "all": (3, 3, "pass"),
        "two": (2, 3, "pass"),
        "one": (1, 3, "fail"),
        "none": (0, 3, "fail"),
    }
    assert cold_report["settings"]["repeat"] == 3
    entries = project.baseline()["cases"]
    assert {i: (entries[key(i)]["passes"], entries[key(i)]["samples"]) for i in scripts} == {
        "all": (3, 3),
        "two": (2, 3),
        "one": (1, 3),
        "none": (0, 3),
    }

    shutil.rmtree(project.path / "calls")
    warm, warm_report = run_report(project, SUT)
    warm.assert_outcomes(passed=2, xfailed=2)
    assert warm.ret == 0
    assert calls(project) == {i: 3 for i in scripts}  # the SUT still runs every sample ...
    # ... but every one of the 4 x 3 verdicts comes from the cache
    assert "judge: local prompt=sim-2  judge calls: 0  cache hits: 12" in project.section(warm)
    assert (warm_report["summary"]["judge_calls"], warm_report["summary"]["cache_hits"]) == (0, 12)


def test_repeat_pass_fraction_is_configurable(project: Project) -> None:
    project.ini(llmeval_repeat_pass_fraction="1.0")
    scripted(project, {"two": "GBG"})
    result, report = run_report(project, SUT, "--llmeval-repeat=3")
    result.assert_outcomes(failed=1)  # 2/3 does not reach 1.0: a new failing case
    assert report["cases"][0]["verdict"] == "fail"
    assert (report["cases"][0]["passes"], report["cases"][0]["samples"]) == (2, 3)


# -- flaky from history ----------------------------------------------------------------------
def history_line(day: int, total: int, passed: int, failed: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "timestamp": f"2024-02-{day:02d}T00:00:00Z",
        "total": total,
        "passed": passed,
        "pass_rate": passed / total,
        "judge": {"name": "local", "model": None, "prompt_version": "sim-2", "version": None},
        "failed": list(failed),
    }


def write_history(project: Project, lines: Sequence[Mapping[str, Any]]) -> None:
    project.state.mkdir(exist_ok=True)
    project.history_path.write_text(
        "".join(json.dumps(dict(line)) + "\n" for line in lines), encoding="utf-8"
    )


def test_case_flipping_fail_pass_fail_is_flaky_in_history(project: Project) -> None:
    ids = ["flip", "fixed", "broke", "steady"]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers({i: project.GOOD for i in ids})
    project.write_baseline({key(i): "pass" for i in ids})
    write_history(
        project,
        [
            history_line(1, 4, 2, [key("flip"), key("fixed")]),  # fail, fail, pass, pass
            history_line(2, 4, 3, [key("fixed")]),
            history_line(3, 4, 2, [key("flip"), key("broke")]),  # flip: fail, pass, fail
        ],
    )
    result, report = run_report(project)
    result.assert_outcomes(passed=4)
    assert result.ret == 0
    section = project.section(result)
    assert "flaky in recorded history (verdict flipped twice or more): 1: flip" in section
    # moved once (broke, fixed) or never (steady): not flaky
    assert report["summary"]["flaky_history"] == [key("flip")]


# -- the history gate: skip message and the binomial view -----------------------------------
def suite(project: Project, n: int, passing: int) -> None:
    """``n`` cases of which ``passing`` pass; the others are known failures (xfailed)."""
    ids = [f"k{i:04d}" for i in range(n)]
    project.cases(FILE, [project.case(i) for i in ids])
    project.answers({i: project.GOOD if j < passing else project.BAD for j, i in enumerate(ids)})
    project.write_baseline({key(i): "pass" if j < passing else "fail" for j, i in enumerate(ids)})


def test_history_gate_says_why_it_is_skipped(project: Project) -> None:
    project.ini(llmeval_min_history="4")
    suite(project, 4, 3)
    write_history(project, [history_line(d, 100, 90) for d in (1, 2, 3)])
    result = project.run()
    assert result.ret == 0
    assert (
        "  SKIP history: skipped: 3 recorded runs, need 4 (llmeval_min_history);"
        " record runs with --llmeval-record-history"
    ) in project.section(result)


# Pooled history of 30,000 cases at 90%: rates 88%, 90%, 92% (mean 90%, sample std 2%), so the
# std-dev gate's bound is 86% and an 87% run passes it whatever its size.
HISTORY = [(1, 8800), (2, 9000), (3, 9200)]


def binomial_detail(n: int, passing: int, alpha: float = 0.05) -> tuple[str, bool]:
    from statsmodels.stats.proportion import proportions_ztest

    z, p = proportions_ztest([passing, 27000], [n, 30000], alternative="smaller")
    significant = p < alpha
    detail = (
        f"{passing}/{n} now vs 27000/30000 pooled history: one-sided two-proportion"
        f" z = {z:.3f}, p = {p:.4g} ({'' if significant else 'not '}a significant drop at"
        f" {alpha:g})"
    )
    return detail, significant


@pytest.mark.parametrize(("n", "passing"), [(100, 87), (400, 348)])
def test_binomial_view_is_always_shown_with_its_numbers(
    project: Project, n: int, passing: int
) -> None:
    project.ini(llmeval_std_threshold="2")  # the mean - k x std rule, whose bound is 86%
    suite(project, n, passing)
    write_history(project, [history_line(d, 10000, k) for d, k in HISTORY])
    result, report = run_report(project)
    assert result.ret == 0  # informational only: never gates without the ini switch
    detail, _ = binomial_detail(n, passing)
    section = project.section(result)
    assert (
        "  PASS history: pass rate 87.0% >= 86.0% = mean 90.0% - 2 x std 2.0% over 3 runs"
        in section
    )
    assert (
        f"  SKIP history_binomial: {detail}; informational (set llmeval_history_binomial = true"
        " to gate on it)" in section
    )
    gate = {g["name"]: g for g in report["summary"]["gates"]}["history_binomial"]
    assert (gate["passed"], gate["skipped"]) == (True, True)


@pytest.mark.parametrize(
    ("n", "passing", "fails"),
    [(100, 87, False), (400, 348, True)],
    ids=["3-point-drop-on-100-cases", "3-point-drop-on-400-cases"],
)
def test_binomial_gate_fails_a_3_point_drop_only_on_a_big_suite(
    project: Project, n: int, passing: int, fails: bool
) -> None:
    project.ini(llmeval_history_binomial="true", llmeval_std_threshold="2")
    suite(project, n, passing)
    write_history(project, [history_line(d, 10000, k) for d, k in HISTORY])
    result = project.run()
    detail, significant = binomial_detail(n, passing)
    assert significant == fails  # the scenario is what its name says, by statsmodels
    section = project.section(result)
    assert any(line.startswith("  PASS history: pass rate 87.0% >= 86.0%") for line in section)
    if fails:
        assert result.ret == 1
        assert f"  FAIL history_binomial: {detail}" in section
        assert "llmeval gate: FAILED (history_binomial)" in section
    else:
        assert result.ret == 0
        assert f"  PASS history_binomial: {detail}" in section
        assert "llmeval gate: PASSED" in section
