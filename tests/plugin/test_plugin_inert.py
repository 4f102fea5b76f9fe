"""A pytest run without case files gets nothing from the plugin (issue #9, item 7)."""

from __future__ import annotations

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
