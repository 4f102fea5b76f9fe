"""``llmeval calibrate``: judge-human agreement from labelled JSONL, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.cli import main


def write(path: Path, *rows: dict[str, Any] | str) -> str:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


ROWS: list[dict[str, Any]] = [
    {
        "id": "a",
        "question": "Who directed Jaws?",
        "ground_truth": ["Steven Spielberg", "Spielberg"],
        "response": "Spielberg directed it.",
        "human_verdict": "pass",
    },
    {
        "id": "b",
        "question": "Who directed Jaws?",
        "ground_truth": "Steven Spielberg",
        "response": "George Lucas",
        "human_verdict": "fail",
    },
    {
        "id": "c",
        "question": "Refund window?",
        "ground_truth": "30 days",
        # the same file can be a case file: the response may sit in metadata
        "metadata": {"response": "You have 30 days."},
        "human_verdict": "pass",
    },
    {
        "id": "d",
        "question": "Refund window?",
        "ground_truth": "30 days",
        "response": "14 days",
        "human_verdict": "fail",
    },
    {"id": "e", "question": "Refund window?", "ground_truth": "30 days", "response": "14 days"},
    {"id": "f", "question": "Refund window?", "ground_truth": "30 days", "human_verdict": "pass"},
]


def test_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "labels.jsonl", *ROWS)
    assert main(["calibrate", path]) == 0
    out = capsys.readouterr().out
    assert "4 labelled responses, judge local prompt=sim-2" in out
    assert "skipped: 1 without human_verdict, 1 without a response" in out
    assert "at threshold 0.7: kappa 1.00" in out and "tp 2, fp 0, fn 0, tn 2" in out
    assert "suggested threshold:" in out
    assert "check it on held-out labels" in out


def test_json_output_and_the_kappa_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [*ROWS, {**ROWS[1], "id": "g", "human_verdict": "pass"}]  # people disagree here
    path = write(tmp_path / "labels.jsonl", *rows)
    assert main(["calibrate", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["judge"]["name"] == "local"
    assert data["agreement"]["n"] == 5 and data["agreement"]["fn"] == 1
    assert data["skipped"] == {"unlabelled": 1, "no_response": 1}
    assert data["suggested"]["threshold"] is not None and "held-out" in data["warning"]
    assert data["passed"] is True
    assert main(["calibrate", path, "--json", "--min-kappa", "0.9"]) == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False
    assert main(["calibrate", path, "--min-kappa", "0.9"]) == 1
    assert "FAILED: kappa lower bound" in capsys.readouterr().out


def test_the_threshold_changes_the_measured_agreement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "labels.jsonl", *ROWS)
    assert main(["calibrate", path, "--json", "--threshold", "0.3"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["threshold"] == 0.3 and data["agreement"]["fp"] == 1  # "14 days" now passes


def test_a_custom_judge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_judges.py").write_text(
        "def lenient(case, response):\n    return 1.0\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write(tmp_path / "labels.jsonl", *ROWS)
    assert main(["calibrate", path, "--json", "--judge", "my_judges:lenient"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["judge"]["name"] == "my_judges:lenient"
    assert data["agreement"]["fp"] == 2 and data["agreement"]["kappa"] == 0.0
    assert main(["calibrate", path, "--json", "--judge", "panel:all:local,my_judges:lenient"]) == 0
    assert json.loads(capsys.readouterr().out)["agreement"]["fp"] == 0


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('{"question": "q", "response": "x", "human_verdict": "maybe"}', "human_verdict"),
        ('{"question": "q\\ud800", "response": "x", "human_verdict": "pass"}', "lone surrogate"),
        ('{"question": "q", "response": 3, "human_verdict": "pass"}', "'response'"),
        ('{"question": "q", ', "invalid JSON"),
    ],
)
def test_a_bad_line_is_an_error_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, words: str
) -> None:
    path = write(tmp_path / "labels.jsonl", ROWS[0], line)
    assert main(["calibrate", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and words in err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unlabelled = write(tmp_path / "plain.jsonl", {"question": "q", "response": "x"})
    assert main(["calibrate", unlabelled]) == 2
    assert "no labelled responses" in capsys.readouterr().err
    assert main(["calibrate", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["calibrate", unlabelled, "--judge", "nope"]) == 2
    assert "llmeval_judge 'nope'" in capsys.readouterr().err
    assert main(["calibrate", unlabelled, "--threshold", "2"]) == 2
