"""The Claude judge: structured verdicts through the official ``anthropic`` SDK.

:class:`AnthropicJudge` scores one response (sync :meth:`~AnthropicJudge.score`, async
:meth:`~AnthropicJudge.ascore`, or many at once through the Message Batches API with
:meth:`~AnthropicJudge.batch_score`); :class:`AnthropicPairwiseJudge` compares two responses in
both orders. Both read ``ANTHROPIC_API_KEY`` / ``ANTHROPIC_BASE_URL`` through the SDK as usual.

Verdicts. The model is asked for ``{score, passed, reasoning, failure_modes}`` through the
SDK's structured outputs (``output_config={"format": {"type": "json_schema", ...}}``) and the
answer is validated locally with ``jsonschema`` (:data:`~pytest_llmeval.judges.prompts.
VERDICT_SCHEMA`). An answer that is not a valid verdict gets one retry; a second invalid
answer raises :class:`AnthropicJudgeError` naming the problem. Nothing ever becomes a default
score.

Retries. The SDK clients are built with ``max_retries=0`` and this module runs its own retry
loop, because the SDK's loop (``_base_client._calculate_retry_timeout``) obeys any
``retry-after`` up to ~50 days without a cap, and its retries bypass a client-side rate
limiter, so a run could exceed ``llmeval_rpm``. Here every attempt, retries included, first
takes a slot from the shared :class:`RateLimiter`; 408/409/429/5xx (529 included), timeouts and
connection errors are retried up to ``max_retries`` times, waiting ``retry-after-ms`` /
``retry-after`` when the server sends one and exponential backoff with jitter otherwise, and
never more than ``max_retry_wait`` seconds for any single wait. The server's ``x-should-retry``
header is obeyed, as the SDK does.

Secrets. The API key is never stored on a judge, and every error message taken from the SDK or
the server is scrubbed of the key (and of anything shaped like an Anthropic key) before it is
put in a :class:`~pytest_llmeval.judges.base.JudgeError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import os
import random
import re
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_llmeval.judges import prompts
from pytest_llmeval.judges.base import (
    JudgeError,
    JudgeIdentity,
    JudgeResult,
    PairwiseResult,
    Preference,
    Usage,
)

if TYPE_CHECKING:
    from anthropic import Anthropic, AsyncAnthropic

    from pytest_llmeval.core.cases import Case

T = TypeVar("T")

DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_MAX_TOKENS = 1024
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 4
DEFAULT_MAX_RETRY_WAIT = 60.0

# Message Batches API limits (per batch): 100,000 requests or 256 MB, whichever comes first.
BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 256 * 1024 * 1024

_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
_DATE_SUFFIX = re.compile(r"-\d{8}$")
_LABEL_UNSAFE = re.compile(r"[^a-z0-9]+")


# --------------------------------------------------------------------------------------------
# Prices and cost
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens for one model (cache write = 5-minute TTL write)."""

    input: float
    output: float
    cache_write: float
    cache_read: float


PRICES_AS_OF = "2026-11"
"""When :data:`DEFAULT_PRICES` was checked against https://platform.claude.com/docs/en/about-claude/pricing."""

DEFAULT_PRICES: dict[str, ModelPrice] = {
    "claude-haiku-4-5": ModelPrice(1.0, 5.0, 1.25, 0.10),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-4-6": ModelPrice(3.0, 15.0, 3.75, 0.30),
    "claude-sonnet-5": ModelPrice(2.0, 10.0, 2.50, 0.20),
    "claude-opus-4-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-6": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-7": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-8": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-5": ModelPrice(5.0, 25.0, 6.25, 0.50),
    "claude-opus-4-1": ModelPrice(15.0, 75.0, 18.75, 1.50),
    "claude-opus-4": ModelPrice(15.0, 75.0, 18.75, 1.50),
    "claude-fable-5": ModelPrice(10.0, 50.0, 12.50, 1.00),
    "claude-mythos-5": ModelPrice(10.0, 50.0, 12.50, 1.00),
    "claude-fable-5-1": ModelPrice(10.0, 50.0, 12.50, 0.25),
    "claude-mythos-5-1": ModelPrice(10.0, 50.0, 12.50, 0.25),
}
"""Standard (non-batch) list prices, USD per million tokens, for the models whose price was
verified on the official pricing page. Models with prompt-length price tiers (e.g. Haiku 5.5)
and models not listed have no entry: :func:`estimate_cost` then returns ``None`` rather than a
guess. Override or extend with :func:`load_prices`."""

