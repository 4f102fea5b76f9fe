"""Reports built through the real end of a run (``engine.finish.finish_run``), for the renderer
tests: the committed sample (``tests/data/sample_report.json``) and the mixed-judge
reproduction of issue #9.

The case results are built as the plugin builds them (``build_case_result`` with the gate's
``classify``) from cases, evaluations, a baseline and a history, so the report has the shape and
the numbers a run writes. Regenerate the sample after a change of the report's shape::

    python tests/reports/report_samples.py
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmeval.core import gate
from pytest_llmeval.core.baseline import Baseline, BaselineEntry
from pytest_llmeval.core.cases import Case, Message
from pytest_llmeval.core.evaluation import Evaluation, Sample
from pytest_llmeval.core.result import (
    CaseResult,
    Classified,
    ResultSettings,
    VerdictName,
    build_case_result,
    response_sha256,
)
from pytest_llmeval.core.verdict import JudgeIdentity, Usage, Verdict
from pytest_llmeval.engine.finish import RunInputs, RunOutcome, RunSettings, finish_run

SAMPLE_PATH = Path(__file__).parent.parent / "data" / "sample_report.json"
FILE = "evals/llmeval_support.jsonl"
CREATED = "2026-11-26T10:00:00Z"
CLAUDE = JudgeIdentity("anthropic", model="claude-sonnet-4-5", prompt_version="grader-v3")
LOCAL = JudgeIdentity("local", prompt_version="sim-2")


@dataclass(frozen=True)
class Spec:
    """One case of a sample run: the case, its samples now, its baseline and its history."""

    case: Case
    scores: Sequence[float]  # one judge score per sample; a sample passes at >= 0.7
    response: str
    reasoning: str = ""
    failure_modes: tuple[str, ...] = ()
    failed_checks: tuple[str, ...] = ()
    baseline: tuple[str, float, int] | None = ("pass", 0.9, 3)  # verdict, score, passes of 3
    baseline_response: str | None = None
    error: str | None = None
    latency_s: float = 1.2
    history_fails: int = 0  # recorded runs (of 7) in which the case failed a sample
    attempts: int = 1
    candidate_passes: bool | None = None  # compare mode: the candidate's verdict


def _case(line: int, case_id: str, question: str | None, truth: Any = None, **kw: Any) -> Case:
    refs = tuple(truth) if isinstance(truth, list) else ()
    messages = kw.pop("messages", None)
    return Case(
        id=case_id,
        question=question if question is not None else str(messages[-1][1]),
        messages=None if messages is None else tuple(Message(r, c) for r, c in messages),
        ground_truth=None if isinstance(truth, list) else truth,
        references=refs,
        file=FILE,
        line=line,
        **kw,
    )


def _specs() -> list[Spec]:
    filler = [
        ("invoice-copy", "account", "easy", 0.91),
        ("change-email", "account", "easy", 0.87),
        ("2fa-setup", "account", "medium", 0.84),
        ("vat-number", "billing", "hard", 0.77),
        ("return-label", "shipping", "easy", 0.9),
        ("student-discount", "billing", "medium", 0.72),
        ("data-retention", "privacy", "hard", 0.8),
        ("cookie-consent", "privacy", "medium", 0.85),
    ]
    specs = [
        Spec(
            _case(
                1,
                "refund-window",
                "How long do I have to ask for a refund?",
                "30 days from delivery.",
                rubric="Must state 30 days; must not invent fees.",
                tags=("billing",),
                difficulty="easy",
                human_verdict="pass",
            ),
            [0.93, 0.94, 0.92],
            "You can ask for a refund within 30 days of delivery.",
            "States the 30-day window from delivery; no invented fees.",
            baseline=("pass", 0.95, 3),
            candidate_passes=True,
        ),
        Spec(
            _case(
                2,
                "refund-fees",
                "Is there a fee for refunds?",
                ["No, refunds are free.", "Refunds are free of charge."],
                tags=("billing",),
                difficulty="medium",
                human_verdict="fail",
            ),
            [0.41, 0.38, 0.44],
            'Sure! <script>alert("x")</script> Refunds cost a 5 € handling fee and take 45 days.',
            "Invents a 5 € handling fee | contradicts the ground truth (refunds are free);"
            " wrong timeline.",
            ("contradicts_ground_truth", "invented_fact"),
            baseline=("pass", 0.88, 3),
            baseline_response="No, refunds are free: you get the full amount back.",
            latency_s=2.84,
            candidate_passes=True,
        ),
        Spec(
            _case(
                3,
                "cancel-subscription",
                "How do I cancel my subscription?",
                "Settings → Billing → Cancel subscription.",
                tags=("billing", "account"),
                difficulty="easy",
                checks=({"type": "contains", "value": "Settings"},),
                human_verdict="fail",
            ),
            [0.52, 0.5, 0.55],
            "Email support and wait for a reply.",
            "Misses the self-service path in Settings; answer is incomplete.",
            ("incomplete", "quality_below_threshold"),
            ("contains: Settings",),
            baseline=("pass", 0.81, 3),
            latency_s=0.95,
            candidate_passes=False,
        ),
        Spec(
            _case(
                4,
                "password-reset",
                "I forgot my password. What now?",
                "Use 'Forgot password' on the sign-in page.",
                tags=("account",),
                difficulty="easy",
                human_verdict="pass",
            ),
            [0.86, 0.85, 0.88],
            'Click "Forgot password" on the sign-in page and follow the email link.',
            "Correct self-service steps.",
            baseline=("fail", 0.55, 0),
            baseline_response="Contact support to reset it.",
            history_fails=7,
            candidate_passes=True,
        ),
        Spec(
            _case(
                5,
                "export-data",
                "Can I export my data as CSV?",
                "Yes: Settings → Data → Export CSV.",
                tags=("account", "data"),
                difficulty="medium",
            ),
            [0.79, 0.8, 0.78],
            "Yes. Go to Settings → Data and choose Export CSV.",
            "Matches the ground truth.",
            baseline=("fail", 0.6, 1),
            history_fails=7,
            candidate_passes=True,
        ),
        Spec(
            _case(
                6,
                "gdpr-delete",
                "Delete all my personal data under GDPR.",
                "Explain the erasure request form; confirm 30-day processing.",
                tags=("privacy",),
                difficulty="hard",
                human_verdict="fail",
            ),
            [0.48, 0.45, 0.5],
            "I have deleted your data.",
            "Claims an action it cannot perform; no mention of the erasure form.",
            ("unsupported_claim",),
            baseline=("fail", 0.45, 0),
            history_fails=7,
            candidate_passes=False,
        ),
        Spec(
            _case(
                7,
                "html-<img src=x onerror=alert(1)>",
                "What does <img src=x onerror=alert(2)> do in a ticket?",
                "It is shown as text; tickets do not render HTML.",
                tags=('"onerror="alert(1)', "security"),
                difficulty="adversarial",
            ),
            [0.3, 0.28, 0.33],
            '<img src=x onerror="alert(3)"> renders an image " onmouseover="alert(4)',
            "Echoes raw HTML back & claims it renders; <b>wrong</b>.",
            ("unsafe_output",),
            baseline=None,
            latency_s=0.41,
            candidate_passes=True,
        ),
        Spec(
            _case(
                8,
                "shipping-intl",
                "Do you ship to Canada?",
                "Yes, 5–7 business days.",
                tags=("shipping",),
                difficulty="medium",
                human_verdict="pass",
            ),
            [0.74, 0.72, 0.61],
            "Yes, we ship to Canada; delivery usually takes about a week.",
            "Mostly right; timeline vague in some samples.",
            baseline=("pass", 0.8, 3),
            history_fails=3,
            candidate_passes=True,
            attempts=2,
        ),
        Spec(
            _case(
                9,
                "shipping-cost",
                "How much is shipping?",
                "Free over 50 €, otherwise 4.90 €.",
                tags=("shipping", "billing"),
                difficulty="medium",
            ),
            [],
            "Shipping is free over 50 €.",
            error="judge problem: Anthropic API returned 529 overloaded after 5 retries",
            baseline=("pass", 0.9, 3),
        ),
        Spec(
            _case(
                10,
                "warranty",
                None,
                "Two years for hardware defects.",
                tags=("warranty",),
                messages=[
                    ("user", "My headphones broke."),
                    ("assistant", "Sorry to hear that! When did you buy them?"),
                    ("user", "18 months ago. Am I covered?"),
                ],
                human_verdict="pass",
            ),
            [0.88, 0.9, 0.87],
            "Hardware is covered for two years against defects.",
            "Correct duration and scope.",
            candidate_passes=True,
        ),
        Spec(
            _case(
                11,
                "order-status",
                "Where is my order #4411?",
                None,
                tags=("shipping",),
                difficulty="easy",
                checks=({"type": "not_contains", "value": "#4411 shipped"},),
            ),
            [1.0, 1.0, 1.0],
            "I can't see orders here; check the tracking link in your confirmation email.",
            "Checks passed.",
            baseline=("pass", 1.0, 3),
            candidate_passes=True,
        ),
    ]
    for i, (case_id, tag, difficulty, score) in enumerate(filler, start=12):
        words = case_id.replace("-", " ")
        specs.append(
            Spec(
                _case(
                    i,
                    case_id,
                    f"Question about {words}?",
                    f"Reference answer for {case_id}.",
                    tags=(tag,),
                    difficulty=difficulty,
                ),
                [score, score, score],
                f"Answer about {words}.",
                "Consistent with the reference.",
                baseline=("pass", round(score + 0.02, 2), 3),
                latency_s=0.8 + i / 20,
                candidate_passes=case_id not in ("vat-number", "student-discount"),
            )
        )
    specs.append(
        Spec(
            _case(20, "loyalty-points", "Do loyalty points expire?",
                  "After 12 months without a purchase.", tags=("billing",), difficulty="hard"),
            [0.5, 0.5, 0.5], "Points never expire.", "Contradicts the 12-month expiry.",
            ("contradicts_ground_truth",), baseline=("fail", 0.5, 0), history_fails=7,
            candidate_passes=False,
        )
    )  # fmt: skip
    return specs


def _evaluation(spec: Spec, *, candidate: bool = False) -> Evaluation:
    ev = Evaluation(spec.case, error=spec.error)
    if spec.error is not None:
        return ev
    scores = spec.scores
    if candidate:
        scores = [0.85] * 3 if spec.candidate_passes else [0.4] * 3
    for score in scores:
        checks_only = spec.case.ground_truth is None
        verdict = Verdict(
            score=score,
            passed=score >= 0.7,
            threshold=0.7,
            reasoning=spec.reasoning,
            failure_modes=spec.failure_modes if score < 0.7 else (),
            judge=CLAUDE,
            failed_checks=spec.failed_checks if score < 0.7 else (),
            checks_only=checks_only,
        )
        ev.samples.append(Sample(spec.response, verdict, cached=True, latency_s=spec.latency_s))
    if not candidate:
        ev.judge_calls = 1 if spec.case.id in ("refund-fees", "cancel-subscription") else 0
        ev.cache_hits = len(scores) - ev.judge_calls
        ev.usage = Usage(1302, 172, 146, 1901, 1) if ev.judge_calls else Usage()
        ev.sut_usage = Usage(152, 55, 0, 0, 3)
    return ev


def _history(specs: Sequence[Spec], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Seven runs of this judge over the same cases (the per-case evidence), and two older
    runs of another judge that the gate leaves out."""
    digest = gate.suite_digest(keys)
    commits = ["a1b2c3d", "b2c3d4e", "c3d4e5f", "d4e5f6a", "e5f6a7b", "f6a7b8c", "0a1b2c3"]
    lines: list[dict[str, Any]] = [
        {
            "timestamp": f"2026-11-0{day}T09:30:00Z",
            "commit": "9f8e7d6",
            "total": 20,
            "passed": passed,
            "errors": 0,
            "pass_rate": passed / 20,
            "mean_score": 0.41,
            "judge": LOCAL.to_dict(),
        }
        for day, passed in ((6, 6), (8, 8))
    ]
    for run, commit in enumerate(commits):
        # a case with history_fails = h failed in h of the 7 runs ((3 * run) % 7 visits 0..6)
        failing = [s for s in specs if s.history_fails > (run * 3) % 7]
        passed = len(specs) - len(failing)
        lines.append(
            {
                "timestamp": f"2026-11-{10 + 2 * run}T09:30:00Z",
                "commit": commit,
                "total": len(specs),
                "passed": passed,
                "errors": 0,
                "pass_rate": passed / len(specs),
                "mean_score": round(0.78 + run / 100, 2),
                "judge": CLAUDE.to_dict(),
                "failed": sorted(f"{FILE}::{s.case.id}" for s in failing),
                "keys_sha256": digest,
                "errored": [],
                "samples": 3,
                "sample_passes": {
                    f"{FILE}::{s.case.id}": [0 if s.history_fails == 7 else 2, 3] for s in failing
                },
            }
        )
    return lines


