"""The Claude judges' rate limiter: bursts within the limit, the API's rate-limit headers, 429s.

Unit tests run the limiter on a virtual clock; the others drive the real SDK against the fake
server (tests/fake_anthropic.py), which enforces a sliding-window limit and sends the headers.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import threading
import time
import typing
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from fake_anthropic import FakeAnthropic, fake_anthropic

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.verdict import Usage
from pytest_llmeval.judges.anthropic import AnthropicJudge, RateLimiter, judge_from_options
from pytest_llmeval.judges.anthropic.ratelimit import EXACT_SLACK, Ticket, parse_limits

__all__ = ["fake_anthropic"]  # the fixture, re-exported so pytest sees it in this module

CASE = Case(id="refund-window", question="How long?", ground_truth="30 days")
WALL = 1_700_000_000.0


class Clock:
    """A virtual monotonic clock (and a wall clock moving with it)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return WALL + self.now


def limiter_on(clock: Clock, max_requests: float | None = None, **options: float) -> RateLimiter:
    return RateLimiter(max_requests, clock=clock, wall_clock=clock.wall, **options)


def start(limiter: RateLimiter, clock: Clock) -> Ticket:
    """Wait (virtually) until the limiter grants a start."""
    for _ in range(100_000):
        got = limiter.poll()
        if isinstance(got, Ticket):
            return got
        assert got > 0
        clock.now += got
    raise AssertionError("the limiter never granted a start")


def simulate(gaps: list[float], clock: Clock, limiter: RateLimiter) -> list[float]:
    """Callers arriving after the given gaps, served in order; each one's start time."""
    starts, arrival = [], 0.0
    for gap in gaps:
        arrival += gap
        clock.now = max(clock.now, arrival)
        starts.append(start(limiter, clock).started)
    return starts


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = first = 0
    for end, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, end - first + 1)
    return best


def rfc3339(seconds_from_now: float, clock: Clock) -> str:
    when = datetime.fromtimestamp(clock.wall(), timezone.utc) + timedelta(seconds=seconds_from_now)
    return when.isoformat(timespec="microseconds").replace("+00:00", "Z")


def headers(
    clock: Clock, remaining: int, reset_in: float, name: str = "requests", limit: int = 50
) -> dict[str, str]:
    prefix = f"anthropic-ratelimit-{name}-"
    return {
        prefix + "limit": str(limit),
        prefix + "remaining": str(remaining),
        prefix + "reset": rfc3339(reset_in, clock),
    }


# -- the configured limit: bursts, never more than the limit in any window ------------------------


def test_the_whole_allowance_starts_at_once() -> None:
    clock = Clock()
    limiter = limiter_on(clock, 300)
    starts = simulate([0.0] * 100, clock, limiter)
    assert starts == [0.0] * 100  # 100 requests under 300/min: no waiting at all


def test_never_more_than_the_limit_in_any_window() -> None:
    clock = Clock()
    limiter = limiter_on(clock, 120)
    rng = random.Random(3)
    gaps = [rng.choice([0.0, 0.0, 0.0, 0.01, 0.5, 10.0, 100.0]) for _ in range(2000)]
    starts = simulate(gaps, clock, limiter)
    assert max_in_window(starts, 60.0) <= 120
    assert starts == sorted(starts)


def test_saturated_throughput_is_the_limit() -> None:
    clock = Clock()
    limiter = limiter_on(clock, 120)
    starts = simulate([0.01] * 1200, clock, limiter)  # demand: 6000 requests a minute
    assert max_in_window(starts, 60.0) <= 120
    per_minute = len(starts) / (starts[-1] + 60.0 * 1.02) * 60.0
    assert 120 * 0.95 <= per_minute <= 120


def test_a_shorter_window_means_smaller_bursts() -> None:
    clock = Clock()
    limiter = RateLimiter(300, 10.0, margin=0.0, clock=clock, wall_clock=clock.wall)
    starts = simulate([0.0] * 700, clock, limiter)
    assert starts.count(0.0) == 300 and max_in_window(starts, 10.0) <= 300
    # a fractional allowance (300 rpm over 7 workers) keeps its average rate
    clock = Clock()
    limiter = limiter_on(clock, 300 / 7, margin=0.0)
    starts = simulate([0.0] * 420, clock, limiter)
    assert len(starts) / (starts[-1] + limiter.window) * 60 == pytest.approx(300 / 7, rel=0.01)


