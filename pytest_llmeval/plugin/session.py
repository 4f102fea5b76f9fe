"""The per-run object (one in ``config.stash``): resources, scheduling, the collection ledger,
the case results, and the end of the run on the controller.

It stays inert until a case file is collected, a case result arrives or an llmeval option is
named: a pytest run without cases builds no judge, reads no state and prints nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_llmeval.core import gate
from pytest_llmeval.core.baseline import BaselineEntry
from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.evaluation import Evaluation
from pytest_llmeval.core.result import (
    CaseResult,
    Classified,
    VerdictName,
    build_case_result,
    scrubbed,
)
from pytest_llmeval.core.secrets import scrubber
from pytest_llmeval.engine.finish import RunInputs, RunOutcome, finish_run, write_state
from pytest_llmeval.engine.store import git_commit
from pytest_llmeval.plugin.ledger import CollectionLedger
from pytest_llmeval.plugin.options import Settings, settings_from_config
from pytest_llmeval.plugin.resources import RunResources
from pytest_llmeval.plugin.scheduler import Scheduler

if TYPE_CHECKING:
    from pytest_llmeval.plugin.items import CaseItem

STATE_KEY = pytest.StashKey["LLMEvalRun"]()


def get_state(config: pytest.Config) -> LLMEvalRun:
    return config.stash[STATE_KEY]


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@dataclasses.dataclass
class EndOfRun:
    """What the controller decided and wrote (read by the terminal summary)."""

    outcome: RunOutcome | None
    interrupted: bool = False
    not_written: list[str] = dataclasses.field(default_factory=list)


class LLMEvalRun:
    """Everything pytest-llmeval knows during one run, on one process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings: Settings = settings_from_config(config)
        self.worker = is_worker(config)
        self.resources = RunResources(config, self.settings)
        self.scheduler = Scheduler(self.resources, worker=self.worker)
        self.ledger = CollectionLedger()
        self.results: dict[str, CaseResult] = {}
        # in one process, a case's result from its report's making to its logging (on an xdist
        # worker it travels on the report instead, as ``report.llmeval``)
        self.handoff: dict[str, CaseResult] = {}
        self.active = self.settings.named_on_command_line
        self.started = _now()  # one timestamp for the report and the history line
        self.end: EndOfRun | None = None
        self._context: gate.GateContext | None = None
        self._run_keys: list[str] = []
        self._activated = False
        self.junit_warned = False

    # -- activation --------------------------------------------------------------------------
    def activate(self) -> None:
        """The run has cases: check what must hold before any case runs."""
        self.active = True
        if self._activated:
            return
        self._activated = True
        self.resources.import_suts()
        self.resources.check_judge_identity()
        self.resources.check_batch()

    # -- collection --------------------------------------------------------------------------
    def note_collected(self, rel: str, keys: Sequence[str], cases: Sequence[Case]) -> None:
        """A case file was collected (``keys[i]`` is the node id of ``cases[i]``): its cases
        enter the ledger, and the run is on."""
        self.active = True
        self.ledger.note_file(rel, keys)
        self.ledger.unscoreable.update(
            k for k, c in zip(keys, cases, strict=True) if c.ground_truth is None and not c.checks
        )
        if cases:
            self.resources.warm_up_judge()

    def evaluate(self, item: CaseItem) -> tuple[Evaluation, Evaluation | None]:
        return self.scheduler.evaluate(item)

    def accepts_failures(self) -> bool:
        """An update run accepts every verdict into the baseline: no case fails it."""
        return self.settings.update_baseline

    def set_items(self, items: Sequence[CaseItem]) -> None:
        self.scheduler.set_items(items)
        self.ledger.expected_cases = len(items)
        self._run_keys = [i.nodeid for i in items]

    def set_run_keys(self, keys: Sequence[str]) -> None:
        """On the xdist controller: the case items the workers will run."""
        self._run_keys = list(keys)
        self.ledger.expected_cases = len(keys)

    @property
    def context(self) -> gate.GateContext:
        """The gate's view of the committed state, built once, before any case runs."""
        if self._context is None:
            # every case collected from the case files, before -k/-m deselection: the same
            # on every xdist worker and on the controller, so each decides alike
            keys = sorted(self.ledger.collected_keys) or self._run_keys
            self._context = self.resources.gate_context(keys)
        return self._context

    # -- case results ------------------------------------------------------------------------
    def result_for(
        self, key: str, case: Case, ev: Evaluation, candidate: Evaluation | None = None
    ) -> CaseResult:
        """The case's result (the gate classifies it against its baseline and history)."""
        ctx = self.context

        def classify(
            verdict: VerdictName, entry: BaselineEntry | None, passes: int, samples: int
        ) -> Classified:
            view = (
                None
                if entry is None
                else gate.BaselineView(entry.passed, entry.passes, entry.samples)
            )
            cls = gate.classify(ctx, key, verdict, view, passes=passes, samples=samples)
            evidence = getattr(cls, "evidence", None)
            return Classified(
                cls.outcome, cls.detail, None if evidence is None else evidence.to_dict()
            )

        result = build_case_result(
            nodeid=key,
            case=case,
            evaluation=ev,
            baseline=self.resources.baseline_entry(key),
            judge=self.resources.judge.identity,
            settings=self.resources.result_settings,
            classify=classify,
            candidate=candidate,
        )
        return scrubbed(result, scrubber())

    def add_result(self, result: CaseResult) -> None:
        """A result reached the controller. A rerun (pytest-rerunfailures) of the same case
        adds its judge calls and usage, and counts the attempt."""
        self.active = True
        old = self.results.get(result.nodeid)
        if old is not None:
            result = dataclasses.replace(
                result,
                attempts=old.attempts + 1,
                judge_calls=old.judge_calls + result.judge_calls,
                cache_hits=old.cache_hits + result.cache_hits,
                usage=old.usage + result.usage,
            )
        self.results[result.nodeid] = result

    def xfail_reason(self, result: CaseResult) -> str:
        if result.outcome == "flaky":
            return f"flaky: {result.outcome_detail}"
        shown = (
            f"score {result.score:.2f} < {result.threshold:.2f}" if result.score is not None else ""
        )
        modes = ", ".join(result.failure_modes)
        return f"known failure (fails in the baseline too): {shown} {modes}".strip()

    # -- end of run (controller only) --------------------------------------------------------
    def finish(self, session: pytest.Session, exitstatus: int) -> None:
        s = self.settings
        res = self.resources
        interrupted = exitstatus in (
            pytest.ExitCode.INTERRUPTED,
            pytest.ExitCode.INTERNAL_ERROR,
            pytest.ExitCode.USAGE_ERROR,
        )
        if interrupted and self.active and self.ledger.expected_cases:
            self.end = EndOfRun(None, interrupted=True)  # cases were under way: say so
            return
        if not self.results:
            return  # no case ran: nothing to say, nothing to write
        if interrupted:
            self.end = EndOfRun(None, interrupted=True)
            return
        baseline_keys = list(res.baseline.entries) if res.baseline else []
        reasons = self.ledger.narrowed_reasons(
            self.results,
            baseline_keys=baseline_keys,
            root=res.root,
            shard=f"{s.shard[0]}/{s.shard[1]}" if s.shard else None,
            stopped_early=bool(session.shouldstop or session.shouldfail),
        )
        full_run = not reasons and not interrupted
        # a shard collects every case before taking its share, so it can tell which baseline
        # entries are gone; `llmeval gate` needs that list to update a merged baseline
        shard_only = bool(reasons) and all(r.startswith("shard ") for r in reasons)
        unused = (
            self.ledger.unused_entries(baseline_keys, res.root)
            if (full_run or (shard_only and not interrupted))
            else []
        )
        outcome = finish_run(
            RunInputs(
                results=list(self.results.values()),
                judge=res.judge.identity,
                settings=res.run_settings(),
                baseline=res.baseline,
                baseline_sha256=res.baseline_sha256,
                history=res.history,
                context=self.context,
                full_run=full_run,
                narrowed=reasons,
                unused=unused,
                cache_problems=self.cache_problems(),
                created=self.started,
                commit=git_commit(res.root)
                if (s.update_baseline or s.record_history) and full_run
                else None,
                cost=res.cost_estimator(),
                collected_keys=sorted(self.ledger.collected_keys) if s.shard else None,
                interrupted=interrupted,
                collection_errors=self.ledger.collection_errors,
            )
        )
        self.end = EndOfRun(outcome, interrupted=interrupted)
        write_state(
            outcome,
            baseline_path=s.baseline_path,
            history_path=s.history_path,
            default_threshold=s.threshold,
            baseline_sha256=res.baseline_sha256,
            shown=self._rel,
        )
        self._write_reports(outcome)
        if not outcome.verdict.passed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def cache_problems(self) -> list[str]:
        own = self.resources.cache_problems()
        return own + [p for p in self.ledger.worker_problems if p not in own]

    def _write_reports(self, outcome: RunOutcome) -> None:
        from pytest_llmeval.engine.outputs import write_report, write_step_summary

        for path in self.settings.reports:
            target = path if path.is_absolute() else Path(self.config.invocation_params.dir) / path
            try:
                write_report(target, outcome.report)
            except (OSError, RuntimeError, ValueError) as exc:
                outcome.not_written.append(f"report {path} not written: {exc}")
            else:
                outcome.written.append(f"report {path}")
        step = os.environ.get("GITHUB_STEP_SUMMARY")
        if step and self.settings.step_summary:
            try:
                write_step_summary(Path(step), outcome.report)
            except (OSError, RuntimeError, ValueError) as exc:
                outcome.not_written.append(f"GITHUB_STEP_SUMMARY not written: {exc}")

    def shown_path(self, path: Path) -> str:
        """``path`` as the user would type it: relative to where pytest was started."""
        return self._rel(path)

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path(self.config.invocation_params.dir)))
        except ValueError:
            return str(path)

    def close(self) -> None:
        self.scheduler.close()
        self.resources.close()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
