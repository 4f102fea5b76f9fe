"""Per-run state (one object in ``config.stash``) and the end-of-run work on the controller."""

from __future__ import annotations

import contextlib
import datetime as _dt
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmeval.core import gate
from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.checks import RuleSettings
from pytest_llmeval.core.verdict import Usage
from pytest_llmeval.engine.cache import JudgeCache
from pytest_llmeval.engine.runner import (
    Evaluation,
    Evaluator,
    EvaluatorConfig,
    RunAhead,
    SutCall,
    response_sha256,
)
from pytest_llmeval.engine.store import (
    Baseline,
    BaselineEntry,
    append_history,
    file_sha256,
    git_commit,
    history_record,
    load_baseline,
    load_history,
    save_baseline,
    updated_baseline,
)
from pytest_llmeval.errors import StateFileError
from pytest_llmeval.judges import import_object, load_judge
from pytest_llmeval.judges.base import Judge
from pytest_llmeval.judges.similarity import SimilarityJudge
from pytest_llmeval.plugin.options import Settings, settings_from_config

if TYPE_CHECKING:
    from pytest_llmeval.plugin.items import CaseItem

STATE_KEY = pytest.StashKey["LLMEvalState"]()
_CANDIDATE = "#candidate"

NO_SUT = (
    "no system under test: define a session-scoped fixture `llmeval_sut` in conftest.py that"
    " returns a callable(case) -> str, or pass --llmeval-sut module:attr"
)


def get_state(config: pytest.Config) -> LLMEvalState:
    return config.stash[STATE_KEY]


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


@dataclass
class EndOfRun:
    """What the controller decided and wrote at the end (read by the terminal summary)."""

    report: dict[str, Any]
    decision: gate.GateDecision
    written: list[str] = field(default_factory=list)
    skipped_writes: list[str] = field(default_factory=list)
    interrupted: bool = False


