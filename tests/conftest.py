"""Shared test helpers: pytester, the xdist/no-xdist matrix and a small user project."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# pytester's inline runs unload the modules they import; numpy's extensions cannot load twice
# in one process, so load what the plugin's statistics use once, here
import numpy.fft  # noqa: F401
import pytest
import scipy.stats  # noqa: F401

from pytest_llmeval.judges.similarity import PROMPT_VERSION as SIM_PROMPT_VERSION

pytest_plugins = ["pytester"]

# --- fixtures from sibling test modules ------------------------------------------------------
# The Claude-judge fake server fixture (tests/fake_anthropic.py), for every test module:
from fake_anthropic import fake_anthropic  # noqa: F401, E402

# --- end of fixtures from sibling test modules ------------------------------------------------


@pytest.fixture(params=[(), ("-n", "2")], ids=["no-xdist", "xdist-n2"])
def run_args(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Extra pytest args: every integration test using this runs without xdist and with -n 2."""
    return tuple(request.param)


# A user conftest: the SUT answers from answers.json (read at every call, so a test can change
# answers between runs without re-importing Python). Special answers:
#   "RAISE:<text>"  -> the SUT raises RuntimeError(<text>)
#   "SLEEP:<secs>"  -> the SUT sleeps that long, then answers "slept"
USER_CONFTEST = """
import json
import pathlib
import time

import pytest

ANSWERS = pathlib.Path(__file__).with_name("answers.json")


def answer_for(case_id):
    answer = json.loads(ANSWERS.read_text(encoding="utf-8"))[case_id]
    if answer.startswith("RAISE:"):
        raise RuntimeError(answer[len("RAISE:"):])
    if answer.startswith("SLEEP:"):
        time.sleep(float(answer[len("SLEEP:"):]))
        return "slept"
    return answer


@pytest.fixture(scope="session")
def llmeval_sut():
    return lambda case: answer_for(case.id)
"""

LOCAL_JUDGE = {
    "model": None,
    "name": "local",
    "prompt_version": SIM_PROMPT_VERSION,
    "version": None,
}


