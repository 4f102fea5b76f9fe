"""The one end of a run: used by the pytest plugin, ``llmeval gate`` and ``llmeval report``.

:func:`finish_run` takes the case results, the baseline, the history and the settings and
returns a :class:`RunOutcome`: the gate decision (carrying every number it used), the run's
verdict (the headline every output shows), the JSON report all renderers read, and the state
to write. It does no I/O; :func:`write_state` writes what it decided, once, atomically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.core import gate
from pytest_llmeval.core.accept import BaselineUpdate, history_line, updated_baseline
from pytest_llmeval.core.agreement import Agreement, agreement
from pytest_llmeval.core.baseline import Baseline
from pytest_llmeval.core.result import CaseResult
from pytest_llmeval.core.summary import RunCounts, count
from pytest_llmeval.core.verdict import JudgeIdentity, Usage
from pytest_llmeval.core.words import plural
from pytest_llmeval.engine.store import append_history, save_baseline
from pytest_llmeval.errors import StateFileError
from pytest_llmeval.reports.model import build_report_head, with_cases


@dataclass(frozen=True)
class RunSettings:
    """What the end of a run depends on (a shard merge must find these identical)."""

    gate: gate.GateSettings
    threshold: float = 0.7
    min_words: int = 5
    max_words: int = 600
    repeat: int = 1
    repeat_pass_fraction: float = 1.0
    flaky_alpha: float = 0.05
    shard: str | None = None
    min_judge_kappa: float | None = None
    update_baseline: bool = False
    record_history: bool = False
    allow_errors: bool = False
    compare_sut: str | None = None
    compare_alpha: float = 0.05
    noninferiority_margin: float | None = None

    def report_block(self, baseline_sha256: str | None) -> dict[str, Any]:
        """The settings block of the JSON report (:meth:`from_report_block` reads it back)."""
        return {
            **dataclasses.asdict(self.gate),
            "threshold": self.threshold,
            "min_words": self.min_words,
            "max_words": self.max_words,
            "repeat": self.repeat,
            "repeat_pass_fraction": self.repeat_pass_fraction,
            "flaky_alpha": self.flaky_alpha,
            "shard": self.shard,
            "baseline_sha256": baseline_sha256,
            "update_baseline": self.update_baseline,
            "allow_errors": self.allow_errors,
            "min_judge_kappa": self.min_judge_kappa,
        }

    @classmethod
    def from_report_block(
        cls, block: Mapping[str, Any], *, update_baseline: bool, allow_errors: bool
    ) -> RunSettings:
        """The settings of a shard report, for ``llmeval gate``."""
        names = {f.name for f in dataclasses.fields(gate.GateSettings)}
        gate_settings = gate.GateSettings(**{k: v for k, v in block.items() if k in names})
        return cls(
            gate=gate_settings,
            threshold=float(block.get("threshold", 0.7)),
            min_words=int(block.get("min_words", 5)),
            max_words=int(block.get("max_words", 600)),
            repeat=int(block.get("repeat", 1)),
            repeat_pass_fraction=float(block.get("repeat_pass_fraction", 1.0)),
            flaky_alpha=float(block.get("flaky_alpha", 0.05)),
            min_judge_kappa=block.get("min_judge_kappa"),
            shard=None,
            update_baseline=update_baseline,
            record_history=False,
            allow_errors=allow_errors,
        )


@dataclass(frozen=True)
class RunVerdict:
    """The run's headline: PASSED only when nothing in the evaluation fails the run."""

    passed: bool
    reasons: tuple[str, ...] = ()

    @property
    def word(self) -> str:
        return "PASSED" if self.passed else "FAILED"

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "word": self.word, "reasons": list(self.reasons)}


def run_verdict(
    decision: gate.GateDecision, counts: RunCounts, settings: RunSettings
) -> RunVerdict:
    """Gates, new failing cases and judge errors: each fails the run, and says so."""
    reasons = [g.name for g in decision.failed_gates]
    new = len(counts.keys("new_failure"))
    if new and not settings.update_baseline:
        reasons.append(plural(new, "new failing case"))
    if counts.errors and not settings.allow_errors:
        reasons.append(plural(counts.errors, "error") + " (cases not judged)")
    return RunVerdict(not reasons, tuple(reasons))