class LLMEvalState:
    """Everything pytest-llmeval knows during one run, on one process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings: Settings = settings_from_config(config)
        self.worker = is_worker(config)
        self.root = Path(config.rootpath)  # node ids (and baseline keys) are relative to it
        self.rules = RuleSettings(
            min_words=self.settings.min_words,
            max_words=self.settings.max_words,
            default_threshold=self.settings.threshold,
        )
        try:
            self.baseline: Baseline | None = load_baseline(self.settings.baseline_path)
            self.history: list[dict[str, Any]] = load_history(self.settings.history_path)
            self.baseline_sha256 = file_sha256(self.settings.baseline_path)
        except StateFileError as exc:
            raise pytest.UsageError(f"pytest-llmeval: {exc}") from None
        self._cli_sut = self._import_spec(self.settings.sut, "--llmeval-sut")
        self._candidate = self._import_spec(self.settings.compare_sut, "--llmeval-compare-sut")
        self._judge: Judge | None = None
        self._cache: JudgeCache | None = None
        self._evaluator: Evaluator | None = None
        self._run_ahead: RunAhead | None = None
        self._sut: Callable[[Case], Any] | None = None
        self._sut_resolved = False
        self._batch_done = False
        self._run_ahead_choice: bool | None = None
        self._batch_calls: dict[str, list[SutCall]] = {}
        self._batch_results: dict[str, dict[int, Any]] = {}
        self.item_order: dict[str, int] = {}
        self.case_items: list[CaseItem] = []
        # collection facts (local, or merged from workers under xdist)
        self.collected_files: set[str] = set()
        self.collected_keys: set[str] = set()
        self.deselected = 0
        self.worker_problems: list[str] = []
        self.collection_errors = 0
        # per-case records arrive through reports (also from xdist workers)
        self.records: dict[str, dict[str, Any]] = {}
        self.expected_cases = 0
        self.started = _now()  # one timestamp for the report and the history line
        self.end: EndOfRun | None = None

    # -- judge, cache, SUT ------------------------------------------------------------------
    @property
    def judge(self) -> Judge:
        if self._judge is None:
            try:
                self._judge = load_judge(self.settings.judge, self.judge_options())
            except ValueError as exc:
                raise pytest.UsageError(str(exc)) from None
        return self._judge

    def judge_options(self) -> dict[str, Any]:
        s = self.settings
        rpm = s.rpm
        if rpm is not None and s.xdist_workers > 1:
            rpm = rpm / s.xdist_workers  # each worker limits itself: the run stays under rpm
        return {
            "model": s.judge_model,
            "max_tokens": s.judge_max_tokens,
            "timeout": s.judge_timeout,
            "max_retries": s.judge_max_retries,
            "max_retry_wait": s.max_retry_wait,
            "rpm": rpm,
            "prices_file": s.prices_file,
        }

    def check_judge_identity(self) -> None:
        """Refuse a baseline made by another judge (unless it is being rewritten)."""
        if self.baseline is None or self.baseline.judge is None:
            return
        if self.settings.update_baseline or not self.baseline.entries:
            return
        ours = self.judge.identity.to_dict()
        theirs = self.baseline.judge.to_dict()
        if ours != theirs:
            diffs = ", ".join(
                f"{k}: baseline {theirs[k]!r} vs now {ours[k]!r}"
                for k in ours
                if ours[k] != theirs[k]
            )
            raise pytest.UsageError(
                f"pytest-llmeval: {self.settings.baseline_path} was made by another judge"
                f" ({diffs})."
                " Scores of different judges are not comparable. Re-baseline with this judge:"
                " pytest --llmeval-update-baseline (or select the baseline's judge with"
                " --llmeval-judge)."
            )

    @property
    def cache(self) -> JudgeCache | None:
        if self.settings.no_cache:
            return None
        if self._cache is None:
            self._cache = JudgeCache(self.settings.cache_path)
        return self._cache

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = Evaluator(
                self.judge,
                self.cache,
                EvaluatorConfig(
                    rules=self.rules,
                    repeat=self.settings.repeat,
                    sut_timeout=self.settings.sut_timeout,
                    offline=self.settings.offline,
                    use_cache=not self.settings.no_cache,
                ),
            )
        return self._evaluator

    def resolve_sut(self, item: CaseItem) -> Callable[[Case], Any]:
        if not self._sut_resolved:
            sut: Any = self._cli_sut if self._cli_sut is not None else item.funcargs["llmeval_sut"]
            if sut is None or not callable(sut):
                from pytest_llmeval.plugin.items import ConfigFailure

                raise ConfigFailure(
                    NO_SUT if sut is None else f"llmeval_sut is not callable: {sut!r}"
                )
            self._sut = sut
            self._sut_resolved = True
        assert self._sut is not None
        return self._sut

    # -- evaluation -------------------------------------------------------------------------
    def _use_run_ahead(self, sut: Callable[[Case], Any]) -> bool:
        if self._run_ahead_choice is None:
            self._run_ahead_choice = self._choose_run_ahead(sut)
        return self._run_ahead_choice

    def _choose_run_ahead(self, sut: Callable[[Case], Any]) -> bool:
        s = self.settings
        if s.concurrency <= 1:
            return False
        # the built-in judge is fast and offline: only a slow SUT gains from running ahead
        builtin = isinstance(self.judge, SimilarityJudge)
        return not builtin or inspect.iscoroutinefunction(sut) or s.sut_concurrency > 1

    def _import_spec(self, spec: str | None, option: str) -> Callable[[Case], Any] | None:
        """Import ``module:attr`` now, so a typo is a usage error, not an error per case."""
        if spec is None:
            return None
        import sys

        invocation = str(self.config.invocation_params.dir)
        if invocation not in sys.path:  # as `python -m pytest` would: modules beside you import
            sys.path.append(invocation)
        try:
            obj = import_object(spec, option)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        if not callable(obj):
            raise pytest.UsageError(f"{option} {spec!r}: {obj!r} is not callable")
        return obj  # type: ignore[no-any-return]

    def candidate_sut(self) -> Callable[[Case], Any] | None:
        """The ``--llmeval-compare-sut`` candidate."""
        return self._candidate

    def warm_up(self) -> None:
        """Import the Claude judge's SDK in the background while pytest collects (over a
        second for ``anthropic``) instead of on the first judgement."""
        if self.settings.offline or not type(self.judge).__module__.endswith("judges.anthropic"):
            return
        import importlib
        import threading

        threading.Thread(target=importlib.import_module, args=("anthropic",), daemon=True).start()

    def check_batch(self) -> None:
        """``--llmeval-batch`` needs a judge with a batch API and one process."""
        if not self.settings.batch:
            return
        if not callable(getattr(self.judge, "batch_score", None)):
            raise pytest.UsageError(
                f"--llmeval-batch: the judge {self.judge.identity.label()} has no batch API;"
                " use --llmeval-judge anthropic"
            )
        if self.settings.xdist_workers:
            raise pytest.UsageError("--llmeval-batch sends one batch per run: do not use -n")
        if self.settings.compare_sut:
            raise pytest.UsageError("--llmeval-batch cannot be combined with compare mode yet")

    def _run_batch(self, sut: Callable[[Case], Any]) -> None:
        """Call the SUT for every case, then judge all cache misses in Message Batches."""
        from pytest_llmeval.engine.cache import cache_key

        self._batch_done = True
        evaluator = self.evaluator
        jobs: list[tuple[str, Case, str]] = []
        for item in self.case_items:
            calls = [evaluator.call_sut(item.case, sut) for _ in range(self.settings.repeat)]
            self._batch_calls[item.nodeid] = calls
            for index, call in enumerate(calls):
                if call.mode != "ok":
                    continue
                key = cache_key(self.judge.identity, item.case, call.text, index)
                if self.cache is not None and self.cache.get(key) is not None:
                    continue
                jobs.append((f"{item.nodeid}\x00{index}", item.case, call.text))
        if not jobs:
            return
        if self.settings.offline:
            return  # every miss becomes an ERROR that says so, item by item
        self._progress(f"llmeval: sending {len(jobs)} judgements as Message Batches")
        results = self.judge.batch_score(jobs, progress=self._progress)  # type: ignore[attr-defined]
        for job_id, case, response in jobs:
            nodeid, _, index_text = job_id.partition("\x00")
            index = int(index_text)
            result = results.get(job_id)
            if result is None:
                from pytest_llmeval.errors import JudgeError

                result = JudgeError("the batch returned no result for this judgement")
            self._batch_results.setdefault(nodeid, {})[index] = result
            if self.cache is not None and not isinstance(result, Exception):
                self.cache.put(cache_key(self.judge.identity, case, response, index), result)

    def _progress(self, message: str) -> None:
        """A progress line while a test is running (output capture suspended for it)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.config.get_verbosity() < 0:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        suspended = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with suspended:
            reporter.ensure_newline()
            reporter.write_line(message)

    def evaluate_item(self, item: CaseItem) -> tuple[Evaluation, Evaluation | None]:
        """Evaluate the case with the SUT (and the compare-mode candidate, if any)."""
        sut = self.resolve_sut(item)
        candidate = self.candidate_sut()
        if self.settings.batch:
            if not self._batch_done:
                self._run_batch(sut)
            calls = self._batch_calls.pop(item.nodeid, None)
            if calls is not None:
                prejudged = self._batch_results.pop(item.nodeid, None)
                return self.evaluator.evaluate(
                    item.case, None, calls=calls, prejudged=prejudged
                ), None
        if not self._use_run_ahead(sut):
            main = self.evaluator.evaluate(item.case, sut)
            other = self.evaluator.evaluate(item.case, candidate) if candidate else None
            return main, other
        if self._run_ahead is None:
            self._run_ahead = RunAhead(
                self.evaluator, self.settings.concurrency, self.settings.sut_concurrency
            )
        # the next `concurrency` cases are judged; the `concurrency` after them may already
        # call the SUT, so their answers are ready when a judging slot frees
        size = self.settings.concurrency
        for position, upcoming in enumerate(self._window(item, 2 * size)):
            judge = position < size
            self._run_ahead.submit(upcoming.nodeid, upcoming.case, sut, judge=judge)
            if candidate is not None:
                key = upcoming.nodeid + _CANDIDATE
                self._run_ahead.submit(key, upcoming.case, candidate, judge=judge)
        main = self._run_ahead.result(item.nodeid)
        other = self._run_ahead.result(item.nodeid + _CANDIDATE) if candidate else None
        return main, other

    def _window(self, item: CaseItem, size: int) -> list[CaseItem]:
        """This item and the next case items this process will run, ``size`` at most."""
        from pytest_llmeval.plugin.items import CaseItem

        if self.worker:  # xdist decides what a worker runs next: ask it
            from pytest_llmeval.plugin.xdist import upcoming_items

            ahead = upcoming_items(self.config, size - 1)
            return [item, *(i for i in ahead if isinstance(i, CaseItem))]
        start = self.item_order.get(item.nodeid)
        return [item] if start is None else self.case_items[start : start + size]

    def close(self) -> None:
        if self._run_ahead is not None:
            self._run_ahead.close()
            self._run_ahead = None
        if self._cache is not None:
            self._cache.close()

    # -- per-case records -------------------------------------------------------------------
    def baseline_entry(self, key: str) -> BaselineEntry | None:
        if self.baseline is None:
            return None
        return self.baseline.entries.get(key)

    def record_for(
        self, item: CaseItem, ev: Evaluation, candidate: Evaluation | None = None
    ) -> dict[str, Any]:
        record = self.build_record(item.nodeid, item.case, ev)
        if candidate is not None:
            other = self.build_record(item.nodeid, item.case, candidate)
            record["candidate"] = {
                k: other[k]
                for k in ("verdict", "score", "response", "failure_modes", "reasoning", "error")
            }
        return record

    def build_record(self, key: str, case: Case, ev: Evaluation) -> dict[str, Any]:
        """The plain-builtins record of one case (it rides on the report to the controller)."""
        s = self.settings
        base = self.baseline_entry(key)
        samples = len(ev.samples)
        passes = ev.passes
        if ev.error is not None:
            verdict = "error"
        elif (
            samples
            and passes / samples >= s.repeat_pass_fraction
            and (s.repeat > 1 or passes == samples)
        ):
            verdict = "pass"
        else:
            verdict = "fail"
        view = (
            gate.BaselineView(base.passed, base.passes, base.samples) if base is not None else None
        )
        cls = gate.classify(
            verdict, view, passes=passes, samples=samples, flaky_alpha=s.flaky_alpha
        )
        first = ev.samples[0] if ev.samples else None
        scores = [smp.verdict.score for smp in ev.samples]
        modes: list[str] = []
        checks: list[str] = []
        for smp in ev.samples:
            modes.extend(m for m in smp.verdict.failure_modes if m not in modes)
            checks.extend(c for c in smp.verdict.failed_checks if c not in checks)
        judge = self.judge.identity
        return {
            "key": key,
            "id": case.id,
            "nodeid": key,
            "file": key.split("::")[0],
            "line": case.line,
            "question": case.question,
            "messages": [{"role": m.role, "content": m.content} for m in case.messages]
            if case.messages is not None
            else None,
            "ground_truth": case.ground_truth,
            "rubric": case.rubric,
            "tags": list(case.tags),
            "difficulty": case.difficulty,
            "verdict": verdict,
            "outcome": cls.outcome,
            "outcome_detail": cls.detail,
            "score": (sum(scores) / len(scores)) if scores and verdict != "error" else None,
            "threshold": first.verdict.threshold
            if first
            else (case.threshold if case.threshold is not None else s.threshold),
            "failure_modes": modes,
            "failed_checks": checks,
            "reasoning": first.verdict.reasoning if first else "",
            "error": ev.error,
            "checks_only": bool(first and first.verdict.checks_only),
            "baseline": None
            if base is None
            else {
                "verdict": base.verdict,
                "score": base.score,
                "passes": base.passes,
                "samples": base.samples,
            },
            "samples": samples,
            "passes": passes,
            "sample_verdicts": [smp.verdict.passed for smp in ev.samples],
            "judge": judge.label(),
            "response": first.response if first else "",
            "response_sha256": response_sha256(first.response) if first else "",
            "judge_calls": ev.judge_calls,
            "cache_hits": ev.cache_hits,
            "usage": ev.usage.to_dict(),
            "sut_usage": ev.sut_usage.to_dict() if ev.sut_usage is not None else None,
        }

    def xfail_reason(self, record: dict[str, Any]) -> str:
        if record["outcome"] == "flaky":
            return f"flaky: {record['outcome_detail']}"
        score = record["score"]
        shown = f"score {score:.2f} < {record['threshold']:.2f}" if score is not None else ""
        modes = ", ".join(record["failure_modes"])
        return f"known failure (fails in the baseline too): {shown} {modes}".strip()

    def note_collected_file(self, rel: str) -> None:
        self.collected_files.add(rel)

    def set_items(self, items: Sequence[pytest.Item]) -> None:
        from pytest_llmeval.plugin.items import CaseItem

        self.case_items = [i for i in items if isinstance(i, CaseItem)]
        self.expected_cases = len(self.case_items)
        self.item_order = {item.nodeid: n for n, item in enumerate(self.case_items)}

    def add_record(self, record: dict[str, Any]) -> None:
        self.records[record["key"]] = record

    # -- end of run (controller only) -------------------------------------------------------
    def narrowed_reasons(self, session: pytest.Session) -> list[str]:
        reasons: list[str] = []
        if self.deselected:
            reasons.append(f"{self.deselected} items deselected (-k/-m/--lf)")
        if any("::" in str(a) for a in self.config.args):
            reasons.append("node ids were given")
        if session.shouldstop or session.shouldfail:
            reasons.append("the run stopped early (-x/--maxfail)")
        if self.settings.shard is not None:
            reasons.append(f"shard {self.settings.shard[0]}/{self.settings.shard[1]}")
        if self.baseline is not None:
            missing = sorted(
                {
                    k.split("::")[0]
                    for k in self.baseline.entries
                    if k.split("::")[0] not in self.collected_files
                    and (self.root / k.split("::")[0]).exists()
                    and k.split("::")[0].endswith(".jsonl")
                }
            )
            if missing:
                reasons.append(f"case files not collected: {', '.join(missing[:3])}")
        return reasons

    def unused_entries(self, full_run: bool) -> list[str]:
        """Baseline entries whose case is gone (only a full run can tell)."""
        if self.baseline is None or not full_run:
            return []
        out = []
        for key in self.baseline.entries:
            path = key.split("::")[0]
            if key in self.collected_keys:
                continue
            if path in self.collected_files or not (self.root / path).exists():
                out.append(key)
        return sorted(out)

    def finish(self, session: pytest.Session, exitstatus: int) -> None:
        from pytest_llmeval.reports.model import build_report, report_settings

        s = self.settings
        interrupted = exitstatus in (
            pytest.ExitCode.INTERRUPTED,
            pytest.ExitCode.INTERNAL_ERROR,
            pytest.ExitCode.USAGE_ERROR,
        )
        if not self.records and not self.collected_files:
            return
        reasons = self.narrowed_reasons(session)
        full_run = not reasons and not interrupted
        judge = self.judge.identity
        records = [self.records[k] for k in sorted(self.records)]
        passed = sum(1 for r in records if r["verdict"] == "pass")
        failed = sum(1 for r in records if r["verdict"] == "fail")
        regressions = [r["key"] for r in records if r["outcome"] == "regression"]
        history = gate.history_for_judge(self.history, judge.to_dict())
        decision = gate.decide(
            passed=passed,
            failed=failed,
            regressions=regressions,
            history=history,
            settings=gate.GateSettings(
                max_regressions=s.max_regressions,
                min_pass_rate=s.min_pass_rate,
                std_threshold=s.std_threshold,
                min_history=s.min_history,
                history_binomial=s.history_binomial,
                history_alpha=s.history_alpha,
            ),
            full_run=full_run,
            update_baseline=s.update_baseline,
        )
        # a shard collects every case before taking its share, so it can tell which baseline
        # entries are gone; `llmeval gate` needs that list to update a merged baseline
        shard_only = bool(reasons) and all(r.startswith("shard ") for r in reasons)
        unused = self.unused_entries(full_run or (shard_only and not interrupted))
        comparison = None
        if s.compare_sut is not None:
            pairs = [
                (r["key"], r["verdict"] == "pass", r["candidate"]["verdict"] == "pass")
                for r in records
                if r.get("candidate")
                and r["verdict"] != "error"
                and r["candidate"]["verdict"] != "error"
            ]
            comparison = gate.decide_comparison(
                pairs, alpha=s.compare_alpha, noninferiority_margin=s.noninferiority_margin
            )
            comparison["candidate"] = s.compare_sut
        report = build_report(
            records=records,
            decision=decision,
            judge=judge,
            settings=report_settings(s, self.baseline_sha256),
            unused=unused,
            history=self.history,
            full_run=full_run,
            narrowed=reasons,
            cache_problems=self.cache_problems(),
            comparison=comparison,
            created=self.started,
            cost=self._cost_estimator(),
            collected_keys=sorted(self.collected_keys) if s.shard else None,
            flaky_history=gate.flaky_from_history(history, set(self.records)),
        )
        self.end = EndOfRun(report=report, decision=decision, interrupted=interrupted)
        if interrupted:
            self.end.skipped_writes.append("the run was interrupted: nothing written")
        elif self.collection_errors:
            self.end.skipped_writes.append(
                f"baseline and history not written: {self.collection_errors} case file(s)"
                " failed to collect"
            )
        else:
            self._write_state(records, unused, full_run, reasons, report)
        self._write_reports(report)
        if not decision.passed and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def cache_problems(self) -> list[str]:
        own = list(self._cache.problems) if self._cache else []
        return own + [p for p in self.worker_problems if p not in own]

    def _cost_estimator(self) -> Callable[[Usage], float | None] | None:
        estimate = getattr(self.judge, "estimate_cost", None)
        if not callable(estimate):
            return None  # a custom judge's cost is unknown, not zero
        if self.settings.batch:  # Message Batches are billed at the batch discount
            return lambda usage: estimate(usage, batch=True)
        return estimate  # type: ignore[no-any-return]

    def _write_state(
        self,
        records: list[dict[str, Any]],
        unused: list[str],
        full_run: bool,
        reasons: list[str],
        report: dict[str, Any],
    ) -> None:
        s = self.settings
        assert self.end is not None
        if s.update_baseline:
            update = updated_baseline(
                self.baseline, records, self.judge.identity, unused=unused, drop_unused=full_run
            )
            save_baseline(s.baseline_path, update.baseline, s.threshold)
            self.end.written.append(f"baseline {self._rel(s.baseline_path)}: {update.describe()}")
        if s.update_baseline or s.record_history:
            if not full_run:
                self.end.skipped_writes.append(
                    "history not appended: the run was narrowed (" + "; ".join(reasons) + ")"
                )
                return
            if report["summary"]["pass_rate"] is None:
                self.end.skipped_writes.append("history not appended: no judged cases")
                return
            line = history_record(
                report["summary"], records, self.judge.identity, git_commit(self.root), self.started
            )
            append_history(s.history_path, line)
            self.end.written.append(f"history {self._rel(s.history_path)}: 1 run appended")

    def _write_reports(self, report: dict[str, Any]) -> None:
        from pytest_llmeval.reports.model import write_report, write_step_summary

        assert self.end is not None
        for path in self.settings.reports:
            target = path if path.is_absolute() else Path(self.config.invocation_params.dir) / path
            try:
                write_report(target, report)
            except (OSError, RuntimeError, ValueError) as exc:
                self.end.skipped_writes.append(f"report {path} not written: {exc}")
            else:
                self.end.written.append(f"report {path}")
        step = os.environ.get("GITHUB_STEP_SUMMARY")
        if step and self.settings.step_summary:
            try:
                write_step_summary(Path(step), report)
            except (OSError, RuntimeError, ValueError) as exc:
                self.end.skipped_writes.append(f"GITHUB_STEP_SUMMARY not written: {exc}")

    def _rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(Path(self.config.invocation_params.dir)))
        except ValueError:
            return str(path)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
