"""The HTML report in a real browser: what a person sees, clicks, filters and sorts.

Drives the system Chromium (Debian's ``chromium`` package) with Playwright, through
``executable_path``: no browser download. Skipped when Chromium or Playwright is missing on a
developer machine; in CI (``CI`` set) that is a failure, so the browser test cannot silently
stop running.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_llmeval.reports.html import render_html

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, ViewportSize

HERE = Path(__file__).parent.parent
SAMPLE = HERE / "data" / "sample_report.json"
ARTIFACTS = HERE.parent / "test-artifacts"
EXAMPLE_PROJECT = HERE.parent / "example_project"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what}; CI must install it so the browser test runs")
    pytest.skip(f"{what} — browser test skipped")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _missing("chromium is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ModuleNotFoundError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as driver:
        running = driver.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield running
        finally:
            running.close()


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def report_url(report: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(render_html(report), encoding="utf-8")
    return path.as_uri()


class Watched:
    """A page with what it did on the side: requests, dialogs, console errors."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def check(self) -> None:
        # Whatever the test did, nothing ran from the data, nothing left the machine and the
        # Content-Security-Policy let our own script run (a hash mismatch is a console error).
        assert self.dialogs == [], "an alert() from report data ran"
        assert self.requests and all(u.startswith(("file:", "data:")) for u in self.requests)
        assert self.errors == []


@pytest.fixture
def watched(browser: Browser, report_url: str) -> Iterator[Watched]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    tab = Watched(page)
    page.goto(report_url)
    yield tab
    tab.check()
    context.close()


@pytest.fixture
def page(watched: Watched) -> Page:
    return watched.page


def visible_rows(page: Page) -> list[str]:
    result: list[str] = page.eval_on_selector_all(
        "#cases-table > tbody > tr",
        "rows => rows.filter(r => r.checkVisibility()).map(r => r.getAttribute('data-outcome'))",
    )
    return result


def row_keys(page: Page, column: int) -> list[str]:
    result: list[str] = page.eval_on_selector_all(
        "#cases-table > tbody > tr",
        f"rows => rows.map(r => r.cells[{column}].getAttribute('data-sort'))",
    )
    return result


def test_gate_verdict_is_what_the_reader_sees_first(page: Page, report: dict[str, Any]) -> None:
    banner = page.locator("#gate-banner")
    assert banner.inner_text().startswith("Gate FAILED")
    box = banner.bounding_box()
    assert box is not None and 0 <= box["y"] < VIEWPORT["height"]  # first screenful
    reasons = page.locator("#verdict-reasons li").all_inner_texts()
    assert reasons == report["summary"]["verdict_reasons"]
    first = page.locator("tr.gate").first.inner_text().split("\t")
    assert first[0].startswith("Regressions") and first[1] == "FAILED"
    assert "2 regressions (max 0)" in first[2]


def test_trend_chart_has_one_visible_point_per_history_entry(
    page: Page, report: dict[str, Any]
) -> None:
    points = page.locator("svg.trend-chart .trend-point")
    assert points.count() == len(report["history"]) == 7
    for i in range(points.count()):
        box = points.nth(i).bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0
    assert page.locator("svg.trend-chart .trend-band").is_visible()
    assert page.locator("svg.trend-chart circle.trend-current").is_visible()