BATCH_DISCOUNT = 0.5
"""The Message Batches API bills input and output at 50% of the standard price."""

_PRICE_FIELDS = ("input", "output", "cache_write", "cache_read")


def load_prices(
    source: Mapping[str, Mapping[str, float]] | str | os.PathLike[str] | None = None,
) -> dict[str, ModelPrice]:
    """The default price table with the user's overrides applied.

    ``source`` is a mapping or the path of a JSON file of the shape
    ``{"model-id": {"input": 1.0, "output": 5.0, "cache_write": 1.25, "cache_read": 0.1}}``
    (USD per million tokens; every field required). Raises ``ValueError`` naming the model and
    field for a malformed entry.
    """
    table = dict(DEFAULT_PRICES)
    if source is None:
        return table
    if isinstance(source, Mapping):
        data: Any = source
        origin = "price table"
    else:
        origin = str(source)
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{origin}: cannot read price table: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"{origin}: expected an object mapping model ids to prices")
    for model, entry in data.items():
        if not isinstance(entry, Mapping):
            raise ValueError(f"{origin}: model {model!r}: expected an object of prices")
        values: list[float] = []
        for name in _PRICE_FIELDS:
            value = entry.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"{origin}: model {model!r}: {name!r} must be a non-negative number "
                    "(USD per million tokens)"
                )
            values.append(float(value))
        unknown = set(entry) - set(_PRICE_FIELDS)
        if unknown:
            raise ValueError(f"{origin}: model {model!r}: unknown field(s) {sorted(unknown)}")
        table[str(model)] = ModelPrice(*values)
    return table


def price_for(model: str, prices: Mapping[str, ModelPrice] | None = None) -> ModelPrice | None:
    """The price of ``model`` (a dated id such as ``claude-haiku-4-5-20251001`` falls back to its
    alias), or ``None`` when the table does not know it."""
    table = DEFAULT_PRICES if prices is None else prices
    if model in table:
        return table[model]
    return table.get(_DATE_SUFFIX.sub("", model))


def estimate_cost(
    usage: Usage,
    model: str,
    prices: Mapping[str, ModelPrice] | None = None,
    *,
    batch: bool = False,
) -> float | None:
    """Estimated USD cost of ``usage`` on ``model``; ``None`` when the model has no price.

    cost = (input·p_in + output·p_out + cache_creation·p_write + cache_read·p_read) / 10^6,
    times :data:`BATCH_DISCOUNT` for Message Batches usage (the discount applies to every
    token class, cache reads and writes included, per the pricing page).
    """
    price = price_for(model, prices)
    if price is None:
        return None
    cost = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_creation_input_tokens * price.cache_write
        + usage.cache_read_input_tokens * price.cache_read
    ) / 1_000_000
    return cost * BATCH_DISCOUNT if batch else cost


@dataclass(frozen=True)
class UsageTotals:
    """Everything one judge object spent, split by billing mode (failed calls included)."""

    standard: Usage = field(default_factory=Usage)
    batch: Usage = field(default_factory=Usage)

    @property
    def total(self) -> Usage:
        return self.standard + self.batch

    def cost(self, model: str, prices: Mapping[str, ModelPrice] | None = None) -> float | None:
        """Estimated USD cost (batch usage at the batch discount); ``None`` if unpriced."""
        standard = estimate_cost(self.standard, model, prices)
        batch = estimate_cost(self.batch, model, prices, batch=True)
        if standard is None or batch is None:
            return None
        return standard + batch


# --------------------------------------------------------------------------------------------
# Rate limiting
# --------------------------------------------------------------------------------------------


