"""Runs the system under test and the judge for cases, with the judge cache.

Two paths share one pipeline:
- :meth:`Evaluator.evaluate` runs a case inline (a sync SUT whose verdicts are probably cached,
  or the local judge: nothing to overlap, so no thread hand-offs).
- :class:`RunAhead` runs the pipeline for upcoming cases on a background event loop with bounded
  concurrency, so network-bound SUT and judge calls overlap while pytest still reports items one
  at a time, in order.

Cache first: :meth:`Evaluator.prefetch` reads what the cache holds for many upcoming cases in
one query before their SUT answers (:class:`Lookup`), so the scheduler can keep cached cases
inline and send only the ones that will need the judge ahead.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.checks import RuleSettings, finalize, system_error_verdict
from pytest_llmeval.core.evaluation import Evaluation, Sample
from pytest_llmeval.core.verdict import JudgeResult, Usage
from pytest_llmeval.engine.cache import JudgeCache, KeyParts, key_parts
from pytest_llmeval.errors import JudgeError
from pytest_llmeval.judges import is_network_judge
from pytest_llmeval.judges.base import Judge

if TYPE_CHECKING:  # asyncio only for run-ahead: importing the plugin stays cheap
    import asyncio
    import concurrent.futures


@dataclass(frozen=True)
class SutCall:
    """One call of the system under test: ``mode`` is ok, system_error or timeout."""

    mode: str
    text: str
    latency: float
    usage: Usage | None = None  # tokens the SUT reported for this call, if any


@dataclass(frozen=True)
class SutAnswer:
    """What a SUT may return instead of a plain string, to report its own token usage.

    ``usage`` takes a :class:`Usage`, or a mapping / object with ``input_tokens``,
    ``output_tokens`` (and optionally the cache token counts), such as an SDK's usage object.
    It is summed separately from the judge's usage.
    """

    text: str
    usage: Any = None


def response_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Lookup:
    """What the cache held for one case's samples, read before the SUT answered.

    ``rows`` maps full keys to stored results for every row sharing one of the samples'
    prekeys (several when the SUT's answer changed over time, or in compare mode).
    ``complete``: every sample has at least one such row, so the case is probably cached.
    """

    parts: tuple[KeyParts, ...]
    rows: dict[str, str]
    complete: bool


@dataclass
class EvaluatorConfig:
    rules: RuleSettings
    repeat: int = 1
    sut_timeout: float | None = None
    offline: bool = False
    use_cache: bool = True


class Evaluator:
    """SUT -> cache -> judge -> checks for one case, sync or async."""

    def __init__(self, judge: Judge, cache: JudgeCache | None, config: EvaluatorConfig) -> None:
        self.judge = judge
        self.cache = cache if config.use_cache else None
        self.config = config
        self.network = is_network_judge(judge)
        self._ascore = getattr(judge, "ascore", None)
        # set while a RunAhead exists: inline SUT calls then share its bound on sync SUT calls
        self.sut_slots: threading.Semaphore | None = None
        self._warming: threading.Thread | None = None

    # -- pieces shared by both paths -------------------------------------------------------
    def _checks_only(self, case: Case) -> bool:
        # a reference-based judge without a reference leaves the verdict to the case's checks
        without_reference = getattr(self.judge, "checks_only_without_ground_truth", False)
        return case.ground_truth is None and bool(without_reference)

    def prefetch(self, cases: Sequence[Case]) -> list[Lookup | None]:
        """What the cache holds for ``cases`` (one read per few hundred cases); None without
        a cache."""
        if self.cache is None:
            return [None] * len(cases)
        identity = self.judge.identity
        parts = [
            tuple(key_parts(identity, case, index) for index in range(self.config.repeat))
            for case in cases
        ]
        found = self.cache.rows_for(p.prekey for per_case in parts for p in per_case)
        out: list[Lookup | None] = []
        for per_case in parts:
            rows: dict[str, str] = {}
            for p in per_case:
                rows.update(found.get(p.prekey, ()))
            complete = all(p.prekey in found for p in per_case)
            out.append(Lookup(per_case, rows, complete))
        return out

    def cached(
        self, case: Case, response: str, index: int, known: Lookup | None = None
    ) -> tuple[str, str | None, JudgeResult | None]:
        """(key, prekey, cached result or None) for ``response``; ``known`` spares the read."""
        parts = (
            known.parts[index] if known is not None else key_parts(self.judge.identity, case, index)
        )
        key = parts.key(response)
        cache = self.cache
        if cache is None:
            return key, parts.prekey, None
        if known is not None:
            stored = known.rows.get(key)
            if stored is not None:
                return key, parts.prekey, cache.decode(key, stored)
            if not cache.legacy:
                return key, parts.prekey, None  # no row with this prekey has this answer
            result = cache.get(key)
            if result is not None:
                cache.adopt(key, parts.prekey)
            return key, parts.prekey, result
        return key, parts.prekey, cache.get(key)

    def store(self, key: str, prekey: str | None, result: JudgeResult) -> None:
        if self.cache is not None:
            self.cache.put(key, result, prekey)

    def warm_up(self) -> None:
        """A judgement is coming: let the judge get ready (import its SDK) in the background
        while SUTs answer. Only judges that define ``warm_up()`` have anything to do."""
        warm = getattr(self.judge, "warm_up", None)
        if self._warming is not None or not callable(warm) or self.config.offline:
            return

        def run() -> None:
            with contextlib.suppress(Exception):  # the first request reports any real problem
                warm()

        self._warming = threading.Thread(target=run, name="llmeval-judge-warm-up", daemon=True)
        self._warming.start()

    def _miss_allowed(self) -> None:
        if self.config.offline and self.network:
            raise JudgeError(
                "--llmeval-offline: no cached verdict for this response and the judge"
                " needs the network; run once online to fill the cache"
            )

    def _finish(self, ev: Evaluation, case: Case, response: str, result: JudgeResult,
                cached: bool, latency: float) -> None:  # fmt: skip
        verdict = finalize(
            case,
            response,
            result,
            self.judge.identity,
            self.config.rules,
            checks_only=self._checks_only(case),
        )
        ev.samples.append(Sample(response, verdict, cached, latency))
        if cached:
            ev.cache_hits += 1
        else:
            ev.judge_calls += 1
            ev.usage = ev.usage + result.usage

    def _sut_failed(self, ev: Evaluation, case: Case, call: SutCall) -> None:
        """A SUT that raised or timed out: a failed verdict, never sent to the judge."""
        verdict = system_error_verdict(
            case, call.mode, call.text, self.judge.identity, self.config.rules
        )
        ev.samples.append(Sample("", verdict, False, call.latency))

    # -- inline path ------------------------------------------------------------------------
    def call_sut(self, case: Case, sut: Callable[[Case], Any]) -> SutCall:
        """Call the SUT once; an exception or a timeout becomes a failed call, not a crash."""
        t0 = time.perf_counter()
        slots = self.sut_slots
        try:
            if slots is None:
                raw = self._call_sync(sut, case)
            else:
                # a SUT call hung in the run-ahead pool holds its slot: wait no longer than
                # the SUT timeout for one
                if not slots.acquire(timeout=self.config.sut_timeout):
                    raise TimeoutError
                try:
                    raw = self._call_sync(sut, case)
                finally:
                    slots.release()
            text = _as_text(raw)
        except TimeoutError:
            return SutCall("timeout", self._timeout_text(), time.perf_counter() - t0)
        except Exception as exc:
            return SutCall("system_error", _exc_text(exc), time.perf_counter() - t0)
        return SutCall("ok", text, time.perf_counter() - t0, _sut_usage(raw))

    def evaluate(
        self,
        case: Case,
        sut: Callable[[Case], Any] | None,
        *,
        calls: Sequence[SutCall] | None = None,
        prejudged: Mapping[int, JudgeResult | JudgeError] | None = None,
        known: Lookup | None = None,
    ) -> Evaluation:
        """Evaluate ``case``: call the SUT (or use ``calls`` made earlier) and judge each sample.

        ``prejudged`` holds judgements made elsewhere (Message Batches), by sample index;
        ``known`` what :meth:`prefetch` read for the case.
        """
        ev = Evaluation(case)
        try:
            for index in range(self.config.repeat):
                if calls is not None:
                    call = calls[index]
                else:
                    assert sut is not None
                    call = self.call_sut(case, sut)
                if call.mode != "ok":
                    self._sut_failed(ev, case, call)
                    continue
                _add_sut_usage(ev, call.usage)
                given = prejudged.get(index) if prejudged else None
                if isinstance(given, JudgeError):
                    raise given
                if given is not None:
                    self._finish(ev, case, call.text, given, False, call.latency)
                    continue
                key, prekey, result = self.cached(case, call.text, index, known)
                cached = result is not None
                if result is None:
                    self._miss_allowed()
                    result = self.judge.score(case, call.text)
                    self.store(key, prekey, result)
                self._finish(ev, case, call.text, result, cached, call.latency)
        except JudgeError as exc:
            ev.error = str(exc)
            if _has_usage(exc):
                ev.usage = ev.usage + exc.usage  # type: ignore[attr-defined]
        return ev

    def judge_response(self, case: Case, response: str) -> Evaluation:
        """Judge an already produced response (for ``llmeval_record``)."""
        ev = Evaluation(case)
        try:
            key, prekey, result = self.cached(case, response, 0)
            cached = result is not None
            if result is None:
                self._miss_allowed()
                result = self.judge.score(case, response)
                self.store(key, prekey, result)
            self._finish(ev, case, response, result, cached, 0.0)
        except JudgeError as exc:
            ev.error = str(exc)
        return ev

    def _sut_in_slot(self, sut: Callable[[Case], Any], case: Case) -> Any:
        slots = self.sut_slots
        if slots is None:
            return sut(case)
        with slots:
            return sut(case)

    def _timeout_text(self) -> str:
        return f"the system under test did not answer within {self.config.sut_timeout:g} s"

    def _call_sync(self, sut: Callable[[Case], Any], case: Case) -> Any:
        if self.config.sut_timeout is None and not inspect.iscoroutinefunction(sut):
            return sut(case)
        # A timeout needs the call off this thread; async SUTs need a loop. A daemon thread,
        # not an executor: a hung call must not hold up the next case (nor the exit).
        outcome: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

        def call() -> None:
            try:
                outcome.put((True, _call_any(sut, case)))
            except BaseException as exc:
                outcome.put((False, exc))

        threading.Thread(target=call, name="llmeval-sut-call", daemon=True).start()
        try:
            ok, value = outcome.get(timeout=self.config.sut_timeout)
        except queue.Empty:
            raise TimeoutError from None
        if not ok:
            raise value
        return value

    # -- async path -------------------------------------------------------------------------
    async def evaluate_async(
        self,
        case: Case,
        sut: Callable[[Case], Any],
        sut_executor: concurrent.futures.Executor,
        io_executor: concurrent.futures.Executor,
        *,
        judge_gate: asyncio.Event | None = None,
        judge_slots: asyncio.Semaphore | None = None,
        known: Lookup | None = None,
    ) -> Evaluation:
        """The pipeline on an event loop. The SUT may run as soon as the case is submitted;
        a judge call waits for ``judge_gate`` (the case entered the judging window) and takes
        one of ``judge_slots``, so SUT calls of later cases overlap with judging."""
        import asyncio

        loop = asyncio.get_running_loop()
        ev = Evaluation(case)
        try:
            for index in range(self.config.repeat):
                t0 = time.perf_counter()
                try:
                    if inspect.iscoroutinefunction(sut):
                        call = sut(case)
                    else:
                        call = loop.run_in_executor(sut_executor, self._sut_in_slot, sut, case)
                    raw = await asyncio.wait_for(call, timeout=self.config.sut_timeout)
                    response = _as_text(raw)
                    _add_sut_usage(ev, _sut_usage(raw))
                except (asyncio.TimeoutError, TimeoutError):
                    call = SutCall("timeout", self._timeout_text(), time.perf_counter() - t0)
                    self._sut_failed(ev, case, call)
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    call = SutCall("system_error", _exc_text(exc), time.perf_counter() - t0)
                    self._sut_failed(ev, case, call)
                    continue
                latency = time.perf_counter() - t0
                if known is not None and not (self.cache is not None and self.cache.legacy):
                    key, prekey, result = self.cached(case, response, index, known)  # memory
                else:
                    key, prekey, result = await loop.run_in_executor(
                        io_executor, self.cached, case, response, index, known
                    )
                cached = result is not None
                if result is None:
                    self._miss_allowed()
                    if judge_gate is not None:
                        await judge_gate.wait()
                    async with judge_slots or contextlib.nullcontext():
                        if self._ascore is not None:
                            result = await self._ascore(case, response)
                        else:
                            result = await loop.run_in_executor(
                                io_executor, self.judge.score, case, response
                            )
                    if self.cache is not None:
                        await loop.run_in_executor(io_executor, self.store, key, prekey, result)
                assert result is not None
                self._finish(ev, case, response, result, cached, latency)
        except JudgeError as exc:
            ev.error = str(exc)
            if _has_usage(exc):
                ev.usage = ev.usage + exc.usage  # type: ignore[attr-defined]
        return ev


def _has_usage(exc: BaseException) -> bool:
    return isinstance(getattr(exc, "usage", None), Usage)


def _call_any(sut: Callable[[Case], Any], case: Case) -> Any:
    import asyncio

    if inspect.iscoroutinefunction(sut):
        return asyncio.run(sut(case))
    return sut(case)


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    text = value.get("text") if isinstance(value, Mapping) else getattr(value, "text", None)
    if isinstance(text, str):
        return text
    raise TypeError(
        f"the system under test returned {type(value).__name__}; expected str or SutAnswer"
    )


def _sut_usage(value: Any) -> Usage | None:
    """The token usage a SUT reported with its answer (None when it reported none)."""
    raw = value.get("usage") if isinstance(value, Mapping) else getattr(value, "usage", None)
    if raw is None or isinstance(value, str):
        return None
    if isinstance(raw, Usage):
        return raw

    def count(name: str) -> int:
        item = raw.get(name) if isinstance(raw, Mapping) else getattr(raw, name, None)
        return int(item) if isinstance(item, (int, float)) and not isinstance(item, bool) else 0

    return Usage(
        input_tokens=count("input_tokens"),
        output_tokens=count("output_tokens"),
        cache_creation_input_tokens=count("cache_creation_input_tokens"),
        cache_read_input_tokens=count("cache_read_input_tokens"),
        requests=1,
    )


def _add_sut_usage(ev: Evaluation, usage: Usage | None) -> None:
    if usage is not None:
        ev.sut_usage = usage if ev.sut_usage is None else ev.sut_usage + usage


def _exc_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RunAhead:
    """Evaluates upcoming cases on a background event loop.

    A case is *submitted* (its SUT calls may start, bounded by the SUT pool) and later *opened*
    for judging; at most ``concurrency`` judge calls run at once. The caller submits a window
    of upcoming cases and opens the first ``concurrency`` of them, so the SUT work of the next
    cases overlaps with the judging of the current ones.
    """

    def __init__(self, evaluator: Evaluator, concurrency: int, sut_concurrency: int) -> None:
        import asyncio
        import concurrent.futures

        self.evaluator = evaluator
        self.concurrency = concurrency
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="llmeval-run-ahead", daemon=True
        )
        self._thread.start()
        self._sut_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=sut_concurrency, thread_name_prefix="llmeval-sut"
        )
        self._io_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix="llmeval-judge"
        )
        self._judge_slots = asyncio.Semaphore(concurrency)  # binds to the loop on first use
        # sync SUT calls made inline meanwhile count against the same bound as the pool's
        evaluator.sut_slots = threading.Semaphore(sut_concurrency)
        self._gates: dict[str, asyncio.Event] = {}
        self.futures: dict[str, concurrent.futures.Future[Evaluation]] = {}

    async def _run(
        self, case: Case, sut: Callable[[Case], Any], gate: asyncio.Event, known: Lookup | None
    ) -> Evaluation:
        return await self.evaluator.evaluate_async(
            case,
            sut,
            self._sut_pool,
            self._io_pool,
            judge_gate=gate,
            judge_slots=self._judge_slots,
            known=known,
        )

    def submit(
        self,
        key: str,
        case: Case,
        sut: Callable[[Case], Any],
        *,
        judge: bool = True,
        known: Lookup | None = None,
    ) -> None:
        """Start ``case`` (once); ``judge`` opens it for judging now, else :meth:`open` later.
        ``known``: what the cache held for it (:meth:`Evaluator.prefetch`)."""
        import asyncio

        if key in self.futures:
            if judge:
                self.open(key)
            return
        gate = asyncio.Event()
        if judge:
            gate.set()  # not yet seen by the loop: setting it here is safe
        self._gates[key] = gate
        self.futures[key] = asyncio.run_coroutine_threadsafe(
            self._run(case, sut, gate, known), self._loop
        )

    def open(self, key: str) -> None:
        gate = self._gates.get(key)
        if gate is not None and not gate.is_set():
            self._loop.call_soon_threadsafe(gate.set)

    def result(self, key: str) -> Evaluation:
        import concurrent.futures

        self.open(key)
        self._gates.pop(key, None)
        future = self.futures.pop(key)
        while True:
            try:  # a short timeout keeps the main thread responsive to Ctrl-C
                return future.result(timeout=0.2)
            except concurrent.futures.TimeoutError:
                continue

    def close(self) -> None:
        """Cancel outstanding work promptly, release async clients and stop the loop."""
        import asyncio

        self.futures.clear()
        self._gates.clear()
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        # closing is best effort: the run's results are already in
        with contextlib.suppress(Exception):
            done.result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._sut_pool.shutdown(wait=False, cancel_futures=True)
        self._io_pool.shutdown(wait=False, cancel_futures=True)
        self.evaluator.sut_slots = None

    async def _shutdown(self) -> None:
        """On the loop: cancel every pending evaluation, wait for them, close async clients."""
        import asyncio

        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        aclose = getattr(self.evaluator.judge, "aclose", None)
        if callable(aclose):
            await aclose()
