"""pytest-llmeval: make an LLM application's quality a release gate.

Public API. Importing this package registers no hooks and imports no SDK.
"""

from __future__ import annotations

from pytest_llmeval.core.cases import Case, CaseError, Message
from pytest_llmeval.engine.runner import SutAnswer
from pytest_llmeval.judges.base import (
    Judge,
    JudgeError,
    JudgeIdentity,
    JudgeResult,
    PairwiseJudge,
    PairwiseResult,
    Usage,
    Verdict,
)

__all__ = [
    "Case",
    "CaseError",
    "Judge",
    "JudgeError",
    "JudgeIdentity",
    "JudgeResult",
    "Message",
    "PairwiseJudge",
    "PairwiseResult",
    "SutAnswer",
    "Usage",
    "Verdict",
]
__version__ = "0.1.0"