class RateLimiter:
    """Client-side request limiter shared by threads and asyncio tasks.

    Request starts are spaced at least ``per_seconds * (1 + margin) / max_requests`` apart, so
    any window of ``per_seconds`` holds at most ``max_requests`` starts even when request
    arrival at the server jitters by up to ``margin * per_seconds``. Spacing instead of
    bursting matches how the Anthropic API enforces per-minute limits over shorter intervals.
    Slots are reserved under a lock and waited for outside it; a slot is never given back, so a
    cancelled waiter only makes the run slower, never faster than the limit.
    """

    def __init__(
        self,
        max_requests: float,
        per_seconds: float = 60.0,
        *,
        margin: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not max_requests > 0 or not per_seconds > 0 or margin < 0:
            raise ValueError("rate limit needs max_requests > 0, per_seconds > 0, margin >= 0")
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self.interval = per_seconds * (1.0 + margin) / max_requests
        self._clock = clock
        self._next = -math.inf
        self._lock = threading.Lock()

    @classmethod
    def per_minute(cls, rpm: float) -> RateLimiter:
        """A limiter for ``rpm`` requests per minute (``llmeval_rpm``)."""
        return cls(rpm, 60.0)

    def reserve(self) -> float:
        """Reserve the next slot; returns how many seconds to wait before starting."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
            return slot - now

    def acquire(self) -> None:
        """Block the calling thread until a request may start."""
        delay = self.reserve()
        if delay > 0:
            time.sleep(delay)

    async def aacquire(self) -> None:
        """Wait (without blocking the event loop) until a request may start."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def __repr__(self) -> str:
        return f"RateLimiter(max_requests={self.max_requests}, per_seconds={self.per_seconds})"


# --------------------------------------------------------------------------------------------
# Errors, secrets, retry decisions
# --------------------------------------------------------------------------------------------


class AnthropicJudgeError(JudgeError):
    """A Claude judge failure. ``usage`` is what the failed attempt(s) still cost; ``status``
    is the last HTTP status when there was one."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        usage: Usage | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(scrub(message), retryable=retryable)
        self.usage = usage or Usage()
        self.status = status


@dataclass(frozen=True)
class RetryEvent:
    """Reported to ``on_retry`` before each wait: which attempt failed, why, and the wait."""

    attempt: int
    reason: str
    wait: float
    status: int | None = None
    retry_after: float | None = None


def _secrets() -> list[str]:
    values = [os.environ.get("ANTHROPIC_API_KEY"), os.environ.get("ANTHROPIC_AUTH_TOKEN")]
    return [v for v in values if v and len(v) >= 8]


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without the API key/auth token (env or ``extra``) or anything key-shaped."""
    for secret in [*_secrets(), *(s for s in extra if s and len(s) >= 8)]:
        text = text.replace(secret, "[redacted]")
    return _KEY_SHAPE.sub("[redacted]", text)


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))


@dataclass(frozen=True)
class _Failure:
    error: AnthropicJudgeError
    transient: bool
    retry_after: float | None = None


def _classify(exc: BaseException, *, model: str, timeout: float, retry_timeouts: bool) -> _Failure:
    """Turn an SDK exception into a judge error and whether trying again may help.

    Raises ``exc`` again when it is not an SDK failure (a bug should surface as itself).
    """
    import anthropic
    import httpx2

    where = f"anthropic judge ({model})"
    if isinstance(exc, anthropic.APITimeoutError):
        return _Failure(
            AnthropicJudgeError(f"{where}: request timed out after {timeout:g} s", retryable=True),
            transient=retry_timeouts,
        )
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return _Failure(
            AnthropicJudgeError(f"{where}: connection error: {exc}", retryable=True),
            transient=retry_timeouts,
        )
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        headers = exc.response.headers
        should_retry = headers.get("x-should-retry")
        if should_retry in ("true", "false"):
            transient = should_retry == "true"
        else:
            transient = status in (408, 409, 429) or status >= 500
        kind = exc.type or "error"
        detail = exc.api_message or exc.message
        request_id = f" (request-id {exc.request_id})" if exc.request_id else ""
        return _Failure(
            AnthropicJudgeError(
                f"{where}: HTTP {status} {kind}: {detail}{request_id}",
                retryable=transient,
                status=status,
            ),
            transient=transient,
            retry_after=parse_retry_after(headers),
        )
    if isinstance(exc, anthropic.CredentialsError):
        return _Failure(
            AnthropicJudgeError(f"{where}: no usable credentials (set ANTHROPIC_API_KEY): {exc}"),
            transient=False,
        )
    if isinstance(exc, anthropic.AnthropicError):
        return _Failure(AnthropicJudgeError(f"{where}: {exc}"), transient=False)
    if isinstance(exc, TypeError) and "authentication method" in str(exc):
        return _Failure(
            AnthropicJudgeError(
                f"{where}: no usable credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"
            ),
            transient=False,
        )
    raise exc


class _InvalidOutput(Exception):
    """The model answered, but not with a valid verdict."""


def _usage_of(message: Any) -> Usage:
    usage = getattr(message, "usage", None)
    if usage is None:  # a malformed answer (see _json_output): count the request only
        return Usage(requests=1)
    return Usage(
        input_tokens=int(usage.input_tokens or 0),
        output_tokens=int(usage.output_tokens or 0),
        cache_creation_input_tokens=int(usage.cache_creation_input_tokens or 0),
        cache_read_input_tokens=int(usage.cache_read_input_tokens or 0),
        requests=1,
    )