class Project:
    """A user project in a pytester directory: ini, conftest, case files, answers.

    ``GOOD`` passes the local judge against the default ground truth of :meth:`case`, ``BAD``
    fails it (score 0).
    """

    GOOD = "You have 30 days from delivery to ask for a refund of your order."
    BAD = "Our office is closed on public holidays in the winter months."
    TRUTH = "30 days from delivery for a refund."

    @staticmethod
    def case(case_id: str, **fields: Any) -> dict[str, Any]:
        """A case dict with an id, a question and (unless given) the ground truth TRUTH."""
        obj: dict[str, Any] = {"id": case_id, "question": f"Question {case_id}?"}
        obj["ground_truth"] = Project.TRUTH
        obj.update(fields)
        return obj

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        self.state = pytester.path / ".llmeval"

    # -- writing ------------------------------------------------------------------------------
    def ini(self, **settings: str) -> None:
        merged = {"llmeval_judge": "local", **settings}
        lines = ["[pytest]"] + [f"{k} = {v}" for k, v in merged.items()]
        (self.path / "pytest.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def conftest(self, extra: str = "") -> None:
        (self.path / "conftest.py").write_text(
            USER_CONFTEST + textwrap.dedent(extra), encoding="utf-8"
        )

    def answers(self, answers: Mapping[str, str]) -> None:
        (self.path / "answers.json").write_text(json.dumps(dict(answers)), encoding="utf-8")

    def cases(self, name: str, cases: Iterable[Mapping[str, Any]]) -> Path:
        """Write ``name`` (e.g. ``llmeval_support.jsonl``) with one JSON object per line."""
        text = "".join(json.dumps(dict(c)) + "\n" for c in cases)
        path = self.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def raw_cases(self, name: str, data: bytes) -> Path:
        path = self.path / name
        path.write_bytes(data)
        return path

    def module(self, name: str, source: str) -> Path:
        """A Python module importable by ``module:attr`` specs (the project dir is on sys.path)."""
        path = self.path / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    # -- running ------------------------------------------------------------------------------
    def run(self, *args: str) -> pytest.RunResult:
        """``pytest`` in the project, in-process (xdist workers are subprocesses anyway).

        Unrelated plugins are off: hypothesis' plugin alone costs each xdist worker ~0.6 s.
        """
        quiet = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest", "-p", "no:anyio")
        return self.pytester.runpytest(*quiet, *args)

    @staticmethod
    def section(result: pytest.RunResult) -> list[str]:
        """The lines of the terminal section "llmeval" (empty when it is absent)."""
        lines = result.outlines
        starts = [i for i, ln in enumerate(lines) if ln.startswith("=") and " llmeval " in ln]
        if not starts:
            return []
        out = []
        for line in lines[starts[0] + 1 :]:
            if line.startswith("=") or line.startswith("_"):
                break
            out.append(line)
        return out

    @staticmethod
    def sections_count(result: pytest.RunResult) -> int:
        return sum(1 for ln in result.outlines if ln.startswith("=") and " llmeval " in ln)

    # -- reading state --------------------------------------------------------------------------
    @property
    def baseline_path(self) -> Path:
        return self.state / "baseline.json"

    @property
    def history_path(self) -> Path:
        return self.state / "history.jsonl"

    def baseline(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.baseline_path.read_text(encoding="utf-8"))
        return data

    def history(self) -> list[dict[str, Any]]:
        if not self.history_path.exists():
            return []
        return [
            json.loads(line)
            for line in self.history_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]

    def state_bytes(self) -> dict[str, bytes | None]:
        """Baseline and history bytes (None when absent), to prove a run did not touch them."""
        return {
            p.name: (p.read_bytes() if p.exists() else None)
            for p in (self.baseline_path, self.history_path)
        }

    def write_baseline(
        self,
        verdicts: Mapping[str, str],
        *,
        judge: Mapping[str, Any] | None = None,
    ) -> None:
        """A committed baseline: ``{"llmeval_a.jsonl::id": "pass" | "fail"}``."""
        self.state.mkdir(exist_ok=True)
        data = {
            "version": 1,
            "default_threshold": 0.7,
            "judge": dict(judge) if judge is not None else LOCAL_JUDGE,
            "cases": {
                key: {
                    "verdict": verdict,
                    "score": 0.9 if verdict == "pass" else 0.1,
                    "response_sha256": "0" * 64,
                    "threshold": 0.7,
                    "passes": 1 if verdict == "pass" else 0,
                    "samples": 1,
                }
                for key, verdict in verdicts.items()
            },
        }
        self.baseline_path.write_text(json.dumps(data, indent=1), encoding="utf-8")

    def write_history(self, rates: Iterable[float], total: int = 10) -> None:
        """Recorded runs of the local judge with the given pass rates."""
        self.state.mkdir(exist_ok=True)
        judge = LOCAL_JUDGE
        lines = [
            json.dumps(
                {
                    "timestamp": f"2024-01-{i + 1:02d}T00:00:00Z",
                    "total": total,
                    "passed": round(rate * total),
                    "pass_rate": rate,
                    "mean_score": rate,
                    "judge": judge,
                }
            )
            for i, rate in enumerate(rates)
        ]
        self.history_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


@pytest.fixture(scope="session")
def _preloaded_modules() -> None:
    """Import heavy modules once, before any pytester snapshot.

    pytester's in-process runs unload the modules first imported during a run: numpy (under
    scipy, used by the summary's confidence interval) cannot be loaded twice in one process,
    and re-importing hypothesis (its plugin imports it at the terminal summary), jsonschema
    or execnet in every run would cost seconds. Session scope makes this run before the
    function-scoped ``pytester`` takes its snapshot.
    """
    import importlib

    for name in (
        "scipy.stats",
        "hypothesis",
        "jsonschema",
        "sqlite3",
        "asyncio",
        "concurrent.futures",
        "execnet",
        "xdist.dsession",
        "xdist.looponfail",
        "pytest_llmeval.engine.runner",
        "pytest_llmeval.reports.model",
        "pytest_llmeval.stats",
        "pytest_llmeval.judges.similarity",
        "pytest_llmeval.plugin.xdist",
        "pytest_llmeval.reports.markdown",
    ):
        importlib.import_module(name)


@pytest.fixture
def project(
    _preloaded_modules: None, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> Project:
    """A fresh user project with the local judge, the answers conftest and no cases yet."""
    # `auto` would pick the Claude judge if a key were set in the environment
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # files rewritten within one second must never be replayed from a stale .pyc
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    proj = Project(pytester)
    proj.ini()
    proj.conftest()
    proj.answers({})
    return proj
