"""The one Claude client both judges share: configuration, SDK clients, rate limiting, retries.

The request loop is written once, without I/O, as generators (:meth:`ClaudeClient._attempts`
for one call with its retries, :meth:`ClaudeClient._asking` for "until the answer parses").
They yield what to do next (sleep this long, build the client, send this request) and are
sent the result; :func:`run_sync` drives them with ``time.sleep`` and the ``Anthropic``
client, :func:`run_async` with ``asyncio.sleep`` and an ``AsyncAnthropic`` client per event
loop. Neither the SDK client nor ``anthropic`` itself exists until the first request, or until
:meth:`ClaudeClient.warm_up` (the plugin calls it in a background thread once a judgement is
certain, so the import overlaps with what the run does meanwhile).
"""

from __future__ import annotations

import asyncio
import gc
import random
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias, TypeVar

from pytest_llmeval.core import frozen
from pytest_llmeval.core.verdict import JudgeIdentity, Usage
from pytest_llmeval.judges import prompts
from pytest_llmeval.judges.anthropic.errors import (
    AnthropicJudgeError,
    Failure,
    RetryEvent,
    classify,
)
from pytest_llmeval.judges.anthropic.output import InvalidOutput, prepare_validator, usage_of
from pytest_llmeval.judges.anthropic.prices import (
    DEFAULT_PRICES,
    ModelPrice,
    UsageTotals,
    estimate_cost,
)
from pytest_llmeval.judges.anthropic.ratelimit import RateLimiter, Ticket

if TYPE_CHECKING:
    from anthropic import Anthropic, AsyncAnthropic

T = TypeVar("T")

DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_MAX_RETRY_WAIT = 60.0


class _Prepare:
    """Step: build the SDK client (import, credentials) before a rate-limit slot is taken, so
    slow set-up cannot bunch requests together after their slots."""


@dataclass(frozen=True)
class _Create:
    """Step: ``messages.create(**params)``; answered with an :class:`_Answer`."""

    params: dict[str, Any]


@dataclass(frozen=True)
class _Custom:
    """Step: any call on the synchronous client (the Message Batches endpoints)."""

    fn: Callable[[Anthropic], Any]


@dataclass(frozen=True)
class _Answer:
    message: Any
    headers: Mapping[str, str]


_PREPARE = _Prepare()
Step: TypeAlias = float | _Prepare | _Create | _Custom
Steps = Generator[Step, Any, T]


_SDK_IMPORT = threading.Lock()


def import_sdk() -> ModuleType:
    """``import anthropic``, paying as little as possible for the garbage collector.

    The SDK loads some 3,000 modules of pydantic models: 190,000 objects for the collector to
    track, which live until the process exits. While they load, the cyclic collector would
    walk the growing heap again and again (a quarter of the import's CPU time); afterwards
    every full collection would walk them all again, for nothing: the ones during the run,
    the one pytest makes at its end and the interpreter's at exit (together about a second of
    CPU in a run of 100 judgements). So when this call is the one that imports the SDK, it
    does so with the collector paused (its previous state restored), then moves every object
    alive at that moment to the permanent generation (:func:`pytest_llmeval.core.frozen.freeze`,
    ``gc.freeze()``): objects made later are collected as usual; one of the frozen that turns
    into cyclic garbage later stays in memory until exit. An SDK the process had already
    imported is left as it was.
    """
    with _SDK_IMPORT:
        if "anthropic" in sys.modules:
            import anthropic

            return anthropic
        enabled = gc.isenabled()
        gc.disable()
        try:
            import anthropic

            frozen.freeze()
        finally:
            if enabled:
                gc.enable()
        return anthropic


def run_sync(steps: Steps[T], client: Callable[[], Anthropic]) -> T:
    """Drive a request generator in this thread."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, error = None, None
        if isinstance(step, float):
            time.sleep(step)
            continue
        try:
            sdk = client()
            if isinstance(step, _Create):
                raw = sdk.messages.with_raw_response.create(**step.params)
                reply = _Answer(raw.parse(), raw.headers)
            elif isinstance(step, _Custom):
                reply = step.fn(sdk)
        except Exception as exc:  # classified (or re-raised) inside the generator
            error = exc


async def run_async(steps: Steps[T], client: Callable[[], AsyncAnthropic]) -> T:
    """Drive a request generator in the running event loop."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            step = steps.throw(error) if error is not None else steps.send(reply)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, error = None, None
        if isinstance(step, float):
            await asyncio.sleep(step)
            continue
        if isinstance(step, _Custom):
            steps.close()
            raise TypeError("this call has no async form")
        try:
            sdk = client()
            if isinstance(step, _Create):
                raw = await sdk.messages.with_raw_response.create(**step.params)
                reply = _Answer(await raw.parse(), raw.headers)
        except Exception as exc:
            error = exc


