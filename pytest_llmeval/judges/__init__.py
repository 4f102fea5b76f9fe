"""Judges: the protocol (``base``), the built-in local judge (``similarity``), the Claude judge
(``anthropic``) and adapters for user-supplied judges."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Verdict
from pytest_llmeval.errors import JudgeError
from pytest_llmeval.judges.base import Judge

__all__ = ["CustomJudge", "import_object", "is_network_judge", "load_judge"]


def import_object(spec: str, what: str) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted). Raises ValueError with a clear message."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{what} {spec!r}: expected 'module:attr'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{what} {spec!r}: cannot import {module_name!r} ({exc})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{what} {spec!r}: {module_name!r} has no {attr!r}") from None
    return obj


def _source_hash(obj: Any) -> str:
    target = obj if inspect.isfunction(obj) or inspect.isclass(obj) else type(obj)
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        source = repr(target)
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def _to_result(value: Any) -> JudgeResult:
    if isinstance(value, JudgeResult):
        return value
    if isinstance(value, Verdict):
        return JudgeResult(
            score=value.score,
            passed=value.passed,
            reasoning=value.reasoning,
            failure_modes=value.failure_modes,
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return JudgeResult(score=float(value))
    if isinstance(value, dict) and "score" in value:
        return JudgeResult.from_dict(value)
    raise JudgeError(
        f"custom judge returned {type(value).__name__}; expected a float in [0, 1],"
        " a JudgeResult or a Verdict"
    )


@dataclass
class CustomJudge:
    """Adapts a user judge: an object with ``score(case, response)`` or a plain callable.

    The cache key includes a hash of the judge's source (or its ``version`` attribute), so an
    edited judge never replays stale verdicts; the baseline identity uses only name + version.
    """

    target: Any
    identity: JudgeIdentity
    network: bool = True

    @classmethod
    def from_spec(cls, spec: str) -> CustomJudge:
        obj = import_object(spec, "llmeval_judge")
        if inspect.isclass(obj):
            obj = obj()
        if not (hasattr(obj, "score") or callable(obj)):
            raise ValueError(f"llmeval_judge {spec!r}: not callable and has no score() method")
        version = getattr(obj, "version", None)
        identity = JudgeIdentity(
            name=spec,
            model=getattr(obj, "model", None),
            version=str(version) if version is not None else None,
            source_hash=None if version is not None else _source_hash(obj),
        )
        return cls(target=obj, identity=identity, network=bool(getattr(obj, "network", True)))

    def score(self, case: Any, response: str) -> JudgeResult:
        fn: Callable[[Any, str], Any] = (
            self.target.score if hasattr(self.target, "score") else self.target
        )
        try:
            value = fn(case, response)
        except JudgeError:
            raise
        except Exception as exc:  # a user judge's crash is a judge problem, not a score
            raise JudgeError(f"custom judge raised {type(exc).__name__}: {exc}") from exc
        return _to_result(value)


def is_network_judge(judge: Any) -> bool:
    return bool(getattr(judge, "network", False))


def load_judge(spec: str, options: dict[str, Any]) -> Judge:
    """Build the judge named by ``spec``: auto | local | anthropic | module:attr, or a panel of
    them: ``panel:majority|all|mean:JUDGE,JUDGE[,...]`` (see :mod:`pytest_llmeval.judges.panel`).

    ``auto`` is the Claude judge when ``ANTHROPIC_API_KEY`` is set, else the local judge.
    ``options`` are the Claude judge's; an optional ``"threshold"`` key (the run's default
    pass threshold) is used by a panel to decide its members' votes and ignored otherwise.
    """
    options = dict(options)
    threshold = options.pop("threshold", None)
    spec = spec.strip() or "auto"
    if spec.startswith("panel:"):
        from pytest_llmeval.judges.panel import JudgePanel, parse_panel_spec

        aggregation, names = parse_panel_spec(spec)
        members = tuple(_load_one(name, options) for name in names)
        if threshold is None:
            return JudgePanel(members, aggregation)
        return JudgePanel(members, aggregation, threshold=float(threshold))
    return _load_one(spec, options)


def _load_one(spec: str, options: dict[str, Any]) -> Judge:
    if spec == "auto":
        spec = "anthropic" if os.environ.get("ANTHROPIC_API_KEY") else "local"
    if spec == "local":
        from pytest_llmeval.judges.similarity import SimilarityJudge

        return SimilarityJudge()
    if spec == "anthropic":
        from pytest_llmeval.judges.anthropic import judge_from_options

        judge: Judge = judge_from_options(options)
        return judge
    if ":" in spec:
        return CustomJudge.from_spec(spec)
    raise ValueError(
        f"llmeval_judge {spec!r}: expected auto, local, anthropic, module:attr"
        " or panel:majority|all|mean:JUDGE,JUDGE[,...]"
    )