# -- the server's own budget --------------------------------------------------------------------


def test_headers_are_read() -> None:
    clock = Clock()
    found = parse_limits(
        {
            **headers(clock, 7, 12.5),
            **headers(clock, 900, 30, "input-tokens"),
            "anthropic-ratelimit-output-tokens-remaining": "x",  # unreadable: skipped
            "anthropic-ratelimit-tokens-remaining": "400",  # no reset: unknown
        },
        clock.wall(),
    )
    by = {limit.dimension: limit for limit in found}
    assert set(by) == {"requests", "input-tokens", "tokens"}
    assert by["requests"].remaining == 7 and by["requests"].limit == 50
    assert by["requests"].reset == pytest.approx(12.5)
    assert by["tokens"].reset is None
    assert parse_limits({"anthropic-ratelimit-requests-reset": "2025-01-01T00:00:00Z"}) == []


def test_an_exhausted_budget_waits_for_its_reset() -> None:
    clock = Clock()
    limiter = limiter_on(clock)
    first = start(limiter, clock)
    limiter.observe(first, headers(clock, 3, 5.0))
    granted = simulate([0.0] * 6, clock, limiter)
    assert granted == [0.0, 0.0, 0.0, 5.0, 5.0, 5.0]  # 3 left, then the reset


def test_requests_started_since_the_answer_are_counted() -> None:
    clock = Clock()
    limiter = limiter_on(clock)
    old = start(limiter, clock)
    for _ in range(4):
        start(limiter, clock)  # in flight when ``old``'s answer comes back
    limiter.observe(old, headers(clock, 5, 5.0))  # the server saw ``old`` only
    assert simulate([0.0] * 2, clock, limiter) == [0.0, 5.0]


def test_an_answer_lowers_a_budget_but_never_raises_it() -> None:
    clock = Clock()
    limiter = limiter_on(clock)
    old, new = start(limiter, clock), start(limiter, clock)
    limiter.observe(new, headers(clock, 0, 4.0))
    limiter.observe(old, headers(clock, 40, 4.0))  # reached the server later, or earlier
    assert limiter.poll() == pytest.approx(0.25)  # still waiting (polling every 0.25 s)
    clock.now = 4.0  # replenished: the next answer reports afresh
    assert isinstance(limiter.poll(), Ticket)


def test_each_process_takes_its_share_of_the_budget() -> None:
    clock = Clock()
    limiter = limiter_on(clock, share=0.5)
    limiter.observe(start(limiter, clock), headers(clock, 8, 3.0))
    assert simulate([0.0] * 5, clock, limiter) == [0.0] * 4 + [3.0]


def test_token_budgets_pace_requests_by_their_cost() -> None:
    clock = Clock()
    limiter = limiter_on(clock)
    first = start(limiter, clock)
    usage = Usage(input_tokens=250, cache_creation_input_tokens=50, requests=1)
    limiter.observe(first, headers(clock, 1000, 6.0, "input-tokens"), usage)
    assert simulate([0.0] * 4, clock, limiter) == [0.0, 0.0, 0.0, 6.0]  # 1000 // 300 = 3


def test_a_429_pauses_everyone_then_recovers() -> None:
    clock = Clock()
    limiter = limiter_on(clock, initial_backoff=1.0)
    ticket = start(limiter, clock)
    assert limiter.refused(ticket, 2.0, None) == 2.0
    assert simulate([0.0], clock, limiter) == [2.0]
    # without retry-after: exponential backoff while refusals follow each other ...
    assert [limiter.refused(ticket, None, None) for _ in range(3)] == [2.0, 4.0, 8.0]
    # ... and the first accepted answer ends it
    limiter.observe(start(limiter, clock), None)
    assert limiter.refused(ticket, None, None) == 1.0
    assert limiter.refused(ticket, 600.0, None, max_pause=5.0) == 5.0


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
    with pytest.raises(ValueError):
        RateLimiter(10, share=0.0)
    with pytest.raises(ValueError, match="not both"):
        AnthropicJudge(rpm=10, rate_limiter=RateLimiter(10))


