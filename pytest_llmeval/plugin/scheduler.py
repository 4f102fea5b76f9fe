"""Scheduling evaluations: inline, run-ahead on a background loop, or Message Batches.

pytest runs items one at a time; this module decides how each item's evaluation is obtained so
that network-bound SUT and judge calls of upcoming cases overlap while items still report in
order.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.evaluation import Evaluation
from pytest_llmeval.engine.cache import cache_key
from pytest_llmeval.engine.runner import RunAhead, SutCall
from pytest_llmeval.errors import JudgeError
from pytest_llmeval.judges import is_network_judge
from pytest_llmeval.plugin.resources import RunResources

if TYPE_CHECKING:
    from pytest_llmeval.plugin.items import CaseItem

_CANDIDATE = "#candidate"


class Scheduler:
    """Obtains the evaluation of each case item (and of the compare-mode candidate)."""

    def __init__(self, resources: RunResources, *, worker: bool) -> None:
        self.res = resources
        self.worker = worker
        self.case_items: list[CaseItem] = []
        self.item_order: dict[str, int] = {}
        self._run_ahead: RunAhead | None = None
        self._run_ahead_choice: bool | None = None
        self._batch_done = False
        self._batch_calls: dict[str, list[SutCall]] = {}
        self._batch_results: dict[str, dict[int, Any]] = {}

    def set_items(self, items: Sequence[CaseItem]) -> None:
        self.case_items = list(items)
        self.item_order = {item.nodeid: n for n, item in enumerate(self.case_items)}

    def evaluate(self, item: CaseItem) -> tuple[Evaluation, Evaluation | None]:
        """Evaluate the case with the SUT (and the compare-mode candidate, if any)."""
        res = self.res
        sut = res.sut_for(item.funcargs)
        candidate = res.candidate
        if res.settings.batch:
            if not self._batch_done:
                self._run_batch(sut)
            calls = self._batch_calls.pop(item.nodeid, None)
            if calls is not None:
                prejudged = self._batch_results.pop(item.nodeid, None)
                main = res.evaluator.evaluate(item.case, None, calls=calls, prejudged=prejudged)
                return main, None
        if not self._use_run_ahead(sut):
            main = res.evaluator.evaluate(item.case, sut)
            other = res.evaluator.evaluate(item.case, candidate) if candidate else None
            return main, other
        if self._run_ahead is None:
            s = res.settings
            self._run_ahead = RunAhead(res.evaluator, s.concurrency, s.sut_concurrency)
        # the next `concurrency` cases are judged; the `concurrency` after them may already
        # call the SUT, so their answers are ready when a judging slot frees
        size = res.settings.concurrency
        for position, upcoming in enumerate(self._window(item, 2 * size)):
            judge = position < size
            self._run_ahead.submit(upcoming.nodeid, upcoming.case, sut, judge=judge)
            if candidate is not None:
                key = upcoming.nodeid + _CANDIDATE
                self._run_ahead.submit(key, upcoming.case, candidate, judge=judge)
        main = self._run_ahead.result(item.nodeid)
        other = self._run_ahead.result(item.nodeid + _CANDIDATE) if candidate else None
        return main, other

    def _use_run_ahead(self, sut: Callable[[Case], Any]) -> bool:
        if self._run_ahead_choice is None:
            s = self.res.settings
            if s.concurrency <= 1:
                self._run_ahead_choice = False
            else:
                # an offline judge (the local one) is fast: only a slow SUT gains from running
                # ahead; a judge that declares `network = True` waits on I/O and always does
                network = is_network_judge(self.res.judge)
                self._run_ahead_choice = (
                    network or inspect.iscoroutinefunction(sut) or s.sut_concurrency > 1
                )
        return self._run_ahead_choice

    def _window(self, item: CaseItem, size: int) -> list[CaseItem]:
        """This item and the next case items this process will run, ``size`` at most."""
        from pytest_llmeval.plugin.items import CaseItem

        if self.worker:  # xdist decides what a worker runs next: ask it
            from pytest_llmeval.plugin.xdist import upcoming_items

            ahead = upcoming_items(self.res.config, size - 1)
            return [item, *(i for i in ahead if isinstance(i, CaseItem))]
        start = self.item_order.get(item.nodeid)
        return [item] if start is None else self.case_items[start : start + size]

    def _run_batch(self, sut: Callable[[Case], Any]) -> None:
        """Call the SUT for every case, then judge all cache misses in Message Batches."""
        res = self.res
        self._batch_done = True
        evaluator = res.evaluator
        identity = res.judge.identity
        jobs: list[tuple[str, Case, str]] = []
        for item in self.case_items:
            calls = [evaluator.call_sut(item.case, sut) for _ in range(res.settings.repeat)]
            self._batch_calls[item.nodeid] = calls
            for index, call in enumerate(calls):
                if call.mode != "ok":
                    continue
                key = cache_key(identity, item.case, call.text, index)
                if res.cache is not None and res.cache.get(key) is not None:
                    continue
                jobs.append((f"{item.nodeid}\x00{index}", item.case, call.text))
        if not jobs or res.settings.offline:
            return  # offline: every miss becomes an ERROR that says so, item by item
        self.progress(f"llmeval: sending {len(jobs)} judgements as Message Batches")
        results = res.judge.batch_score(jobs, progress=self.progress)  # type: ignore[attr-defined]
        for job_id, case, response in jobs:
            nodeid, _, index_text = job_id.partition("\x00")
            index = int(index_text)
            result = results.get(job_id)
            if result is None:
                result = JudgeError("the batch returned no result for this judgement")
            self._batch_results.setdefault(nodeid, {})[index] = result
            if res.cache is not None and not isinstance(result, Exception):
                res.cache.put(cache_key(identity, case, response, index), result)

    def progress(self, message: str) -> None:
        """A progress line while a test is running (output capture suspended for it)."""
        config = self.res.config
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.get_verbosity() < 0:
            return
        capture = config.pluginmanager.get_plugin("capturemanager")
        suspended = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
        with suspended:
            reporter.ensure_newline()
            reporter.write_line(message)

    def close(self) -> None:
        if self._run_ahead is not None:
            self._run_ahead.close()
            self._run_ahead = None
