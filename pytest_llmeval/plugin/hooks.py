"""pytest hooks. Each hook decides little and delegates to the per-run object.

Until a case file is collected, a case result arrives or an ``--llmeval-*`` option is named,
every hook returns at once: the plugin costs nothing in a run without cases.
"""

from __future__ import annotations

import fnmatch
import gc
import hashlib
import warnings
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.core import frozen
from pytest_llmeval.core.result import FAILING_OUTCOMES, XFAIL_OUTCOMES, CaseResult, error_result
from pytest_llmeval.plugin import options
from pytest_llmeval.plugin.fixtures import RECORDS_KEY
from pytest_llmeval.plugin.items import CaseFile, CaseItem, ConfigFailure, JudgeFailure
from pytest_llmeval.plugin.session import STATE_KEY, LLMEvalRun, get_state

_SHARD_DESELECT = pytest.StashKey[bool]()
_GC_FROZEN = pytest.StashKey[int]()  # the number of this run's freeze (core.frozen)


def _freeze_collected(config: pytest.Config) -> None:
    """Move what collection built (items, cases, the baseline, pytest's own nodes) out of the
    garbage collector's reach until the session ends (:func:`gc.freeze`). These objects live
    all run anyway; without this every full collection walks them again, about 0.15 s each at
    10,000 cases, 8-9 times in a run (the largest part of a cached rerun's time over plain
    pytest). Nothing is collected less: the objects are only skipped, and
    :func:`_unfreeze_collected` hands them back when the run ends. A process that froze objects
    itself is left alone."""
    if gc.isenabled() and gc.get_freeze_count() == 0:
        config.stash[_GC_FROZEN] = frozen.freeze()


