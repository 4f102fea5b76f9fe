"""A minimal Chrome DevTools Protocol client for browser tests, standard library only.

Chromium is started with ``--remote-debugging-pipe``: it reads NUL-terminated JSON commands on
file descriptor 3 and writes NUL-terminated JSON replies and events on descriptor 4 (the transport
Puppeteer and Playwright use). A pipe needs no port, no HTTP and no websocket client, and the
browser cannot be reached by anything but this process.

Usage::

    with Browser.launch(chromium, tmp_path / "profile") as browser:
        page = browser.new_page(width=1280, height=900)
        page.goto(path.as_uri())
        assert page.evaluate("document.title") == "..."
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

# Flags that keep a test browser quiet, offline and reproducible.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)

DEFAULT_TIMEOUT = 60.0


class CDPError(RuntimeError):
    """The browser answered a command with an error, closed the pipe, or did not answer."""


def find_chromium() -> str | None:
    """Path of Debian's ``chromium`` (or a compatible browser), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _high_fd(fd: int) -> int:
    """Duplicate ``fd`` to a number >= 10 and close the original.

    The child maps these onto 3 and 4 by shell redirections; starting from high numbers means
    neither redirection can clobber the other's source.
    """
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    """A headless Chromium process driven over the DevTools pipe."""

    def __init__(self, process: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.process = process
        self._write_fd = write_fd
        self._read_fd = read_fd
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    @classmethod
    def launch(
        cls, executable: str, user_data_dir: Path, extra_flags: tuple[str, ...] = ()
    ) -> Browser:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        child_in, child_out = _high_fd(to_child_r), _high_fd(from_child_w)
        bash = shutil.which("bash") or "/bin/bash"
        # bash (unlike dash) accepts multi-digit descriptors in redirections.
        script = f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}'
        args = [
            bash,
            "-c",
            script,
            executable,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={user_data_dir}",
            *extra_flags,
            "about:blank",
        ]
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(child_in, child_out),
        )
        os.close(child_in)
        os.close(child_out)
        return cls(process, to_child_w, from_child_r)

    def __enter__(self) -> Browser:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport

    def _write(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode("utf-8") + b"\0"
        while data:
            written = os.write(self._write_fd, data)
            data = data[written:]

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError("timed out waiting for the browser")
            ready, _, _ = select.select([self._read_fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise CDPError(f"the browser closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        raw, _, self._buffer = self._buffer.partition(b"\0")
        message: dict[str, Any] = json.loads(raw)
        return message

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        command_id = self._next_id
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        self._write(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == command_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)

    def wait_event(
        self,
        method: str,
        session_id: str | None = None,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """Return (and consume) the first matching event, waiting for it if needed."""

        def matches(event: dict[str, Any]) -> bool:
            return (
                event.get("method") == method
                and (session_id is None or event.get("sessionId") == session_id)
                and (predicate is None or predicate(event.get("params", {})))
            )

        for i, event in enumerate(self.events):
            if matches(event):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if "method" not in message:
                continue
            if matches(message):
                return message
            self.events.append(message)

    def drain(self, quiet_for: float = 0.2) -> None:
        """Collect events already on their way (stops at the first quiet moment)."""
        while True:
            ready, _, _ = select.select([self._read_fd], [], [], quiet_for)
            if not ready and b"\0" not in self._buffer:
                return
            message = self._read_message(time.monotonic() + DEFAULT_TIMEOUT)
            if "method" in message:
                self.events.append(message)

    def new_page(self, width: int = 1280, height: int = 900) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"], target["targetId"])
        for domain in ("Page", "Runtime", "Network", "Log"):
            page.send(f"{domain}.enable")
        page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(CDPError, OSError):
                self.send("Browser.close", timeout=10)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        for fd in (self._write_fd, self._read_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class Page:
    """One tab, addressed through its flattened session id."""

    def __init__(self, browser: Browser, session_id: str, target_id: str) -> None:
        self.browser = browser
        self.session_id = session_id
        self.target_id = target_id

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target_id})

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session_id=self.session_id)

    def events(self, method: str) -> list[dict[str, Any]]:
        """Events of this page seen so far, by method name."""
        self.browser.drain()
        return [
            e["params"]
            for e in self.browser.events
            if e.get("method") == method and e.get("sessionId") == self.session_id
        ]

    def goto(self, url: str) -> None:
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session_id)

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON-able value."""
        result = self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """Click the centre of the first element matching ``selector`` with real mouse events."""
        box = self.evaluate(
            "(() => { const el = document.querySelector(" + json.dumps(selector) + ");"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect();"
            " return {x: r.left + Math.min(r.width / 2, 40), y: r.top + r.height / 2,"
            " w: r.width, h: r.height}; })()"
        )
        if not box or box["w"] == 0 or box["h"] == 0:
            raise CDPError(f"nothing visible to click at {selector!r}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params: dict[str, Any] = {"type": kind, "x": box["x"], "y": box["y"]}
            if kind != "mouseMoved":
                params.update(button="left", clickCount=1)
            self.send("Input.dispatchMouseEvent", params)

    def type_text(self, text: str) -> None:
        """Type into the focused element, as an input method would."""
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path, full_page: bool = True, max_height: int = 6000) -> None:
        """Save a PNG of the page (the whole scrollable page, capped at ``max_height``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["captureBeyondViewport"] = True
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], max_height),
                "scale": 1,
            }
        data = self.send("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