def test_options_build_the_limiter() -> None:
    j = judge_from_options({"rpm": 300, "rpm_window": 10, "processes": 3})
    assert j.rate_limiter.max_requests == 100 and j.rate_limiter.per_seconds == 10.0
    assert j.rate_limiter.share == pytest.approx(1 / 3)
    assert "rpm=600" in repr(j) and "rpm_window=10" in repr(j)  # 100 per 10 s in this process
    plain = AnthropicJudge()
    assert plain.rate_limiter.max_requests is None  # still paced by the server's headers
    assert AnthropicJudge(rpm=300).rate_limiter.per_seconds == 60.0


# -- against the fake API, with the real SDK ----------------------------------------------------


def statuses(fake: FakeAnthropic) -> list[int]:
    return [r.status for r in fake.message_requests()]


def judge(**options: float) -> AnthropicJudge:
    return AnthropicJudge(initial_backoff=0.01, max_backoff=0.05, **options)  # type: ignore[arg-type]


def test_a_burst_within_the_limit_does_not_wait(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.rpm, fake_anthropic.rpm_window = 300, 60.0
    fake_anthropic.latency = 0.05
    j = judge(rpm=300)
    j.score(CASE, "30 days")  # the SDK import and the first connection, outside the timing
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: j.score(CASE, f"30 days {i}"), range(40)))
    # spaced evenly (the old limiter) this took 40 * 0.2 s = 8 s; bursting, 5 rounds of 50 ms
    assert time.monotonic() - t0 < 4.0
    assert statuses(fake_anthropic) == [200] * 41


def test_the_servers_headers_pace_requests_without_refusals(
    fake_anthropic: FakeAnthropic,
) -> None:
    # The server allows 6 requests in any 1.5 s; the judge has no limit of its own.
    fake_anthropic.rpm, fake_anthropic.rpm_window = 6, 1.5
    j = judge()
    j.score(CASE, "30 days")  # the SDK import, outside the timing
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda i: j.score(CASE, f"30 days {i}"), range(11)))
    wall = time.monotonic() - t0
    assert statuses(fake_anthropic) == [200] * 12
    assert max_in_window([r.time for r in fake_anthropic.message_requests()], 1.5) <= 6
    assert wall < 1.5 * 3  # two waits for the window to clear, not one per request


def test_async_runs_are_paced_by_the_headers_too(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.rpm, fake_anthropic.rpm_window = 5, 1.0
    j = judge()

    async def run() -> None:
        slots = asyncio.Semaphore(3)  # the plugin bounds concurrency (llmeval_concurrency)

        async def one(i: int) -> None:
            async with slots:
                await j.ascore(CASE, f"30 days {i}")

        await asyncio.gather(*(one(i) for i in range(12)))
        await j.aclose()

    asyncio.run(run())
    assert statuses(fake_anthropic) == [200] * 12


def test_refusals_without_headers_back_off_and_recover(fake_anthropic: FakeAnthropic) -> None:
    # A server (or proxy) that only answers 429 + retry-after: every case still gets judged,
    # and a refusal pauses the other threads too instead of letting them hammer the server.
    fake_anthropic.rpm, fake_anthropic.rpm_window = 4, 1.0
    fake_anthropic.limit_headers = False
    j = judge()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: j.score(CASE, f"30 days {i}"), range(12)))
    assert len(results) == 12
    got = statuses(fake_anthropic)
    assert got.count(200) == 12
    assert got.count(429) <= 8
    assert j.rate_limiter.refusals_seen == got.count(429)


def test_input_token_limits_pace_requests(fake_anthropic: FakeAnthropic) -> None:
    long_case = Case(id="long", question="x" * 2000, ground_truth="30 days")
    fake_anthropic.input_tpm, fake_anthropic.rpm_window = 3000, 1.5  # ~4 requests a window
    j = judge()
    j.score(long_case, "30 days")  # one answer teaches the judge what a request costs
    with ThreadPoolExecutor(max_workers=3) as pool:
        list(pool.map(lambda i: j.score(long_case, f"30 days {i}"), range(8)))
    assert statuses(fake_anthropic) == [200] * 9


