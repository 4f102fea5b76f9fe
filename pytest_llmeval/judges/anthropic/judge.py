"""The Claude judge: one structured, injection-hardened verdict per response."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_llmeval.core.verdict import JudgeResult, Usage
from pytest_llmeval.errors import JudgeError
from pytest_llmeval.judges import prompts
from pytest_llmeval.judges.anthropic.batches import (
    BATCH_MAX_BYTES,
    BATCH_MAX_REQUESTS,
    BatchScorer,
)
from pytest_llmeval.judges.anthropic.client import DEFAULT_MODEL, ClaudeClient
from pytest_llmeval.judges.anthropic.output import verdict
from pytest_llmeval.judges.anthropic.prices import DEFAULT_PRICES, load_prices

if TYPE_CHECKING:
    from pytest_llmeval.core.cases import Case


class AnthropicJudge(ClaudeClient):
    """Scores a response with Claude (structured verdict, injection-hardened prompt).

    Args:
        model: Claude model id (``llmeval_judge_model``), default ``claude-haiku-4-5``.
        max_tokens: output token cap per verdict.
        timeout: seconds per HTTP request.
        max_retries: retries of a failed request (429/529/5xx/408/409/timeouts/connection).
        max_retry_wait: cap in seconds on any single wait, ``retry-after`` included.
        rpm: client-side limit, requests per minute (every attempt counts), allowed as bursts
            of up to ``rpm * rpm_window / 60`` requests in any ``rpm_window`` seconds;
        rpm_window: that window in seconds (default 60);
        processes: how many processes share the API key (xdist workers): each takes its
            share of ``rpm`` and of the budget the server reports; or
        rate_limiter: a :class:`~pytest_llmeval.judges.anthropic.ratelimit.RateLimiter`
            shared with other judges (instead of ``rpm``). Without either, requests are still
            paced by the API's rate-limit headers and its 429s.
        base_url: API base URL; default: the SDK's (``ANTHROPIC_BASE_URL`` or the real API).
        initial_backoff, max_backoff: exponential backoff (seconds) without ``retry-after``.
        on_retry: called with a :class:`RetryEvent` before each retry wait.
        prices: price table for :meth:`estimate_cost` (default :data:`DEFAULT_PRICES`).

    The API key comes from the environment through the SDK and is never stored here; the SDK
    itself is imported on the first request, not when the judge is built.
    """

    def request_params(
        self, case: Case, response: str, *, nonce: str | None = None
    ) -> dict[str, Any]:
        """The exact ``messages.create`` arguments used to judge ``response`` to ``case``."""
        return self._params(
            prompts.build_score_prompt(case, response, nonce=nonce), prompts.VERDICT_OUTPUT_SCHEMA
        )

    def _parse(self, message: Any, usage: Usage) -> JudgeResult:
        return verdict(message, usage, self.max_tokens)

    def score(self, case: Case, response: str) -> JudgeResult:
        """Judge ``response`` to ``case``; raises :class:`AnthropicJudgeError` if no verdict."""
        return self._ask(self.request_params(case, response), self._parse)

    async def ascore(self, case: Case, response: str) -> JudgeResult:
        """Async :meth:`score` (an ``AsyncAnthropic`` client per event loop)."""
        return await self._aask(self.request_params(case, response), self._parse)

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
        return BatchScorer(self).run(
            jobs,
            poll_interval=poll_interval,
            progress=progress,
            max_wait=max_wait,
            max_batch_requests=max_batch_requests,
            max_batch_bytes=max_batch_bytes,
        )


_OPTION_NAMES = frozenset(
    {
        "model",
        "max_tokens",
        "timeout",
        "max_retries",
        "max_retry_wait",
        "rpm",
        "rpm_window",
        "processes",
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
    ``timeout``, ``max_retries``, ``max_retry_wait``, ``rpm`` (the whole run's limit),
    ``rpm_window`` (seconds), ``processes`` (xdist workers sharing the key: each takes its
    share), ``rate_limiter``, ``base_url``, ``on_retry``, ``prices`` (a mapping as accepted by
    :func:`load_prices`) and ``prices_file`` (a JSON price file). An unknown key or a bad price
    table raises ``ValueError`` so a wiring mistake is not silent. Builds no SDK client.
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
    if "processes" in kwargs:
        kwargs["processes"] = max(1, int(kwargs["processes"]))
    return AnthropicJudge(model, **kwargs)