_VALIDATORS: dict[int, Any] = {}


def _validate(data: Any, schema: dict[str, Any]) -> None:
    import jsonschema

    validator = _VALIDATORS.get(id(schema))
    if validator is None:
        validator = jsonschema.Draft202012Validator(schema)
        _VALIDATORS[id(schema)] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "verdict"
        raise _InvalidOutput(f"schema violation at {where}: {error.message}")


def _json_output(message: Any, schema: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The validated JSON object of a structured-output reply, or :class:`_InvalidOutput`."""
    content = getattr(message, "content", None)
    if not isinstance(content, list):
        # The SDK hands back a str for a non-JSON body and a loosely built model for JSON of
        # the wrong shape; neither is a Messages API answer.
        raise _InvalidOutput(f"the API returned a malformed response ({type(message).__name__})")
    stop = getattr(message, "stop_reason", None)
    if stop == "refusal":
        raise _InvalidOutput("the model refused to answer")
    if stop == "max_tokens":
        raise _InvalidOutput(f"the answer was cut off at max_tokens={max_tokens}")
    text = "".join(
        str(getattr(block, "text", "")) for block in content if getattr(block, "type", "") == "text"
    ).strip()
    if not text:
        raise _InvalidOutput("the answer contained no text")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        snippet = text if len(text) <= 80 else text[:77] + "..."
        raise _InvalidOutput(f"the answer is not JSON: {snippet!r}") from None
    _validate(data, schema)
    if not isinstance(data, dict):  # pragma: no cover - the schema requires an object
        raise _InvalidOutput("the answer is not a JSON object")
    return data


def _label(mode: str) -> str:
    return _LABEL_UNSAFE.sub("_", mode.strip().lower()).strip("_")


def _verdict(message: Any, usage: Usage, max_tokens: int) -> JudgeResult:
    data = _json_output(message, prompts.VERDICT_SCHEMA, max_tokens)
    modes = tuple(dict.fromkeys(m for m in (_label(x) for x in data["failure_modes"]) if m))
    return JudgeResult(
        score=float(data["score"]),
        reasoning=str(data["reasoning"]).strip(),
        failure_modes=modes,
        passed=data.get("passed"),
        usage=usage,
    )


# --------------------------------------------------------------------------------------------
# Shared client machinery
# --------------------------------------------------------------------------------------------


class _ClaudeClient:
    """Configuration, SDK clients, rate limiting and the retry loop shared by both judges."""

    #: Judges that call a remote API (the plugin's offline mode refuses them).
    network = True
    _name = "anthropic"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
        rpm: float | None = None,
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
        self.model = model
        self.max_tokens = max_tokens
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.max_retry_wait = float(max_retry_wait)
        self.rate_limiter = rate_limiter or (RateLimiter.per_minute(rpm) if rpm else None)
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
        self._standard = Usage()
        self._batch = Usage()

    def __repr__(self) -> str:
        limit = f", rpm={self.rate_limiter.max_requests:g}" if self.rate_limiter else ""
        return (
            f"{type(self).__name__}(model={self.model!r}, prompt_version="
            f"{prompts.PROMPT_VERSION!r}, max_tokens={self.max_tokens}, timeout={self.timeout:g}, "
            f"max_retries={self.max_retries}, max_retry_wait={self.max_retry_wait:g}{limit})"
        )

    # -- clients ---------------------------------------------------------------------------

    def _client(self) -> Anthropic:
        with self._lock:
            if self._sync_client is None:
                import anthropic

                self._sync_client = anthropic.Anthropic(
                    base_url=self.base_url, timeout=self.timeout, max_retries=0
                )
            return self._sync_client

    def _aclient(self) -> AsyncAnthropic:
        # An httpx async client is bound to the event loop that first used it, so keep one
        # client per running loop.
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._async_clients.get(loop)
            if client is None:
                import anthropic

                client = anthropic.AsyncAnthropic(
                    base_url=self.base_url, timeout=self.timeout, max_retries=0
                )
                self._async_clients[loop] = client
            return client

    def close(self) -> None:
        """Close the synchronous HTTP client (the judge stays usable; it reconnects)."""
        with self._lock:
            client, self._sync_client = self._sync_client, None
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

    # -- retry loop ------------------------------------------------------------------------

    def _next_wait(self, failure: _Failure, attempt: int) -> float | None:
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

    def _give_up(self, failure: _Failure, attempt: int) -> AnthropicJudgeError:
        error = failure.error
        if failure.transient and attempt > 0:
            return AnthropicJudgeError(
                f"{error} (gave up after {attempt + 1} attempts)",
                retryable=True,
                status=error.status,
            )
        return error

    def _call(self, fn: Callable[[Anthropic], T], *, retry_timeouts: bool = True) -> T:
        attempt = 0
        while True:
            try:
                # The client is built (SDK import, credentials) before a rate-limit slot is
                # taken, so slow set-up cannot bunch requests together after their slots.
                client = self._client()
                if self.rate_limiter is not None:
                    self.rate_limiter.acquire()
                return fn(client)
            except Exception as exc:
                failure = _classify(
                    exc, model=self.model, timeout=self.timeout, retry_timeouts=retry_timeouts
                )
            wait = self._next_wait(failure, attempt)
            if wait is None:
                raise self._give_up(failure, attempt) from None
            time.sleep(wait)
            attempt += 1

    async def _acall(self, fn: Callable[[AsyncAnthropic], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                client = self._aclient()
                if self.rate_limiter is not None:
                    await self.rate_limiter.aacquire()
                return await fn(client)
            except Exception as exc:
                failure = _classify(
                    exc, model=self.model, timeout=self.timeout, retry_timeouts=True
                )
            wait = self._next_wait(failure, attempt)
            if wait is None:
                raise self._give_up(failure, attempt) from None
            await asyncio.sleep(wait)
            attempt += 1

    # -- requests --------------------------------------------------------------------------

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

    def _ask(
        self,
        params: dict[str, Any],
        parse: Callable[[Any, Usage], T],
        *,
        attempts: int = 2,
        usage: Usage | None = None,
        problems: Sequence[str] = (),
    ) -> T:
        """Send ``params`` until ``parse`` accepts the answer (at most ``attempts`` answers)."""
        spent = usage or Usage()
        seen = list(problems)
        for _ in range(attempts):
            try:
                message = self._call(lambda c: c.messages.create(**params))
            except AnthropicJudgeError as exc:
                exc.usage = spent
                raise
            got = _usage_of(message)
            self._spent(got)
            spent = spent + got
            try:
                return parse(message, spent)
            except _InvalidOutput as exc:
                seen.append(str(exc))
        raise self._invalid(seen, spent)

    async def _aask(
        self, params: dict[str, Any], parse: Callable[[Any, Usage], T], *, attempts: int = 2
    ) -> T:
        spent = Usage()
        seen: list[str] = []
        for _ in range(attempts):
            try:
                message = await self._acall(lambda c: c.messages.create(**params))
            except AnthropicJudgeError as exc:
                exc.usage = spent
                raise
            got = _usage_of(message)
            self._spent(got)
            spent = spent + got
            try:
                return parse(message, spent)
            except _InvalidOutput as exc:
                seen.append(str(exc))
        raise self._invalid(seen, spent)

    def _invalid(self, problems: Sequence[str], usage: Usage) -> AnthropicJudgeError:
        last = problems[-1] if problems else "no answer"
        earlier = "; ".join(problems[:-1])
        note = f" (earlier: {earlier})" if earlier else ""
        return AnthropicJudgeError(
            f"anthropic judge ({self.model}) gave no valid verdict after {len(problems)} "
            f"answer(s): {last}{note}",
            usage=usage,
        )


# --------------------------------------------------------------------------------------------
# The judge
# --------------------------------------------------------------------------------------------


class AnthropicJudge(_ClaudeClient):
    """Scores a response with Claude (structured verdict, injection-hardened prompt).

    Args:
        model: Claude model id (``llmeval_judge_model``), default ``claude-haiku-4-5``.
        max_tokens: output token cap per verdict.
        timeout: seconds per HTTP request.
        max_retries: retries of a failed request (429/529/5xx/408/409/timeouts/connection).
        max_retry_wait: cap in seconds on any single wait, ``retry-after`` included.
        rpm: client-side requests-per-minute limit (every attempt counts), or
        rate_limiter: a :class:`RateLimiter` shared with other judges (give one or neither).
        base_url: API base URL; default: the SDK's (``ANTHROPIC_BASE_URL`` or the real API).
        initial_backoff, max_backoff: exponential backoff (seconds) without ``retry-after``.
        on_retry: called with a :class:`RetryEvent` before each retry wait.
        prices: price table for :meth:`estimate_cost` (default :data:`DEFAULT_PRICES`).

    The API key comes from the environment through the SDK and is never stored here.
    """

    def request_params(
        self, case: Case, response: str, *, nonce: str | None = None
    ) -> dict[str, Any]:
        """The exact ``messages.create`` arguments used to judge ``response`` to ``case``."""
        return self._params(
            prompts.build_score_prompt(case, response, nonce=nonce), prompts.VERDICT_OUTPUT_SCHEMA
        )

    def _parse(self, message: Any, usage: Usage) -> JudgeResult:
        return _verdict(message, usage, self.max_tokens)

    def score(self, case: Case, response: str) -> JudgeResult:
        """Judge ``response`` to ``case``; raises :class:`AnthropicJudgeError` if no verdict."""
        return self._ask(self.request_params(case, response), self._parse)

    async def ascore(self, case: Case, response: str) -> JudgeResult:
        """Async :meth:`score` (an ``AsyncAnthropic`` client per event loop)."""
        return await self._aask(self.request_params(case, response), self._parse)

    # -- Message Batches -------------------------------------------------------------------

    def batch_score(
        self,
        jobs: Sequence[tuple[str, Case, str]],
        *,
        poll_interval: float = 10.0,
        progress: Callable[[str], None] | None = None,
        max_wait: float | None = None,
        max_batch_requests: int = BATCH_MAX_REQUESTS,
        max_batch_bytes: int = BATCH_MAX_BYTES,
    ) -> dict[str, JudgeResult | JudgeError]:
        """Judge many ``(job_id, case, response)`` through the Message Batches API.

        Jobs are split into batches within the API limits (requests and bytes), every batch is
        created, then all are polled every ``poll_interval`` seconds with a ``progress`` line
        until they end; results are mapped back by ``custom_id`` (internal ids, so any job id
        works). Every job id gets a :class:`JudgeResult` or a :class:`JudgeError`: errored,
        expired and canceled requests, a batch that could not be created or polled, and a
        verdict still invalid after one direct (non-batch) retry. With ``max_wait`` (seconds),
        batches still running then are canceled and their unfinished requests become errors.
        Ctrl-C cancels the batches still running (best effort) and re-raises.
        """
        ids = [job_id for job_id, _, _ in jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("batch_score: job ids must be unique")
        say = progress or (lambda _line: None)
        results: dict[str, JudgeResult | JudgeError] = {}
        requests: list[tuple[str, str, Case, str, dict[str, Any]]] = []
        for index, (job_id, case, response) in enumerate(jobs):
            params = self.request_params(case, response)
            requests.append((f"j{index}", job_id, case, response, params))
        chunks = _chunk(requests, max_batch_requests, int(max_batch_bytes * 0.95))

        running: list[_Batch] = []
        try:
            for number, chunk in enumerate(chunks, 1):
                body = [{"custom_id": cid, "params": params} for cid, _, _, _, params in chunk]
                try:
                    # A timed-out create may have created the batch: never retry a timeout here
                    # (a duplicate batch is billed twice); status errors are safe to retry.
                    created = self._create_batch(body)
                except AnthropicJudgeError as exc:
                    error = AnthropicJudgeError(f"batch {number} not created: {exc}")
                    for _, job_id, _, _, _ in chunk:
                        results[job_id] = error
                    continue
                say(f"llmeval: batch {created.id} created with {len(chunk)} request(s)")
                running.append(_Batch(created.id, number, chunk))
            self._poll(running, poll_interval, say, max_wait)
        except KeyboardInterrupt:
            self._cancel([b for b in running if not b.ended])
            raise

        for batch in running:
            results.update(self._collect(batch))
        return results

    def _create_batch(self, body: list[dict[str, Any]]) -> Any:
        return self._call(
            lambda c: c.messages.batches.create(requests=body),  # type: ignore[arg-type]
            retry_timeouts=False,
        )

    def _retrieve_batch(self, batch_id: str) -> Any:
        return self._call(lambda c: c.messages.batches.retrieve(batch_id))

    def _poll(
        self,
        batches: list[_Batch],
        poll_interval: float,
        say: Callable[[str], None],
        max_wait: float | None,
    ) -> None:
        start = time.monotonic()
        canceled_at: float | None = None
        while True:
            for batch in batches:
                if batch.ended or batch.error is not None:
                    continue
                try:
                    info = self._retrieve_batch(batch.id)
                except AnthropicJudgeError as exc:
                    batch.error = AnthropicJudgeError(
                        f"batch {batch.id} could not be polled: {exc}", retryable=True
                    )
                    continue
                counts = info.request_counts
                total = len(batch.requests)
                done = total - counts.processing
                say(
                    f"llmeval: batch {batch.id}: {info.processing_status}, {done}/{total} done "
                    f"({counts.succeeded} succeeded, {counts.errored} errored, "
                    f"{counts.expired} expired, {counts.canceled} canceled), "
                    f"{time.monotonic() - start:.0f} s elapsed"
                )
                batch.ended = info.processing_status == "ended"
            waiting = [b for b in batches if not b.ended and b.error is None]
            if not waiting:
                return
            elapsed = time.monotonic() - start
            if max_wait is not None and elapsed >= max_wait:
                if canceled_at is None:
                    say(f"llmeval: batches still running after {max_wait:g} s; canceling them")
                    self._cancel(waiting)
                    canceled_at = elapsed
                elif elapsed - canceled_at > max(60.0, 10 * poll_interval):
                    for batch in waiting:
                        batch.error = AnthropicJudgeError(
                            f"batch {batch.id} did not end after being canceled", retryable=True
                        )
                    return
            time.sleep(poll_interval)

    def _cancel(self, batches: Iterable[_Batch]) -> None:
        client = self._client()
        for batch in batches:
            # Best effort: the run is being stopped anyway.
            with contextlib.suppress(Exception):
                client.messages.batches.cancel(batch.id)

    def _collect(self, batch: _Batch) -> dict[str, JudgeResult | JudgeError]:
        out: dict[str, JudgeResult | JudgeError] = {}
        by_cid = {
            cid: (job_id, case, response) for cid, job_id, case, response, _ in batch.requests
        }
        if batch.error is not None:
            return {job_id: batch.error for job_id, _, _ in by_cid.values()}
        try:
            lines = self._call(lambda c: list(c.messages.batches.results(batch.id)))
        except AnthropicJudgeError as exc:
            error = AnthropicJudgeError(
                f"results of batch {batch.id} could not be fetched: {exc}", retryable=True
            )
            return {job_id: error for job_id, _, _ in by_cid.values()}
        for line in lines:
            entry = by_cid.get(line.custom_id)
            if entry is None:
                continue
            job_id, case, response = entry
            out[job_id] = self._batch_result(line.result, case, response, batch.id)
        for job_id, _, _ in by_cid.values():
            if job_id not in out:
                out[job_id] = AnthropicJudgeError(
                    f"batch {batch.id} returned no result for this case", retryable=True
                )
        return out

    def _batch_result(
        self, result: Any, case: Case, response: str, batch_id: str
    ) -> JudgeResult | JudgeError:
        kind = result.type
        if kind == "succeeded":
            usage = _usage_of(result.message)
            self._spent(usage, batch=True)
            try:
                return self._parse(result.message, usage)
            except _InvalidOutput as exc:
                # The one retry for an invalid verdict goes through the Messages API directly.
                try:
                    return self._ask(
                        self.request_params(case, response),
                        self._parse,
                        attempts=1,
                        usage=usage,
                        problems=[str(exc)],
                    )
                except JudgeError as error:
                    return error
        if kind == "errored":
            err = result.error.error
            err_type = getattr(err, "type", "error")
            transient = err_type in ("overloaded_error", "api_error", "rate_limit_error")
            return AnthropicJudgeError(
                f"anthropic judge ({self.model}): batch {batch_id} request errored: "
                f"{err_type}: {getattr(err, 'message', '')}",
                retryable=transient,
            )
        if kind == "expired":
            return AnthropicJudgeError(
                f"anthropic judge ({self.model}): batch {batch_id} request expired before it "
                "was processed",
                retryable=True,
            )
        if kind == "canceled":
            return AnthropicJudgeError(
                f"anthropic judge ({self.model}): batch {batch_id} request was canceled",
                retryable=True,
            )
        return AnthropicJudgeError(f"batch {batch_id}: unknown result type {kind!r}")


@dataclass
class _Batch:
    id: str
    number: int
    requests: list[tuple[str, str, Case, str, dict[str, Any]]]
    ended: bool = False
    error: AnthropicJudgeError | None = None


def _chunk(
    requests: list[tuple[str, str, Case, str, dict[str, Any]]], max_requests: int, max_bytes: int
) -> list[list[tuple[str, str, Case, str, dict[str, Any]]]]:
    """Split batch requests so no batch exceeds the request-count or byte limit."""
    if max_requests < 1:
        raise ValueError("max_batch_requests must be at least 1")
    chunks: list[list[tuple[str, str, Case, str, dict[str, Any]]]] = []
    current: list[tuple[str, str, Case, str, dict[str, Any]]] = []
    size = 0
    for request in requests:
        # Per-request JSON size plus separators; the envelope is small and covered by the 5%
        # margin the caller keeps below the byte limit.
        cost = len(json.dumps({"custom_id": request[0], "params": request[4]}).encode()) + 2
        if current and (len(current) >= max_requests or size + cost > max_bytes):
            chunks.append(current)
            current, size = [], 0
        current.append(request)
        size += cost
    if current:
        chunks.append(current)
    return chunks


# --------------------------------------------------------------------------------------------
# Pairwise
# --------------------------------------------------------------------------------------------


class AnthropicPairwiseJudge(_ClaudeClient):
    """Compares two responses with Claude, asking in both orders to cancel position bias.

    Same constructor arguments as :class:`AnthropicJudge`. When the two orders disagree the
    result is a tie with ``consistent=False``; :func:`position_consistency_rate` summarises
    many results.
    """

    _name = "anthropic-pairwise"

    def request_params(self, question: str, first: str, second: str) -> dict[str, Any]:
        """The ``messages.create`` arguments presenting ``first`` then ``second``."""
        return self._params(
            prompts.build_pairwise_prompt(question, first, second), prompts.PAIRWISE_OUTPUT_SCHEMA
        )

    def _parse(self, message: Any, usage: Usage) -> tuple[str, str, Usage]:
        data = _json_output(message, prompts.PAIRWISE_SCHEMA, self.max_tokens)
        return str(data["preference"]), str(data["reasoning"]).strip(), usage

    def compare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        """Which of ``response_a`` / ``response_b`` is better (asked as A-B, then B-A)."""
        ab = self._ask(self.request_params(question, response_a, response_b), self._parse)
        ba = self._ask(self.request_params(question, response_b, response_a), self._parse)
        return _combine(ab, ba)

    async def acompare(self, question: str, response_a: str, response_b: str) -> PairwiseResult:
        """Async :meth:`compare`; the two orders are asked concurrently."""
        ab, ba = await asyncio.gather(
            self._aask(self.request_params(question, response_a, response_b), self._parse),
            self._aask(self.request_params(question, response_b, response_a), self._parse),
        )
        return _combine(ab, ba)


def _combine(ab: tuple[str, str, Usage], ba: tuple[str, str, Usage]) -> PairwiseResult:
    as_ab: dict[str, Preference] = {"first": "a", "second": "b", "tie": "tie"}
    as_ba: dict[str, Preference] = {"first": "b", "second": "a", "tie": "tie"}
    first, second = as_ab[ab[0]], as_ba[ba[0]]
    consistent = first == second
    reasoning = f"A shown first: {ab[1]} | B shown first: {ba[1]}"
    return PairwiseResult(
        preference=first if consistent else "tie",
        consistent=consistent,
        reasoning=reasoning,
        usage=ab[2] + ba[2],
    )


def position_consistency_rate(results: Iterable[PairwiseResult]) -> float | None:
    """Share of comparisons whose two orders agreed (``None`` for no comparisons)."""
    items = list(results)
    if not items:
        return None
    return sum(1 for r in items if r.consistent) / len(items)


_OPTION_NAMES = frozenset(
    {
        "model",
        "max_tokens",
        "timeout",
        "max_retries",
        "max_retry_wait",
        "rpm",
        "rate_limiter",
        "base_url",
        "on_retry",
        "prices",
        "prices_file",
    }
)


def judge_from_options(options: Mapping[str, Any]) -> AnthropicJudge:
    """Build an :class:`AnthropicJudge` from plugin settings.

    Keys (all optional; ``None`` means "use the default"): ``model``, ``max_tokens``,
    ``timeout``, ``max_retries``, ``max_retry_wait``, ``rpm``, ``rate_limiter``, ``base_url``,
    ``on_retry``, ``prices`` (a mapping as accepted by :func:`load_prices`) and ``prices_file``
    (a JSON price file). An unknown key or a bad price table raises ``ValueError`` so a wiring
    mistake is not silent.
    """
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise ValueError(f"anthropic judge: unknown option(s) {sorted(unknown)}")
    kwargs = {k: v for k, v in options.items() if v is not None}
    model = str(kwargs.pop("model", DEFAULT_MODEL))
    prices_file = kwargs.pop("prices_file", None)
    prices = kwargs.pop("prices", None)
    if prices_file is not None or prices is not None:
        table = load_prices(prices_file) if prices_file is not None else dict(DEFAULT_PRICES)
        if prices is not None:
            table.update(load_prices(prices))
        kwargs["prices"] = table
    return AnthropicJudge(model, **kwargs)