@dataclass(frozen=True)
class RunInputs:
    """Everything the end of a run decides from."""

    results: Sequence[CaseResult]
    judge: JudgeIdentity
    settings: RunSettings
    baseline: Baseline | None
    baseline_sha256: str | None
    history: Sequence[Mapping[str, Any]]
    context: gate.GateContext
    full_run: bool
    narrowed: Sequence[str] = ()
    unused: Sequence[str] = ()
    cache_problems: Sequence[str] = ()
    created: str = ""
    commit: str | None = None
    cost: Callable[[Usage], float | None] | None = None
    collected_keys: Sequence[str] | None = None
    interrupted: bool = False
    collection_errors: int = 0


@dataclass
class RunOutcome:
    """What the end of a run decided. ``summary_report`` is the JSON report without its cases
    (what the terminal summary reads); ``report``, the whole JSON report every file renderer
    reads, is built from it and ``results`` on first use, so a run that writes no report never
    converts its results."""

    decision: gate.GateDecision
    verdict: RunVerdict
    counts: RunCounts
    summary_report: dict[str, Any]
    results: Sequence[CaseResult] = ()
    baseline_update: BaselineUpdate | None = None
    history_append: dict[str, Any] | None = None
    not_written: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    _report: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def report(self) -> dict[str, Any]:
        if self._report is None:
            self._report = with_cases(self.summary_report, self.results)
        return self._report


def finish_run(inputs: RunInputs) -> RunOutcome:
    """Decide the run. Pure: the caller writes what it says with :func:`write_state`."""
    s = inputs.settings
    results = sorted(inputs.results, key=lambda r: r.nodeid)
    counts = count(results)
    decision = gate.decide(
        inputs.context,
        outcomes=[(r.nodeid, r.outcome, r.passes, r.samples) for r in results if r.judged],
        passed=counts.passed,
        failed=counts.failed,
        full_run=inputs.full_run,
        update_baseline=s.update_baseline,
    )
    judge_agreement = human_agreement(results)
    if s.min_judge_kappa is not None:
        decision = gate.GateDecision(
            (*decision.gates, agreement_gate(judge_agreement, s.min_judge_kappa))
        )
    verdict = run_verdict(decision, counts, s)
    comparison = _comparison(results, s)
    history = gate.history_for_judge(inputs.history, inputs.judge.to_dict())
    report = build_report_head(
        counts=counts,
        decision=decision,
        verdict=verdict.to_dict(),
        judge=inputs.judge,
        settings=s.report_block(inputs.baseline_sha256),
        unused=inputs.unused,
        history=history,
        full_run=inputs.full_run,
        narrowed=inputs.narrowed,
        cache_problems=inputs.cache_problems,
        comparison=comparison,
        created=inputs.created,
        cost_usd=inputs.cost(counts.usage) if inputs.cost is not None else None,
        collected_keys=inputs.collected_keys,
        flaky_history=gate.flaky_from_history(history, {r.nodeid for r in results}),
        agreement=None if judge_agreement is None else judge_agreement.to_dict(),
        panel_agreement=panel_agreement(results),
    )
    outcome = RunOutcome(decision, verdict, counts, report, results)
    _plan_writes(inputs, results, counts, outcome)
    return outcome


def _plan_writes(
    inputs: RunInputs, results: Sequence[CaseResult], counts: RunCounts, outcome: RunOutcome
) -> None:
    s = inputs.settings
    if not (s.update_baseline or s.record_history):
        return
    if inputs.interrupted:
        outcome.not_written.append("the run was interrupted: nothing written")
        return
    if inputs.collection_errors:
        outcome.not_written.append(
            "baseline and history not written: "
            f"{plural(inputs.collection_errors, 'case file')} failed to collect"
        )
        return
    if s.update_baseline:
        outcome.baseline_update = updated_baseline(
            inputs.baseline,
            results,
            inputs.judge,
            unused=inputs.unused,
            drop_unused=inputs.full_run,
        )
    if not inputs.full_run:
        outcome.not_written.append(
            "history not appended: the run was narrowed (" + "; ".join(inputs.narrowed) + ")"
        )
        return
    if counts.pass_rate is None:
        outcome.not_written.append("history not appended: no judged cases")
        return
    line = history_line(
        passed=counts.passed,
        failed=counts.failed,
        errors=counts.errors,
        pass_rate=counts.pass_rate,
        mean_score=counts.overall.mean_score,
        results=results,
        judge=inputs.judge,
        commit=inputs.commit,
        timestamp=inputs.created,
    )
    agreement = human_agreement(results)
    if agreement is not None:
        line["agreement"] = agreement.to_dict()  # the judge's agreement with people, per run
    outcome.history_append = line


