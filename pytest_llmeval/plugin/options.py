"""Every ``--llmeval-*`` option and ``llmeval_*`` ini key, turned into one frozen Settings.

Nothing else in the package reads ``config.getoption`` or ``config.getini``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# name -> (type, default, help). type is one of pytest's ini types.
_INI: dict[str, tuple[str, Any, str]] = {
    "llmeval_files": ("linelist", ["llmeval_*.jsonl"], "glob(s) of JSONL case files"),
    "llmeval_dir": ("string", ".llmeval", "state folder (baseline, history, cache)"),
    "llmeval_judge": ("string", "auto", "auto | local | anthropic | module:attr"),
    "llmeval_judge_model": ("string", "claude-haiku-4-5", "model of the Claude judge"),
    "llmeval_judge_max_tokens": ("int", 1024, "max tokens of a judge answer"),
    "llmeval_judge_timeout": ("float", 60.0, "judge request timeout, seconds"),
    "llmeval_judge_max_retries": ("int", 4, "judge retries on 429/529/5xx/timeouts"),
    "llmeval_max_retry_wait": ("float", 60.0, "cap on any single retry wait, seconds"),
    "llmeval_rpm": ("float", None, "client-side judge requests-per-minute limit"),
    "llmeval_rpm_window": (
        "float",
        60.0,
        "window for llmeval_rpm: bursts of up to rpm*window/60 requests in any window of this"
        " many seconds",
    ),
    "llmeval_prices": ("string", "", "JSON file overriding the judge price table"),
    "llmeval_threshold": ("float", 0.7, "default pass threshold for a case's score"),
    "llmeval_min_words": ("int", 5, "fewer words than this is 'too_short'"),
    "llmeval_max_words": ("int", 600, "more words than this is 'too_long'"),
    "llmeval_sut_timeout": ("float", None, "per-case SUT timeout, seconds"),
    "llmeval_sut_concurrency": ("int", 1, "parallel calls of a sync SUT"),
    "llmeval_concurrency": ("int", 8, "judge calls at once, for cases evaluated ahead"),
    "llmeval_max_regressions": ("int", 0, "regressions allowed before the run fails"),
    "llmeval_min_pass_rate": ("float", None, "fail the run below this pass rate"),
    "llmeval_std_threshold": (
        "float",
        None,
        "history gate: use the old rule mean - k*std with this k (unset: prediction bound)",
    ),
    "llmeval_min_history": (
        "int",
        3,
        "recorded runs needed for the history gate, and by a case for its history-based test",
    ),
    "llmeval_history_binomial": ("bool", False, "also gate on a significant binomial drop"),
    "llmeval_history_alpha": ("float", 0.05, "alpha of the binomial history test"),
    "llmeval_repeat": ("int", 1, "SUT samples per case"),
    "llmeval_repeat_pass_fraction": ("float", 0.5, "pass fraction a repeated case needs"),
    "llmeval_flaky_alpha": (
        "float",
        0.05,
        "the gate's false-alarm budget per run of an unchanged app (per-case and suite tests)",
    ),
    "llmeval_compare_alpha": ("float", 0.05, "alpha of the compare-mode McNemar test"),
    "llmeval_noninferiority_margin": ("float", None, "compare mode: allowed pass-rate loss"),
    "llmeval_step_summary": ("bool", True, "append a summary to $GITHUB_STEP_SUMMARY"),
    "llmeval_min_judge_kappa": (
        "float",
        None,
        "fail the run when the judge's kappa against human_verdict labels (interval's lower"
        " bound) is below this",
    ),
}


def register(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmeval", "LLM evaluation (pytest-llmeval)")
    group.addoption("--llmeval-sut", metavar="MODULE:ATTR", help="system under test callable")
    group.addoption("--llmeval-judge", metavar="NAME", help="auto | local | anthropic | mod:attr")
    group.addoption(
        "--llmeval-update-baseline",
        action="store_true",
        help="rewrite .llmeval/baseline.json from this run and append to the history",
    )
    group.addoption(
        "--llmeval-record-history",
        action="store_true",
        help="append this run to the history without touching the baseline",
    )
    group.addoption("--llmeval-no-cache", action="store_true", help="bypass the judge cache")
    group.addoption(
        "--llmeval-offline",
        action="store_true",
        help="never call a network judge; a cache miss is an ERROR",
    )
    group.addoption(
        "--llmeval-report",
        action="append",
        default=[],
        metavar="PATH",
        help="write a report: .json, .html or .md (repeatable)",
    )
    group.addoption("--llmeval-concurrency", type=int, metavar="N", help="judge calls at once")
    group.addoption("--llmeval-batch", action="store_true", help="judge via Message Batches")
    group.addoption("--llmeval-repeat", type=int, metavar="N", help="SUT samples per case")
    group.addoption("--llmeval-compare-sut", metavar="MODULE:ATTR", help="candidate SUT to compare")
    group.addoption("--llmeval-shard", metavar="K/N", help="run shard K of N (1-based)")
    for name, (kind, default, help_text) in _INI.items():
        shown = "" if default in (None, "", []) else f" (default: {_shown(default)})"
        parser.addini(name, help_text + shown, type=kind, default=default)  # type: ignore[arg-type]


def _shown(default: Any) -> str:
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return " ".join(default)
    return str(default)


@dataclass(frozen=True)
class Settings:
    """All configuration of one run, validated."""

    files: tuple[str, ...]
    state_dir: Path
    judge: str
    judge_model: str
    judge_max_tokens: int
    judge_timeout: float
    judge_max_retries: int
    max_retry_wait: float
    rpm: float | None
    rpm_window: float
    prices_file: Path | None
    threshold: float
    min_words: int
    max_words: int
    sut: str | None
    sut_timeout: float | None
    sut_concurrency: int
    concurrency: int
    max_regressions: int
    min_pass_rate: float | None
    std_threshold: float | None  # None: the prediction-bound history rule
    min_history: int
    history_binomial: bool
    history_alpha: float
    repeat: int
    repeat_pass_fraction: float
    flaky_alpha: float
    compare_sut: str | None
    compare_alpha: float
    noninferiority_margin: float | None
    step_summary: bool
    update_baseline: bool
    record_history: bool
    no_cache: bool
    offline: bool
    batch: bool
    reports: tuple[Path, ...]
    shard: tuple[int, int] | None
    xdist_workers: int  # 0 without xdist (read from pytest-xdist's -n when present)
    junit: bool  # pytest's --junitxml is on: cases carry their properties
    min_judge_kappa: float | None = None
    named_on_command_line: bool = False  # an --llmeval-* option was given: the plugin is on

    @property
    def baseline_path(self) -> Path:
        return self.state_dir / "baseline.json"

    @property
    def history_path(self) -> Path:
        return self.state_dir / "history.jsonl"

    @property
    def cache_path(self) -> Path:
        return self.state_dir / "cache.sqlite3"


def _number(
    name: str,
    raw: Any,
    kind: type,
    *,
    low: float | None = None,
    high: float | None = None,
    optional: bool = False,
) -> Any:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if optional:
            return None
        raise pytest.UsageError(f"{name}: a value is required")
    if isinstance(raw, bool):
        raise pytest.UsageError(f"{name} = {raw!r}: expected a {kind.__name__}")
    try:
        value = kind(raw.strip() if isinstance(raw, str) else raw)
        if kind is int and isinstance(raw, float) and raw != int(raw):
            raise ValueError
    except ValueError:
        raise pytest.UsageError(f"{name} = {raw!r}: expected a {kind.__name__}") from None
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise pytest.UsageError(f"{name} = {raw!r}: must be in {bounds}")
    return value


def _shard(raw: str | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    try:
        k, n = (int(x) for x in raw.split("/"))
    except ValueError:
        raise pytest.UsageError(f"--llmeval-shard {raw!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise pytest.UsageError(f"--llmeval-shard {raw!r}: need 1 <= K <= N")
    return (k, n)


def settings_from_config(config: pytest.Config) -> Settings:
    """Read and validate every option; raises pytest.UsageError naming the bad setting."""

    def ini(name: str) -> Any:
        try:
            return config.getini(name)
        except pytest.UsageError as exc:  # pytest could not convert the value: name it
            text = str(exc)
            if "literal" in text or "could not convert" in text:  # int("x"), float("x")
                text = f"{name} = {text.rpartition(': ')[2]}: expected a number"
            raise pytest.UsageError(f"pytest-llmeval: {text}") from None

    def opt(name: str) -> Any:
        return config.getoption(name)

    def num(name: str, kind: type, **bounds: Any) -> Any:
        return _number(name, ini(name), kind, **bounds)

    def flag_or_ini(name: str, **bounds: Any) -> int:
        value = opt(name)
        if value is None:
            return int(num(name, int, **bounds))
        return int(_number(f"--{name.replace('_', '-')}", str(value), int, **bounds))

    root = Path(str(config.inipath.parent)) if config.inipath else Path(str(config.rootpath))
    state_dir = Path(ini("llmeval_dir"))
    if not state_dir.is_absolute():
        state_dir = root / state_dir
    prices = str(ini("llmeval_prices")).strip()
    unit = {"low": 1e-12, "high": 0.999999}
    return Settings(
        files=tuple(ini("llmeval_files")),
        state_dir=state_dir,
        judge=(opt("llmeval_judge") or ini("llmeval_judge")).strip(),
        judge_model=ini("llmeval_judge_model").strip(),
        judge_max_tokens=num("llmeval_judge_max_tokens", int, low=1),
        judge_timeout=num("llmeval_judge_timeout", float, low=0.001),
        judge_max_retries=num("llmeval_judge_max_retries", int, low=0),
        max_retry_wait=num("llmeval_max_retry_wait", float, low=0),
        rpm=num("llmeval_rpm", float, low=0.001, optional=True),
        rpm_window=num("llmeval_rpm_window", float, low=0.001),
        prices_file=(root / prices) if prices else None,
        threshold=num("llmeval_threshold", float, low=0, high=1),
        min_words=num("llmeval_min_words", int, low=0),
        max_words=num("llmeval_max_words", int, low=1),
        sut=opt("llmeval_sut"),
        sut_timeout=num("llmeval_sut_timeout", float, low=0.001, optional=True),
        sut_concurrency=num("llmeval_sut_concurrency", int, low=1),
        concurrency=flag_or_ini("llmeval_concurrency", low=1),
        max_regressions=num("llmeval_max_regressions", int, low=0),
        min_pass_rate=num("llmeval_min_pass_rate", float, low=0, high=1, optional=True),
        std_threshold=num("llmeval_std_threshold", float, low=0, optional=True),
        min_history=num("llmeval_min_history", int, low=2),
        history_binomial=bool(ini("llmeval_history_binomial")),
        history_alpha=num("llmeval_history_alpha", float, **unit),
        repeat=flag_or_ini("llmeval_repeat", low=1, high=1000),
        repeat_pass_fraction=num("llmeval_repeat_pass_fraction", float, low=0, high=1),
        flaky_alpha=num("llmeval_flaky_alpha", float, **unit),
        compare_sut=opt("llmeval_compare_sut"),
        compare_alpha=num("llmeval_compare_alpha", float, **unit),
        noninferiority_margin=num(
            "llmeval_noninferiority_margin", float, low=0, high=1, optional=True
        ),
        step_summary=bool(ini("llmeval_step_summary")),
        update_baseline=bool(opt("llmeval_update_baseline")),
        record_history=bool(opt("llmeval_record_history")),
        no_cache=bool(opt("llmeval_no_cache")),
        offline=bool(opt("llmeval_offline")),
        batch=bool(opt("llmeval_batch")),
        reports=tuple(Path(p) for p in opt("llmeval_report")),
        shard=_shard(opt("llmeval_shard")),
        xdist_workers=_workers(config),
        junit=bool(config.getoption("xmlpath", default=None)),
        min_judge_kappa=num("llmeval_min_judge_kappa", float, low=-1, high=1, optional=True),
        named_on_command_line=any(
            str(a).startswith("--llmeval") for a in config.invocation_params.args
        ),
    )


def _workers(config: pytest.Config) -> int:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:  # on a worker: the controller told us how many there are
        return int(workerinput.get("workercount", 1))
    value = config.getoption("numprocesses", default=None)
    if value in (None, 0, "0") or config.getoption("dist", default="no") == "no":
        return 0
    if isinstance(value, int):
        return value
    import os

    return os.cpu_count() or 1  # "auto"/"logical": xdist resolves these to the CPU count
