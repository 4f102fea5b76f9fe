"""``llmeval report``: from a JSON report, from the committed state, and its errors."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.cli import main

SAMPLE = Path(__file__).parent.parent / "data" / "sample_report.json"


def write_state(folder: Path, *, history_points: int = 4) -> Path:
    state = folder / ".llmeval"
    state.mkdir()
    judge = {"name": "local", "model": None, "prompt_version": "sim-1", "version": None}
    cases = {
        "evals/llmeval_a.jsonl::refund-window": {"verdict": "pass", "score": 0.91, "passes": 1,
                                                 "samples": 1, "threshold": 0.7,
                                                 "response_sha256": "a" * 64},
        "evals/llmeval_a.jsonl::x<script>alert(1)</script>": {
            "verdict": "fail", "score": 0.4, "passes": 0, "samples": 1, "threshold": 0.7,
            "response_sha256": "b" * 64},
        "evals/llmeval_a.jsonl::sometimes": {"verdict": "pass", "score": 0.72, "passes": 2,
                                             "samples": 3, "threshold": 0.7,
                                             "response_sha256": "c" * 64},
    }  # fmt: skip
    baseline = {"version": 1, "judge": judge, "default_threshold": 0.7, "cases": cases}
    (state / "baseline.json").write_text(json.dumps(baseline), encoding="utf-8")
    lines = [
        {"timestamp": f"2026-11-0{i + 1}T00:00:00Z", "commit": f"abc{i}", "total": 3,
         "passed": 2, "pass_rate": rate, "mean_score": 0.7, "judge": judge}
        for i, rate in enumerate([0.6, 0.7, 0.65, 0.66, 0.7][:history_points])
    ]  # fmt: skip
    (state / "history.jsonl").write_text(
        "".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8"
    )
    return state


def test_from_json_writes_html_and_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    html, md = tmp_path / "out" / "report.html", tmp_path / "summary.md"
    code = main(["report", "--from", str(SAMPLE), "--html", str(html), "--markdown", str(md)])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {html}", f"wrote {md}"]
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "Gate FAILED" in page
    assert page.count('class="trend-point') == 7
    assert md.read_text(encoding="utf-8").startswith("## LLM eval: gate FAILED ❌")
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files


def test_from_state_folder(tmp_path: Path) -> None:
    state = write_state(tmp_path)
    html, md = tmp_path / "baseline.html", tmp_path / "baseline.md"
    assert main(["report", str(state), "--html", str(html), "--markdown", str(md)]) == 0
    page = html.read_text(encoding="utf-8")
    assert "LLM evaluation baseline" in page and "No gates evaluated" in page
    assert page.count('class="trend-point') == 4
    assert 'class="trend-band"' in page  # 4 points >= the default min_history of 3
    assert "trend-current" not in page  # no run to mark
    assert "<script>alert(1)" not in page and "x&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'data-outcome="flaky"' in page and 'data-outcome="known_failure"' in page
    summary = md.read_text(encoding="utf-8")
    assert summary.startswith("## LLM eval baseline (committed state, no run)")
    assert "**Pass rate 66.7%** (2 passed, 1 failed" in summary
    assert "History: mean 65.2% over 4 recorded runs of this judge" in summary


def test_state_folder_band_follows_min_history(tmp_path: Path) -> None:
    state = write_state(tmp_path, history_points=4)
    html = tmp_path / "b.html"
    assert main(["report", str(state), "--html", str(html), "--min-history", "5"]) == 0
    page = html.read_text(encoding="utf-8")
    assert 'class="trend-band"' not in page  # the gate had too few points: no band to draw
    assert page.count('class="trend-point') == 4


def test_state_folder_with_history_only(tmp_path: Path) -> None:
    state = write_state(tmp_path)
    (state / "baseline.json").unlink()
    html = tmp_path / "b.html"
    assert main(["report", str(state), "--html", str(html)]) == 0
    assert html.read_text(encoding="utf-8").count('class="trend-point') == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--html", "x.html"], "give either a state folder"),
        (["--from", "{sample}", "{state}", "--html", "x.html"], "give either a state folder"),
        (["--from", "{sample}"], "nothing to write"),
        (["--from", "missing.json", "--html", "x.html"], "report file not found: missing.json"),
        (["--from", "{bad}", "--html", "x.html"], "bad.json:1: not valid JSON"),
        (["--from", "{other}", "--html", "x.html"], "not a pytest-llmeval JSON report"),
        (["--from", "{future}", "--html", "x.html"], "unsupported report schema_version 9"),
        (["{tmp}/nowhere", "--html", "x.html"], "state folder not found"),
        (["{empty}", "--html", "x.html"], "no baseline.json or history.jsonl"),
        (["{broken_state}", "--html", "x.html"], "history.jsonl:5: not a JSON line"),
        (["{state}", "--html", "x.html", "--min-history", "1"], "--min-history must be at least 2"),
    ],
)
def test_errors_are_one_line_and_write_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "other.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "future.json").write_text('{"schema_version": 9}', encoding="utf-8")
    (tmp_path / "empty").mkdir()
    state = write_state(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(state, broken)
    with open(broken / "history.jsonl", "a", encoding="utf-8") as fh:
        fh.write("{oops\n")
    names = {"sample": str(SAMPLE), "state": str(state), "bad": "bad.json",
             "other": "other.json", "future": "future.json", "tmp": str(tmp_path),
             "empty": "empty", "broken_state": str(broken)}  # fmt: skip
    argv = ["report", *(a.format(**names) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("llmeval: error: ")
    assert message in err
    assert not (tmp_path / "x.html").exists()


def test_a_failed_render_keeps_the_previous_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report: dict[str, Any] = json.loads(SAMPLE.read_text(encoding="utf-8"))
    report["schema_version"] = 3
    source = tmp_path / "r.json"
    source.write_text(json.dumps(report), encoding="utf-8")
    out = tmp_path / "report.html"
    out.write_text("previous", encoding="utf-8")
    assert main(["report", "--from", str(source), "--html", str(out)]) == 2
    assert out.read_text(encoding="utf-8") == "previous"


def test_missing_jinja2_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)
    md = tmp_path / "s.md"
    code = main(["report", "--from", str(SAMPLE), "--html", str(tmp_path / "r.html")])
    assert code == 2
    assert "pip install 'pytest-llmeval-gate[html]'" in capsys.readouterr().err
    # Markdown needs no extra.
    assert main(["report", "--from", str(SAMPLE), "--markdown", str(md)]) == 0
    assert md.exists()
