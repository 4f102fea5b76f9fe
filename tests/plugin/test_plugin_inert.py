"""A pytest run without case files gets nothing from the plugin (issue #9, item 7)."""

from __future__ import annotations

import sys

import pytest

PROBE = """
import sys

def pytest_unconfigure(config):
    heavy = [m for m in ("anthropic", "httpx", "scipy", "numpy", "jsonschema") if m in sys.modules]
    print("LOADED:" + ",".join(heavy))
"""


def test_a_plain_project_shows_writes_and_imports_nothing(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-inert-test-0123456789")
    step = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    pytester.makeconftest(PROBE)
    pytester.makepyfile(test_unit="def test_one():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=1)
    shown = [ln for ln in result.outlines if "llmeval" in ln and not ln.startswith("plugins:")]
    assert shown == [], shown  # no header line, no summary section
    loaded = next(ln for ln in result.outlines if ln.startswith("LOADED:"))
    assert loaded == "LOADED:", loaded  # not even the judge's SDK with a key set
    assert not step.exists()
    assert not (pytester.path / ".llmeval").exists()


def test_a_cached_rerun_loads_neither_the_sdk_nor_jsonschema_nor_scipy(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valid case files and a valid baseline take the fast checks: jsonschema is imported only
    to explain a file that fails them; scipy only for statistics this run does not need."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-inert-test-0123456789")
    pytester.makeconftest(
        PROBE + "\nimport pytest\n\n@pytest.fixture(scope='session')\ndef llmeval_sut():\n"
        "    return lambda case: case.ground_truth\n"
    )
    pytester.makeini("[pytest]\nllmeval_judge = local\n")
    pytester.makefile(
        ".jsonl",
        llmeval_small='{"id": "a", "question": "Refund window?", "ground_truth": "30 days"}\n'
        '{"id": "b", "question": "Locker?", "ground_truth": "Five days in the locker"}\n',
    )
    first = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--llmeval-update-baseline")
    first.assert_outcomes(passed=2)
    rerun = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    rerun.assert_outcomes(passed=2)
    assert any("cache hits: 2" in ln for ln in rerun.outlines), rerun.outlines
    loaded = next(ln for ln in rerun.outlines if ln.startswith("LOADED:"))
    assert not {"anthropic", "httpx", "scipy", "jsonschema"} & set(loaded[7:].split(",")), loaded


def _rerun_with_a_noisy_history(pytester: pytest.Pytester) -> tuple[str, list[str]]:
    """A baseline and three recorded runs, each failing another case, then a cached rerun of
    the last: ``(the rerun's output, the heavy modules it had loaded at the end)``."""
    pytester.makeconftest(
        PROBE + "\nimport os, pytest\n\n@pytest.fixture(scope='session')\ndef llmeval_sut():\n"
        "    def answer(case):\n"
        "        bad = {'1': 'c1', '2': 'c2', '3': 'c1'}.get(os.environ.get('RUN', ''))\n"
        "        return 'no idea' if case.id == bad else case.ground_truth\n"
        "    return answer\n"
    )
    pytester.makeini("[pytest]\nllmeval_judge = local\n")
    lines = [
        f'{{"id": "c{i}", "question": "Q{i}?", "ground_truth": "answer {i}"}}' for i in range(6)
    ]
    pytester.makefile(".jsonl", llmeval_noisy="\n".join(lines) + "\n")
    for run, flag in (
        ("0", "--llmeval-update-baseline"),
        *((r, "--llmeval-record-history") for r in "123"),
    ):
        env_run = pytester.run(
            sys.executable,
            "-c",
            "import os, sys, pytest; os.environ['RUN'] = sys.argv[1];"
            " sys.exit(pytest.main(sys.argv[2:]))",
            run,
            "-p",
            "no:cacheprovider",
            flag,
        )
        assert env_run.ret in (0, 1), env_run.outlines
    rerun = pytester.run(
        sys.executable,
        "-c",
        "import os, sys, pytest; os.environ['RUN'] = '3'; sys.exit(pytest.main(sys.argv[1:]))",
        "-p",
        "no:cacheprovider",
        "-s",
    )
    text = "\n".join(rerun.outlines)
    assert "history: pass rate" in text and "suite_drop:" in text, text  # the gates ran
    assert "cache hits: 6" in text, text
    loaded = next(ln for ln in rerun.outlines if ln.startswith("LOADED:"))
    return text, loaded.split(":", 1)[1].split(",")


def test_a_cached_rerun_with_a_noisy_history_gates_without_scipy_or_numpy(
    pytester: pytest.Pytester,
) -> None:
    """The gate's history evidence (grid prior, predictive tails, prediction bound, CMH, flip
    count) runs on :mod:`pytest_llmeval.stats.exact` (scipy.stats would cost 1-2 s a run), and
    the history table, the grid prior's EM, the predictive tables, the discrete Bonferroni
    threshold, the CMH test and the run dispersion are plain Python (numpy would cost about
    0.1 s and 15 MiB a run). The case that failed twice before fails again and its history test
    calls it flaky (a decision made on that evidence). One project for both checks: building
    its history takes five pytest runs."""
    text, loaded = _rerun_with_a_noisy_history(pytester)
    assert "scipy" not in loaded, (loaded, text)
    assert "numpy" not in loaded, (loaded, text)
    assert "flaky (changed, not significantly): 1: c1" in text, text