def write_state(
    outcome: RunOutcome,
    *,
    baseline_path: Path,
    history_path: Path,
    default_threshold: float,
    baseline_sha256: str | None,
    shown: Callable[[Path], str] = str,
) -> None:
    """Write the baseline and history the outcome planned (atomically, under a lock).

    ``baseline_sha256`` is the digest of the baseline this run read (None: there was none); a
    baseline changed since by another run is not overwritten. A file that cannot be written is
    reported in ``outcome.not_written``, never half written.
    """
    if outcome.baseline_update is not None:
        try:
            save_baseline(
                baseline_path,
                outcome.baseline_update.baseline,
                default_threshold,
                expected_sha256=baseline_sha256,
            )
        except (StateFileError, OSError) as exc:
            outcome.not_written.append(f"baseline not written: {exc}")
            outcome.history_append = None  # the history follows the baseline it describes
            return
        outcome.written.append(
            f"baseline {shown(baseline_path)}: {outcome.baseline_update.describe()}"
        )
    if outcome.history_append is not None:
        try:
            append_history(history_path, outcome.history_append)
        except (StateFileError, OSError) as exc:
            outcome.not_written.append(f"history not appended: {exc}")
            return
        outcome.written.append(f"history {shown(history_path)}: 1 run appended")


def human_agreement(results: Sequence[CaseResult]) -> Agreement | None:
    """The judge's agreement with the people who labelled cases (``human_verdict``), or None
    when no judged case carries a label."""
    pairs = [
        (r.verdict == "pass", r.human_verdict == "pass")
        for r in results
        if r.judged and r.human_verdict in ("pass", "fail")
    ]
    return agreement(pairs) if pairs else None


def panel_agreement(results: Sequence[CaseResult]) -> dict[str, Any] | None:
    """How far a judge panel's members agreed with each other (Fleiss' kappa, pairwise
    Cohen's kappa), over the judged cases; None without a panel."""
    from pytest_llmeval.core.verdict import JudgeResult
    from pytest_llmeval.judges.panel import inter_judge_agreement

    rows = [
        JudgeResult(
            score=0.0,
            members=tuple(
                JudgeResult(score=float(m["score"]), passed=m.get("passed"), judge=m.get("judge"))
                for m in r.panel
            ),
        )
        for r in results
        if r.judged and r.panel
    ]
    return inter_judge_agreement(rows).to_dict() if rows else None


def agreement_gate(found: Agreement | None, minimum: float) -> gate.GateResult:
    """``llmeval_min_judge_kappa``: fail when the lower bound of kappa's interval is below it."""
    name = "judge_agreement"
    method = "Cohen's kappa, lower bound of its interval (Fleiss, Cohen & Everitt 1969)"
    if found is None or found.kappa_low is None:
        why = "no judged case has a human_verdict" if found is None else "kappa is undefined"
        return gate.GateResult(name, True, f"skipped: {why}", True, method=method)
    ok = found.kappa_low >= minimum
    return gate.GateResult(
        name,
        ok,
        f"judge vs people on {found.n} labelled cases: kappa {found.kappa:.3f}"
        f" ({100 * found.confidence:.0f}% CI {found.kappa_low:.3f}-{found.kappa_high:.3f});"
        f" lower bound {'>=' if ok else '<'} minimum {minimum:g}",
        method=method,
        numbers={
            "n": found.n,
            "kappa": found.kappa,
            "kappa_low": found.kappa_low,
            "kappa_high": found.kappa_high,
            "minimum": minimum,
        },
    )


def _comparison(results: Sequence[CaseResult], s: RunSettings) -> dict[str, Any] | None:
    if s.compare_sut is None:
        return None
    pairs = [
        (r.nodeid, r.verdict == "pass", r.candidate.verdict == "pass")
        for r in results
        if r.candidate is not None and r.judged and r.candidate.verdict != "error"
    ]
    out = gate.decide_comparison(
        pairs, alpha=s.compare_alpha, noninferiority_margin=s.noninferiority_margin
    )
    out["candidate"] = s.compare_sut
    return out