def test_regression_expands_to_old_and_new_answer(page: Page, report: dict[str, Any]) -> None:
    case = next(c for c in report["cases"] if c["id"] == "refund-fees")
    details = page.locator("#regressions details.case", has_text="refund-fees")
    new = details.locator(".answer-new pre.response")
    old = details.locator(".answer-old pre.baseline-response")
    assert not new.is_visible()
    details.locator("summary").click()
    assert details.evaluate("d => d.open") is True
    assert new.inner_text() == case["response"]  # the <script> in it is text, not code
    assert old.inner_text() == case["baseline"]["response"]
    new_box, old_box = new.bounding_box(), old.bounding_box()
    assert new_box is not None and old_box is not None
    assert old_box["x"] + old_box["width"] <= new_box["x"]  # side by side, old on the left
    assert abs(old_box["y"] - new_box["y"]) < 2
    evidence = details.locator("table.evidence-table").inner_text()
    assert "21/21 samples passed in 7 recorded runs" in evidence
    details.scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"))
    page.screenshot(path=str(ARTIFACTS / "report-full.png"), full_page=True)
    assert (ARTIFACTS / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_filter_by_outcome_tag_and_search(page: Page, report: dict[str, Any]) -> None:
    assert page.locator("#case-filters").is_visible()
    total = len(report["cases"])
    assert len(visible_rows(page)) == total
    page.check("#case-filters input[name=outcome][value=regression]")
    assert visible_rows(page) == ["regression", "regression"]
    assert page.locator("#case-count").inner_text() == f"Showing 2 of {total} cases"

    page.check("#case-filters input[name=outcome][value='']")
    assert len(visible_rows(page)) == total
    page.locator("#case-search").press_sequentially("refund")
    ids = page.eval_on_selector_all(
        "#cases-table > tbody > tr",
        "rows => rows.filter(r => r.checkVisibility())"
        ".map(r => r.querySelector('summary').innerText)",
    )
    assert ids == ["refund-fees", "refund-window"]

    page.fill("#case-search", "")
    page.select_option("#case-tag", "shipping")
    shipping = [c["outcome"] for c in report["cases"] if "shipping" in c["tags"]]
    assert visible_rows(page) == shipping


def test_click_a_header_to_sort(page: Page, report: dict[str, Any]) -> None:
    latency = page.locator("#cases-table thead th", has_text="Latency")
    latency.locator("button").click()
    assert latency.get_attribute("aria-sort") == "ascending"
    keys = row_keys(page, 5)
    numbers = [float(k) for k in keys if k]
    assert numbers == sorted(numbers) and keys[-1] == ""  # a case with no answer time sorts last
    latency.locator("button").click()
    assert latency.get_attribute("aria-sort") == "descending"
    keys = row_keys(page, 5)
    slowest = max(c["latency_s"] for c in report["cases"] if c["latency_s"] is not None)
    assert float(keys[0]) == slowest and keys[-1] == ""
    first = page.locator("#cases-table > tbody > tr").first.locator("summary").inner_text()
    assert first == "refund-fees"

    page.locator("#cases-table thead th", has_text="Case").locator("button").click()
    ids = row_keys(page, 0)
    assert ids == sorted(ids, key=str.lower) or ids == sorted(ids)
    # sorting keeps the filters working on the moved rows
    page.check("#case-filters input[name=outcome][value=regression]")
    assert visible_rows(page) == ["regression", "regression"]


def test_without_javascript_every_case_is_listed(browser: Browser, report_url: str) -> None:
    context = browser.new_context(viewport=VIEWPORT, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(report_url)
        assert not page.locator("#case-filters").is_visible()
        assert page.locator("#cases-table thead button").count() == 0
        assert len(visible_rows(page)) == page.locator("#cases-table > tbody > tr").count()
        assert page.locator("#gate-banner").inner_text().startswith("Gate FAILED")
        details = page.locator("#regressions details.case").first
        details.locator("summary").click()  # <details> needs no script
        assert details.locator("pre.response").is_visible()
    finally:
        context.close()


@pytest.mark.skipif(not EXAMPLE_PROJECT.is_dir(), reason="example_project/ is not in this tree")
def test_report_of_a_real_run(browser: Browser, tmp_path: Path) -> None:
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

    context = browser.new_context(viewport=VIEWPORT)
    try:
        tab = Watched(context.new_page())
        page = tab.page
        page.goto((project / "report.html").as_uri())
        banner = page.locator("#gate-banner").inner_text()
        # the headline is the run's verdict: the exit code's
        assert data["summary"]["gate_passed"] is (run.returncode == 0)
        assert banner.startswith("Gate PASSED" if run.returncode == 0 else "Gate FAILED")
        points = page.locator("svg.trend-chart .trend-point").count()
        assert points == len(data["history"]) > 0
        assert len(visible_rows(page)) == len(data["cases"])
        outcome = data["cases"][-1]["outcome"]
        page.check(f"#case-filters input[name=outcome][value={outcome}]")
        shown = visible_rows(page)
        assert shown == [c["outcome"] for c in data["cases"] if c["outcome"] == outcome]
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-example-project.png"))
        tab.check()
    finally:
        context.close()
