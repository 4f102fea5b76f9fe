"""The HTML report in a real browser: what a person sees, clicks and filters.

Drives Debian's headless Chromium over the DevTools pipe (``tests/cdp.py``, standard library
only). Skipped when Chromium is missing on a developer machine; in CI (``CI`` set) a missing
Chromium is a failure, so the browser test cannot silently stop running.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pytest_llmeval.reports.html import render_html

HERE = Path(__file__).parent.parent
SAMPLE = HERE / "data" / "sample_report.json"
ARTIFACTS = HERE.parent / "test-artifacts"


def _load_cdp() -> ModuleType:
    # Loaded by path so the helper works whatever pytest's import mode and tests/ layout are.
    spec = importlib.util.spec_from_file_location("llmeval_tests_cdp", HERE / "cdp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


cdp = _load_cdp()


@pytest.fixture(scope="module")
def chromium() -> str:
    path: str | None = cdp.find_chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; CI must install Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium) — browser test skipped")
    return path


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def report_url(report: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path.as_uri()


@pytest.fixture(scope="module")
def browser(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with cdp.Browser.launch(chromium, profile) as running:
        yield running


@pytest.fixture
def page(browser: Any, report_url: str) -> Iterator[Any]:
    tab = browser.new_page(width=1280, height=900)
    tab.goto(report_url)
    yield tab
    # Whatever the test did, nothing may have run from the data or left the machine.
    assert tab.events("Page.javascriptDialogOpening") == [], "an alert() from report data ran"
    urls = [e["request"]["url"] for e in tab.events("Network.requestWillBeSent")]
    assert urls and all(u.startswith(("file:", "data:")) for u in urls), urls
    tab.close()


def visible(page: Any, selector: str) -> bool:
    return bool(
        page.evaluate(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " return !!el && el.checkVisibility(); })()"
        )
    )


def visible_rows(page: Any) -> list[str]:
    result: list[str] = page.evaluate(
        "Array.from(document.querySelectorAll('#cases-table tbody tr'))"
        ".filter(r => r.checkVisibility()).map(r => r.getAttribute('data-outcome'))"
    )
    return result


def test_gate_verdict_is_what_the_reader_sees_first(page: Any) -> None:
    banner = page.evaluate("document.getElementById('gate-banner').innerText")
    assert banner.startswith("Gate FAILED")
    top = page.evaluate("document.getElementById('gate-banner').getBoundingClientRect().top")
    assert 0 <= top < 900  # in the first screenful, without scrolling
    rows = page.evaluate("Array.from(document.querySelectorAll('tr.gate')).map(r => r.innerText)")
    assert rows[0].split("\t")[:2] == ["Regressions", "FAILED"]
    assert "2 regressions (max 0)" in rows[0]


def test_trend_chart_has_one_visible_point_per_history_entry(
    page: Any, report: dict[str, Any]
) -> None:
    boxes = page.evaluate(
        "Array.from(document.querySelectorAll('svg.trend-chart .trend-point'))"
        ".map(c => { const r = c.getBoundingClientRect(); return [r.width, r.height]; })"
    )
    assert len(boxes) == len(report["history"]) == 7
    assert all(w > 0 and h > 0 for w, h in boxes)
    assert visible(page, "svg.trend-chart .trend-band")
    assert visible(page, "svg.trend-chart circle.trend-current")


def test_regression_expands_to_its_response(page: Any, report: dict[str, Any]) -> None:
    response = next(c["response"] for c in report["cases"] if c["id"] == "refund-fees")
    details = "#regressions details.case"
    assert not visible(page, f"{details} pre.response")
    page.click(f"{details} > summary")
    assert page.evaluate(f"document.querySelector({json.dumps(details)}).open") is True
    assert visible(page, f"{details} pre.response")
    shown = page.evaluate(f"document.querySelector('{details} pre.response').innerText")
    assert shown == response  # the <script> in it is text on the page, not code
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "report.png")
    assert (ARTIFACTS / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filter_by_outcome_tag_and_search(page: Any, report: dict[str, Any]) -> None:
    assert visible(page, "#case-filters")
    total = len(report["cases"])
    assert len(visible_rows(page)) == total
    page.click("#case-filters input[name=outcome][value=regression]")
    assert visible_rows(page) == ["regression", "regression"]
    count = page.evaluate("document.getElementById('case-count').innerText")
    assert count == f"Showing 2 of {total} cases"

    page.click("#case-filters input[name=outcome][value='']")
    assert len(visible_rows(page)) == total
    page.click("#case-search")
    page.type_text("refund")
    ids = page.evaluate(
        "Array.from(document.querySelectorAll('#cases-table tbody tr'))"
        ".filter(r => r.checkVisibility()).map(r => r.querySelector('summary').innerText)"
    )
    assert ids == ["refund-window", "refund-fees"]

    # The tag <select> opens a native popup headless Chromium cannot click: choose by script.
    page.evaluate(
        "(() => { const s = document.getElementById('case-search'); s.value = '';"
        " s.dispatchEvent(new Event('input', {bubbles: true}));"
        " const t = document.getElementById('case-tag'); t.value = 'shipping';"
        " t.dispatchEvent(new Event('change', {bubbles: true})); })()"
    )
    shipping = [c["outcome"] for c in report["cases"] if "shipping" in c["tags"]]
    assert visible_rows(page) == shipping


EXAMPLE_PROJECT = HERE.parent / "example_project"


@pytest.mark.skipif(not EXAMPLE_PROJECT.is_dir(), reason="example_project/ is not in this tree")
def test_report_of_a_real_run(browser: Any, tmp_path: Path) -> None:
    """Run the example project through pytest, then read its HTML report as a person would."""
    project = tmp_path / "project"
    shutil.copytree(
        EXAMPLE_PROJECT, project, ignore=shutil.ignore_patterns("cache.sqlite3*", "__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "ANTHROPIC_"))}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--llmeval-report", "report.json", "--llmeval-report", "report.html"],
        cwd=project, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode in (0, 1), output
    assert (project / "report.json").is_file() and (project / "report.html").is_file(), output
    data = json.loads((project / "report.json").read_text(encoding="utf-8"))

    tab = browser.new_page(width=1280, height=900)
    try:
        tab.goto((project / "report.html").as_uri())
        banner = tab.evaluate("document.getElementById('gate-banner').innerText")
        expected = "Gate PASSED" if data["summary"]["gate_passed"] else "Gate FAILED"
        assert banner.startswith(expected)
        assert ("PASSED" if run.returncode == 0 else "FAILED") in banner
        points = tab.evaluate("document.querySelectorAll('svg.trend-chart .trend-point').length")
        assert points == len(data["history"]) > 0
        assert len(visible_rows(tab)) == len(data["cases"])
        outcome = data["cases"][-1]["outcome"]
        tab.click(f"#case-filters input[name=outcome][value={outcome}]")
        shown = visible_rows(tab)
        assert shown == [c["outcome"] for c in data["cases"] if c["outcome"] == outcome]
        ARTIFACTS.mkdir(exist_ok=True)
        tab.screenshot(ARTIFACTS / "report-example-project.png", full_page=False)
        assert tab.events("Page.javascriptDialogOpening") == []
    finally:
        tab.close()
