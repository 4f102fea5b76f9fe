"""The fake Anthropic Messages API (``tests/fake_anthropic.py``) in its own process, for the
benchmarks: one way to start it, read its URL and, once it stops, what it received.

``bench_concurrency``, ``bench_ratelimit`` and ``bench_run`` use it::

    with fake_server("--latency", "0.2", "--rpm", "50", "--rpm-window", "10") as server:
        run_pytest(env={"ANTHROPIC_BASE_URL": server.url, ...})
    server.arrivals  # (time.monotonic(), status) of every /v1/messages request
    server.summary  # its closing line: requests by status, the span they arrived over

The server is the fake's own ``main`` (``--port 0``: a free port, printed on its first line),
with a larger listen backlog: socketserver's default (``request_queue_size = 5``) drops the
SYNs of a burst of 16 new connections and the client retransmits after 1 s, a stall of the
fake, not of the plugin (a real API endpoint accepts bursts). Its clock is this machine's
``time.monotonic()`` (system-wide on Linux), comparable with the benchmark's own.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER = ROOT / "tests" / "fake_anthropic.py"
LISTEN_BACKLOG = 128

# argv: backlog, the fake's path, the record file, then the fake's own arguments. On SIGTERM
# the fake's main stops the server: first ``record(r)`` of every /v1/messages request (its
# arrival time and status) goes to the record file. A peer's benchmark puts its own code between
# the two halves (:func:`boot`): a ``responder`` answering in the peer's format, a ``record``
# that adds whose prompt a request was, or a patch of the fake's checks.
BOOT_HEAD = """\
import importlib.util, json, socketserver, sys
socketserver.TCPServer.request_queue_size = int(sys.argv[1])
spec = importlib.util.spec_from_file_location("fake_anthropic_bench", sys.argv[2])
fake = sys.modules["fake_anthropic_bench"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake)
responder = None  # fn(body) -> fake.Reply | None: None leaves the request to the fake


def record(r):
    return [r.time, r.status]

"""
BOOT_TAIL = """
start, stop = fake.FakeAnthropic.start, fake.FakeAnthropic.stop


def start_answering(self):
    if responder is not None:
        self.responder = responder
    return start(self)


def stop_and_record(self):
    with open(sys.argv[3], "w", encoding="utf-8") as out:
        json.dump([record(r) for r in self.message_requests()], out)
    stop(self)


fake.FakeAnthropic.start = start_answering
fake.FakeAnthropic.stop = stop_and_record
sys.exit(fake.main(sys.argv[4:]))
"""


def boot(code: str = "") -> str:
    """The fake's boot with ``code`` run after the fake is loaded (as ``fake``) and before it
    starts: it may set ``responder`` and ``record``."""
    return BOOT_HEAD + code + BOOT_TAIL


BOOT = boot()


@dataclass
class FakeServer:
    """A running fake: its URL; once stopped, what it received."""

    url: str
    summary: str = ""  # its last stderr line: requests by status, the span they arrived over
    arrivals: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, status)
    # a third value per request when the boot records one (a peer's: whose prompt it was)
    kinds: list[str] = field(default_factory=list)

    @property
    def first_request(self) -> float | None:
        """``time.monotonic()`` when the first /v1/messages request arrived."""
        return min(t for t, _ in self.arrivals) if self.arrivals else None


@contextlib.contextmanager
def fake_server(
    *args: str, backlog: int = LISTEN_BACKLOG, boot: str = BOOT, port: int = 0
) -> Iterator[FakeServer]:
    """The fake in a subprocess with the fake's own arguments (``--latency``, ``--rpm``,
    ``--rpm-window``, ``--no-limit-headers``, ...); stopped (SIGTERM) on leaving.

    ``boot`` is the code the subprocess runs, with :data:`BOOT`'s arguments (a peer's benchmark
    passes its own, which sets the fake's ``responder`` to answer in the peer's format); ``port``
    0 takes a free one."""
    with tempfile.TemporaryDirectory(prefix="fake_server_") as tmp:
        record = Path(tmp) / "arrivals.json"
        command = [sys.executable, "-c", boot, str(backlog), str(FAKE_SERVER), str(record)]
        proc = subprocess.Popen(
            [*command, "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server = FakeServer(url="")
        try:
            assert proc.stdout is not None
            server.url = proc.stdout.readline().strip()
            if not server.url.startswith("http://127.0.0.1:"):
                raise RuntimeError(f"the fake server did not start: {server.url!r}")
            yield server
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                _, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            lines = err.strip().splitlines()
            server.summary = lines[-1] if lines else ""
            if record.exists():
                raw = json.loads(record.read_text(encoding="utf-8"))
                server.arrivals = [(float(row[0]), int(row[1])) for row in raw]
                server.kinds = [str(row[2]) for row in raw if len(row) > 2]
