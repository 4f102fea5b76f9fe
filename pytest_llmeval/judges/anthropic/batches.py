"""Judging many cases at once through the Message Batches API (half the price, slower).

:class:`BatchScorer` does the work of :meth:`AnthropicJudge.batch_score
<pytest_llmeval.judges.anthropic.judge.AnthropicJudge.batch_score>`: it splits the jobs into
batches within the API limits, creates and polls them, and maps every result back to its job.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pytest_llmeval.core.verdict import JudgeResult
from pytest_llmeval.errors import JudgeError
from pytest_llmeval.judges.anthropic.errors import AnthropicJudgeError
from pytest_llmeval.judges.anthropic.output import InvalidOutput, usage_of

if TYPE_CHECKING:
    from anthropic import Anthropic

    from pytest_llmeval.core.cases import Case
    from pytest_llmeval.core.verdict import Usage

T = TypeVar("T")


class BatchJudge(Protocol):
    """What batching needs of the judge (:class:`~pytest_llmeval.judges.anthropic.judge.
    AnthropicJudge`): its request, its parser and its client's calls."""

    model: str

    def request_params(
        self, case: Case, response: str, *, nonce: str | None = None
    ) -> dict[str, Any]: ...

    def _parse(self, message: Any, usage: Usage) -> JudgeResult: ...

    def _client(self) -> Anthropic: ...

    def _spent(self, usage: Usage, *, batch: bool = False) -> None: ...

    def _ask(self, params: dict[str, Any], parse: Callable[[Any, Usage], T], **kw: Any) -> T: ...

    def _call(self, fn: Callable[[Anthropic], T], *, retry_timeouts: bool = True) -> T: ...


# Message Batches API limits (per batch): 100,000 requests or 256 MB, whichever comes first.
BATCH_MAX_REQUESTS = 100_000
BATCH_MAX_BYTES = 256 * 1024 * 1024

Request = tuple[str, str, "Case", str, dict[str, Any]]


class BatchScorer:
    """One :meth:`run` of batch judging for ``judge`` (its client, limiter and usage)."""

    def __init__(self, judge: BatchJudge) -> None:
        self.judge = judge

    def run(
        self,
        jobs: Sequence[tuple[str, Case, str]],
        *,
        poll_interval: float = 10.0,
        progress: Callable[[str], None] | None = None,
        max_wait: float | None = None,
        max_batch_requests: int = BATCH_MAX_REQUESTS,
        max_batch_bytes: int = BATCH_MAX_BYTES,
    ) -> dict[str, JudgeResult | JudgeError]:
        """The work of :meth:`AnthropicJudge.batch_score`, which documents the behaviour."""
        ids = [job_id for job_id, _, _ in jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("batch_score: job ids must be unique")
        say = progress or (lambda _line: None)
        results: dict[str, JudgeResult | JudgeError] = {}
        requests: list[Request] = []
        for index, (job_id, case, response) in enumerate(jobs):
            params = self.judge.request_params(case, response)
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
        return self.judge._call(
            lambda c: c.messages.batches.create(requests=body),  # type: ignore[arg-type]
            retry_timeouts=False,
        )

    def _retrieve_batch(self, batch_id: str) -> Any:
        return self.judge._call(lambda c: c.messages.batches.retrieve(batch_id))

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
        client = self.judge._client()
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
            lines = self.judge._call(lambda c: list(c.messages.batches.results(batch.id)))
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
            usage = usage_of(result.message)
            self.judge._spent(usage, batch=True)
            try:
                return self.judge._parse(result.message, usage)
            except InvalidOutput as exc:
                # The one retry for an invalid verdict goes through the Messages API directly.
                try:
                    return self.judge._ask(
                        self.judge.request_params(case, response),
                        self.judge._parse,
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
                f"anthropic judge ({self.judge.model}): batch {batch_id} request errored: "
                f"{err_type}: {getattr(err, 'message', '')}",
                retryable=transient,
            )
        if kind == "expired":
            return AnthropicJudgeError(
                f"anthropic judge ({self.judge.model}): batch {batch_id} request expired before it "
                "was processed",
                retryable=True,
            )
        if kind == "canceled":
            return AnthropicJudgeError(
                f"anthropic judge ({self.judge.model}): batch {batch_id} request was canceled",
                retryable=True,
            )
        return AnthropicJudgeError(f"batch {batch_id}: unknown result type {kind!r}")


@dataclass
class _Batch:
    id: str
    number: int
    requests: list[Request]
    ended: bool = False
    error: AnthropicJudgeError | None = None


def _chunk(requests: list[Request], max_requests: int, max_bytes: int) -> list[list[Request]]:
    """Split batch requests so no batch exceeds the request-count or byte limit."""
    if max_requests < 1:
        raise ValueError("max_batch_requests must be at least 1")
    chunks: list[list[Request]] = []
    current: list[Request] = []
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
