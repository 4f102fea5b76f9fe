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

Retries. The SDK clients are built with ``max_retries=0`` and :mod:`.client` runs its own
retry loop, because the SDK's loop (``_base_client._calculate_retry_timeout``) obeys any
``retry-after`` up to ~50 days without a cap, and its retries bypass a client-side rate
limiter, so a run could exceed ``llmeval_rpm``. Here every attempt, retries included, first
takes a start from the shared :class:`RateLimiter` (:mod:`.ratelimit`: the configured limit
as bursts, the API's own rate-limit headers, a pause after a 429); 408/409/429/5xx (529
included), timeouts and connection errors are retried up to ``max_retries`` times, waiting
``retry-after-ms`` / ``retry-after`` when the server sends one and exponential backoff with
jitter otherwise, and never more than ``max_retry_wait`` seconds for any single wait. The
server's ``x-should-retry`` header is obeyed, as the SDK does.

Secrets. The API key is never stored on a judge, and every text a judge returns (an error
message taken from the SDK or the server, a verdict's reasoning and failure modes) is scrubbed
of the key (and of anything shaped like an Anthropic key).

Modules: :mod:`.prices` (prices and cost), :mod:`.ratelimit` (the limiter), :mod:`.errors`
(errors, secrets, retry decisions), :mod:`.output` (reading answers), :mod:`.client` (the one
client and request loop), :mod:`.judge`, :mod:`.batches`, :mod:`.pairwise`. The SDK is imported
on the first request only.
"""

from __future__ import annotations

from pytest_llmeval.judges.anthropic.batches import BATCH_MAX_BYTES, BATCH_MAX_REQUESTS
from pytest_llmeval.judges.anthropic.client import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
)
from pytest_llmeval.judges.anthropic.errors import (
    AnthropicJudgeError,
    RetryEvent,
    parse_retry_after,
)
from pytest_llmeval.judges.anthropic.judge import AnthropicJudge, judge_from_options
from pytest_llmeval.judges.anthropic.pairwise import (
    AnthropicPairwiseJudge,
    position_consistency_rate,
)
from pytest_llmeval.judges.anthropic.prices import (
    BATCH_DISCOUNT,
    DEFAULT_PRICES,
    PRICES_AS_OF,
    ModelPrice,
    UsageTotals,
    estimate_cost,
    load_prices,
    price_for,
)
from pytest_llmeval.judges.anthropic.ratelimit import RateLimiter

__all__ = [
    "BATCH_DISCOUNT",
    "BATCH_MAX_BYTES",
    "BATCH_MAX_REQUESTS",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_WAIT",
    "DEFAULT_MAX_TOKENS",
    "DEFAULT_MODEL",
    "DEFAULT_PRICES",
    "DEFAULT_TIMEOUT",
    "PRICES_AS_OF",
    "AnthropicJudge",
    "AnthropicJudgeError",
    "AnthropicPairwiseJudge",
    "ModelPrice",
    "RateLimiter",
    "RetryEvent",
    "UsageTotals",
    "estimate_cost",
    "judge_from_options",
    "load_prices",
    "parse_retry_after",
    "position_consistency_rate",
    "price_for",
]