def _unfreeze_collected(config: pytest.Config) -> None:
    """Hand back what :func:`_freeze_collected` froze, unless something froze since (the Claude
    judge freezes the SDK's objects after importing it): then all stays frozen, as if that
    freeze came first."""
    number = config.stash.get(_GC_FROZEN, 0)
    if number:
        config.stash[_GC_FROZEN] = 0
        frozen.unfreeze_if_last(number)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "llmeval: an evaluation case (added by pytest-llmeval to every case item)"
    )
    state = LLMEvalRun(config)
    config.stash[STATE_KEY] = state
    if state.active:  # an llmeval option was named: check what can be checked now
        state.activate()
    if not state.worker:
        config.pluginmanager.register(ResultCollector(state, config), "llmeval-results")
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_llmeval.plugin.xdist import XdistHooks

        config.pluginmanager.register(XdistHooks(state), "llmeval-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    _unfreeze_collected(config)
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        state.close()


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> str | None:
    """One line after "collected N items": which judge, baseline and history this run uses."""
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.worker or not state.active:
        return None
    if not any(isinstance(i, CaseItem) for i in items):
        return None
    res = state.resources
    base = res.baseline
    n_base = len(base.entries) if base else 0
    judge = res.judge.identity.label()
    if state.settings.judge == "auto":
        judge += " (auto: " + (
            "ANTHROPIC_API_KEY is set)" if "anthropic" in judge else "no ANTHROPIC_API_KEY)"
        )
    runs = len(res.history)
    return (
        f"llmeval: judge {judge}, baseline {n_base} case{'s' if n_base != 1 else ''},"
        f" history {runs} run{'s' if runs != 1 else ''},"
        f" state in {state.shown_path(state.settings.state_dir)}"
    )


def _matches(path: Path, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if "/" in pattern:
            if path.match(pattern):
                return True
        elif fnmatch.fnmatch(path.name, pattern):
            return True
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix != ".jsonl":
        return None
    state = get_state(parent.config)
    if _matches(file_path, state.settings.files):
        collector: CaseFile = CaseFile.from_parent(parent, path=file_path, run=state)
        return collector
    return None


def _shard_of(nodeid: str) -> str:
    return hashlib.sha256(nodeid.encode("utf-8")).hexdigest()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = get_state(config)
    if not state.active:
        return
    shard = state.settings.shard
    if shard is None:
        return
    cases = [i for i in items if isinstance(i, CaseItem)]
    k, n = shard
    order = sorted(cases, key=lambda i: _shard_of(i.nodeid))
    keep = {i.nodeid for pos, i in enumerate(order) if pos % n == k - 1}
    drop = [i for i in cases if i.nodeid not in keep]
    items[:] = [i for i in items if not isinstance(i, CaseItem) or i.nodeid in keep]
    if drop:
        config.stash[_SHARD_DESELECT] = True
        try:
            config.hook.pytest_deselected(items=drop)
        finally:
            config.stash[_SHARD_DESELECT] = False


def pytest_collection_finish(session: pytest.Session) -> None:
    state = get_state(session.config)
    if not state.active:
        return
    cases = [i for i in session.items if isinstance(i, CaseItem)]
    state.set_items(cases)
    if cases or state.settings.named_on_command_line:
        state.activate()
    if cases:
        _freeze_collected(session.config)
    reference_based = getattr(state.resources.judge, "checks_only_without_ground_truth", False)
    if state.ledger.unscoreable and reference_based and not state.worker:
        n = len(state.ledger.unscoreable)
        first = sorted(state.ledger.unscoreable)[0]
        warnings.warn(
            pytest.PytestWarning(
                f"pytest-llmeval: {n} case{'s have' if n != 1 else ' has'} neither ground_truth"
                f" nor checks (e.g. {first}): judged by checks alone, such a case cannot fail;"
                " give it a ground_truth or checks"
            ),
            stacklevel=1,
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, (JudgeFailure, ConfigFailure)):
        kind = "judge error" if isinstance(excinfo.value, JudgeFailure) else "llmeval"
        report.longrepr = f"{kind}: {excinfo.value}"
    if isinstance(item, CaseItem):
        state = get_state(item.config)
        result = item.llmeval_result
        if result is None and report.failed and call.when in ("setup", "call"):
            # stopped before a verdict (a timeout plugin, a crash in setup): an ERROR in every
            # count, never a silent gap
            why = str(excinfo.value).strip().splitlines()[0] if excinfo else "no verdict"
            result = error_result(
                nodeid=item.nodeid,
                case=item.case,
                judge=state.resources.judge.identity,
                settings=state.resources.result_settings,
                why=f"the case produced no verdict: {why}",
            )
            item.llmeval_result = result
        if result is not None and (call.when == "call" or (call.when == "setup" and report.failed)):
            if state.worker:  # the report travels to the xdist controller: its wire format
                report.llmeval = result.to_dict()  # type: ignore[attr-defined]
            else:  # in this process: the logreport hook takes the object itself
                state.handoff[report.nodeid] = result
            if state.settings.junit:
                _junit_properties(item, report, result)
            item.llmeval_result = None  # a rerun plugin runs the item again: a new result
    elif call.when == "call":
        recorded = item.stash.get(RECORDS_KEY, None)
        if recorded:
            _apply_recorded(item, report, recorded)
    return report


def _junit_properties(item: pytest.Item, report: pytest.TestReport, r: CaseResult) -> None:
    """Case properties for --junitxml. pytest's junit-10.xsd (the default xunit2 family) has no
    per-testcase properties, so, as pytest's own ``record_property`` does, they are written
    under ``junit_family = xunit1`` (or legacy) and the run warns once otherwise."""
    family = item.config.getini("junit_family")
    if family not in ("xunit1", "legacy"):
        state = get_state(item.config)
        if not state.junit_warned:
            state.junit_warned = True
            warnings.warn(
                pytest.PytestWarning(
                    "pytest-llmeval: case properties (llmeval_verdict, llmeval_score, ...) are"
                    f" not written to --junitxml under junit_family={family}, whose schema has"
                    " no per-testcase properties; set junit_family = xunit1 to get them"
                ),
                stacklevel=1,
            )
        return
    props = [
        ("llmeval_case_id", r.id),
        ("llmeval_verdict", r.verdict),
        ("llmeval_outcome", r.outcome),
        ("llmeval_score", "" if r.score is None else f"{r.score:.6f}"),
        ("llmeval_threshold", f"{r.threshold:.6f}"),
        ("llmeval_baseline_verdict", r.baseline.verdict if r.baseline else "none"),
        ("llmeval_failure_modes", ",".join(r.failure_modes)),
        ("llmeval_judge", r.judge),
    ]
    existing = {name for name, _ in item.user_properties}
    new = [p for p in props if p[0] not in existing]
    item.user_properties.extend(new)
    report.user_properties.extend(new)


def _apply_recorded(
    item: pytest.Item, report: pytest.TestReport, results: list[CaseResult]
) -> None:
    """A Python test that used ``llmeval_record`` takes the outcome of its recorded cases."""
    from pytest_llmeval.reports.terminal import render_case_failure

    report.llmeval_records = [r.to_dict() for r in results]  # type: ignore[attr-defined]
    if not report.passed:
        return
    failing = [r for r in results if r.outcome in FAILING_OUTCOMES]
    xfail = [r for r in results if r.outcome in XFAIL_OUTCOMES]
    state = get_state(item.config)
    if failing:
        report.outcome = "failed"
        report.longrepr = "\n\n".join(render_case_failure(r) for r in failing)
    elif xfail:
        report.outcome = "skipped"
        report.wasxfail = "; ".join(state.xfail_reason(r) for r in xfail)


class ResultCollector:
    """Controller-side: gathers case results from test reports (also from xdist workers),
    counts case files that failed to collect, and shows progress while judging is slow."""

    SLOW_S = 5.0  # no progress line unless judging has kept pytest's output still this long

    def __init__(self, state: LLMEvalRun, config: pytest.Config) -> None:
        self.state = state
        self.config = config
        self.done = 0
        self.calls = 0
        self.hits = 0
        self.last_line: float | None = None
        self.due = False

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed and str(report.nodeid).endswith(".jsonl"):
            self.state.ledger.collection_errors += 1

    @pytest.hookimpl(trylast=True)  # after the terminal reporter wrote this item's letter
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        raw = getattr(report, "llmeval", None)
        if raw is not None:  # from an xdist worker
            del report.llmeval  # read: pytest keeps every report; the run keeps the result
            result: CaseResult | None = CaseResult.from_dict(raw)
        else:
            result = self.state.handoff.pop(report.nodeid, None)
        if result is not None:
            self.state.add_result(result)
            self._progress(result)
        for r in getattr(report, "llmeval_records", None) or ():
            self.state.add_result(CaseResult.from_dict(r))

    def _progress(self, result: CaseResult) -> None:
        import time

        self.done += 1
        self.calls += result.judge_calls
        self.hits += result.cache_hits
        now = time.monotonic()
        if self.last_line is None:
            self.last_line = now
            return
        total = self.state.ledger.expected_cases
        if not total or self.config.get_verbosity() < 0 or self.done >= total:
            return
        if now - self.last_line >= self.SLOW_S:
            self.due = True

    def _progress_text(self) -> str:
        total = self.state.ledger.expected_cases
        return (
            f"llmeval: {self.done}/{total} cases judged ({self.calls} judge calls,"
            f" {self.hits} cache hits, {total - self.done} pending)"
        )

    def _reporter(self) -> Any:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        return reporter if getattr(reporter, "_tw", None) is not None else None

    # A due progress line goes out only where pytest's own row of letters is complete (its
    # "[ NN%]" column written), so pytest's progress output stays intact: when a row wraps at
    # the terminal's edge, and when the next case file is about to start its row.
    @pytest.hookimpl(trylast=True)  # after pytest wrote the item's letter
    def pytest_runtest_logfinish(self) -> None:
        reporter = self._reporter() if self.due else None
        if reporter is None or reporter._tw.width_of_current_line != 0:
            return
        self._mark_written()
        reporter.write_line(self._progress_text())

    @pytest.hookimpl(tryfirst=True)  # before pytest starts the next file's row
    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, Any, str]) -> None:
        reporter = self._reporter() if self.due else None
        if reporter is None or not isinstance(reporter.currentfspath, Path):
            return
        if reporter.currentfspath == Path(self.config.rootpath) / location[0]:
            return  # same file: its row goes on
        finish_row = getattr(reporter, "_write_progress_information_filling_space", None)
        if not callable(finish_row):
            return
        self._mark_written()
        finish_row()  # the finished file's "[ NN%]", as pytest would write it next
        reporter.ensure_newline()
        reporter.write(self._progress_text())  # pytest ends this line as it starts the next row
        reporter.currentfspath = None

    def _mark_written(self) -> None:
        import time

        self.due = False
        self.last_line = time.monotonic()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = get_state(session.config)
    try:
        if state.worker:
            if state.active:
                from pytest_llmeval.plugin.xdist import send_collection

                send_collection(session.config, state)
            return
        state.finish(session, int(exitstatus))
    finally:
        _unfreeze_collected(session.config)
        state.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.end is None:
        return
    from pytest_llmeval.reports.terminal import summary_lines

    tr = terminalreporter
    tr.section("llmeval")
    outcome = state.end.outcome
    if outcome is None:
        tr.write_line("the run was interrupted: no gate decision, nothing written", yellow=True)
        return
    for line in summary_lines(outcome.summary_report, verbose=config.get_verbosity() > 0):
        if line.startswith("llmeval gate: FAILED") or line.startswith("llmeval: FAILED"):
            tr.write_line(line, red=True, bold=True)
        elif line.startswith("llmeval gate: PASSED") or line.startswith("llmeval: PASSED"):
            tr.write_line(line, green=True, bold=True)
        else:
            tr.write_line(line)
    for line in outcome.written:
        tr.write_line(f"wrote {line}")
    for line in outcome.not_written:
        tr.write_line(line, yellow=True)
