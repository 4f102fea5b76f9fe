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
   starts wait until its ``reset`` (the time the API says it is fully replenished). A
   ``reset`` given in whole seconds is read as the end of that second.
3. **The server's request limit, learnt**: ``requests-limit`` is the allowance L, and every
   answer bounds its window from above: the server would be fully replenished ``reset``
   after the request started if it refilled L per W, whether it is a token bucket (the API's
   documented algorithm) or a sliding window, so W <= (reset - start) * L / (L - remaining).
   The smallest bound (the first answer that found the budget used up gives W itself, plus
   the request's trip to the server) becomes a sliding window of ``L * share`` starts per W
   (widened by ``margin``) over this process's own start times, less what the headers show
   others on the key used. An exhausted request budget then no longer holds every start
   until the window is empty (``reset``): each start waits only for the slot of the start W
   before it, as the server frees it. No more than L start in any W, which a token bucket
   and a sliding window of L per W both accept. When the server counted more than this
   process can have sent (others use the key), only the budget paces until its reset. A
   refusal the learnt window let through (a clock that disagrees with the server's) widens
   it: the L previous starts were all still counted, so W is longer than they span.
   **Exact slots.** Better than the bound, an answer's ``reset`` says when the server frees
   the slot of that very request: a sliding window frees it W after the request arrived,
   which is when the window would be empty again (the request was the newest it counted);
   a token bucket would be full again then, so after the L - 1 requests that followed it at
   most, at least one token is back. So a start waits for the latest ``reset`` of the start
   L before it and of every start before that one (a request may reach the server after
   later ones), once all of them are answered (the bound covers the time before), plus
   ``EXACT_SLACK``: then only the L - 1 starts after that one can have reached the server
   since. A refusal for requests turns exact slots off: the server's clock is not the one
   its resets were read with.
4. **Refusals**: a 429 pauses every start until its ``retry-after`` (exponential backoff when it
   has none, doubling on consecutive refusals); the first accepted answer ends the backoff. The
   judge's own retry of the refused request waits the same time: the safety net. The SDK's
   own retries are off (``max_retries=0``), so no wait is ever added to another.

Without ``max_requests`` only 2 to 4 apply. Threads and asyncio tasks share one limiter: it
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
    seconds = when.timestamp() - now
    if "." not in value:
        seconds += 1.0  # whole seconds: the reset may be anywhere in that second
    return max(0.0, seconds)


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


KEPT_STARTS = 4096
"""Start times kept at least (a limit of L needs the last L; more if the limit is larger)."""
MAX_KEPT_STARTS = 100_000
TIGHT = 0.1
"""An answer bounds the window tightly when at most this part of the limit remained."""
EXACT_SLACK = 0.01
"""Seconds after a slot's ``reset`` before a start takes it: a request reaching the server a
little late or a server clock a few milliseconds behind never makes that start too early."""


class RateLimiter:
    """Request starts allowed by the configured limit, the server's budget and its refusals.

    Args:
        max_requests: starts allowed in any ``per_seconds`` window (``None``: no local limit,
            only the server's headers and refusals pace requests).
        per_seconds: the window (``llmeval_rpm_window``); shorter windows mean smaller bursts.
        share: the part of the server's reported budget this process may use (``1/n`` for n
            processes on one API key).
        margin: the windows (configured and learnt) are widened by this fraction, for arrival
            jitter at the server.
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
        self.margin = margin
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
        self._starts: deque[float] = deque()  # every start, the last ``_keep`` of them
        self._keep = min(MAX_KEPT_STARTS, max(self.capacity, KEPT_STARTS))
        self._seq = 0
        self._in_flight: set[int] = set()
        self._pause_until = -math.inf
        self._refusals = 0
        self._budgets: dict[str, _Budget] = {}
        self._per_request: dict[str, float] = {}
        # the server's request limit, learnt from the headers
        self.server_limit: float | None = None
        self._window_above = math.inf  # the smallest upper bound on its window (answers)
        self._window_below = 0.0  # the largest lower bound (refusals despite the window)
        self._shared_until = -math.inf  # others use the key: the learnt window is off till then
        # exact slots: when the server frees the slot of each answered start (by ticket seq);
        # ``_freed_max`` is the latest of them for every start up to ``_folded``
        self._frees: dict[int, float] = {}
        self._folded = 0
        self._freed_max = -math.inf
        self._exact = True  # off after a refusal for requests
        self.refusals_seen = 0

    @classmethod
    def per_minute(cls, rpm: float) -> RateLimiter:
        """A limiter for ``rpm`` requests per minute (``llmeval_rpm``)."""
        return cls(rpm, 60.0)

    @property
    def server_window(self) -> float | None:
        """The learnt window of the server's request limit in seconds (``None``: not yet)."""
        with self._lock:
            return self._learnt_window()

    def _learnt_window(self) -> float | None:
        if self.server_limit is None or not math.isfinite(self._window_above):
            return None
        return max(self._window_above, self._window_below)

    # -- starting ----------------------------------------------------------------------------

    def poll(self) -> Ticket | float:
        """Start now (a :class:`Ticket`) or the seconds to wait before polling again."""
        with self._lock:
            now = self._clock()
            wait = self._wait(now)
            if wait > 0:
                return min(wait, self.poll_interval)
            self._starts.append(now)
            while len(self._starts) > self._keep:
                self._starts.popleft()
            self._seq += 1
            self._in_flight.add(self._seq)
            return Ticket(self._seq, now)

    def _slot(self, count: int, window: float, now: float) -> float:
        """Seconds until fewer than ``count`` of the kept starts lie in the last ``window``."""
        if count < 1:
            return math.inf
        if len(self._starts) < count:
            return 0.0
        return self._starts[-count] + window - now

    def _wait(self, now: float) -> float:
        wait = self._pause_until - now
        if self.capacity:
            wait = max(wait, self._slot(self.capacity, self.window, now))
        learnt = self._learnt_slot(now)
        for name, budget in list(self._budgets.items()):
            if budget.until <= now:
                del self._budgets[name]  # replenished: the next answer reports afresh
            elif self._allowance(name, budget) < 1:
                until = budget.until - now
                if name == "requests" and learnt is not None:
                    until = min(until, learnt)  # the learnt window frees slots one by one
                wait = max(wait, until)
        if learnt is not None and "requests" not in self._budgets:
            wait = max(wait, learnt)  # replenished, or not heard of since: the window alone
        return wait

    def _learnt_slot(self, now: float) -> float | None:
        """Seconds until the server's request limit has a free slot for this process, from its
        exact slots or its learnt window (``None``: nothing learnt)."""
        limit = self.server_limit
        if limit is None or self._shared_until > now:
            return None
        window = self._learnt_window()
        count = math.floor(limit * self.share)
        if count < 1:
            return None if window is None else math.inf
        if len(self._starts) < count:
            return None if window is None else 0.0
        waits = []
        if window is not None:
            waits.append(self._starts[-count] + window * (1.0 + self.margin) - now)
        freed = self._exact_slot(self._seq - count + 1)
        if freed is not None:
            waits.append(freed + EXACT_SLACK - now)
        return min(waits) if waits else None

    def _exact_slot(self, seq: int) -> float | None:
        """When the server frees the slot of start ``seq``: the latest ``reset`` of it and of
        every start before it (``None``: one of them is still in flight, or exact slots are
        off)."""
        if not self._exact or seq < 1:
            return None
        if self._in_flight and min(self._in_flight) <= seq:
            return None  # it may still reach the server after all the answered ones
        self._fold(seq)
        return self._freed_max if math.isfinite(self._freed_max) else None

    def _fold(self, seq: int) -> None:
        while self._folded < seq:
            self._folded += 1
            freed = self._frees.pop(self._folded, None)
            if freed is not None:
                self._freed_max = max(self._freed_max, freed)

    def _note_freed(self, seq: int, freed: float) -> None:
        if seq <= self._folded:
            self._freed_max = max(self._freed_max, freed)
            return
        self._frees[seq] = freed
        if len(self._frees) > 2 * self._keep:  # never asked for (the key is shared): fold
            self._fold(self._seq - self._keep)

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
                self._learn(headers, ticket)

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
                self._widen(ticket, headers)
                self._learn(headers)
            return pause

    def _widen(self, ticket: Ticket, headers: Mapping[str, str]) -> None:
        """A refusal for want of requests while the learnt window had room: the server still
        counted the L starts before ``ticket``, so its window is longer than they span."""
        window, limit = self._learnt_window(), self.server_limit
        if limit is not None and _number(headers.get(HEADER_PREFIX + "requests-remaining")) == 0:
            self._exact = False  # the server's resets are not to be taken at their word
        if window is None or limit is None:
            return
        if _number(headers.get(HEADER_PREFIX + "requests-remaining")) != 0:
            return  # refused for tokens (or no telling): says nothing about the window
        below = window * 1.05  # at least a little wider each time
        count = math.floor(limit * self.share)
        before = [t for t in self._starts if t < ticket.started]
        if self.share == 1 and 1 <= count <= len(before):
            # alone on the key, all L were this process's own
            below = max(below, (ticket.started - before[-count]) * (1.0 + self.margin))
        self._window_below = max(self._window_below, below)

    def _learn(self, headers: Mapping[str, str], answered: Ticket | None = None) -> None:
        now = self._clock()
        for limit in parse_limits(headers, self._wall()):
            if limit.reset is None:
                continue
            reset = min(limit.reset, self.max_pause)
            if limit.dimension == "requests" and answered is not None:
                self._learn_window(limit, answered, now)
            low, until = limit.remaining, now + reset
            known = self._budgets.get(limit.dimension)
            if known is not None and known.until > now:
                # until it is replenished, a budget only goes down
                low, until = min(low, known.low), max(until, known.until)
            self._budgets[limit.dimension] = _Budget(low, until)

    def _learn_window(self, limit: ServerLimit, answered: Ticket, now: float) -> None:
        """Bound the server's request window from an accepted answer (see the module doc)."""
        if limit.limit is None or limit.reset is None or not limit.limit >= 1:
            return
        if limit.limit != self.server_limit:  # a new limit (another tier): learn afresh
            self.server_limit = limit.limit
            self._window_above, self._window_below = math.inf, 0.0
            wanted = max(self.capacity, KEPT_STARTS, math.floor(limit.limit * self.share))
            self._keep = min(MAX_KEPT_STARTS, wanted)
        # this request's slot is free again at the reset (sliding window or token bucket)
        self._note_freed(answered.seq, now + min(limit.reset, self.max_pause))
        used = min(limit.limit, limit.limit - limit.remaining)
        if used <= 0:
            return
        elapsed = now + limit.reset - answered.started
        if limit.remaining <= TIGHT * limit.limit and used > 1:
            # a token bucket's level is a fraction: ``remaining`` may be up to 1 below it
            self._window_above = min(self._window_above, elapsed * limit.limit / (used - 1))
        if used > self._counted(answered.started - elapsed) / self.share:
            # The server counted more than this process (its part, with ``share``) can have
            # sent: others use the key too. Their requests free no slot this process knows of,
            # so until the reset only the budget paces (``remaining`` less all in flight).
            self._shared_until = max(self._shared_until, now + limit.reset)

    def _counted(self, since: float) -> int:
        """This process's starts after ``since``: every one the server may have counted by
        the time it took an answered request (a start after it may still have got there first,
        so those started since count too)."""
        count = 0
        for index in range(len(self._starts) - 1, -1, -1):
            if self._starts[index] <= since:
                break
            count += 1
        return count

    def __repr__(self) -> str:
        return f"RateLimiter(max_requests={self.max_requests}, per_seconds={self.per_seconds})"
