"""Keeping the API key out of everything the plugin writes or prints.

Every string that reaches a file or the terminal (a verdict's reasoning, a SUT's answer echoed
into it, an error text) passes through :func:`scrub` first.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}")
REDACTED = "[redacted]"


def _secrets() -> list[str]:
    values = [os.environ.get("ANTHROPIC_API_KEY"), os.environ.get("ANTHROPIC_AUTH_TOKEN")]
    return [v for v in values if v and len(v) >= 8]


def scrubber(extra: Iterable[str] = ()) -> Callable[[str], str]:
    """:func:`scrub` with the secrets read once (from the environment now, and ``extra``): for
    cleaning many texts of one result. A text with nothing to remove comes back as the same
    object, so a caller can tell that nothing changed with ``is``."""
    secrets = [*_secrets(), *(s for s in extra if s and len(s) >= 8)]

    def clean(text: str) -> str:
        if not text:
            return text
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        # the regular expression only where a key could be: most texts are cleared by this test
        return KEY_SHAPE.sub(REDACTED, text) if "sk-ant-" in text else text

    return clean


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without the API key/auth token (env or ``extra``) or anything key-shaped."""
    if not text:
        return text
    return scrubber(extra)(text)