def run_outcome(
    specs: Sequence[Spec],
    *,
    history: Sequence[Mapping[str, Any]],
    judge: JudgeIdentity,
    gate_settings: gate.GateSettings,
    repeat: int,
    unused: Sequence[str] = (),
    compare_sut: str | None = None,
    cost: float | None = None,
) -> RunOutcome:
    """The end of a run of ``specs`` against their baseline and ``history``."""
    entries = {
        f"{FILE}::{s.case.id}": BaselineEntry(
            verdict=s.baseline[0],
            score=s.baseline[1],
            response_sha256=response_sha256(s.baseline_response or ""),
            threshold=0.7,
            passes=s.baseline[2],
            samples=repeat,
            response=s.baseline_response,
        )
        for s in specs
        if s.baseline is not None
    }
    baseline = Baseline(judge, entries)
    keys = sorted(f"{FILE}::{s.case.id}" for s in specs)
    views = {k: gate.BaselineView(e.passed, e.passes, e.samples) for k, e in entries.items()}
    ctx = gate.GateContext.build(
        history, judge=judge.to_dict(), case_keys=keys, baseline=views, settings=gate_settings
    )
    result_settings = ResultSettings(threshold=0.7, repeat=repeat, repeat_pass_fraction=1.0)

    def result(spec: Spec) -> CaseResult:
        key = f"{FILE}::{spec.case.id}"

        def classify(
            verdict: VerdictName, entry: BaselineEntry | None, passes: int, samples: int
        ) -> Classified:
            view = None if entry is None else gate.BaselineView(entry.passed, entry.passes,
                                                                 entry.samples)  # fmt: skip
            cls = gate.classify(ctx, key, verdict, view, passes=passes, samples=samples)
            ev = cls.evidence
            return Classified(cls.outcome, cls.detail, None if ev is None else ev.to_dict())

        return build_case_result(
            nodeid=key,
            case=spec.case,
            evaluation=_evaluation(spec),
            baseline=entries.get(key),
            judge=judge,
            settings=result_settings,
            classify=classify,
            candidate=_evaluation(spec, candidate=True) if compare_sut else None,
            attempts=spec.attempts,
        )

    settings = RunSettings(
        gate=gate_settings, threshold=0.7, repeat=repeat, compare_sut=compare_sut
    )
    return finish_run(
        RunInputs(
            results=[result(s) for s in specs],
            judge=judge,
            settings=settings,
            baseline=baseline,
            baseline_sha256="3f1c" * 16,
            history=history,
            context=ctx,
            full_run=True,
            unused=unused,
            created=CREATED,
            commit="1b2c3d4",
            cost=None if cost is None else (lambda usage: cost),
        )
    )


