"""A fake of the Anthropic Messages API for tests and benchmarks (127.0.0.1 only).

The real ``anthropic`` SDK talks to it through ``ANTHROPIC_BASE_URL``. It implements
``POST /v1/messages``, ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}``,
``POST /v1/messages/batches/{id}/cancel`` and ``GET /v1/messages/batches/{id}/results`` (the
absolute ``results_url`` it hands out, which the SDK fetches as is).

Behaviour is scripted per test:

- ``fake.script(Reply..., ...)``: the next ``/v1/messages`` requests get these replies, in order
  (``Reply.rate_limited(retry_after=2)``, ``Reply.overloaded()``, ``Reply.server_error()``,
  ``Reply.hang(5)``, ``Reply.text("not json")``, ``Reply.verdict(score=0.3)``, ...);
- ``fake.responder = fn(body) -> Reply | None``: decides per request (``None`` = default);
- ``fake.fault_rate(0.2, seed=1)``: random transient 429/529/500 faults;
- ``fake.echo_key_in_reasoning = True``: verdicts repeat the caller's key (a leak to scrub);
- ``fake.verdict_fn = fn(body) -> dict``: the verdict when nothing else decides; the default
  (:func:`default_verdict`) is deterministic in the request content;
- ``fake.usage_fn = fn(body, output_text) -> dict``: token usage (default: ~4 chars a token,
  with prompt-cache writes/reads when the system block carries ``cache_control``);
- ``latency`` (seconds per request) and ``rpm`` / ``rpm_window``: a server-side limit of ``rpm``
  requests in any ``rpm_window`` seconds (a sliding window), and ``input_tpm``: input tokens
  in the same window. Beyond a limit the answer is 429 with ``retry-after`` (whole seconds
  until the oldest request in the window expires). With a limit set, every answer carries the
  API's rate-limit headers (``anthropic-ratelimit-requests-{limit,remaining,reset}``, and
  ``-input-tokens-*`` / ``-tokens-*`` with ``input_tpm``; ``reset`` is the RFC 3339 time the
  window is empty again, "fully replenished"); ``limit_headers=False`` leaves them out;
- ``fake.batch_outcome = fn(custom_id, params) -> "succeeded" | "errored" | "expired" |
  "canceled" | Reply`` and ``fake.batch_polls = N`` (polls before a batch ends).

Every request is recorded (:class:`Recorded`: method, path, lower-cased headers, raw bytes,
parsed JSON, monotonic arrival time, status) so tests can assert prompt framing, cache_control,
request rate and that the key only ever travels in the ``authorization`` header.

Use the ``fake_anthropic`` fixture in tests, or run it standalone for benchmarks::

    python tests/fake_anthropic.py --port 0 --latency 0.2 --rpm 300
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SENTINEL_KEY = "sk-ant-test-SENTINEL-KEY-7f3a9c2e5b1d4086"
"""The fake API key the fixture puts in ``ANTHROPIC_API_KEY``; it must never leak anywhere."""

_FRAME = re.compile(
    r'<untrusted_(?P<name>[a-z_]+) id="(?P<id>[0-9a-f]+)"[^>]*>\n(?P<body>.*?)\n'
    r'</untrusted_(?P=name) id="(?P=id)">',
    re.DOTALL,
)
_SCORE_MARK = re.compile(r"\[\[score=([01](?:\.\d+)?)\]\]")


class _Server(ThreadingHTTPServer):
    """The default listen backlog (5) drops connection bursts from a concurrent client."""

    request_queue_size = 128
    daemon_threads = True


@dataclass(frozen=True)
class Reply:
    """One scripted answer of the fake ``/v1/messages`` endpoint."""

    status: int = 200
    verdict: dict[str, Any] | None = None
    text: str | None = None
    stop_reason: str = "end_turn"
    error_type: str | None = None
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    hang: float = 0.0
    raw: bytes | None = None

    @classmethod
    def ok(
        cls,
        score: float = 0.9,
        *,
        passed: bool | None = None,
        reasoning: str = "fake judge verdict",
        failure_modes: tuple[str, ...] = (),
    ) -> Reply:
        """A well-formed verdict."""
        return cls(
            verdict={
                "score": score,
                "passed": score >= 0.5 if passed is None else passed,
                "reasoning": reasoning,
                "failure_modes": list(failure_modes),
            }
        )

    @classmethod
    def json_text(cls, data: Any) -> Reply:
        """Any JSON value as the model's text (e.g. a schema-violating verdict)."""
        return cls(text=json.dumps(data))

    @classmethod
    def plain(cls, text: str, stop_reason: str = "end_turn") -> Reply:
        """Arbitrary model text (e.g. not JSON) with a stop reason."""
        return cls(text=text, stop_reason=stop_reason)

    @classmethod
    def error(
        cls,
        status: int,
        error_type: str,
        message: str = "",
        *,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """An API error response in the real wire format."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["retry-after"] = str(retry_after)
        if retry_after_ms is not None:
            extra["retry-after-ms"] = str(retry_after_ms)
        return cls(
            status=status,
            error_type=error_type,
            message=message or error_type,
            headers=tuple(extra.items()),
        )

    @classmethod
    def rate_limited(cls, retry_after: float | None = 1.0) -> Reply:
        return cls.error(429, "rate_limit_error", "rate limited", retry_after=retry_after)

    @classmethod
    def overloaded(cls) -> Reply:
        return cls.error(529, "overloaded_error", "Overloaded")

    @classmethod
    def server_error(cls) -> Reply:
        return cls.error(500, "api_error", "Internal server error")

    @classmethod
    def hanging(cls, seconds: float = 30.0) -> Reply:
        """Answer only after ``seconds`` (or when the server stops): beyond a client timeout."""
        return cls(hang=seconds)

    @classmethod
    def garbage(cls, status: int = 200, body: bytes = b"<html>not json</html>") -> Reply:
        """A raw, non-JSON HTTP body."""
        return cls(status=status, raw=body)


@dataclass(frozen=True)
class Recorded:
    """One request as the fake server received it."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any
    time: float
    status: int

    @property
    def system_text(self) -> str:
        system = (self.body or {}).get("system", "")
        if isinstance(system, str):
            return system
        return "".join(block.get("text", "") for block in system)

    @property
    def user_text(self) -> str:
        return "\n".join(_texts((self.body or {}).get("messages", [])))


def _texts(messages: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for message in messages:
        content = message.get("content", "")
        if isinstance(content, str):
            out.append(content)
        else:
            out.extend(block.get("text", "") for block in content if isinstance(block, dict))
    return out


def frames(text: str) -> dict[str, str]:
    """The untrusted data frames of a judge prompt, by name (``response``, ``question`` ...)."""
    return {m.group("name"): m.group("body") for m in _FRAME.finditer(text)}


def all_frames(text: str) -> list[tuple[str, str]]:
    """Every top-level data frame of a judge prompt as ``(name, body)``, in order (a name may
    repeat, as ``reference`` does when a case has several acceptable answers)."""
    return [(m.group("name"), m.group("body")) for m in _FRAME.finditer(text)]


def _is_pairwise(body: dict[str, Any]) -> bool:
    schema = ((body.get("output_config") or {}).get("format") or {}).get("schema") or {}
    return "preference" in (schema.get("properties") or {})


def default_verdict(body: dict[str, Any]) -> dict[str, Any]:
    """A deterministic verdict from the request content.

    Score verdicts: ``[[score=X]]`` in the response sets the score; else, with a ground truth
    (or several ``reference`` frames), 0.9 when the response contains it (any of them,
    case-insensitive) and 0.2 otherwise; without one, 0.8 for
    a non-empty response. Pairwise: the response containing ``[[better]]`` wins, else the longer
    one, ``tie`` when equal.
    """
    user = "\n".join(_texts(body.get("messages", [])))
    found = frames(user)
    if _is_pairwise(body):
        first, second = found.get("first_response", ""), found.get("second_response", "")
        if ("[[better]]" in first) != ("[[better]]" in second):
            preference = "first" if "[[better]]" in first else "second"
        elif len(first) != len(second):
            preference = "first" if len(first) > len(second) else "second"
        else:
            preference = "tie"
        return {"preference": preference, "reasoning": "fake pairwise judgement"}
    response = found.get("response", "")
    mark = _SCORE_MARK.search(response)
    references = [body for name, body in all_frames(user) if name == "reference"]
    if mark:
        score = float(mark.group(1))
    elif references:  # several acceptable answers: any one will do
        hit = any(ref.strip().lower() in response.lower() for ref in references)
        score = 0.9 if hit else 0.2
    elif "ground_truth" in found:
        score = 0.9 if found["ground_truth"].strip().lower() in response.lower() else 0.2
    else:
        score = 0.8 if response.strip() else 0.0
    return {
        "score": score,
        "passed": score >= 0.5,
        "reasoning": f"fake judge: score {score}",
        "failure_modes": [] if score >= 0.5 else ["incorrect"],
    }


def _input_tokens(body: Any) -> int:
    """Input tokens a request counts against ``input_tpm`` (cache reads do not count)."""
    if not isinstance(body, dict):
        return 0
    return sum(len(t) // 4 for t in _texts(body.get("messages") or [])) + 1


class FakeAnthropic:
    """The fake server. ``start()`` binds 127.0.0.1 on a free port (or ``port``)."""

    def __init__(
        self,
        *,
        latency: float = 0.0,
        rpm: int | None = None,
        rpm_window: float = 60.0,
        input_tpm: int | None = None,
        limit_headers: bool = True,
        port: int = 0,
        expected_key: str | None = None,
        echo_key_in_errors: bool = False,
    ) -> None:
        self.latency = latency
        self.rpm = rpm
        self.rpm_window = rpm_window
        self.input_tpm = input_tpm
        self.limit_headers = limit_headers
        self.echo_key_in_reasoning = False
        self.last_key = ""
        self.expected_key = expected_key
        self.echo_key_in_errors = echo_key_in_errors
        self.verdict_fn: Callable[[dict[str, Any]], dict[str, Any]] = default_verdict
        self.usage_fn: Callable[[dict[str, Any], str], dict[str, int]] | None = None
        self.responder: Callable[[dict[str, Any]], Reply | None] | None = None
        self.batch_outcome: Callable[[str, dict[str, Any]], str | Reply] = lambda _cid, _params: (
            "succeeded"
        )
        self.batch_polls = 1
        self._port = port
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self._records: list[Recorded] = []
        self._accepted: deque[tuple[float, int]] = deque()
        self._cache_seen: set[str] = set()
        self._batches: dict[str, dict[str, Any]] = {}
        self._faults: tuple[float, random.Random, tuple[Reply, ...]] | None = None
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeAnthropic:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        server = _Server(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # -- scripting -------------------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next ``/v1/messages`` requests, in order."""
        with self._lock:
            self._script.extend(replies)

    def fault_rate(
        self, probability: float, *, seed: int = 0, faults: tuple[Reply, ...] | None = None
    ) -> None:
        """Answer each ``/v1/messages`` request with a random transient fault at this rate."""
        kinds = faults or (
            Reply.rate_limited(retry_after=0.01),
            Reply.overloaded(),
            Reply.server_error(),
        )
        self._faults = (probability, random.Random(seed), kinds)

    # -- records ---------------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far, in arrival order."""
        with self._lock:
            return sorted(self._records, key=lambda r: r.time)

    def message_requests(self) -> list[Recorded]:
        """The ``POST /v1/messages`` requests, in arrival order."""
        return [r for r in self.requests if r.method == "POST" and r.path == "/v1/messages"]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def _record(self, record: Recorded) -> None:
        with self._lock:
            self._records.append(record)

    # -- behaviour -------------------------------------------------------------------------

    def _admit(self, now: float, body: Any) -> tuple[float | None, dict[str, str]]:
        """Server-side rate limit: ``(None, headers)`` to accept, else ``(seconds until the
        oldest request in the window expires, headers)``; headers are the rate-limit headers
        of the answer (none without a limit, or with ``limit_headers=False``)."""
        if self.rpm is None and self.input_tpm is None:
            return None, {}
        tokens = _input_tokens(body)
        with self._lock:
            while self._accepted and self._accepted[0][0] <= now - self.rpm_window:
                self._accepted.popleft()
            used = sum(t for _, t in self._accepted)
            full = (self.rpm is not None and len(self._accepted) >= self.rpm) or (
                self.input_tpm is not None and self._accepted and used + tokens > self.input_tpm
            )
            if full:
                wait: float | None = self._accepted[0][0] + self.rpm_window - now
            else:
                wait = None
                # in arrival order: a handler that stamped its arrival earlier may take the
                # lock later (a loaded machine), and the window is purged from the oldest end
                at = len(self._accepted)
                while at and self._accepted[at - 1][0] > now:
                    at -= 1
                self._accepted.insert(at, (now, tokens))
                used += tokens
            headers = self._limit_headers(now, used) if self.limit_headers else {}
            return wait, headers

    def _limit_headers(self, now: float, used: int) -> dict[str, str]:
        newest = self._accepted[-1][0] if self._accepted else now
        # monotonic -> wall clock for the RFC 3339 reset time
        reset_at = time.time() + (newest + self.rpm_window - time.monotonic())
        reset = datetime.fromtimestamp(reset_at, timezone.utc).isoformat().replace("+00:00", "Z")
        headers: dict[str, str] = {}
        budgets = [("requests", self.rpm, len(self._accepted))]
        if self.input_tpm is not None:
            budgets += [("input-tokens", self.input_tpm, used), ("tokens", self.input_tpm, used)]
        for name, limit, spent in budgets:
            if limit is None:
                continue
            prefix = f"anthropic-ratelimit-{name}-"
            headers[prefix + "limit"] = str(limit)
            headers[prefix + "remaining"] = str(max(0, limit - spent))
            headers[prefix + "reset"] = reset
        return headers

    def _next_reply(self, body: dict[str, Any]) -> Reply | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
        if self.responder is not None:
            reply = self.responder(body)
            if reply is not None:
                return reply
        if self._faults is not None:
            probability, rng, kinds = self._faults
            with self._lock:
                hit = rng.random() < probability
                kind = rng.choice(kinds)
            if hit:
                return kind
        return None

    def _usage(self, body: dict[str, Any], output: str) -> dict[str, int]:
        if self.usage_fn is not None:
            return self.usage_fn(body, output)
        system = body.get("system") or []
        blocks = [{"text": system}] if isinstance(system, str) else list(system)
        cached = sum(len(b.get("text", "")) // 4 for b in blocks if b.get("cache_control"))
        plain = sum(len(b.get("text", "")) // 4 for b in blocks if not b.get("cache_control"))
        user = sum(len(t) // 4 for t in _texts(body.get("messages", [])))
        usage = {
            "input_tokens": plain + user + 1,
            "output_tokens": len(output) // 4 + 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if cached:
            key = json.dumps([body.get("model"), blocks], sort_keys=True)
            with self._lock:
                seen = key in self._cache_seen
                self._cache_seen.add(key)
            usage["cache_read_input_tokens" if seen else "cache_creation_input_tokens"] = cached
        return usage

    def message(self, body: dict[str, Any], reply: Reply | None) -> dict[str, Any]:
        """A Messages API response body for ``body`` (``reply`` overrides the verdict)."""
        if reply is not None and reply.text is not None:
            text, stop = reply.text, reply.stop_reason
        else:
            verdict = reply.verdict if reply is not None and reply.verdict else None
            text = json.dumps(verdict or self.verdict_fn(body))
            stop = reply.stop_reason if reply is not None else "end_turn"
        payload = {
            "id": f"msg_fake_{uuid.uuid4().hex[:16]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "claude-fake"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": self._usage(body, text),
        }
        if self.echo_key_in_reasoning:
            payload = _echo_key(payload, self.last_key)
        return payload

    # -- batches ---------------------------------------------------------------------------

    def _batch_view(self, batch: dict[str, Any]) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch["status"] == "ended":
            for line in batch["results"]:
                counts[line["result"]["type"]] += 1
        else:
            counts["processing"] = len(batch["requests"])
        created: datetime = batch["created"]
        ended = batch["status"] == "ended"
        return {
            "id": batch["id"],
            "type": "message_batch",
            "processing_status": batch["status"],
            "request_counts": counts,
            "created_at": created.isoformat(),
            "expires_at": (created + timedelta(hours=24)).isoformat(),
            "ended_at": datetime.now(timezone.utc).isoformat() if ended else None,
            "archived_at": None,
            "cancel_initiated_at": batch.get("cancel_at"),
            "results_url": f"{self.url}/v1/messages/batches/{batch['id']}/results"
            if ended
            else None,
        }

    def _finish_batch(self, batch: dict[str, Any]) -> None:
        results: list[dict[str, Any]] = []
        for request in batch["requests"]:
            cid, params = request["custom_id"], request["params"]
            outcome: str | Reply = "canceled" if batch.get("cancel_at") else "succeeded"
            if outcome == "succeeded":
                outcome = self.batch_outcome(cid, params)
            if isinstance(outcome, Reply) or outcome == "succeeded":
                reply = outcome if isinstance(outcome, Reply) else None
                result: dict[str, Any] = {
                    "type": "succeeded",
                    "message": self.message(params, reply),
                }
            elif outcome == "errored":
                result = {
                    "type": "errored",
                    "error": {
                        "type": "error",
                        "error": {"type": "invalid_request_error", "message": "bad request"},
                    },
                }
            else:
                result = {"type": outcome}
            results.append({"custom_id": cid, "result": result})
        # Results come back in a different order than requested, as the real API allows.
        batch["results"] = list(reversed(results))
        batch["status"] = "ended"


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeAnthropic
    _pending: Recorded
    _limits: dict[str, str] = {}  # noqa: RUF012 - replaced per request, never mutated
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # the client's delayed ACK can add ~40 ms to a response (an artefact of the fake server).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(payload, bytes):
            data, ctype = payload, "application/octet-stream"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        # Record before answering, so a client that got its answer always finds it recorded.
        self.server_fake._record(replace(self._pending, status=status))
        try:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_fake_{uuid.uuid4().hex[:12]}")
            for key, value in {**self._limits, **(headers or {})}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout): nothing to do

    def _error(
        self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        self._send(status, body, headers)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake = self.server_fake
        arrived = time.monotonic()
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = self.path.split("?", 1)[0]
        self._pending = Recorded(method, self.path, headers, raw, body, arrived, 0)
        self._limits = {}
        self._dispatch(fake, method, path, headers, body, raw, arrived)

    def _dispatch(
        self,
        fake: FakeAnthropic,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        raw: bytes,
        arrived: float,
    ) -> int:
        auth = headers.get("authorization", "")
        key = auth[len("Bearer ") :] if auth.startswith("Bearer ") else headers.get("x-api-key")
        fake.last_key = key or ""
        if not key or (fake.expected_key is not None and key != fake.expected_key):
            leak = f": {key}" if fake.echo_key_in_errors else ""
            self._error(401, "authentication_error", f"invalid x-api-key{leak}")
            return 401
        if "anthropic-version" not in headers:
            self._error(400, "invalid_request_error", "anthropic-version header is required")
            return 400
        wait, self._limits = fake._admit(arrived, body)
        if wait is not None:
            retry_after = str(max(1, math.ceil(wait)))
            self._error(
                429, "rate_limit_error", "rate limit exceeded", {"retry-after": retry_after}
            )
            return 429
        if fake.latency:
            fake._stopping.wait(fake.latency)

        if method == "POST" and path == "/v1/messages":
            return self._messages(fake, body)
        if method == "POST" and path == "/v1/messages/batches":
            return self._create_batch(fake, body)
        match = re.fullmatch(r"/v1/messages/batches/([\w-]+)(/results|/cancel)?", path)
        if match:
            return self._batch(fake, method, match.group(1), match.group(2) or "")
        self._error(404, "not_found_error", f"no route {method} {path}")
        return 404

    def _messages(self, fake: FakeAnthropic, body: Any) -> int:
        problem = _check_params(body)
        if problem:
            self._error(400, "invalid_request_error", problem)
            return 400
        reply = fake._next_reply(body)
        if reply is not None and reply.hang:
            fake._stopping.wait(reply.hang)
        if reply is not None and reply.raw is not None:
            self._send(reply.status, reply.raw)
            return reply.status
        if reply is not None and reply.error_type is not None:
            message = reply.message
            if fake.echo_key_in_errors:
                message += f" (key {self.headers.get('authorization', '')})"
            self._error(reply.status, reply.error_type, message, dict(reply.headers))
            return reply.status
        self._send(200, fake.message(body, reply))
        return 200

    def _create_batch(self, fake: FakeAnthropic, body: Any) -> int:
        requests = (body or {}).get("requests")
        if not isinstance(requests, list) or not requests:
            self._error(400, "invalid_request_error", "requests: expected a non-empty list")
            return 400
        ids = [r.get("custom_id") for r in requests]
        if len(set(ids)) != len(ids) or not all(
            isinstance(i, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i) for i in ids
        ):
            self._error(400, "invalid_request_error", "custom_id must be unique and valid")
            return 400
        for request in requests:
            problem = _check_params(request.get("params"))
            if problem:
                self._error(400, "invalid_request_error", f"{request['custom_id']}: {problem}")
                return 400
        batch_id = f"msgbatch_fake_{uuid.uuid4().hex[:16]}"
        batch = {
            "id": batch_id,
            "requests": requests,
            "created": datetime.now(timezone.utc),
            "status": "in_progress",
            "polls": 0,
        }
        with fake._lock:
            fake._batches[batch_id] = batch
        self._send(200, fake._batch_view(batch))
        return 200

    def _batch(self, fake: FakeAnthropic, method: str, batch_id: str, action: str) -> int:
        with fake._lock:
            batch = fake._batches.get(batch_id)
        if batch is None:
            self._error(404, "not_found_error", f"no batch {batch_id}")
            return 404
        if method == "POST" and action == "/cancel":
            if batch["status"] != "ended":
                batch["status"] = "canceling"
                batch["cancel_at"] = datetime.now(timezone.utc).isoformat()
            self._send(200, fake._batch_view(batch))
            return 200
        if method == "GET" and action == "":
            batch["polls"] += 1
            if batch["status"] != "ended" and (
                batch["status"] == "canceling" or batch["polls"] >= fake.batch_polls
            ):
                fake._finish_batch(batch)
            self._send(200, fake._batch_view(batch))
            return 200
        if method == "GET" and action == "/results":
            if batch["status"] != "ended":
                self._error(400, "invalid_request_error", "batch has not ended")
                return 400
            lines = "".join(json.dumps(line) + "\n" for line in batch["results"])
            self._send(200, lines.encode())
            return 200
        self._error(405, "invalid_request_error", "method not allowed")
        return 405


def _echo_key(payload: dict[str, Any], key: str) -> dict[str, Any]:
    """A model that repeats the caller's API key in its reasoning and failure modes."""
    text = payload["content"][0]["text"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return payload
    if isinstance(data, dict):
        data["reasoning"] = f"{data.get('reasoning', '')} (the key is {key})"
        if isinstance(data.get("failure_modes"), list):
            data["failure_modes"].append(f"leaked {key}")
    payload["content"][0]["text"] = json.dumps(data)
    return payload


def _check_params(body: Any) -> str | None:
    """The minimal request validation the real API would do."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "model: field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: must be a non-empty list"
    if "temperature" in body:
        return "temperature: Extra inputs are not permitted"
    return None


@pytest.fixture
def fake_anthropic(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    """A started :class:`FakeAnthropic`; ``ANTHROPIC_BASE_URL``/``ANTHROPIC_API_KEY`` point at it.

    Example::

        def test_judge(fake_anthropic):
            fake_anthropic.script(Reply.rate_limited(retry_after=0.1))
            result = AnthropicJudge().score(case, "answer")
            assert len(fake_anthropic.message_requests()) == 2
    """
    server = FakeAnthropic().start()
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL_KEY)
    for name in ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE", "ANTHROPIC_CUSTOM_HEADERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the fake standalone; prints its base URL on the first line of stdout."""
    parser = argparse.ArgumentParser(description="fake Anthropic Messages API (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--rpm", type=int, default=None, help="server-side requests per minute")
    parser.add_argument("--rpm-window", type=float, default=60.0)
    parser.add_argument("--input-tpm", type=int, default=None, help="input tokens per window")
    parser.add_argument(
        "--no-limit-headers", action="store_true", help="send no anthropic-ratelimit-* headers"
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="random 429/529/500 rate")
    args = parser.parse_args(argv)
    fake = FakeAnthropic(
        latency=args.latency,
        rpm=args.rpm,
        rpm_window=args.rpm_window,
        input_tpm=args.input_tpm,
        limit_headers=not args.no_limit_headers,
        port=args.port,
    )
    if args.fault_rate:
        fake.fault_rate(args.fault_rate)
    fake.start()
    print(fake.url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        records = fake.requests
        by_status: dict[int, int] = {}
        for record in records:
            by_status[record.status] = by_status.get(record.status, 0) + 1
        arrivals = sorted(r.time for r in records if r.path == "/v1/messages")
        span = arrivals[-1] - arrivals[0] if arrivals else 0.0
        print(
            f"requests: {len(records)} by status: {by_status}; message requests arrived over"
            f" {span:.3f} s",
            file=sys.stderr,
            flush=True,
        )
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
