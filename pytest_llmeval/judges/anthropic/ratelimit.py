"""Client-side rate limiting for the Claude judges, paced by the API's own limits.

Three things decide when a request may start (:meth:`RateLimiter.poll`):

1. **The configured limit** (``llmeval_rpm`` over ``llmeval_rpm_window``, 60 s by default): at
   most ``max_requests`` starts in any ``per_seconds`` window, checked on a sliding window of
   start times. A run may burst up to the whole allowance at once (100 requests under a limit
   of 300 per minute start without waiting) and never exceeds it in any window.
2. **The server's budget**, read from every answer's rate-limit headers
   (``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``,
   documented at https://docs.claude.com/en/api/rate-limits). ``remaining`` counts what the
   server had left when it took the answered request. Until the budget is replenished the
   lowest figure counts, less every request still in flight (answers to concurrent requests
   come back in any order, so this is the figure that never overshoots); token budgets are
   turned into requests with the tokens a request has used so far, and ``share`` keeps a
   process to its part when several (xdist workers) use one key. When a budget is used up,
   starts wait until its ``reset`` (the time the API says it is fully replenished): bursting
   to the budget and waiting for the reset keeps about the full rate against a token bucket
   and a fixed or sliding window alike, without refusals.
3. **Refusals**: a 429 pauses every start until its ``retry-after`` (exponential backoff when it
   has none, doubling on consecutive refusals); the first accepted answer ends the backoff. The
   judge's own retry of the refused request waits the same time: the safety net.

Without ``max_requests`` only 2 and 3 apply. Threads and asyncio tasks share one limiter: it
never sleeps itself, :meth:`poll` answers at once with a ticket or the seconds to wait.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from pytest_llmeval.core.verdict import Usage

HEADER_PREFIX = "anthropic-ratelimit-"
DIMENSIONS = ("requests", "tokens", "input-tokens", "output-tokens")
"""The budgets the API reports; ``tokens`` is the most restrictive token limit in effect."""


@dataclass(frozen=True)
class ServerLimit:
    """One budget from an answer's headers: ``reset`` is seconds from now (``None``: unknown)."""

    dimension: str
    remaining: float
    limit: float | None
    reset: float | None


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _seconds_until(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` (epoch) until an RFC 3339 time; ``None`` if unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def parse_limits(headers: Mapping[str, str], now: float | None = None) -> list[ServerLimit]:
    """The budgets in ``headers`` (one per dimension that reports ``remaining``)."""
    wall = time.time() if now is None else now
    limits: list[ServerLimit] = []
    for dimension in DIMENSIONS:
        base = f"{HEADER_PREFIX}{dimension}-"
        remaining = _number(headers.get(base + "remaining"))
        if remaining is None:
            continue
        limits.append(
            ServerLimit(
                dimension=dimension,
                remaining=remaining,
                limit=_number(headers.get(base + "limit")),
                reset=_seconds_until(headers.get(base + "reset"), wall),
            )
        )
    return limits


def _tokens(dimension: str, usage: Usage) -> float:
    """What one answer counted against a token budget (cache reads count for none of them)."""
    spent_in = usage.input_tokens + usage.cache_creation_input_tokens
    if dimension == "input-tokens":
        return spent_in
    if dimension == "output-tokens":
        return usage.output_tokens
    return spent_in + usage.output_tokens


@dataclass(frozen=True)
class Ticket:
    """A granted start: hand it back with the answer (:meth:`RateLimiter.observe`)."""

    seq: int
    started: float


@dataclass(frozen=True)
class _Budget:
    low: float  # the lowest ``remaining`` reported since the budget was last replenished
    until: float  # monotonic time of the reset (the latest one reported)


class RateLimiter:
    """Request starts allowed by the configured limit, the server's budget and its refusals.

    Args:
        max_requests: starts allowed in any ``per_seconds`` window (``None``: no local limit,
            only the server's headers and refusals pace requests).
        per_seconds: the window (``llmeval_rpm_window``); shorter windows mean smaller bursts.
        share: the part of the server's reported budget this process may use (``1/n`` for n
            processes on one API key).
        margin: the window is widened by this fraction, for arrival jitter at the server.
        initial_backoff, max_backoff: the pause after a 429 without ``retry-after``.
        max_pause: cap in seconds on any pause from headers or ``retry-after``.
        poll_interval: longest sleep before asking again (new answers can change the budget).
    """

    def __init__(
        self,
        max_requests: float | None = None,
        per_seconds: float = 60.0,
        *,
        share: float = 1.0,
        margin: float = 0.02,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_pause: float = 60.0,
        poll_interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if max_requests is not None and not max_requests > 0:
            raise ValueError("rate limit needs max_requests > 0 (or None for no local limit)")
        if not per_seconds > 0 or margin < 0 or not 0 < share <= 1:
            raise ValueError("rate limit needs per_seconds > 0, margin >= 0, 0 < share <= 1")
        self.max_requests = max_requests
        self.per_seconds = per_seconds
        self.share = share
        # A fractional allowance (300 rpm over 7 workers) keeps its average rate: whole
        # requests in a proportionally longer window.
        self.capacity = max(1, math.floor(max_requests)) if max_requests else 0
        scale = self.capacity / max_requests if max_requests else 1.0
        self.window = per_seconds * scale * (1.0 + margin)
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_pause = max_pause
        self.poll_interval = poll_interval
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._starts: deque[float] = deque()
        self._seq = 0
        self._in_flight: set[int] = set()
        self._pause_until = -math.inf
        self._refusals = 0
        self._budgets: dict[str, _Budget] = {}
        self._per_request: dict[str, float] = {}
        self.refusals_seen = 0

    @classmethod
    def per_minute(cls, rpm: float) -> RateLimiter:
        """A limiter for ``rpm`` requests per minute (``llmeval_rpm``)."""
        return cls(rpm, 60.0)

    # -- starting ----------------------------------------------------------------------------

    def poll(self) -> Ticket | float:
        """Start now (a :class:`Ticket`) or the seconds to wait before polling again."""
        with self._lock:
            now = self._clock()
            wait = self._wait(now)
            if wait > 0:
                return min(wait, self.poll_interval)
            if self.capacity:
                self._starts.append(now)
                while len(self._starts) > self.capacity:
                    self._starts.popleft()
            self._seq += 1
            self._in_flight.add(self._seq)
            return Ticket(self._seq, now)

    def _wait(self, now: float) -> float:
        wait = self._pause_until - now
        if self.capacity and len(self._starts) >= self.capacity:
            wait = max(wait, self._starts[0] + self.window - now)
        for name, budget in list(self._budgets.items()):
            if budget.until <= now:
                del self._budgets[name]  # replenished: the next answer reports afresh
            elif self._allowance(name, budget) < 1:
                wait = max(wait, budget.until - now)
        return wait

    def _allowance(self, dimension: str, budget: _Budget) -> float:
        """Starts the budget still allows. The answer that reported the lowest ``remaining``
        reached the server last of all answered requests, so every request counted against
        the budget since then is still in flight: subtracting all of them never overshoots."""
        cost = 1.0 if dimension == "requests" else self._per_request.get(dimension, 0.0)
        if cost <= 0:
            return math.inf  # no usage seen yet: tokens cannot be turned into requests
        return budget.low * self.share / cost - len(self._in_flight)

    def acquire(self) -> Ticket:
        """Block the calling thread until a request may start."""
        while True:
            got = self.poll()
            if isinstance(got, Ticket):
                return got
            time.sleep(got)

    async def aacquire(self) -> Ticket:
        """Wait (without blocking the event loop) until a request may start."""
        while True:
            got = self.poll()
            if isinstance(got, Ticket):
                return got
            await asyncio.sleep(got)

    # -- feedback ----------------------------------------------------------------------------

    def release(self, ticket: Ticket) -> None:
        """The request of ``ticket`` is over, however it ended (idempotent)."""
        with self._lock:
            self._in_flight.discard(ticket.seq)

    def observe(
        self, ticket: Ticket, headers: Mapping[str, str] | None, usage: Usage | None = None
    ) -> None:
        """An accepted answer to ``ticket``: its usage and rate-limit headers."""
        with self._lock:
            self._in_flight.discard(ticket.seq)
            self._refusals = 0
            if usage is not None and usage.requests:
                for dimension in DIMENSIONS[1:]:
                    spent = _tokens(dimension, usage)
                    before = self._per_request.get(dimension)
                    # a moving average that follows a rising cost at once
                    self._per_request[dimension] = (
                        spent if before is None else max(spent, 0.8 * before + 0.2 * spent)
                    )
            if headers is not None:
                self._learn(headers)

    def refused(
        self,
        ticket: Ticket,
        retry_after: float | None,
        headers: Mapping[str, str] | None,
        *,
        max_pause: float | None = None,
    ) -> float:
        """A 429 for ``ticket``: pause every start (at most ``max_pause`` seconds, if given, and
        never more than the limiter's own cap); returns the pause in seconds."""
        with self._lock:
            self._in_flight.discard(ticket.seq)
            self._refusals += 1
            self.refusals_seen += 1
            if retry_after is not None and retry_after > 0:
                pause = retry_after
            else:
                pause = self.initial_backoff * 2.0 ** (self._refusals - 1)
                pause = min(pause, self.max_backoff)
            pause = min(pause, self.max_pause if max_pause is None else max_pause, self.max_pause)
            self._pause_until = max(self._pause_until, self._clock() + pause)
            if headers is not None:
                self._learn(headers)
            return pause

    def _learn(self, headers: Mapping[str, str]) -> None:
        now = self._clock()
        for limit in parse_limits(headers, self._wall()):
            if limit.reset is None:
                continue
            low, until = limit.remaining, now + min(limit.reset, self.max_pause)
            known = self._budgets.get(limit.dimension)
            if known is not None and known.until > now:
                # until it is replenished, a budget only goes down
                low, until = min(low, known.low), max(until, known.until)
            self._budgets[limit.dimension] = _Budget(low, until)

    def __repr__(self) -> str:
        return f"RateLimiter(max_requests={self.max_requests}, per_seconds={self.per_seconds})"
