"""pytest hooks. Each hook decides little and delegates to the per-run state object."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.plugin import options
from pytest_llmeval.plugin.fixtures import (  # noqa: F401  (fixtures are registered by import)
    RECORDS_KEY,
    llmeval_ab,
    llmeval_judge,
    llmeval_record,
    llmeval_sut,
)
from pytest_llmeval.plugin.items import CaseFile, CaseItem, ConfigFailure, JudgeFailure
from pytest_llmeval.plugin.session import STATE_KEY, LLMEvalState, get_state

_SHARD_DESELECT = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    options.register(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "llmeval: an evaluation case (added by pytest-llmeval to every case item)"
    )
    state = LLMEvalState(config)
    config.stash[STATE_KEY] = state
    state.check_judge_identity()
    state.check_batch()
    state.warm_up()
    config.pluginmanager.register(CollectionWatcher(state), "llmeval-collection")
    if not state.worker:
        config.pluginmanager.register(RecordCollector(state, config), "llmeval-records")
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_llmeval.plugin.xdist import XdistHooks

        config.pluginmanager.register(XdistHooks(state), "llmeval-xdist")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is not None:
        state.close()


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.worker:
        return None
    base = state.baseline
    n_base = len(base.entries) if base else 0
    judge = state.judge.identity.label()
    if state.settings.judge == "auto":
        judge += " (auto: " + (
            "ANTHROPIC_API_KEY is set)" if "anthropic" in judge else "no ANTHROPIC_API_KEY)"
        )
    return (
        f"llmeval: judge {judge}, baseline {n_base} cases,"
        f" history {len(state.history)} runs, state in {state.settings.state_dir}"
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
    state = get_state(parent.config)
    if file_path.suffix == ".jsonl" and _matches(file_path, state.settings.files):
        collector: CaseFile = CaseFile.from_parent(parent, path=file_path)
        return collector
    return None


def _shard_of(nodeid: str) -> str:
    return hashlib.sha256(nodeid.encode("utf-8")).hexdigest()


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    state = get_state(config)
    cases = [i for i in items if isinstance(i, CaseItem)]
    state.collected_keys.update(i.nodeid for i in cases)
    shard = state.settings.shard
    if shard is None:
        return
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


def pytest_deselected(items: list[pytest.Item]) -> None:
    if not items:
        return
    config = items[0].config
    if config.stash.get(_SHARD_DESELECT, False):
        return
    get_state(config).deselected += len(items)


def pytest_collection_finish(session: pytest.Session) -> None:
    get_state(session.config).set_items(session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, (JudgeFailure, ConfigFailure)):
        kind = "judge error" if isinstance(excinfo.value, JudgeFailure) else "llmeval"
        report.longrepr = f"{kind}: {excinfo.value}"
    record = getattr(item, "llmeval_record", None)
    if isinstance(item, CaseItem) and record is not None:
        if call.when == "call" or (call.when == "setup" and report.failed):
            report.llmeval = record  # type: ignore[attr-defined]
            if get_state(item.config).settings.junit:
                _junit_properties(item, report, record)
    elif call.when == "call":
        recorded = item.stash.get(RECORDS_KEY, None)
        if recorded:
            _apply_recorded(item, report, recorded)
    return report


def _junit_properties(item: pytest.Item, report: pytest.TestReport, record: dict[str, Any]) -> None:
    """Case properties for --junitxml (which reads them from the item's later reports)."""
    base = record.get("baseline")
    props = [
        ("llmeval_case_id", record["id"]),
        ("llmeval_verdict", record["verdict"]),
        ("llmeval_outcome", record["outcome"]),
        ("llmeval_score", "" if record["score"] is None else f"{record['score']:.6f}"),
        ("llmeval_threshold", f"{record['threshold']:.6f}"),
        ("llmeval_baseline_verdict", base["verdict"] if base else "none"),
        ("llmeval_failure_modes", ",".join(record["failure_modes"])),
        ("llmeval_judge", record["judge"]),
    ]
    existing = {name for name, _ in item.user_properties}
    new = [p for p in props if p[0] not in existing]
    item.user_properties.extend(new)
    report.user_properties.extend(new)


def _apply_recorded(item: pytest.Item, report: pytest.TestReport, records: list[Any]) -> None:
    """A Python test that used ``llmeval_record`` takes the outcome of its recorded cases."""
    from pytest_llmeval.reports.model import render_case_failure

    report.llmeval_records = list(records)  # type: ignore[attr-defined]
    if not report.passed:
        return
    failing = [r for r in records if r["outcome"] in ("regression", "new_failure")]
    xfail = [r for r in records if r["outcome"] in ("known_failure", "flaky")]
    state = get_state(item.config)
    if failing:
        report.outcome = "failed"
        report.longrepr = "\n\n".join(render_case_failure(r) for r in failing)
    elif xfail:
        report.outcome = "skipped"
        report.wasxfail = "; ".join(state.xfail_reason(r) for r in xfail)


class CollectionWatcher:
    """Counts case files that failed to collect (then nothing is written at the end)."""

    def __init__(self, state: LLMEvalState) -> None:
        self.state = state

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.state.collection_errors += 1


class RecordCollector:
    """Controller-side: gathers per-case records from test reports (also from xdist workers)
    and, on a cold cache, prints a progress line at each quarter of the cases."""

    def __init__(self, state: LLMEvalState, config: pytest.Config) -> None:
        self.state = state
        self.config = config
        self.done = 0
        self.calls = 0
        self.hits = 0
        self.next_mark = 1

    @pytest.hookimpl(trylast=True)  # after the terminal reporter wrote this item's letter
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "llmeval", None)
        if record is not None:
            self.state.add_record(record)
            self._progress(record)
        for r in getattr(report, "llmeval_records", None) or ():
            self.state.add_record(r)

    def _progress(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.calls += int(record.get("judge_calls", 0))
        self.hits += int(record.get("cache_hits", 0))
        total = self.state.expected_cases
        # only a cold cache makes a run slow enough to need progress: most verdicts computed now
        cold = self.calls > self.hits
        if not total or total < 20 or not cold or self.config.get_verbosity() < 0:
            return
        if self.done * 4 < self.next_mark * total:
            return
        while self.next_mark * total <= self.done * 4:
            self.next_mark += 1
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            writer = getattr(reporter, "_tw", None)
            mid_line = writer is not None and bool(getattr(writer, "width_of_current_line", 0))
            if mid_line and not getattr(reporter, "currentfspath", None):
                reporter.write("\n")  # finish the line of progress letters first
            reporter.write_line(
                f"llmeval: {self.done}/{total} cases judged"
                f" ({self.calls} judge calls, {self.hits} cache hits,"
                f" {total - self.done} pending)"
            )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = get_state(session.config)
    try:
        if state.worker:
            from pytest_llmeval.plugin.xdist import send_collection

            send_collection(session.config, state)
            return
        state.finish(session, int(exitstatus))
    finally:
        state.close()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None or state.end is None:
        return
    from pytest_llmeval.reports.model import summary_lines

    tr = terminalreporter
    tr.section("llmeval")
    if state.end.interrupted:
        tr.write_line("the run was interrupted: no gate decision, nothing written", yellow=True)
        return
    for line in summary_lines(state.end.report, verbose=config.get_verbosity() > 0):
        if line.startswith("llmeval gate: FAILED"):
            tr.write_line(line, red=True, bold=True)
        elif line.startswith("llmeval gate: PASSED"):
            tr.write_line(line, green=True, bold=True)
        else:
            tr.write_line(line)
    for line in state.end.written:
        tr.write_line(f"wrote {line}")
    for line in state.end.skipped_writes:
        tr.write_line(line, yellow=True)
