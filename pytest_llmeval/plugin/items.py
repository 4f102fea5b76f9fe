"""The JSONL file collector and case items."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pytest_llmeval.core.cases import Case, iter_cases
from pytest_llmeval.core.result import FAILING_OUTCOMES, XFAIL_OUTCOMES, CaseResult
from pytest_llmeval.errors import CaseError, ConfigError

if TYPE_CHECKING:
    from pytest_llmeval.core.evaluation import Evaluation

MAX_ERRORS_SHOWN = 20
_LLMEVAL_MARK = pytest.mark.llmeval  # built once: add_marker by name costs per item


class LLMEvalWarning(pytest.PytestWarning):
    """Warnings about case files (for example an empty file)."""


class CaseFailure(Exception):
    """A case failed (regression or new failure); rendered by ``repr_failure``."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.outcome)
        self.result = result


class JudgeFailure(Exception):
    """The judge could not answer: the item is an ERROR, never a pass or a fail."""


class ConfigFailure(Exception):
    """The run is misconfigured (for example, no system under test)."""


class CaseRun(Protocol):
    """What case files and items need of the run (:class:`pytest_llmeval.plugin.session.
    LLMEvalRun`); handed to them at collection, so they never reach for the run themselves."""

    def note_collected(self, rel: str, keys: Sequence[str], cases: Sequence[Case]) -> None: ...

    def evaluate(self, item: CaseItem) -> tuple[Evaluation, Evaluation | None]: ...

    def result_for(
        self, key: str, case: Case, ev: Evaluation, candidate: Evaluation | None = None
    ) -> CaseResult: ...

    def accepts_failures(self) -> bool: ...

    def xfail_reason(self, result: CaseResult) -> str: ...


def _case_entry(llmeval_sut: Any) -> None:
    """Placeholder test function: through it, case items get the ``llmeval_sut`` fixture."""


class CaseFile(pytest.File):
    """A JSONL file of evaluation cases."""

    def __init__(self, *, run: CaseRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run

    def collect(self) -> Iterator[CaseItem]:
        rel = self.nodeid
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise self.CollectError(f"{rel}: cannot read the file ({exc})") from None
        errors: list[CaseError] = []
        cases: list[Case] = []
        for result in iter_cases(rel, data):
            if isinstance(result, CaseError):
                errors.append(result)
            else:
                cases.append(result)
        if errors:
            shown = [str(e) for e in errors[:MAX_ERRORS_SHOWN]]
            if len(errors) > MAX_ERRORS_SHOWN:
                shown.append(f"... and {len(errors) - MAX_ERRORS_SHOWN} more bad lines")
            header = f"{rel}: {len(errors)} invalid case line(s); nothing in this file was run"
            raise self.CollectError("\n".join([header, *shown]))
        if not cases:
            warnings.warn(LLMEvalWarning(f"{rel}: no cases (the file is empty)"), stacklevel=1)
        # Items of one file share their fixture closure: compute it once, not per case.
        shared: Any = None
        items: list[CaseItem] = []
        for case in cases:
            item = CaseItem.from_parent(
                self,
                name=case.id,
                callobj=_case_entry,
                case=case,
                run=self.run,
                fixtureinfo=shared,
            )
            shared = item._fixtureinfo
            items.append(item)
        # the ledger keeps the items' own node id strings (no second string per case)
        self.run.note_collected(rel, [item.nodeid for item in items], cases)
        yield from items


class CaseItem(pytest.Function):
    """One evaluation case. A fixture-aware item, so the ``llmeval_sut`` fixture resolves."""

    def __init__(self, *, case: Case, run: CaseRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.run = run
        self.evaluation: Evaluation | None = None
        self.candidate: Evaluation | None = None
        self.llmeval_result: CaseResult | None = None
        self.add_marker(_LLMEVAL_MARK)
        # -k matches node names, markers and extra_keyword_matches
        self.extra_keyword_matches.update(case.tags)
        self.extra_keyword_matches.add(case.difficulty)

    @property
    def case_key(self) -> str:
        return self.nodeid

    def setup(self) -> None:
        super().setup()
        __tracebackhide__ = True
        state = self.run
        try:
            self.evaluation, self.candidate = state.evaluate(self)
        except ConfigError as exc:
            raise ConfigFailure(str(exc)) from None
        if self.evaluation.error is not None:
            self.llmeval_result = state.result_for(
                self.nodeid, self.case, self.evaluation, self.candidate
            )
            error = self.evaluation.error
            self.evaluation = self.candidate = None
            raise JudgeFailure(error)

    def runtest(self) -> None:
        __tracebackhide__ = True
        assert self.evaluation is not None
        state = self.run
        result = state.result_for(self.nodeid, self.case, self.evaluation, self.candidate)
        self.llmeval_result = result
        self.evaluation = self.candidate = None  # the result has what it needs: free the rest
        if state.accepts_failures():
            return  # accepting a new state: the verdict goes into the baseline, not a failure
        if result.outcome in FAILING_OUTCOMES:
            raise CaseFailure(result)
        if result.outcome in XFAIL_OUTCOMES:
            pytest.xfail(state.xfail_reason(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CaseFailure):
            from pytest_llmeval.reports.terminal import render_case_failure

            return render_case_failure(excinfo.value.result)
        if isinstance(excinfo.value, pytest.xfail.Exception) and self.llmeval_result is not None:
            # a known failure or a flaky case: its reason is the whole report (pytest shows
            # it with -rx); formatting a traceback of the plugin cost 2.5 ms a case
            return excinfo.value.msg
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, max(self.case.line - 1, 0), f"case {self.case.id}"