class ClaudeClient:
    """Configuration, SDK clients, rate limiting and the retry loop shared by both judges."""

    #: Judges that call a remote API (the plugin's offline mode refuses them).
    network = True
    _name = "anthropic"
    #: The JSON schema its answers are validated against (the validator is built by warm_up).
    _answer_schema: ClassVar[dict[str, Any]] = prompts.VERDICT_SCHEMA

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        rpm: float | None = None,
        rpm_window: float = 60.0,
        processes: int = 1,
        rate_limiter: RateLimiter | None = None,
        base_url: str | None = None,
        initial_backoff: float = 0.5,
        max_backoff: float = 8.0,
        on_retry: Callable[[RetryEvent], None] | None = None,
        prices: Mapping[str, ModelPrice] | None = None,
    ) -> None:
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        if timeout <= 0 or max_retry_wait < 0 or max_retries < 0:
            raise ValueError("timeout must be > 0, max_retries and max_retry_wait >= 0")
        if rpm is not None and rate_limiter is not None:
            raise ValueError("give either rpm or rate_limiter, not both")
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.model = model
        self.max_tokens = max_tokens
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_retry_wait = float(max_retry_wait)
        # Always a limiter: without rpm it still paces by the server's headers and 429s.
        # Several processes on one key each take their share of both limits.
        self.rate_limiter = rate_limiter or RateLimiter(
            rpm / processes if rpm else None, rpm_window, share=1.0 / processes
        )
        self.base_url = base_url
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.on_retry = on_retry
        self.prices: Mapping[str, ModelPrice] = DEFAULT_PRICES if prices is None else prices
        self.identity = JudgeIdentity(
            name=self._name, model=model, prompt_version=prompts.PROMPT_VERSION
        )
        self._lock = threading.Lock()
        self._sync_client: Anthropic | None = None
        self._async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncAnthropic]
        self._async_clients = weakref.WeakKeyDictionary()
        self._spare_async: AsyncAnthropic | None = None  # built by warm_up, for the first loop
        self._warm = False
        self._standard = Usage()
        self._batch = Usage()

    def __repr__(self) -> str:
        limiter = self.rate_limiter
        limit = ""
        if limiter.max_requests:
            limit = f", rpm={limiter.max_requests * 60.0 / limiter.per_seconds:g}"
            if limiter.per_seconds != 60.0:
                limit += f", rpm_window={limiter.per_seconds:g}"
        return (
            f"{type(self).__name__}(model={self.model!r}, prompt_version="
            f"{prompts.PROMPT_VERSION!r}, max_tokens={self.max_tokens}, timeout={self.timeout:g}, "
            f"max_retries={self.max_retries}, max_retry_wait={self.max_retry_wait:g}{limit})"
        )

    # -- clients: built on the first request (or by warm_up), never before ------------------

    def warm_up(self) -> None:
        """Get ready for the first request: import the SDK, build the async client the first
        event loop will use, and the validator of the answers. Nothing is sent.

        The plugin calls this in a background thread as soon as a judgement is certain (a
        cache miss is coming), so the second or so of ``import anthropic`` overlaps with
        collection and the SUT's first calls instead of delaying the first request. Safe from
        any thread, any number of times; a problem here (no SDK, say) is left for the first
        request to report.
        """
        if self._warm:
            return
        sdk = import_sdk()
        with self._lock:
            if self._spare_async is None and not self._async_clients:
                self._spare_async = sdk.AsyncAnthropic(
                    base_url=self.base_url, timeout=self.timeout, max_retries=0
                )
        # the first answer is read while the next requests wait on it: do that work now
        prepare_validator(self._answer_schema)
        self._warm = True

    def _client(self) -> Anthropic:
        with self._lock:
            client = self._sync_client
        if client is not None:
            return client
        sdk = import_sdk()  # outside the lock: it may wait for a warm-up's import
        with self._lock:
            if self._sync_client is None:
                self._sync_client = sdk.Anthropic(
                    base_url=self.base_url, timeout=self.timeout, max_retries=0
                )
            return self._sync_client

    def _aclient(self) -> AsyncAnthropic:
        # An httpx async client is bound to the event loop that first used it, so keep one
        # client per running loop (the one warm_up built goes to the first loop that asks).
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.get(loop)
        if client is not None:
            return client
        sdk = import_sdk()
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None:
                client, self._spare_async = self._spare_async, None
                if client is None:
                    client = sdk.AsyncAnthropic(
                        base_url=self.base_url, timeout=self.timeout, max_retries=0
                    )
                self._async_clients[loop] = client
            return client

    def close(self) -> None:
        """Close the synchronous HTTP client (the judge stays usable; it reconnects)."""
        with self._lock:
            client, self._sync_client = self._sync_client, None
            self._spare_async = None  # never used: it holds no connection
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async HTTP client of the running event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.pop(loop, None)
        if client is not None:
            await client.close()

    # -- usage -----------------------------------------------------------------------------

    def _spent(self, usage: Usage, *, batch: bool = False) -> None:
        with self._lock:
            if batch:
                self._batch = self._batch + usage
            else:
                self._standard = self._standard + usage

    def usage_totals(self) -> UsageTotals:
        """Tokens this judge object has been billed for so far (all calls, failed included)."""
        with self._lock:
            return UsageTotals(standard=self._standard, batch=self._batch)

    def estimate_cost(self, usage: Usage, *, batch: bool = False) -> float | None:
        """Estimated USD cost of ``usage`` on this judge's model with its price table
        (``None`` when the model has no price); see :func:`estimate_cost`."""
        return estimate_cost(usage, self.model, self.prices, batch=batch)

    # -- the request loop, once for sync and async -------------------------------------------

    def _next_wait(self, failure: Failure, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up."""
        if not failure.transient or attempt >= self.max_retries:
            return None
        if failure.retry_after is not None and failure.retry_after > 0:
            wait = failure.retry_after
        else:
            backoff = min(self.initial_backoff * 2.0**attempt, self.max_backoff)
            wait = backoff * (1.0 - 0.25 * random.random())
        wait = min(wait, self.max_retry_wait)
        if self.on_retry is not None:
            self.on_retry(
                RetryEvent(
                    attempt=attempt + 1,
                    reason=str(failure.error),
                    wait=wait,
                    status=failure.error.status,
                    retry_after=failure.retry_after,
                )
            )
        return wait

    def _give_up(self, failure: Failure, attempt: int) -> AnthropicJudgeError:
        error = failure.error
        if failure.transient and attempt > 0:
            return AnthropicJudgeError(
                f"{error} (gave up after {attempt + 1} attempts)",
                retryable=True,
                status=error.status,
            )
        return error

    def _attempts(self, call: _Create | _Custom, *, retry_timeouts: bool = True) -> Steps[Any]:
        """One call with its retries; every attempt first takes a slot from the limiter."""
        limiter = self.rate_limiter
        attempt = 0
        while True:
            ticket: Ticket | None = None
            try:
                yield _PREPARE
                while not isinstance(got := limiter.poll(), Ticket):
                    yield got
                ticket = got
                result = yield call
            except Exception as exc:
                if ticket is not None:
                    limiter.release(ticket)
                failure = classify(
                    exc, model=self.model, timeout=self.timeout, retry_timeouts=retry_timeouts
                )
                if failure.error.status == 429 and ticket is not None:
                    limiter.refused(
                        ticket, failure.retry_after, failure.headers, max_pause=self.max_retry_wait
                    )
                wait = self._next_wait(failure, attempt)
                if wait is None:
                    raise self._give_up(failure, attempt) from None
                yield wait
                attempt += 1
                continue
            else:
                if isinstance(result, _Answer):
                    limiter.observe(ticket, result.headers, usage_of(result.message))
                return result
            finally:
                if ticket is not None:
                    limiter.release(ticket)  # however the attempt ended (cancelled included)

    def _asking(
        self,
        params: dict[str, Any],
        parse: Callable[[Any, Usage], T],
        *,
        attempts: int = 2,
        usage: Usage | None = None,
        problems: Sequence[str] = (),
    ) -> Steps[T]:
        """Send ``params`` until ``parse`` accepts the answer (at most ``attempts`` answers)."""
        spent = usage or Usage()
        seen = list(problems)
        for _ in range(attempts):
            try:
                answer: _Answer = yield from self._attempts(_Create(params))
            except AnthropicJudgeError as exc:
                exc.usage = spent
                raise
            got = usage_of(answer.message)
            self._spent(got)
            spent = spent + got
            try:
                return parse(answer.message, spent)
            except InvalidOutput as exc:
                seen.append(str(exc))
        raise self._invalid(seen, spent)

    def _ask(self, params: dict[str, Any], parse: Callable[[Any, Usage], T], **kw: Any) -> T:
        return run_sync(self._asking(params, parse, **kw), self._client)

    def _aask(
        self, params: dict[str, Any], parse: Callable[[Any, Usage], T], **kw: Any
    ) -> Awaitable[T]:
        return run_async(self._asking(params, parse, **kw), self._aclient)

    def _call(self, fn: Callable[[Anthropic], T], *, retry_timeouts: bool = True) -> T:
        result: T = run_sync(
            self._attempts(_Custom(fn), retry_timeouts=retry_timeouts), self._client
        )
        return result

    def _params(self, prompt: prompts.JudgePrompt, schema: dict[str, Any]) -> dict[str, Any]:
        """``messages.create`` arguments: the static system prompt carries the cache mark."""
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "system": [
                {"type": "text", "text": prompt.system, "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [{"role": "user", "content": prompt.user}],
            "output_config": {"format": {"type": "json_schema", "schema": schema}},
        }

    def _invalid(self, problems: Sequence[str], usage: Usage) -> AnthropicJudgeError:
        last = problems[-1] if problems else "no answer"
        earlier = "; ".join(problems[:-1])
        note = f" (earlier: {earlier})" if earlier else ""
        return AnthropicJudgeError(
            f"anthropic judge ({self.model}) gave no valid verdict after {len(problems)} "
            f"answer(s): {last}{note}",
            usage=usage,
        )
