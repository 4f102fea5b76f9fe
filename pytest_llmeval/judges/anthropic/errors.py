"""Judge errors, secret scrubbing and the retry decision for one failed SDK call."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass

from pytest_llmeval.core.secrets import scrub
from pytest_llmeval.core.verdict import Usage
from pytest_llmeval.errors import JudgeError


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
class Failure:
    """A classified failure: the judge error, whether trying again may help, and what the
    server said about waiting (``retry-after``, its rate-limit headers)."""

    error: AnthropicJudgeError
    transient: bool
    retry_after: float | None = None
    headers: Mapping[str, str] | None = None


def classify(exc: BaseException, *, model: str, timeout: float, retry_timeouts: bool) -> Failure:
    """Turn an SDK exception into a judge error and whether trying again may help.

    Raises ``exc`` again when it is not an SDK failure (a bug should surface as itself).
    """
    import anthropic
    import httpx2

    where = f"anthropic judge ({model})"
    if isinstance(exc, anthropic.APITimeoutError):
        return Failure(
            AnthropicJudgeError(f"{where}: request timed out after {timeout:g} s", retryable=True),
            transient=retry_timeouts,
        )
    if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
        return Failure(
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
        return Failure(
            AnthropicJudgeError(
                f"{where}: HTTP {status} {kind}: {detail}{request_id}",
                retryable=transient,
                status=status,
            ),
            transient=transient,
            retry_after=parse_retry_after(headers),
            headers=headers,
        )
    if isinstance(exc, anthropic.CredentialsError):
        return Failure(
            AnthropicJudgeError(f"{where}: no usable credentials (set ANTHROPIC_API_KEY): {exc}"),
            transient=False,
        )
    if isinstance(exc, anthropic.AnthropicError):
        return Failure(AnthropicJudgeError(f"{where}: {exc}"), transient=False)
    if isinstance(exc, TypeError) and "authentication method" in str(exc):
        return Failure(
            AnthropicJudgeError(
                f"{where}: no usable credentials: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"
            ),
            transient=False,
        )
    raise exc