def sample_outcome() -> RunOutcome:
    """The committed sample: every outcome, hostile strings, repeats, compare mode, human labels,
    a rerun, an unused baseline entry and history lines of two judges."""
    specs = _specs()
    keys = sorted(f"{FILE}::{s.case.id}" for s in specs)
    return run_outcome(
        specs,
        history=_history(specs, keys),
        judge=CLAUDE,
        gate_settings=gate.GateSettings(samples=3, repeat_pass_fraction=1.0),
        repeat=3,
        unused=[f"{FILE}::old-promo-code"],
        compare_sut="support_bot_v2:answer",
        cost=0.1027,
    )


def sample_report() -> dict[str, Any]:
    report: dict[str, Any] = json.loads(json.dumps(sample_outcome().report))
    return report


def mixed_judge_outcome(std_threshold: float | None) -> RunOutcome:
    """Issue #9's reproduction: three runs by one judge (0.9, 0.9, 0.8), two by another (0.3,
    0.4); this run, by the first judge, passes 7 of 10 cases (0.7)."""
    specs = [
        Spec(
            _case(i, f"case-{i:02d}", f"Question {i}?", f"Answer {i}."),
            [0.9] if i <= 7 else [0.2],
            f"Answer {i}.",
            baseline=("pass", 0.9, 1) if i <= 7 else ("fail", 0.2, 0),
        )
        for i in range(1, 11)
    ]
    history = [
        {
            "timestamp": f"2026-10-0{day}T08:00:00Z",
            "commit": f"c0ffee{day}",
            "total": 10,
            "passed": round(rate * 10),
            "pass_rate": rate,
            "judge": judge.to_dict(),
        }
        for day, (rate, judge) in enumerate(
            [(0.3, LOCAL), (0.9, CLAUDE), (0.4, LOCAL), (0.9, CLAUDE), (0.8, CLAUDE)], start=1
        )
    ]
    return run_outcome(
        specs,
        history=history,
        judge=CLAUDE,
        gate_settings=gate.GateSettings(std_threshold=std_threshold, min_history=3),
        repeat=1,
    )


