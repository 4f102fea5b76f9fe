"""One exception tree for everything pytest-llmeval raises on purpose.

``except LLMEvalError`` catches them all; each subclass says which input or subsystem is at
fault, and its message names the file, line and field where there is one.
"""

from __future__ import annotations


class LLMEvalError(Exception):
    """Base of every error pytest-llmeval raises on purpose."""


class CaseError(LLMEvalError, ValueError):
    """A bad line in a case file. ``str()`` names the file, line and field."""

    def __init__(self, path: str, line: int, field_name: str | None, message: str) -> None:
        self.path = path
        self.line = line
        self.field = field_name
        self.message = message
        what = f" field '{field_name}':" if field_name else ""
        super().__init__(f"{path}:{line}:{what} {message}")


class StateFileError(LLMEvalError):
    """A committed state file (baseline, history) is unreadable or invalid; the message names
    the file, line and field. Nothing is overwritten."""


class EventStoreError(LLMEvalError):
    """The event store cannot do what was asked (missing file, newer schema, unknown variant,
    unknown metric...). The message is one line, fit for the command line."""


class JudgeError(LLMEvalError):
    """The judge could not produce a verdict (infrastructure, not a quality failure).

    Items whose judge raises this are reported as pytest ERRORs and never enter the baseline.
    ``retryable`` tells the runner whether trying again later may help.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ConfigError(LLMEvalError):
    """A setting (option, ini key, SUT or judge spec) is invalid or cannot be loaded."""


class CLIError(LLMEvalError):
    """A user-facing error of the ``llmeval`` command: printed as ``llmeval: error: <message>``
    with exit status 2."""
