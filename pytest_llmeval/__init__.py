"""pytest-llmeval: make an LLM application's quality a release gate.

Public API. Importing this package registers no hooks and imports no SDK.
"""

from __future__ import annotations

from pytest_llmeval.core.cases import Case, Message
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, PairwiseResult, Usage, Verdict
from pytest_llmeval.engine.runner import SutAnswer
from pytest_llmeval.errors import (
    CaseError,
    CLIError,
    ConfigError,
    EventStoreError,
    JudgeError,
    LLMEvalError,
    StateFileError,
)
from pytest_llmeval.judges.base import Judge, PairwiseJudge

__all__ = [
    "CLIError",
    "Case",
    "CaseError",
    "ConfigError",
    "EventStoreError",
    "Judge",
    "JudgeError",
    "JudgeIdentity",
    "JudgeResult",
    "LLMEvalError",
    "Message",
    "PairwiseJudge",
    "PairwiseResult",
    "StateFileError",
    "SutAnswer",
    "Usage",
    "Verdict",
]
__version__ = "0.1.0"
