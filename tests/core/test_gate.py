"""Per-case classification (the outcome table and the evidence from history) and the gates."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from scipy.stats import binom
from scipy.stats import t as student_t

from pytest_llmeval.core.gate import (
    UNCONFIRMED,
    BaselineView,
    CaseEvidence,
    Classification,
    GateContext,
    GateDecision,
    GateResult,
    GateSettings,
    classify,
    decide,
    decide_comparison,
    flaky_from_history,
    history_case_fields,
    history_for_judge,
    pass_rate,
    suite_digest,
)
from pytest_llmeval.core.result import OUTCOME_PYTEST

PASS = BaselineView(passed=True)
FAIL = BaselineView(passed=False, passes=0)
KEYS = [f"cases.jsonl::c{i:02d}" for i in range(40)]
JUDGE = {"name": "local", "model": None, "prompt_version": "1", "version": "1"}


def line(
    failed: Sequence[str] = (),
    keys: Sequence[str] = KEYS,
    *,
    judge: Mapping[str, Any] | None = None,
    new_fields: bool = True,
) -> dict[str, Any]:
    """A history line as the plugin writes it (``new_fields``) or as older versions did."""
    out: dict[str, Any] = {
        "total": len(keys),
        "passed": len(keys) - len(failed),
        "errors": 0,
        "pass_rate": (len(keys) - len(failed)) / len(keys),
        "failed": sorted(failed),
    }
    if judge is not None:
        out["judge"] = dict(judge)
    if new_fields:
        failing = set(failed)
        out.update(
            history_case_fields([(k, "fail" if k in failing else "pass", 0, 1) for k in keys])
        )
    return out


def context(
    history: Sequence[Mapping[str, Any]],
    keys: Sequence[str] = KEYS,
    settings: GateSettings | None = None,
    baseline: Mapping[str, BaselineView] | None = None,
) -> GateContext:
    return GateContext.build(
        history,
        judge=None,
        case_keys=keys,
        baseline=baseline if baseline is not None else {k: PASS for k in keys},
        settings=settings or GateSettings(),
    )


def noisy_history(runs: int = 10) -> list[dict[str, Any]]:
    """c00 passes 6 of 10 runs; c01..c15 fail one run in ten each; the rest never fail."""
    out = []
    for j in range(runs):
        failed = [KEYS[0]] if j % 5 in (1, 3) else []
        failed += [KEYS[i] for i in range(1, 16) if (i + j) % 10 == 0]
        out.append(line(failed))
    return out


# --- the outcome table -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "baseline", "outcome", "pytest_outcome"),
    [
        ("pass", PASS, "passed", "passed"),
        ("pass", None, "passed", "passed"),
        ("pass", FAIL, "improvement", "passed"),
        ("fail", PASS, "regression", "failed"),
        ("fail", FAIL, "known_failure", "xfailed"),
        ("fail", None, "new_failure", "failed"),
        ("error", PASS, "error", "error"),
        ("error", FAIL, "error", "error"),
        ("error", None, "error", "error"),
    ],
)
def test_outcome_table_without_history(
    verdict: str, baseline: BaselineView | None, outcome: str, pytest_outcome: str
) -> None:
    result = classify(context([]), KEYS[0], verdict, baseline, passes=0, samples=1)
    assert result.outcome == outcome
    assert OUTCOME_PYTEST[result.outcome] == pytest_outcome


def test_no_history_keeps_the_outcome_table_rule_and_says_it_is_unconfirmed() -> None:
    result = classify(context([]), KEYS[3], "fail", PASS, passes=0, samples=1)
    assert result.outcome == "regression"
    assert result.detail == UNCONFIRMED
    assert result.evidence is not None
    assert result.evidence.unconfirmed
    assert result.evidence.p_value is None
    assert result.evidence.history_runs == 0


def test_a_case_missing_from_the_history_is_unconfirmed_while_others_are_not() -> None:
    older = KEYS[:-1]  # the last case was added after these runs
    history = [line((), older) for _ in range(10)] + [line(())]
    ctx = context(history)
    assert ctx.lines_used == 1 and ctx.lines_ignored == 10
    assert ctx.history_runs[KEYS[-1]] == 1
    # an old-style line of another size is left out for every case, not half counted
    old_style = [line((), older, new_fields=False) for _ in range(3)]
    ctx = context(old_style)
    assert ctx.lines_used == 0
    assert classify(ctx, KEYS[0], "fail", PASS, passes=0, samples=1).evidence == CaseEvidence(
        0, 0, 0, 1, None, None, ctx.case_alpha, "outcome table: passed in the baseline, fails now",
        True, 0, None,
    )  # fmt: skip


# --- thin history: fewer recorded runs of the case than min_history -------------------------


def repeated_line(passes: Mapping[str, int], samples: int = 3) -> dict[str, Any]:
    """A history line of a run with ``samples`` samples per case; ``passes`` overrides k."""
    cases = []
    for k in KEYS:
        x = passes.get(k, samples)
        cases.append((k, "pass" if x / samples >= 0.5 else "fail", x, samples))
    failed = [k for k, verdict, _, _ in cases if verdict == "fail"]
    return {**line(failed), **history_case_fields(cases)}


def test_thin_history_one_sample_is_an_unconfirmed_regression() -> None:
    ctx = context([line(), line()])  # 2 recorded runs, min_history 3
    assert ctx.history_runs[KEYS[4]] == 2
    assert ctx.eligible == 0  # not one of the per-case family's cases
    result = classify(ctx, KEYS[4], "fail", PASS, passes=0, samples=1)
    assert result.outcome == "regression"
    assert result.detail.startswith("unconfirmed: 2 recorded runs of this case,")
    assert "needs 3 (llmeval_min_history)" in result.detail
    assert result.evidence == CaseEvidence(
        2, 2, 0, 1, None, None, 0.05, "outcome table: passed in the baseline, fails now",
        True, 2, None,
    )  # fmt: skip
    gate = run(ctx, [KEYS[4]])["regressions"]
    assert (gate.numbers["confirmed"], gate.numbers["unconfirmed"]) == (0, 1)
    assert gate.detail == "1 regression (max 0), 1 unconfirmed (fewer than 3 recorded runs)"


def test_thin_history_3_of_3_to_0_of_3_with_repeats_is_a_regression() -> None:
    ctx = context([repeated_line({})], settings=GateSettings(samples=3))
    base = BaselineView(passed=True, passes=3, samples=3)
    result = classify(ctx, KEYS[4], "fail", base, passes=0, samples=3)
    assert result.outcome == "regression", result.detail
    ev = result.evidence
    assert ev is not None and ev.unconfirmed
    assert ev.method == "one-sided Fisher exact test, baseline samples vs now"
    assert ev.p_value == pytest.approx(0.05)  # 1 / C(6, 3): exactly alpha, and <= fires
    assert (ev.history_passes, ev.history_samples, ev.now_passes, ev.now_samples) == (3, 3, 0, 3)
    assert "0/3 now vs 3/3 in the baseline, one-sided Fisher p = 0.05 <= 0.05" in result.detail
    assert "unconfirmed: 1 recorded run of this case" in result.detail


def test_thin_history_2_of_3_to_1_of_3_with_repeats_is_flaky() -> None:
    ctx = context([repeated_line({KEYS[4]: 2})], settings=GateSettings(samples=3))
    base = BaselineView(passed=True, passes=2, samples=3)
    result = classify(ctx, KEYS[4], "fail", base, passes=1, samples=3)
    assert result.outcome == "flaky", result.detail
    assert result.evidence is not None and result.evidence.p_value == pytest.approx(0.5)
    assert "> 0.05: not a significant drop" in result.detail


def test_quiet_suite_one_flip_is_a_regression() -> None:
    ctx = context([line() for _ in range(10)])
    assert ctx.prior_degenerate == "all_pass"
    result = classify(ctx, KEYS[5], "fail", PASS, passes=0, samples=1)
    assert result.outcome == "regression"
    assert result.evidence is not None
    assert not result.evidence.unconfirmed
    assert (result.evidence.history_passes, result.evidence.history_runs) == (10, 10)
    assert result.evidence.p_value == 0.0
    assert "0/1 now vs 10/10" in result.detail
    assert "no failure in the suite's 400 recorded samples" in result.detail


def test_old_history_lines_of_the_same_suite_count() -> None:
    ctx = context([line(new_fields=False) for _ in range(10)])
    assert ctx.lines_used == 10
    assert classify(ctx, KEYS[5], "fail", PASS, passes=0, samples=1).outcome == "regression"


def test_noisy_case_with_60_percent_history_is_flaky_with_its_rate() -> None:
    ctx = context(noisy_history())
    assert ctx.history_passes[KEYS[0]] == 6 and ctx.history_samples[KEYS[0]] == 10
    result = classify(ctx, KEYS[0], "fail", PASS, passes=0, samples=1)
    assert result.outcome == "flaky"
    assert OUTCOME_PYTEST["flaky"] == "xfailed"
    assert result.detail.startswith("flaky: passes 60.0% of the time (6/10)")
    ev = result.evidence
    assert ev is not None and ev.p_value is not None and ev.adjusted_p is not None
    # the posterior-predictive P[fail] under the fitted grid prior, by hand
    post = [
        w * binom.pmf(6, 10, g) for g, w in zip(ctx.prior_support, ctx.prior_weights, strict=True)
    ]
    expected = sum(q * (1 - g) for q, g in zip(post, ctx.prior_support, strict=True)) / sum(post)
    assert ev.p_value == pytest.approx(expected, rel=1e-9)
    assert ev.p_value > ev.threshold  # type: ignore[operator]
    assert ev.adjusted_p > ev.alpha


def test_a_single_flip_in_a_noisy_suite_is_not_a_regression() -> None:
    ctx = context(noisy_history())
    result = classify(ctx, KEYS[30], "fail", PASS, passes=0, samples=1)  # 10/10 in history
    assert result.outcome == "flaky"


def test_three_repeats_flag_3_of_3_to_0_of_3_given_a_clean_history() -> None:
    settings = GateSettings(samples=3)
    three = [
        {**line(f), **history_case_fields([(k, "pass", 3, 3) for k in KEYS if k not in f]
                                          + [(k, "fail", 1, 3) for k in f])}
        for f in ([KEYS[1]], [], [KEYS[2]], [], [], [KEYS[1]], [], [], [], [])
    ]  # fmt: skip
    ctx = context(three, settings=settings)
    assert ctx.history_samples[KEYS[20]] == 30
    assert ctx.history_passes[KEYS[1]] == 30 - 4
    result = classify(ctx, KEYS[20], "fail", PASS, passes=0, samples=3)
    assert result.outcome == "regression", result.detail
    ev = result.evidence
    assert ev is not None and ev.p_value is not None
    assert ev.p_value <= ctx.case_threshold
    assert (ev.history_passes, ev.history_samples, ev.now_passes, ev.now_samples) == (30, 30, 0, 3)
    # one of three still failing the verdict is a wobble, not a regression
    assert classify(ctx, KEYS[1], "fail", PASS, passes=1, samples=3).outcome == "flaky"


def test_the_threshold_is_fixed_before_the_run_and_spends_at_most_the_case_share() -> None:
    ctx = context(noisy_history(), settings=GateSettings(samples=3))
    assert 0 < ctx.case_spent <= ctx.case_alpha == pytest.approx(0.02)
    assert ctx.testable <= ctx.eligible == len(KEYS)
    # rebuilding from the same files gives the same context (controller and workers agree)
    assert ctx == context(noisy_history(), settings=GateSettings(samples=3))


def noisy_repeated_history(runs: int = 8) -> list[dict[str, Any]]:
    """Runs of 3 samples per case, each case losing 0-2 of them in a pattern of its own."""
    out = []
    for j in range(runs):
        passes = {
            k: 3 - ((i * 7 + j * 5) % 11 < i % 5) - ((i + j) % 9 == 0) for i, k in enumerate(KEYS)
        }
        out.append(repeated_line(passes))
    return out


def test_the_context_is_the_one_the_numpy_version_built() -> None:
    # recorded from the numpy implementation (commit a3488a9), which the gate's error rates
    # were measured with: the same history counts, prior, tables and threshold to 1e-12
    ctx = context(noisy_repeated_history(), settings=GateSettings(samples=3))
    assert sorted(set(zip(ctx.history_passes.values(), ctx.history_samples.values(),
                          strict=True))) == [(k, 24) for k in range(19, 25)]  # fmt: skip
    assert (len(ctx.prior_support), ctx.testable, ctx.eligible) == (7, 21, 40)
    assert (ctx.dispersion, ctx.dispersion_df) == (1.0, 7)
    assert ctx.prior_mean == pytest.approx(0.9028879482995761, rel=1e-12)
    assert ctx.case_threshold == pytest.approx(0.0009207070865256215, rel=1e-12)
    assert ctx.case_spent == pytest.approx(0.019219644876841697, rel=1e-12)
    recorded = {
        0: (0.0009124906842249979, 0.026321253800509516, 0.2629455885310011, 1.0),
        3: (0.000928728938332959, 0.0266267431043512, 0.264385989961804, 1.0),
    }
    for i, row in recorded.items():
        assert ctx.tables[KEYS[i]] == pytest.approx(row, rel=1e-12)
    one = context(noisy_history())
    assert (len(one.prior_support), one.case_threshold, one.testable) == (24, 0.0, 0)
    assert one.prior_mean == pytest.approx(0.9525312388869414, rel=1e-12)
    for i, p_fail in {
        0: 0.351761908310427,
        1: 0.04123749305912366,
        30: 0.03868434505050709,
    }.items():
        assert one.tables[KEYS[i]] == pytest.approx((p_fail, 1.0), rel=1e-12)
    # cases with the same counts share one table
    assert ctx.tables[KEYS[0]] is ctx.tables[KEYS[7]]


def test_only_this_judges_history_counts() -> None:
    other = {**JUDGE, "model": "another"}
    history = [line([KEYS[0]], judge=other) for _ in range(5)] + [line(judge=JUDGE)] * 3
    ctx = GateContext.build(
        history,
        judge=JUDGE,
        case_keys=KEYS,
        baseline={k: PASS for k in KEYS},
        settings=GateSettings(),
    )
    assert ctx.history_lines == 3
    assert ctx.history_passes[KEYS[0]] == 3


def test_errored_cases_are_not_evidence() -> None:
    fields = history_case_fields(
        [(k, "error" if k == KEYS[0] else "pass", 0 if k == KEYS[0] else 1, 1) for k in KEYS]
    )
    assert fields["errored"] == [KEYS[0]]
    assert fields["keys_sha256"] == suite_digest(reversed(KEYS))
    ctx = context([{**line(), **fields}] * 4)
    assert KEYS[0] not in ctx.history_samples
    assert ctx.history_samples[KEYS[1]] == 4


def test_classification_round_trips() -> None:
    ctx = context(noisy_history())
    for key in (KEYS[0], KEYS[30]):
        c = classify(ctx, key, "fail", PASS, passes=0, samples=1)
        assert Classification.from_dict(c.to_dict()) == c
    plain = Classification("passed")
    assert Classification.from_dict(plain.to_dict()) == plain


# --- the gates ---------------------------------------------------------------------------------


def run(
    ctx: GateContext,
    failing: Sequence[str] = (),
    *,
    full_run: bool = True,
    update_baseline: bool = False,
    samples: int = 1,
) -> dict[str, Any]:
    """Classify every case of ``ctx`` (the ``failing`` ones fail) and decide the run."""
    outcomes = []
    for key in ctx.keys:
        fails = key in failing
        c = classify(
            ctx, key, "fail" if fails else "pass", PASS, passes=0 if fails else samples,
            samples=samples,
        )  # fmt: skip
        outcomes.append((key, c.outcome, 0 if fails else samples, samples))
    decision = decide(
        ctx,
        outcomes=outcomes,
        passed=len(ctx.keys) - len(failing),
        failed=len(failing),
        full_run=full_run,
        update_baseline=update_baseline,
    )
    return {"decision": decision, **{g.name: g for g in decision.gates}}


def test_unchanged_quiet_run_passes_every_gate() -> None:
    out = run(context([line() for _ in range(10)]))
    assert out["decision"].passed
    assert out["regressions"].detail == "0 regressions (max 0)"
    assert out["suite_drop"].skipped  # nothing ever varied: no stratum is informative


def test_one_regression_fails_and_max_regressions_allows_some() -> None:
    history = [line() for _ in range(10)]
    out = run(context(history), [KEYS[3]])
    assert not out["decision"].passed
    assert "regressions" in [g.name for g in out["decision"].failed_gates]
    assert out["regressions"].numbers["confirmed"] == 1
    lenient = context(history, settings=GateSettings(max_regressions=2))
    assert run(lenient, KEYS[3:5])["regressions"].passed
    assert not run(lenient, KEYS[3:6])["regressions"].passed


def test_unconfirmed_regressions_are_counted_and_named() -> None:
    out = run(context([]), [KEYS[0]])
    assert not out["regressions"].passed
    assert out["regressions"].detail == "1 regression (max 0), 1 unconfirmed (no history)"


def test_regressions_are_accepted_while_updating_the_baseline() -> None:
    out = run(context([]), KEYS[:2], update_baseline=True)
    assert out["regressions"].passed
    assert "2 regressions accepted" in out["regressions"].detail


def test_min_pass_rate() -> None:
    ctx = context([], settings=GateSettings(min_pass_rate=0.9))
    assert "min_pass_rate" not in run(context([]))
    out = decide(ctx, outcomes=[], passed=9, failed=1, full_run=True)
    gate = {g.name: g for g in out.gates}["min_pass_rate"]
    assert gate.passed and gate.detail == "pass rate 90.0% >= minimum 90.0%"
    bad = {g.name: g for g in decide(ctx, outcomes=[], passed=8, failed=2, full_run=True).gates}
    assert not bad["min_pass_rate"].passed
    skipped = {g.name: g for g in decide(ctx, outcomes=[], passed=0, failed=0, full_run=True).gates}
    assert skipped["min_pass_rate"].skipped


def rates(*values: float) -> list[dict[str, Any]]:
    return [{"pass_rate": r, "total": 100, "passed": round(r * 100)} for r in values]


def history_gate(
    history: Sequence[Mapping[str, Any]],
    passed: int,
    failed: int,
    settings: GateSettings | None = None,
    full_run: bool = True,
) -> GateResult:
    ctx = context(history, settings=settings)
    out = decide(ctx, outcomes=[], passed=passed, failed=failed, full_run=full_run)
    return {g.name: g for g in out.gates}["history"]


def test_history_gate_is_a_prediction_bound_with_its_numbers() -> None:
    points = (0.90, 0.86, 0.88, 0.91, 0.87)
    gate = history_gate(rates(*points), 80, 20)
    mean, sd = statistics.fmean(points), statistics.stdev(points)
    alpha = 0.05 / 3  # nothing spent per case: a third of alpha goes to the history gate
    t = student_t.ppf(1 - alpha, len(points) - 1)
    bound = mean - t * sd * math.sqrt(1 + 1 / len(points))
    assert gate.method == "prediction bound (Hahn & Meeker)"
    n = gate.numbers
    assert n["points"] == 5 and n["pass_rate"] == 0.8 and n["judged"] == 100
    assert n["mean"] == pytest.approx(mean) and n["sd"] == pytest.approx(sd)
    assert n["t"] == pytest.approx(t) and n["bound"] == pytest.approx(bound)
    assert n["alpha"] == pytest.approx(alpha)
    assert gate.passed == (bound <= 0.8)
    assert f"{100 * bound:.1f}%" in gate.detail
    assert not history_gate(rates(*points), 70, 30).passed


def test_prediction_bound_is_wider_than_two_sd_for_short_histories() -> None:
    points = rates(0.9, 0.8, 1.0)  # mean 0.9, sd 0.1: mean - 2 sd = 0.70
    assert history_gate(points, 69, 31, GateSettings(std_threshold=2.0)).passed is False
    assert history_gate(points, 69, 31).passed  # t(2) bound is far lower: 3 points say little


def test_a_set_std_threshold_keeps_the_old_rule() -> None:
    gate = history_gate(rates(0.9, 0.8, 1.0), 72, 28, GateSettings(std_threshold=2.0))
    assert gate.passed and "mean 90.0% - 2 x std 10.0% over 3 runs" in gate.detail
    assert gate.numbers["bound"] == pytest.approx(0.7)
    assert not history_gate(rates(0.9, 0.8, 1.0), 75, 25, GateSettings(std_threshold=1.0)).passed


def test_history_gate_skips() -> None:
    short = history_gate(rates(0.9, 1.0), 1, 9)
    assert short.skipped and short.passed and "2 recorded runs, need 3" in short.detail
    assert history_gate(rates(0.9, 0.8, 1.0), 0, 10, full_run=False).skipped
    assert history_gate(rates(0.9, 0.8, 1.0), 0, 0).skipped


def test_deterministic_history_fails_on_any_drop() -> None:
    flat = rates(1.0, 1.0, 1.0)
    assert history_gate(flat, 100, 0).passed
    assert not history_gate(flat, 99, 1).passed


def test_suite_drop_finds_a_broad_drop_no_single_case_shows() -> None:
    history = noisy_history(10)
    ctx = context(history)
    calm = run(ctx, [KEYS[0]])
    assert calm["suite_drop"].passed and not calm["suite_drop"].skipped
    broad = run(ctx, [KEYS[i] for i in range(0, 16)])  # the cases that wobble all fail
    gate = broad["suite_drop"]
    assert broad["regressions"].passed  # no single case is significant
    assert not gate.passed
    n = gate.numbers
    assert n["p_value"] is not None and n["alpha"] is not None
    assert float(n["p_value"]) <= float(n["alpha"])
    assert n["informative"] == 16 and float(n["dispersion"]) >= 1.0
    # a narrowed run (--lf picks exactly the failures) says nothing about the suite
    narrowed = run(ctx, [KEYS[i] for i in range(0, 16)], full_run=False)
    assert narrowed["suite_drop"].skipped and narrowed["suite_drop"].passed
    assert "narrowed" in narrowed["suite_drop"].detail
    assert gate.method.startswith("Cochran-Mantel-Haenszel")


def test_flip_count_is_informational() -> None:
    out = run(context(noisy_history()), [KEYS[0]])
    assert out["flips"].skipped and out["flips"].passed
    assert out["flips"].numbers == {"worse": 1, "better": 0, "p_value": 0.5}
    assert out["flips"].detail.startswith("1 case passed in the baseline and fails now, 0 ")
    two = run(context(noisy_history()), KEYS[:2])
    assert two["flips"].detail.startswith("2 cases passed in the baseline and fail now, 0 ")


def test_decision_round_trips_and_is_plain() -> None:
    out = run(context(noisy_history()), [KEYS[0]])
    decision: GateDecision = out["decision"]
    data = decision.to_dict()
    assert data["passed"] is decision.passed
    assert GateDecision.from_dict(data) == decision
    assert all(
        isinstance(v, (int, float, str, type(None)))
        for g in data["gates"]
        for v in g["numbers"].values()
    )


def test_pass_rate() -> None:
    assert pass_rate(3, 1) == 0.75
    assert pass_rate(0, 0) is None


# --- helpers the plugin keeps using ------------------------------------------------------------


def test_history_for_judge_keeps_lines_without_a_judge() -> None:
    mine, other = {**JUDGE}, {**JUDGE, "model": "x"}
    history: list[dict[str, Any]] = [
        {"judge": mine},
        {"judge": other},
        {},
        {"judge": {"model": "no name"}},
    ]
    assert history_for_judge(history, mine) == [history[0], history[2], history[3]]


def test_flaky_from_history_needs_two_flips() -> None:
    history: list[dict[str, Any]] = [
        {"failed": ["a", "b"]},
        {"failed": ["a"]},
        {"failed": ["b"]},
        {"failed": []},
    ]
    assert flaky_from_history(history, {"a", "b", "c"}) == ["b"]


def test_decide_comparison_recommends_on_mcnemar() -> None:
    pairs = [(f"k{i}", False, True) for i in range(8)] + [("r", True, False)]
    out = decide_comparison(pairs)
    assert out["recommendation"] == "candidate" and out["b"] == 1 and out["c"] == 8
    assert decide_comparison([])["recommendation"] == "baseline"