def main() -> None:
    text = json.dumps(sample_report(), indent=2, ensure_ascii=False) + "\n"
    SAMPLE_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {SAMPLE_PATH}")


if __name__ == "__main__":
    main()


def new_failure_outcome() -> RunOutcome:
    """A first run: one case passes, one fails with no baseline entry, one is not judged. Every
    gate passes; the run fails (issue #11 item 5)."""
    specs = [
        Spec(_case(1, "greeting", "Say hello.", "Hello."), [0.9], "Hello.", baseline=None),
        Spec(_case(2, "refund", "Refund window?", "30 days."), [0.2], "A week.", baseline=None),
        Spec(
            _case(3, "shipping", "Shipping cost?", "Free."),
            [],
            "Free.",
            baseline=None,
            error="judge problem: connection refused",
        ),
    ]
    return run_outcome(specs, history=[], judge=LOCAL, gate_settings=gate.GateSettings(), repeat=1)


def baseline_state_report(state_dir: Path) -> dict[str, Any]:
    """``llmeval report STATE_DIR`` of a committed state written from the sample run."""
    from pytest_llmeval.cli.report import report_from_state
    from pytest_llmeval.engine.store import append_history, save_baseline

    specs = _specs()
    keys = sorted(f"{FILE}::{s.case.id}" for s in specs)
    entries = {
        f"{FILE}::{s.case.id}": BaselineEntry(
            verdict=s.baseline[0],
            score=s.baseline[1],
            response_sha256=response_sha256(s.baseline_response or ""),
            threshold=0.7,
            passes=s.baseline[2],
            samples=3,
            response=s.baseline_response,
        )
        for s in specs
        if s.baseline is not None
    }
    save_baseline(state_dir / "baseline.json", Baseline(CLAUDE, entries), 0.7)
    for line in _history(specs, keys):
        append_history(state_dir / "history.jsonl", line)
    return report_from_state(state_dir, std_threshold=None, min_history=3)
