"""Plain values of the online side: errors, ingest reports, metric values and time windows."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pytest_llmeval.errors import EventStoreError, LLMEvalError

DEFAULT_DB_PATH = os.path.join(".llmeval", "online.sqlite3")
SCHEMA_VERSION = 1
DEFAULT_MAX_DELAY_S = 30.0
DEFAULT_COMPLETION_EVENT = "task_complete"

#: The dashboard's rate metrics (the usual names) and whether higher is better.
METRICS: dict[str, bool] = {
    "copy_rate": True,
    "session_continuation_rate": True,
    "rephrase_retry_rate": False,
    "thumbs_up_rate": True,
    "thumbs_down_rate": False,
    "positive_rate": True,
    "feedback_response_rate": True,
}
RESPONSE_RECORD_TYPES = frozenset({"response", "response_shown"})
FAILURE_RECORD_TYPE = "production_failure"
GROUP_DIMENSIONS = ("variant", "model")
NO_GROUP = "(none)"
_MAX_TS = 1e15  # epoch seconds beyond this are garbage (year 31 million), as are inf and nan

#: The event store cannot do what was asked (the one-line message is fit for the command line).
StoreError = EventStoreError


class RecordError(LLMEvalError, ValueError):
    """One ingest record is invalid. ``field`` names the offending field (or None)."""

    def __init__(self, field_name: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class LineError:
    """A bad line in an ingest file."""

    path: str
    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        what = f" field '{self.field}':" if self.field else ""
        return f"{self.path}:{self.line}:{what} {self.message}"


@dataclass(frozen=True)
class IngestReport:
    """What an ingest did. ``*_added`` count rows actually added; ``duplicates`` counts valid
    records already stored (or repeated within the input), which were not added again."""

    files: int = 0
    lines: int = 0
    responses_added: int = 0
    events_added: int = 0
    failures_added: int = 0
    duplicates: int = 0
    errors: tuple[LineError, ...] = ()
    rejected_files: tuple[str, ...] = ()

    def __add__(self, other: IngestReport) -> IngestReport:
        return IngestReport(
            self.files + other.files,
            self.lines + other.lines,
            self.responses_added + other.responses_added,
            self.events_added + other.events_added,
            self.failures_added + other.failures_added,
            self.duplicates + other.duplicates,
            self.errors + other.errors,
            self.rejected_files + other.rejected_files,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "lines": self.lines,
            "responses_added": self.responses_added,
            "events_added": self.events_added,
            "failures_added": self.failures_added,
            "duplicates": self.duplicates,
            "errors": [str(e) for e in self.errors],
            "rejected_files": list(self.rejected_files),
        }


@dataclass(frozen=True)
class MetricValue:
    """A proportion with its counts and 95% Wilson interval; ``rate`` and ``ci`` are None when
    the denominator is 0. ``extra`` holds metric-specific figures (completion times)."""

    name: str
    numerator: int
    denominator: int
    rate: float | None
    ci: tuple[float, float] | None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls, name: str, numerator: int, denominator: int, extra: Mapping[str, Any] | None = None
    ) -> MetricValue:
        if denominator <= 0:
            return cls(name, int(numerator), 0, None, None, dict(extra or {}))
        return cls(
            name,
            int(numerator),
            int(denominator),
            numerator / denominator,
            wilson_ci(int(numerator), int(denominator)),
            dict(extra or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rate": self.rate,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "ci": list(self.ci) if self.ci is not None else None,
        }
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class Window:
    """Responses shown in ``(since, until]``; ``since`` None means from the beginning."""

    since: float | None
    until: float

    @classmethod
    def of(cls, window: float | None, until: float | None = None) -> Window:
        """``window`` seconds before ``until`` (default: now); None means all time."""
        end = time.time() if until is None else float(until)
        if window is not None and not window > 0:
            raise StoreError(f"the window must be a positive duration, got {window!r} seconds")
        return cls(None if window is None else end - window, end)

    def params(self) -> dict[str, float]:
        # -inf rather than NULL keeps every query a plain range comparison
        return {"since": -math.inf if self.since is None else self.since, "until": self.until}

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": None if self.since is None else iso(self.since),
            "until": iso(self.until),
            "seconds": None if self.since is None else self.until - self.since,
        }


def wilson_ci(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of ``k / n`` (:func:`pytest_llmeval.stats.proportion_ci`)."""
    from pytest_llmeval.stats import proportion_ci

    lo, hi = proportion_ci(k, n, method="wilson", level=0.95)
    return (float(lo), float(hi))


def iso(ts: float) -> str:
    """UTC ISO 8601 with a ``Z`` suffix (microseconds only when present)."""
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    text = dt.isoformat(timespec="microseconds" if dt.microsecond else "seconds")
    return text.replace("+00:00", "Z")