def test_processes_sharing_a_key_stay_under_its_limit(fake_anthropic: FakeAnthropic) -> None:
    # Two "workers" (two judges, as two xdist processes would have) on one server budget.
    fake_anthropic.rpm, fake_anthropic.rpm_window = 8, 1.5
    workers = [judge(processes=2) for _ in range(2)]
    barrier = threading.Barrier(2)

    def work(j: AnthropicJudge) -> None:
        barrier.wait()
        for i in range(8):
            j.score(CASE, f"30 days {i}")

    threads = [threading.Thread(target=work, args=(j,)) for j in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses(fake_anthropic) == [200] * 16


# -- the server's request limit, learnt from the headers (virtual clock) ------------------------


class VirtualServer:
    """A request limit of ``limit`` per ``window`` seconds, as a sliding window or a token
    bucket (the API's documented algorithm), answering with the API's rate-limit headers:
    ``reset`` is when the limit is fully replenished."""

    def __init__(self, clock: Clock, limit: int, window: float, *, bucket: bool = False) -> None:
        self.clock, self.limit, self.window, self.bucket = clock, limit, window, bucket
        self.accepted: list[float] = []
        self.refused: list[float] = []
        self.level, self.filled_at = float(limit), 0.0

    def arrive(self, now: float) -> tuple[bool, dict[str, str]]:
        if self.bucket:
            rate = self.limit / self.window
            self.level = min(self.limit, self.level + (now - self.filled_at) * rate)
            self.filled_at = now
            ok = self.level >= 1
            self.level -= 1 if ok else 0
            remaining = math.floor(self.level)
            full_in = (self.limit - self.level) / rate
        else:
            live = [t for t in self.accepted if t > now - self.window]
            ok = len(live) < self.limit
            live += [now] if ok else []
            remaining = self.limit - len(live)
            full_in = live[-1] + self.window - now if live else 0.0
        (self.accepted if ok else self.refused).append(now)
        prefix = "anthropic-ratelimit-requests-"
        return ok, {
            prefix + "limit": str(self.limit),
            prefix + "remaining": str(remaining),
            prefix + "reset": rfc3339(full_in, self.clock),
        }


def run_against(
    server: VirtualServer,
    limiter: RateLimiter,
    requests: int,
    concurrency: int,
    *,
    latency: float = 0.2,
    trip: float = 0.01,
    seed: int = 7,
) -> list[float]:
    """``requests`` requests from ``concurrency`` workers on the virtual clock; each arrives
    ``trip`` (varying, so arrivals reorder) after its start and is answered ``latency`` later.
    Returns the start times of the accepted requests."""
    clock, rng = server.clock, random.Random(seed)
    events: list[tuple[float, int, str, object]] = []  # (time, order, kind, payload)
    order = itertools.count()
    for _ in range(concurrency):
        heapq.heappush(events, (0.0, next(order), "poll", None))
    left, starts = requests, []
    while events:
        clock.now, _, kind, payload = heapq.heappop(events)
        if kind == "poll":
            if left == 0:
                continue
            got = limiter.poll()
            if isinstance(got, Ticket):
                left -= 1
                arrival = clock.now + trip * rng.random()
                heapq.heappush(events, (arrival, next(order), "arrive", got))
            else:
                heapq.heappush(events, (clock.now + got, next(order), "poll", None))
        elif kind == "arrive":
            assert isinstance(payload, Ticket)
            ok, answer = server.arrive(clock.now)
            done = clock.now + (latency if ok else 0.0)
            heapq.heappush(events, (done, next(order), "ok" if ok else "429", (payload, answer)))
        else:
            ticket, answer = typing.cast(tuple[Ticket, dict[str, str]], payload)
            if kind == "ok":
                limiter.observe(ticket, answer)
                starts.append(ticket.started)
            else:
                left += 1  # retried
                limiter.refused(ticket, 1.0, answer)
            heapq.heappush(events, (clock.now, next(order), "poll", None))
    return starts


@pytest.mark.parametrize("bucket", [False, True], ids=["sliding-window", "token-bucket"])
def test_the_learnt_limit_frees_slots_one_by_one(bucket: bool) -> None:
    # 100 requests, 16 at a time, a server allowing 50 per 10 s: the case of
    # benchmarks/bench_ratelimit.py. Once the first 50 have used the budget up, the next ones
    # start as the slots of the first ones free (10 s after each), not all at the reset.
    clock = Clock()
    server = VirtualServer(clock, 50, 10.0, bucket=bucket)
    limiter = limiter_on(clock, 300)  # llmeval_rpm = 300: a whole minute's burst allowed
    starts = run_against(server, limiter, 100, 16)
    assert server.refused == []
    assert len(starts) == 100
    assert limiter.server_limit == 50
    window = limiter.server_window  # never below the real one: 10 s * 50/49 at most
    assert window is not None and 10.0 <= window <= 10.0 * 50 / 49 + 0.05
    first, second = sorted(starts)[:50], sorted(starts)[50:]
    # waiting for the reset (the budget fully replenished), the 51st waited for the 50th
    assert second[0] < first[-1] + 10.0
    if not bucket:
        # each of the second 50 in the slot of the one 50 before it as soon as the server
        # frees it (its reset, 10 s after it arrived: up to 10 ms after it started, or after
        # one started just before it), not after the learnt window's bound (10 s * 50/49,
        # widened by the margin: 10.4 s)
        gaps = [b - a for a, b in zip(first, second, strict=True)]
        assert all(10.0 < gap <= 10.0 + 2 * 0.01 + EXACT_SLACK for gap in gaps), gaps


@pytest.mark.parametrize("bucket", [False, True], ids=["sliding-window", "token-bucket"])
def test_the_learnt_limit_holds_over_many_windows(bucket: bool) -> None:
    clock = Clock()
    server = VirtualServer(clock, 20, 3.0, bucket=bucket)
    limiter = limiter_on(clock)  # no limit of its own: the headers alone
    starts = run_against(server, limiter, 400, 8, latency=0.1, trip=0.02)
    assert server.refused == []
    rate = len(starts) / (max(starts) + 3.0)
    assert 20 / 3.0 * 0.85 <= rate <= 20 / 3.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bucket", [False, True], ids=["sliding-window", "token-bucket"])
def test_exact_slots_hold_when_answers_and_arrivals_come_out_of_order(
    bucket: bool, seed: int
) -> None:
    # trips varying as much as the latency: requests reach the server in another order than
    # they started, answers come back in yet another
    clock = Clock()
    server = VirtualServer(clock, 12, 2.0, bucket=bucket)
    limiter = limiter_on(clock)
    starts = run_against(server, limiter, 300, 10, latency=0.05, trip=0.05, seed=seed)
    assert server.refused == []
    assert len(starts) == 300
    rate = len(starts) / (max(starts) + 2.0)
    assert 12 / 2.0 * 0.85 <= rate <= 12 / 2.0


def test_an_exact_slot_is_the_reset_of_the_start_it_follows() -> None:
    # 4 per 10 s, 4 starts a second apart; the first reached the server last, at 3.2, so its
    # slot frees last: the fifth start takes it then, not at the budget's reset (13 s, the
    # latest reset of the others) nor at the learnt window's bound (10 s * 4/3 after it)
    clock = Clock()
    limiter = limiter_on(clock, margin=0.0)
    tickets = []
    for at in (0.0, 1.0, 2.0, 3.0):
        clock.now = at
        tickets.append(start(limiter, clock))
    clock.now = 3.5
    for remaining, ticket in enumerate(reversed(tickets[1:]), start=1):
        reset = ticket.started + 10.0  # a sliding window: 10 s after each arrived
        limiter.observe(ticket, headers(clock, remaining, reset - clock.now, limit=4))
    limiter.observe(tickets[0], headers(clock, 0, 13.2 - clock.now, limit=4))
    assert limiter.server_window == pytest.approx((13.2 - 0.0) * 4 / 3)
    assert start(limiter, clock).started == pytest.approx(13.2 + EXACT_SLACK)


def test_a_refusal_for_requests_turns_exact_slots_off() -> None:
    clock = Clock()
    limiter = limiter_on(clock, margin=0.0)
    tickets = [start(limiter, clock) for _ in range(4)]
    clock.now = 0.2
    for ticket in tickets:  # their slots free at 5 s, says the server: its clock is behind
        limiter.observe(ticket, headers(clock, 0, 4.8, limit=4))
    clock.now = 5.0
    fifth = start(limiter, clock)
    assert fifth.started == pytest.approx(5.0 + EXACT_SLACK)
    limiter.refused(fifth, 0.5, headers(clock, 0, 5.0, limit=4))
    clock.now = 6.0
    # exact slots would let the next one start at once; the learnt window (widened by the
    # refusal to the 7 s the 4 starts before it spanned, at least) paces it instead
    assert start(limiter, clock).started == pytest.approx(7.0)


def test_the_learnt_window_needs_an_answer_that_found_the_budget_nearly_used_up() -> None:
    clock = Clock()
    limiter = limiter_on(clock)
    ticket = start(limiter, clock)
    limiter.observe(ticket, headers(clock, 30, 10.0))  # 20 of 50 used: a loose bound
    assert limiter.server_limit == 50 and limiter.server_window is None
    ticket = start(limiter, clock)
    limiter.observe(ticket, headers(clock, 0, 10.0))
    assert limiter.server_window == pytest.approx(10.0 * 50 / 49)  # remaining may be rounded


def test_after_the_reset_the_learnt_window_still_paces() -> None:
    # More workers than the limit: after the reset, no more than the limit start at once.
    clock = Clock()
    limiter = limiter_on(clock, margin=0.0)
    tickets = [start(limiter, clock) for _ in range(4)]
    for ticket in tickets:
        limiter.observe(ticket, headers(clock, 0, 10.0, limit=4))
    window = 10.0 * 4 / 3  # 10 s, and ``remaining`` may be 1 below a token bucket's level
    assert limiter.server_window == pytest.approx(window)
    clock.now = 14.0  # the budget is replenished and no answer has reported since
    granted = simulate([0.0] * 6, clock, limiter)
    assert granted == pytest.approx([14.0] * 4 + [14.0 + window] * 2)


def test_others_on_the_key_take_their_part_of_the_learnt_window() -> None:
    clock = Clock()
    limiter = limiter_on(clock, margin=0.0)
    ours = [start(limiter, clock) for _ in range(2)]
    limiter.observe(ours[0], headers(clock, 0, 10.0, limit=10))  # 8 of the 10 were others'
    limiter.observe(ours[1], headers(clock, 0, 10.0, limit=10))
    # their requests free no slot the limiter knows of: nothing starts before the reset
    assert simulate([0.0] * 3, clock, limiter) == [10.0] * 3


def test_a_refusal_despite_the_learnt_window_widens_it() -> None:
    # The server's clock runs 2 s behind ours: its resets look 2 s early, the window 8 s.
    clock = Clock()
    limiter = limiter_on(clock, margin=0.0)
    tickets = [start(limiter, clock) for _ in range(4)]
    for ticket in tickets:
        limiter.observe(ticket, headers(clock, 0, 8.0, limit=4))
    assert limiter.server_window == pytest.approx(8.0 * 4 / 3)
    clock.now = 11.0
    fifth = start(limiter, clock)
    assert fifth.started == 11.0  # the learnt window let it through: the server refuses it
    limiter.refused(fifth, 1.0, headers(clock, 0, 1.0, limit=4))
    window = limiter.server_window
    assert window is not None and window >= 11.0  # the 4 before it were all still counted
    # and a refusal for tokens says nothing about the request window
    limiter.refused(fifth, 1.0, headers(clock, 3, 1.0, limit=4))
    assert limiter.server_window == window


def test_whole_second_resets_are_read_as_the_end_of_their_second() -> None:
    clock = Clock()
    base = "anthropic-ratelimit-requests-"
    whole = datetime.fromtimestamp(WALL + 5, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    found = parse_limits({base + "remaining": "0", base + "reset": whole}, clock.wall())
    assert found[0].reset == pytest.approx(6.0)  # a reset rounded down never looks early
    precise = rfc3339(5.0, clock)
    found = parse_limits({base + "remaining": "0", base + "reset": precise}, clock.wall())
    assert found[0].reset == pytest.approx(5.0)


def test_the_judge_learns_the_servers_window(fake_anthropic: FakeAnthropic) -> None:
    # The real SDK against the fake's sliding window of 6 per 1.5 s: the limiter learns
    # 6 per 1.5 s from the headers and paces by it without a single refusal.
    fake_anthropic.rpm, fake_anthropic.rpm_window = 6, 1.5
    j = judge()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: j.score(CASE, f"30 days {i}"), range(14)))
    assert statuses(fake_anthropic) == [200] * 14
    assert j.rate_limiter.server_limit == 6
    window = j.rate_limiter.server_window
    assert window is not None and 1.5 <= window <= 1.5 * 6 / 5 + 0.5
    assert max_in_window([r.time for r in fake_anthropic.message_requests()], 1.5) <= 6
