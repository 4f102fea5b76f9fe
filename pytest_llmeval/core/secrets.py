"""Keeping the API key out of everything the plugin writes or prints.

Every string that reaches a file or the terminal (a verdict's reasoning, a SUT's answer echoed
into it, an error text) passes through :func:`scrub` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
REDACTED = "[redacted]"


def _secrets() -> list[str]:
    values = [os.environ.get("ANTHROPIC_API_KEY"), os.environ.get("ANTHROPIC_AUTH_TOKEN")]
    return [v for v in values if v and len(v) >= 8]


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without the API key/auth token (env or ``extra``) or anything key-shaped."""
    for secret in [*_secrets(), *(s for s in extra if s and len(s) >= 8)]:
        text = text.replace(secret, REDACTED)
    return KEY_SHAPE.sub(REDACTED, text)
