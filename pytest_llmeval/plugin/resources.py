"""Per-run resources: settings, committed state, the judge, the cache and the SUTs.

Everything here is built on first use, so a pytest run that never meets a case builds nothing:
no judge, no SDK import, no state read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.core import gate
from pytest_llmeval.core.baseline import Baseline, BaselineEntry
from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.checks import RuleSettings
from pytest_llmeval.core.result import ResultSettings
from pytest_llmeval.core.verdict import Usage
from pytest_llmeval.engine.cache import JudgeCache
from pytest_llmeval.engine.finish import RunSettings
from pytest_llmeval.engine.runner import Evaluator, EvaluatorConfig
from pytest_llmeval.engine.store import load_baseline_with_sha256, load_history
from pytest_llmeval.errors import ConfigError, StateFileError
from pytest_llmeval.judges import import_object, load_judge
from pytest_llmeval.judges.base import Judge
from pytest_llmeval.plugin.options import Settings

NO_SUT = (
    "no system under test: define a session-scoped fixture `llmeval_sut` in conftest.py that"
    " returns a callable(case) -> str, or pass --llmeval-sut module:attr"
)


class RunResources:
    """Settings and the things built from them, each on first use."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.root = Path(config.rootpath)  # node ids (and baseline keys) are relative to it
        self.rules = RuleSettings(
            min_words=settings.min_words,
            max_words=settings.max_words,
            default_threshold=settings.threshold,
        )
        self.result_settings = ResultSettings(
            threshold=settings.threshold,
            repeat=settings.repeat,
            repeat_pass_fraction=settings.repeat_pass_fraction,
        )
        self._state_loaded = False
        self._baseline: Baseline | None = None
        self._history: list[dict[str, Any]] = []
        self._baseline_sha256: str | None = None
        self._judge: Judge | None = None
        self._warm_up_decided = False
        self._cache: JudgeCache | None = None
        self._evaluator: Evaluator | None = None
        self._suts_imported = False
        self._cli_sut: Callable[[Case], Any] | None = None
        self._candidate: Callable[[Case], Any] | None = None
        self._sut: Callable[[Case], Any] | None = None

    # -- committed state ---------------------------------------------------------------------
    def _load_state(self) -> None:
        if self._state_loaded:
            return
        s = self.settings
        try:
            self._baseline, self._baseline_sha256 = load_baseline_with_sha256(s.baseline_path)
            self._history = load_history(s.history_path)
        except StateFileError as exc:
            raise pytest.UsageError(f"pytest-llmeval: {exc}") from None
        self._state_loaded = True

    @property
    def baseline(self) -> Baseline | None:
        self._load_state()
        return self._baseline

    @property
    def history(self) -> list[dict[str, Any]]:
        self._load_state()
        return self._history

    @property
    def baseline_sha256(self) -> str | None:
        self._load_state()
        return self._baseline_sha256

    def baseline_entry(self, key: str) -> BaselineEntry | None:
        base = self.baseline
        return None if base is None else base.entries.get(key)

    # -- judge, cache, evaluator -------------------------------------------------------------
    @property
    def judge(self) -> Judge:
        if self._judge is None:
            try:
                self._judge = load_judge(self.settings.judge, self.judge_options())
            except (ValueError, ConfigError) as exc:
                raise pytest.UsageError(str(exc)) from None
        return self._judge

    def warm_up_judge(self) -> None:
        """Cases were collected: when no cache can answer them (caching off, or no cache file
        yet), a judgement is certain, so a judge with ``warm_up()`` (the Claude judge: its SDK
        import, a second or more) gets ready in the background from now on, while collection
        and the run's start go on. With a cache file, the scheduler decides per case, from
        what the cache holds (a cached rerun never imports the SDK). Decided once per run."""
        if self._warm_up_decided:
            return
        self._warm_up_decided = True
        s = self.settings
        if s.offline or self.config.option.collectonly:
            return
        if not s.no_cache and s.cache_path.exists():
            return
        try:
            evaluator = self.evaluator
        except pytest.UsageError:
            return  # reported where the judge is first needed, as usual
        if evaluator.network:  # the scheduler's own call at the first miss finds it started
            evaluator.warm_up()

    def judge_options(self) -> dict[str, Any]:
        s = self.settings
        return {
            "model": s.judge_model,
            "max_tokens": s.judge_max_tokens,
            "timeout": s.judge_timeout,
            "max_retries": s.judge_max_retries,
            "max_retry_wait": s.max_retry_wait,
            "rpm": s.rpm,
            "rpm_window": s.rpm_window,
            # each xdist worker takes its share of the limit and of the API's reported budget
            "processes": max(1, s.xdist_workers),
            "prices_file": s.prices_file,
            "threshold": s.threshold,
        }

    def check_judge_identity(self) -> None:
        """Refuse a baseline made by another judge (unless it is being rewritten)."""
        base = self.baseline
        if base is None or base.judge is None:
            return
        if self.settings.update_baseline or not base.entries:
            return
        ours = self.judge.identity.to_dict()
        theirs = base.judge.to_dict()
        if ours == theirs:
            return
        diffs = ", ".join(
            f"{k}: baseline {theirs[k]!r} vs now {ours[k]!r}" for k in ours if ours[k] != theirs[k]
        )
        auto = ""
        if self.settings.judge == "auto":
            auto = (
                " The judge was chosen automatically (llmeval_judge = auto"
                + (", ANTHROPIC_API_KEY is set" if "anthropic" in str(ours["name"]) else "")
                + f"); pin the baseline's judge in your ini file: llmeval_judge = {theirs['name']}."
            )
        if ours["name"] == theirs["name"]:
            how = (
                " The same judge changed its model, prompt or version since the baseline was"
                " made, so its old verdicts do not compare; re-baseline:"
                " pytest --llmeval-update-baseline."
            )
        else:
            how = (
                f"{auto} To keep this baseline, select its judge with --llmeval-judge"
                f" {theirs['name']} (or the ini key llmeval_judge); to re-baseline with this"
                " judge: pytest --llmeval-update-baseline."
            )
        raise pytest.UsageError(
            f"pytest-llmeval: {self.settings.baseline_path} was made by another judge"
            f" ({diffs}). Scores of different judges are not comparable.{how}"
        )

    @property
    def cache(self) -> JudgeCache | None:
        if self.settings.no_cache:
            return None
        if self._cache is None:
            self._cache = JudgeCache(self.settings.cache_path)
        return self._cache

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            s = self.settings
            self._evaluator = Evaluator(
                self.judge,
                self.cache,
                EvaluatorConfig(
                    rules=self.rules,
                    repeat=s.repeat,
                    sut_timeout=s.sut_timeout,
                    offline=s.offline,
                    use_cache=not s.no_cache,
                ),
            )
        return self._evaluator

    def cache_problems(self) -> list[str]:
        return list(self._cache.problems) if self._cache else []

    def cost_estimator(self) -> Callable[[Usage], float | None] | None:
        if self._judge is None:
            return None
        estimate = getattr(self._judge, "estimate_cost", None)
        if not callable(estimate):
            return None  # a custom judge's cost is unknown, not zero
        if self.settings.batch:  # Message Batches are billed at the batch discount
            return lambda usage: estimate(usage, batch=True)
        return estimate  # type: ignore[no-any-return]

    def check_batch(self) -> None:
        """``--llmeval-batch`` needs a judge with a batch API and one process."""
        if not self.settings.batch:
            return
        if not callable(getattr(self.judge, "batch_score", None)):
            raise pytest.UsageError(
                f"--llmeval-batch: the judge {self.judge.identity.label()} has no batch API;"
                " use --llmeval-judge anthropic"
            )
        if self.settings.xdist_workers:
            raise pytest.UsageError("--llmeval-batch sends one batch per run: do not use -n")
        if self.settings.compare_sut:
            raise pytest.UsageError("--llmeval-batch cannot be combined with compare mode yet")

    # -- systems under test ------------------------------------------------------------------
    def import_suts(self) -> None:
        """Import ``--llmeval-sut`` / ``--llmeval-compare-sut`` now, so a typo is a usage
        error, not an error per case."""
        if self._suts_imported:
            return
        self._suts_imported = True
        self._cli_sut = self._import_spec(self.settings.sut, "--llmeval-sut")
        self._candidate = self._import_spec(self.settings.compare_sut, "--llmeval-compare-sut")

    def _import_spec(self, spec: str | None, option: str) -> Callable[[Case], Any] | None:
        if spec is None:
            return None
        invocation = str(self.config.invocation_params.dir)
        if invocation not in sys.path:  # as `python -m pytest` would: modules beside you import
            sys.path.append(invocation)
        try:
            obj = import_object(spec, option)
        except (ValueError, ConfigError) as exc:
            raise pytest.UsageError(str(exc)) from None
        if not callable(obj):
            raise pytest.UsageError(f"{option} {spec!r}: {obj!r} is not callable")
        return obj  # type: ignore[no-any-return]

    def sut_for(self, funcargs: Mapping[str, Any]) -> Callable[[Case], Any]:
        """The SUT: ``--llmeval-sut`` if given, else the ``llmeval_sut`` fixture's value."""
        if self._sut is None:
            self.import_suts()
            sut: Any = self._cli_sut if self._cli_sut is not None else funcargs["llmeval_sut"]
            if sut is None or not callable(sut):
                raise ConfigError(
                    NO_SUT if sut is None else f"llmeval_sut is not callable: {sut!r}"
                )
            self._sut = sut
        return self._sut

    @property
    def candidate(self) -> Callable[[Case], Any] | None:
        """The ``--llmeval-compare-sut`` candidate."""
        self.import_suts()
        return self._candidate

    # -- the end of a run --------------------------------------------------------------------
    def gate_settings(self) -> gate.GateSettings:
        s = self.settings
        return gate.GateSettings(
            max_regressions=s.max_regressions,
            min_pass_rate=s.min_pass_rate,
            std_threshold=s.std_threshold,
            min_history=s.min_history,
            history_binomial=s.history_binomial,
            history_alpha=s.history_alpha,
            alpha=s.flaky_alpha,
            samples=s.repeat,
            repeat_pass_fraction=s.repeat_pass_fraction,
        )

    def run_settings(self) -> RunSettings:
        s = self.settings
        return RunSettings(
            gate=self.gate_settings(),
            threshold=s.threshold,
            min_words=s.min_words,
            max_words=s.max_words,
            repeat=s.repeat,
            repeat_pass_fraction=s.repeat_pass_fraction,
            flaky_alpha=s.flaky_alpha,
            shard=f"{s.shard[0]}/{s.shard[1]}" if s.shard else None,
            min_judge_kappa=s.min_judge_kappa,
            update_baseline=s.update_baseline,
            record_history=s.record_history,
            compare_sut=s.compare_sut,
            compare_alpha=s.compare_alpha,
            noninferiority_margin=s.noninferiority_margin,
        )

    def gate_context(self, case_keys: Sequence[str]) -> gate.GateContext:
        base = self.baseline
        views = {
            k: gate.BaselineView(e.passed, e.passes, e.samples)
            for k, e in (base.entries.items() if base else ())
        }
        return gate.GateContext.build(
            self.history,
            judge=self.judge.identity.to_dict(),
            case_keys=case_keys,
            baseline=views,
            settings=self.gate_settings(),
        )

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None
