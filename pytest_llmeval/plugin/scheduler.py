"""Scheduling evaluations: inline, run-ahead on a background loop, or Message Batches.

pytest runs items one at a time; this module decides how each item's evaluation is obtained so
that network-bound SUT and judge calls of upcoming cases overlap while items still report in
order.

Cache first: before a case's SUT answers, what the cache holds for it and the next few hundred
cases is read in one query (:meth:`Evaluator.prefetch`). A case the cache probably answers runs
inline, like a local judge's: no thread hand-off, no event loop, no SDK. Only the others go
through run-ahead, each submitted once, as it enters the window.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.evaluation import Evaluation
from pytest_llmeval.engine.runner import Lookup, RunAhead, SutCall
from pytest_llmeval.errors import JudgeError
from pytest_llmeval.judges import is_network_judge
from pytest_llmeval.plugin.resources import RunResources

if TYPE_CHECKING:
    from pytest_llmeval.plugin.items import CaseItem

_CANDIDATE = "#candidate"
PREFETCH = 256  # cases whose cache rows are read at once


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
        # cache first: what the cache holds for cases decided but not yet run
        self._decided_upto = 0  # case_items[:_decided_upto] are decided (single process)
        self._lookups: dict[str, Lookup | None] = {}  # inline cases, until they run
        self._queue: list[CaseItem] = []  # run-ahead cases, in run order
        self._pending: dict[str, int] = {}  # run-ahead cases not yet run -> queue index
        self._queued_lookups: dict[str, Lookup | None] = {}  # until submitted
        self._solo: dict[str, Lookup | None] = {}  # run-ahead cases outside the window (reruns)
        self._consumed = 0  # queue[:_consumed] have run (or were passed)
        self._submitted = 0
        self._opened = 0

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
                known = self._lookups.pop(item.nodeid, None)
                main = res.evaluator.evaluate(
                    item.case, None, calls=calls, prejudged=prejudged, known=known
                )
                return main, None
        key = item.nodeid
        self._plan(item, sut)
        if key in self._lookups:
            if self._submitted < len(self._queue):
                self._feed(sut, candidate)  # cases ahead start while this one runs inline
            known = self._lookups.pop(key)
            main = res.evaluator.evaluate(item.case, sut, known=known)
            other = res.evaluator.evaluate(item.case, candidate, known=known) if candidate else None
            return main, other
        run_ahead = self._ensure_run_ahead()
        if key in self._solo:  # a rerun: on its own, outside the window
            known = self._solo.pop(key)
            run_ahead.submit(key, item.case, sut, known=known)
            if candidate is not None:
                run_ahead.submit(key + _CANDIDATE, item.case, candidate, known=known)
        else:
            index = self._pending.pop(key)
            # cases queued before this one that never came here (their setup failed) are
            # passed over, never started
            self._consumed = max(self._consumed, index)
            self._submitted = max(self._submitted, index)
            self._feed(sut, candidate)
            self._consumed = index + 1
        main = run_ahead.result(key)
        other = run_ahead.result(key + _CANDIDATE) if candidate else None
        # the window moves on when the next item starts: after -x nothing new has started
        if self._consumed > 4 * PREFETCH:
            self._trim()
        return main, other

    # -- cache first ------------------------------------------------------------------------
    def _plan(self, item: CaseItem, sut: Callable[[Case], Any]) -> None:
        """Make sure this item and, with run-ahead, the next ``2 * concurrency`` are decided:
        their cache rows read (a few hundred cases per read) and each put inline or ahead."""
        key = item.nodeid
        window = 2 * self.res.settings.concurrency if self._use_run_ahead(sut) else 0
        if self.worker:  # xdist decides what a worker runs next: ask it
            from pytest_llmeval.plugin.items import CaseItem
            from pytest_llmeval.plugin.xdist import upcoming_items

            first = self._undecided(key)
            if not first and not any(
                isinstance(i, CaseItem) and self._undecided(i.nodeid)
                for i in upcoming_items(self.res.config, window)
            ):
                return
            ahead = [
                i
                for i in upcoming_items(self.res.config, PREFETCH)
                if isinstance(i, CaseItem) and i is not item and self._undecided(i.nodeid)
            ]
            self._decide([item, *ahead] if first else ahead, sut)
            return
        position = self.item_order.get(key)
        if position is None or (position < self._decided_upto and self._undecided(key)):
            self._decide([item], sut, solo=True)  # a rerun, or not a collected case item
            return
        horizon = position + 1 + window
        if horizon <= self._decided_upto:
            return
        begin = max(self._decided_upto, position)  # items that never reached here are skipped
        chunk = self.case_items[begin : max(horizon, begin + PREFETCH)]
        self._decided_upto = begin + len(chunk)
        self._decide(chunk, sut)

    def _undecided(self, key: str) -> bool:
        return key not in self._lookups and key not in self._pending and key not in self._solo

    def _decide(
        self, items: Sequence[CaseItem], sut: Callable[[Case], Any], *, solo: bool = False
    ) -> None:
        evaluator = self.res.evaluator
        lookups = evaluator.prefetch([i.case for i in items])
        run_ahead = self._use_run_ahead(sut)
        # a cached case runs inline unless its SUT calls gain from overlapping (async or a
        # pool of sync calls); offline, a miss is an error at once, so nothing goes ahead
        overlap = inspect.iscoroutinefunction(sut) or self.res.settings.sut_concurrency > 1
        offline = self.res.settings.offline and evaluator.network
        for item, known in zip(items, lookups, strict=True):
            probably_cached = known is not None and known.complete
            if not run_ahead or offline or (probably_cached and not overlap):
                self._lookups[item.nodeid] = known
                continue
            if not probably_cached:
                evaluator.warm_up()  # a judgement is coming: the judge gets ready meanwhile
            if solo:
                self._solo[item.nodeid] = known
                continue
            self._pending[item.nodeid] = len(self._queue)
            self._queued_lookups[item.nodeid] = known
            self._queue.append(item)

    def _feed(self, sut: Callable[[Case], Any], candidate: Callable[[Case], Any] | None) -> None:
        """Submit the run-ahead cases that entered the window, each once: the next
        ``concurrency`` are judged, the ``concurrency`` after them may already call the SUT,
        so their answers are ready when a judging slot frees."""
        size = self.res.settings.concurrency
        queue = self._queue
        run_ahead = self._ensure_run_ahead()
        submit_to = min(len(queue), self._consumed + 2 * size)
        open_to = min(len(queue), self._consumed + size)
        while self._submitted < submit_to:
            upcoming = queue[self._submitted]
            judge = self._submitted < open_to
            known = self._queued_lookups.pop(upcoming.nodeid, None)
            run_ahead.submit(upcoming.nodeid, upcoming.case, sut, judge=judge, known=known)
            if candidate is not None:
                key = upcoming.nodeid + _CANDIDATE
                run_ahead.submit(key, upcoming.case, candidate, judge=judge, known=known)
            self._submitted += 1
        self._opened = max(self._opened, self._consumed)
        while self._opened < min(open_to, self._submitted):
            upcoming = queue[self._opened]
            run_ahead.open(upcoming.nodeid)
            if candidate is not None:
                run_ahead.open(upcoming.nodeid + _CANDIDATE)
            self._opened += 1

    def _trim(self) -> None:
        """Let the run-ahead cases that ran (or were passed over) go."""
        done = self._consumed
        for passed in self._queue[:done]:
            self._pending.pop(passed.nodeid, None)
            self._queued_lookups.pop(passed.nodeid, None)
        del self._queue[:done]
        self._submitted -= done
        self._opened -= done
        self._pending = {k: i - done for k, i in self._pending.items()}
        self._consumed = 0

    def _ensure_run_ahead(self) -> RunAhead:
        if self._run_ahead is None:
            s = self.res.settings
            self._run_ahead = RunAhead(self.res.evaluator, s.concurrency, s.sut_concurrency)
        return self._run_ahead

    def _use_run_ahead(self, sut: Callable[[Case], Any]) -> bool:
        if self._run_ahead_choice is None:
            s = self.res.settings
            if s.concurrency <= 1:
                self._run_ahead_choice = False
            else:
                # an offline judge (the local one) is fast: only a slow SUT gains from running
                # ahead; a judge that declares `network = True` waits on I/O and does, for the
                # cases the cache does not answer
                network = is_network_judge(self.res.judge)
                self._run_ahead_choice = (
                    network or inspect.iscoroutinefunction(sut) or s.sut_concurrency > 1
                )
        return self._run_ahead_choice

    def _run_batch(self, sut: Callable[[Case], Any]) -> None:
        """Call the SUT for every case, then judge all cache misses in Message Batches."""
        res = self.res
        self._batch_done = True
        evaluator = res.evaluator
        jobs: list[tuple[str, Case, str, str, str | None]] = []
        for start in range(0, len(self.case_items), PREFETCH):
            chunk = self.case_items[start : start + PREFETCH]
            for item, known in zip(chunk, evaluator.prefetch([i.case for i in chunk]), strict=True):
                self._lookups[item.nodeid] = known
                calls = [evaluator.call_sut(item.case, sut) for _ in range(res.settings.repeat)]
                self._batch_calls[item.nodeid] = calls
                for index, call in enumerate(calls):
                    if call.mode != "ok":
                        continue
                    key, prekey, cached = evaluator.cached(item.case, call.text, index, known)
                    if cached is not None:
                        continue
                    jobs.append((f"{item.nodeid}\x00{index}", item.case, call.text, key, prekey))
        if not jobs or res.settings.offline:
            return  # offline: every miss becomes an ERROR that says so, item by item
        self.progress(f"llmeval: sending {len(jobs)} judgements as Message Batches")
        results = res.judge.batch_score(  # type: ignore[attr-defined]
            [job[:3] for job in jobs], progress=self.progress
        )
        for job_id, _case, _response, key, prekey in jobs:
            nodeid, _, index_text = job_id.partition("\x00")
            index = int(index_text)
            result = results.get(job_id)
            if result is None:
                result = JudgeError("the batch returned no result for this judgement")
            self._batch_results.setdefault(nodeid, {})[index] = result
            if not isinstance(result, Exception):
                evaluator.store(key, prekey, result)

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
