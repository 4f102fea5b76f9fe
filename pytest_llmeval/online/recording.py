"""The usual one-record conveniences, written through :meth:`EventStore.record_batch`."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pytest_llmeval.online.values import FAILURE_RECORD_TYPE, IngestReport


class Recorder:
    """``record_*`` methods of :class:`~pytest_llmeval.online.EventStore`: each one record in
    its own transaction (use ``record_batch`` or ``ingest_file`` for many)."""

    def record_batch(self, records: Iterable[Mapping[str, Any]]) -> IngestReport:
        raise NotImplementedError

    def record_response(
        self,
        response_id: str,
        *,
        session_id: str | None = None,
        user_id: str | None = None,
        variant: str | None = None,
        experiment: str | None = None,
        model: str | None = None,
        question: str | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        response: str | None = None,
        timestamp: float | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Record a response shown to a user (``timestamp`` defaults to now)."""
        self.record_batch(
            [
                {
                    "type": "response",
                    "response_id": response_id,
                    "session_id": session_id,
                    "user_id": user_id,
                    "variant": variant,
                    "experiment": experiment,
                    "model": model,
                    "question": question,
                    "messages": None if messages is None else [dict(m) for m in messages],
                    "response": response,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "metadata": None if metadata is None else dict(metadata),
                }
            ]
        )

    def record_event(
        self,
        type: str,
        response_id: str | None,
        *,
        session_id: str | None = None,
        timestamp: float | str | None = None,
        delay_seconds: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        event_id: str | None = None,
    ) -> bool:
        """Record one event (``timestamp`` defaults to now); False when it was already stored."""
        report = self.record_batch(
            [
                {
                    "type": type,
                    "response_id": response_id,
                    "session_id": session_id,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "delay_seconds": delay_seconds,
                    "metadata": None if metadata is None else dict(metadata),
                    "event_id": event_id,
                }
            ]
        )
        return report.events_added == 1

    # The usual conveniences, with its argument order (session first).

    def record_response_shown(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        """A response was shown (a minimal response row that a full record may complete)."""
        self.record_response(response_id, session_id=session_id, timestamp=timestamp)

    def record_copy(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("copy", response_id, session_id=session_id, timestamp=timestamp)

    def record_continuation(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("continue", response_id, session_id=session_id, timestamp=timestamp)

    def record_rephrase_retry(
        self,
        session_id: str,
        response_id: str,
        delay_seconds: float,
        *,
        timestamp: float | None = None,
    ) -> None:
        self.record_event(
            "rephrase_retry",
            response_id,
            session_id=session_id,
            timestamp=timestamp,
            delay_seconds=delay_seconds,
        )

    def record_thumbs_up(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("thumbs_up", response_id, session_id=session_id, timestamp=timestamp)

    def record_thumbs_down(
        self, session_id: str, response_id: str, *, timestamp: float | None = None
    ) -> None:
        self.record_event("thumbs_down", response_id, session_id=session_id, timestamp=timestamp)

    def log_production_failure(
        self,
        question: str | None,
        response: str | None,
        failure_reason: str,
        source: str = "user_report",
        *,
        response_id: str | None = None,
        session_id: str | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        timestamp: float | str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Log a production failure for the flywheel (the usual ``log_production_failure``).

        ``question`` may be None when ``response_id`` names a stored response: the flywheel
        then takes the question from it.
        """
        self.record_batch(
            [
                {
                    "type": FAILURE_RECORD_TYPE,
                    "question": question,
                    "messages": None if messages is None else [dict(m) for m in messages],
                    "response": response,
                    "reason": failure_reason,
                    "source": source,
                    "response_id": response_id,
                    "session_id": session_id,
                    "timestamp": time.time() if timestamp is None else timestamp,
                    "metadata": None if metadata is None else dict(metadata),
                }
            ]
        )
