"""``llmeval ab``: sample-size, analyze and srm, in-process and through the installed script."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["ab", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("llmeval: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


# ---------------------------------------------------------------------------
# sample-size
# ---------------------------------------------------------------------------


def test_sample_size_human(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sample-size", "--baseline", "0.12", "--mde", "0.15")
    assert code == 0
    assert "5,443 per arm (10,886 in total)" in out
    assert "12.00% -> target 13.80%" in out


def test_sample_size_json(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "sample-size", "--baseline", "0.12", "--mde", "0.15", "--alpha", "0.01")
    assert data["per_arm"] == 8099 and data["total"] == 16198
    assert data["relative"] is True and data["alternative"] == "two-sided"
    assert math.isclose(data["target_rate"], 0.138)


def test_sample_size_absolute_and_one_sided(capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_llmeval.stats import sample_size

    data = run_json(
        capsys,
        "sample-size",
        "--baseline", "0.5",
        "--mde", "0.02",
        "--absolute",
        "--power", "0.9",
        "--alternative", "greater",
    )  # fmt: skip
    expected = sample_size(0.5, 0.02, relative=False, power=0.9, alternative="greater")
    assert data["per_arm"] == expected
    assert data["per_arm"] < sample_size(0.5, 0.02, relative=False, power=0.9)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--baseline", "1.5", "--mde", "0.1"], "--baseline must be a rate in [0, 1]"),
        (["--baseline", "0.9", "--mde", "0.2"], "outside (0, 1)"),
        (["--baseline", "0.1", "--mde", "0.1", "--alpha", "0"], "--alpha"),
        (["--baseline", "0.1", "--mde", "0.1", "--power", "1"], "--power"),
        (["--baseline", "0.1", "--mde", "0"], "--mde must be non-zero"),
    ],
)
def test_sample_size_bad_input(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert_one_line_error(*run(capsys, "sample-size", *argv), fragment)


# ---------------------------------------------------------------------------
# analyze
# ---------------------------------------------------------------------------

COUNTS = ["--control-n", "1000", "--control-k", "120", "--treatment-n", "1000"]


def test_analyze_counts_human(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "analyze", *COUNTS, "--treatment-k", "150")
    assert code == 0
    assert "difference +3.00 points" in out
    assert "relative lift +25.00%" in out
    assert "p = 0.0496" in out
    assert "Recommendation: ship" in out


def test_analyze_counts_json_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "analyze", *COUNTS, "--treatment-k", "150", "--mde", "0.3")
    # +25% observed, +30% required: significant but not worth shipping
    assert data["recommendation"] == "no_ship"
    assert data["practically_significant"] is False
    pooled = 270 / 2000
    z = 0.03 / math.sqrt(pooled * (1 - pooled) * 2 / 1000)
    assert math.isclose(data["test"]["z"], z, rel_tol=1e-9)
    assert math.isclose(data["test"]["p_value"], math.erfc(z / math.sqrt(2)), rel_tol=1e-9)
    assert math.isclose(data["mde_absolute"], 0.036, rel_tol=1e-9)


def test_analyze_not_significant_is_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "analyze", *COUNTS, "--treatment-k", "130")
    assert data["recommendation"] == "inconclusive"


def test_analyze_csv_with_guardrail(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text(
        "variant,n,thumbs_up,thumbs_down_rate\n"
        "control,10000,1200,0.030\n"
        "treatment,10000,1400,0.038\n",
        encoding="utf-8",
    )
    base = ["analyze", "--file", str(path), "--metric", "thumbs_up"]
    blocked = run_json(capsys, *base, "--guardrail", "thumbs_down_rate")
    assert blocked["recommendation"] == "no_ship"
    assert blocked["guardrails"][0]["worse"] is True
    free = run_json(capsys, *base)
    assert free["recommendation"] == "ship"
    code, out, _ = run(capsys, *base, "--guardrail", "thumbs_down_rate:lower")
    assert code == 0
    assert "thumbs_down_rate (lower is better): 3.00% -> 3.80%" in out
    assert "WORSE" in out and "Recommendation: no_ship" in out


def test_analyze_json_file_single_metric(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "results.json"
    path.write_text(
        json.dumps({"control": {"n": 2000, "errors": 100}, "treatment": {"n": 2000, "errors": 60}}),
        encoding="utf-8",
    )
    data = run_json(capsys, "analyze", "--file", str(path), "--direction", "lower")
    assert data["metric"] == "errors"
    assert data["recommendation"] == "ship"
    assert data["control_rate"] == 0.05 and data["treatment_rate"] == 0.03


@pytest.mark.parametrize(
    ("content", "suffix", "fragment"),
    [
        ("variant,n,m\ncontrol,10,1\n", ".csv", "no 'treatment' variant"),
        ("variant,n,m\ncontrol,10,1\ntreatment,10,abc\n", ".csv", "'abc' is not a number"),
        ("variant,n,m\ncontrol,10,1\ncontrol,10,2\n", ".csv", "appears twice"),
        ("name,n,m\ncontrol,10,1\n", ".csv", "'variant' and 'n'"),
        ("variant,n,a,b\ncontrol,10,1,2\ntreatment,10,1,2\n", ".csv", "--metric"),
        ('{"control": {"n": 10, "m": 1}, "treatment": {"n": 10, "m": 20}}', ".json", "<= "),
        ('{"control": {"n": 10, "m": 1}', ".json", "invalid JSON"),
        ('{"control": {"n": 10, "m": 1}, "treatmnet": {}}', ".json", "unknown variant"),
        ("control,10", ".txt", "use .csv or .json"),
    ],
)
def test_analyze_bad_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, suffix: str, fragment: str
) -> None:
    path = tmp_path / f"data{suffix}"
    path.write_text(content, encoding="utf-8")
    assert_one_line_error(*run(capsys, "analyze", "--file", str(path)), fragment)


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (COUNTS, "missing --treatment-k"),
        ([*COUNTS, "--treatment-k", "1200"], "must be <= "),
        ([*COUNTS, "--treatment-k", "150", "--file", "x.csv"], "not both"),
        ([*COUNTS, "--treatment-k", "150", "--guardrail", "errors"], "--guardrail needs --file"),
        ([*COUNTS, "--treatment-k", "150", "--mde", "-0.1"], "--mde must be > 0"),
        ([*COUNTS, "--treatment-k", "150", "--alpha", "1.5"], "--alpha"),
        (["--file", "/nonexistent/dir/data.csv"], "cannot read"),
    ],
)
def test_analyze_bad_input(
    capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert_one_line_error(*run(capsys, "analyze", *argv), fragment)


def test_analyze_guardrail_without_direction(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "r.csv"
    path.write_text("variant,n,m,latency_ok\ncontrol,10,1,9\ntreatment,10,2,9\n", "utf-8")
    code, out, err = run(capsys, "analyze", "--file", str(path), "--metric", "m",
                         "--guardrail", "latency_ok")  # fmt: skip
    assert_one_line_error(code, out, err, "latency_ok:higher")


# ---------------------------------------------------------------------------
# srm
# ---------------------------------------------------------------------------


def test_srm_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "srm", "--observed", "5000", "4800", "--expected", "0.5", "0.5")
    assert code == 0
    assert out.startswith("no sample-ratio mismatch")
    assert "p = 0.0434" in out


def test_srm_mismatch_exits_1_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "srm", "--observed", "5000", "4600", "--json")
    assert code == 1
    data = json.loads(out)
    assert data["mismatch"] is True
    stat = 2 * 200**2 / 4800
    assert math.isclose(data["statistic"], stat, rel_tol=1e-9)
    assert math.isclose(data["p_value"], math.erfc(math.sqrt(stat / 2)), rel_tol=1e-9)
    assert data["expected_ratios"] == [0.5, 0.5]


def test_srm_three_arms(capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(
        capsys, "srm", "--observed", "2000", "3000", "5100", "--expected", "2", "3", "5"
    )
    assert data["df"] == 2 and data["mismatch"] is False


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--observed", "10", "10", "--expected", "0.5"], "--expected has 1 entries"),
        (["--observed", "10", "-1"], "--observed[1] must be >= 0"),
        (["--observed", "10"], "at least 2 arms"),
        (["--observed", "10", "12", "--threshold", "2"], "--threshold"),
    ],
)
def test_srm_bad_input(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    assert_one_line_error(*run(capsys, "srm", *argv), fragment)


def test_ab_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == 2
    assert "sample-size" in out and "analyze" in out and "srm" in out


# ---------------------------------------------------------------------------
# the installed console script
# ---------------------------------------------------------------------------


def _llmeval_script() -> str:
    beside = Path(sys.executable).with_name("llmeval")
    found = str(beside) if beside.exists() else shutil.which("llmeval")
    if found is None:
        pytest.fail("the llmeval console script is not installed (pip install -e .)")
    return found


def test_installed_script_sample_size_json() -> None:
    proc = subprocess.run(
        [_llmeval_script(), "ab", "sample-size", "--baseline", "0.12", "--mde", "0.15", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["per_arm"] == 5443


def test_installed_script_bad_input_one_line() -> None:
    proc = subprocess.run(
        [_llmeval_script(), "ab", "sample-size", "--baseline", "2", "--mde", "0.15"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, "--baseline")
