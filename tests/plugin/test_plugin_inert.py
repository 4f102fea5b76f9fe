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
