"""``llmeval calibrate``: how far a judge agrees with people, from labelled JSONL files.

Each line is a case line (the case schema) that also carries the response to judge and a
person's verdict on it::

    {"id": "r1", "question": "Refund window?", "ground_truth": ["30 days", "a month"],
     "response": "You have 30 days.", "human_verdict": "pass"}

``response`` is read from the top level, or from ``metadata.response`` (so the same file can
also be an ``llmeval_*.jsonl`` case file, whose schema has no ``response`` field). Lines without
``human_verdict`` or without a response are counted and skipped. Every response goes through
the same path as in a pytest run (the judge's ``score``, then the rule checks and the case's
checks), at ``--threshold``. The command prints the agreement (Cohen's kappa with its interval,
accuracy, true-positive and true-negative rates, confusion counts) and the threshold that
maximises kappa on these labels — a choice made on the data it is measured on, so check it on
held-out labels before relying on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmeval.core.agreement import Agreement, Threshold, agreement, best_threshold
from pytest_llmeval.core.cases import Case, iter_cases
from pytest_llmeval.core.checks import RuleSettings, finalize
from pytest_llmeval.core.verdict import Verdict
from pytest_llmeval.errors import CLIError

HELD_OUT_WARNING = (
    "the suggested threshold was chosen on these labels: check it on held-out labels"
    " (e.g. another half of the file) before relying on it"
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``llmeval calibrate`` to the ``llmeval`` parser."""
    parser = subparsers.add_parser(
        "calibrate",
        help="judge-human agreement from labelled JSONL, and the threshold that maximises kappa",
        description=(
            "Score labelled responses (case lines with 'response' and 'human_verdict') with a"
            " judge and report its agreement with people: Cohen's kappa with a confidence"
            " interval, accuracy, true-positive/true-negative rates and confusion counts; then"
            " suggest the threshold that maximises kappa."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="labelled JSONL files")
    parser.add_argument(
        "--judge",
        default="local",
        help="local (default), anthropic, module:attr or panel:AGG:JUDGE,JUDGE",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.7, help="pass threshold to measure at (0.7)"
    )
    parser.add_argument(
        "--min-words",
        type=int,
        default=RuleSettings().min_words,
        help="the too_short rule for cases without a reference (as llmeval_min_words)",
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, help="confidence of the kappa interval (0.95)"
    )
    parser.add_argument(
        "--min-kappa",
        type=float,
        default=None,
        help="exit 1 when the interval's lower bound of kappa is below this",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class Labelled:
    """One labelled response read from a file."""

    case: Case
    response: str


@dataclass(frozen=True)
class Loaded:
    items: tuple[Labelled, ...]
    unlabelled: int
    no_response: int


def load_labelled(paths: Sequence[str]) -> Loaded:
    """Read labelled case lines; a bad line is a CLIError naming file, line and field."""
    items: list[Labelled] = []
    unlabelled = no_response = 0
    for path in paths:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise CLIError(f"cannot read {path}: {exc.strerror or exc}") from None
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        responses: dict[int, Any] = {}
        cleaned: list[bytes] = []
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            try:
                obj = json.loads(raw)
            except (ValueError, RecursionError):
                obj = None  # not JSON: iter_cases reports it with file:line
            if isinstance(obj, dict):
                if "response" in obj:
                    responses[lineno] = obj.pop("response")
                    raw = json.dumps(obj, ensure_ascii=True).encode("ascii")
                elif isinstance(obj.get("metadata"), dict):
                    responses[lineno] = obj["metadata"].get("response")
            cleaned.append(raw)
        for found in iter_cases(path, b"\n".join(cleaned)):
            if not isinstance(found, Case):
                raise CLIError(str(found))
            response = responses.get(found.line)
            if found.human_verdict is None:
                unlabelled += 1
            elif not isinstance(response, str):
                if response is not None:
                    raise CLIError(f"{path}:{found.line}: field 'response': expected a string")
                no_response += 1
            else:
                items.append(Labelled(found, response))
    return Loaded(tuple(items), unlabelled, no_response)


def _score(judge: Any, case: Case, response: str) -> Any:
    ascore = getattr(judge, "ascore", None)
    if not hasattr(judge, "score") and ascore is not None:
        return asyncio.run(ascore(case, response))
    return judge.score(case, response)


def _threshold_free_score(verdict: Verdict) -> float:
    """The score a threshold sweep may compare, or -1 when the verdict fails whatever the
    threshold (a failed check, the judge's own "fail", too_short)."""
    fixed = {"check_failed", "judge_failed", "too_short"} & set(verdict.failure_modes)
    if fixed or (verdict.score >= verdict.threshold and not verdict.passed):
        return -1.0
    return verdict.score


@dataclass(frozen=True)
class Calibration:
    judge: dict[str, str | None]
    files: tuple[str, ...]
    threshold: float
    agreement: Agreement
    suggested: Threshold | None
    unlabelled: int
    no_response: int
    own_threshold: int
    """Labelled cases with their own ``threshold`` (measured at it, left out of the sweep)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "files": list(self.files),
            "threshold": self.threshold,
            "agreement": self.agreement.to_dict(),
            "suggested": self.suggested.to_dict() if self.suggested is not None else None,
            "skipped": {"unlabelled": self.unlabelled, "no_response": self.no_response},
            "own_threshold": self.own_threshold,
            "warning": HELD_OUT_WARNING,
        }


def calibrate(
    judge: Any,
    loaded: Loaded,
    files: Sequence[str],
    *,
    threshold: float = 0.7,
    min_words: int = 5,
    confidence: float = 0.95,
) -> Calibration:
    """Score every labelled response and measure the agreement (pure but for the judge)."""
    from pytest_llmeval.errors import JudgeError

    rules = RuleSettings(min_words=min_words, default_threshold=threshold)
    checks_only = bool(getattr(judge, "checks_only_without_ground_truth", False))
    pairs: list[tuple[bool, bool]] = []
    sweep: list[tuple[float, bool]] = []
    own = 0
    for item in loaded.items:
        case = item.case
        try:
            result = _score(judge, case, item.response)
        except JudgeError as exc:
            raise CLIError(f"{case.file}:{case.line}: the judge could not answer: {exc}") from None
        verdict = finalize(
            case,
            item.response,
            result,
            judge.identity,
            rules,
            checks_only=checks_only and case.ground_truth is None,
        )
        human = case.human_verdict == "pass"
        pairs.append((verdict.passed, human))
        if case.threshold is None:
            sweep.append((_threshold_free_score(verdict), human))
        else:
            own += 1
    return Calibration(
        judge=judge.identity.to_dict(),
        files=tuple(files),
        threshold=threshold,
        agreement=agreement(pairs, confidence=confidence),
        suggested=best_threshold(sweep, confidence=confidence) if sweep else None,
        unlabelled=loaded.unlabelled,
        no_response=loaded.no_response,
        own_threshold=own,
    )


def run(args: argparse.Namespace) -> int:
    from pytest_llmeval.judges import load_judge

    if not 0.0 <= args.threshold <= 1.0:
        raise CLIError(f"--threshold must be in [0, 1], got {args.threshold}")
    if not 0.0 < args.confidence < 1.0:
        raise CLIError(f"--confidence must be in (0, 1), got {args.confidence}")
    try:
        judge = load_judge(args.judge, {})
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    loaded = load_labelled(args.files)
    if not loaded.items:
        raise CLIError(
            "no labelled responses: each line needs 'human_verdict' (pass|fail) and a"
            " 'response' (or metadata.response) to judge"
        )
    found = calibrate(
        judge,
        loaded,
        args.files,
        threshold=args.threshold,
        min_words=args.min_words,
        confidence=args.confidence,
    )
    gate_failed = args.min_kappa is not None and (
        found.agreement.kappa_low is None or found.agreement.kappa_low < args.min_kappa
    )
    if args.json:
        out = found.to_dict()
        out["min_kappa"] = args.min_kappa
        out["passed"] = not gate_failed
        json.dump(out, sys.stdout, indent=2, sort_keys=True)
        print()
        return 1 if gate_failed else 0
    _print(found, judge.identity.label())
    if gate_failed:
        low = found.agreement.kappa_low
        shown = "n/a" if low is None else f"{low:.2f}"
        print(f"FAILED: kappa lower bound {shown} is below --min-kappa {args.min_kappa:g}")
    return 1 if gate_failed else 0


def _print(found: Calibration, judge: str) -> None:
    a = found.agreement
    noun = "response" if a.n == 1 else "responses"
    print(f"llmeval calibrate: {a.n} labelled {noun}, judge {judge}")
    skipped = []
    if found.unlabelled:
        skipped.append(f"{found.unlabelled} without human_verdict")
    if found.no_response:
        skipped.append(f"{found.no_response} without a response")
    if skipped:
        print(f"  skipped: {', '.join(skipped)}")
    print(f"at threshold {found.threshold:g}: {a.summary()}")
    s = found.suggested
    if s is None:
        print("suggested threshold: n/a (every labelled case has its own threshold)")
        return
    k = s.agreement
    if k.kappa is None:
        print("suggested threshold: n/a (kappa is undefined: people or the judge chose one class)")
        return
    print(
        f"suggested threshold: {s.threshold:.4g} (kappa {k.kappa:.2f}"
        f" [{k.kappa_low:.2f}, {k.kappa_high:.2f}], accuracy {k.accuracy:.0%},"
        f" of {s.candidates} tried)"
    )
    if found.own_threshold:
        print(f"  ({found.own_threshold} case(s) with their own threshold left out of the choice)")
    print(f"warning: {HELD_OUT_WARNING}")
