"""``llmeval online ...``, ``llmeval shadow`` and ``llmeval flywheel`` from the shell."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmeval.cli import main
from pytest_llmeval.cli.online import parse_duration

T0 = 1_700_000_000.0
UNTIL = "2023-11-14T23:13:20Z"  # T0 + 1 h


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def events(n: int, model: str, variant: str, downs: int, copies: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(n):
        rid = f"{model}-{i}"
        out.append(
            {
                "type": "response",
                "response_id": rid,
                "session_id": rid,
                "user_id": rid,
                "variant": variant,
                "experiment": "exp-1",
                "model": model,
                "question": f"question {i} for {model}",
                "response": "an answer",
                "timestamp": T0 + i,
            }
        )
        if i < downs:
            out.append({"type": "thumbs_down", "response_id": rid, "timestamp": T0 + i + 1})
        if i < copies:
            out.append({"type": "copy", "response_id": rid, "timestamp": T0 + i + 2})
    return out


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    path = str(tmp_path / "online.sqlite3")
    data = events(300, "v1", "control", 15, 60) + events(300, "v2", "treatment", 45, 90)
    src = write(tmp_path / "events.jsonl", data)
    code, out, _ = run(capsys, "online", "ingest", str(src), "--db", path)
    assert code == 0, out
    return path


def test_parse_duration() -> None:
    assert parse_duration("24h") == 86400
    assert parse_duration("7d") == 7 * 86400
    assert parse_duration("30m") == 1800
    assert parse_duration("90") == 90
    assert parse_duration("all") is None
    import argparse

    for bad in ("", "0h", "-1d", "3y", "soon"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


def test_ingest_reports_counts_and_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write(tmp_path / "e.jsonl", events(5, "v1", "control", 1, 2))
    path = str(tmp_path / "db.sqlite3")
    code, out, _ = run(capsys, "online", "ingest", str(src), "--db", path, "--json")
    assert code == 0
    first = json.loads(out)
    assert (first["responses_added"], first["events_added"]) == (5, 3)
    code, out, _ = run(capsys, "online", "ingest", str(src), "--db", path, "--json")
    again = json.loads(out)
    assert (again["responses_added"], again["events_added"], again["duplicates"]) == (0, 0, 8)


def test_ingest_with_parse_workers_or_none_stores_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [*events(40, "v1", "control", 9, 7), "{oops"]
    src = write(tmp_path / "e.jsonl", records)
    outputs = []
    for workers in ("0", "2"):
        db = str(tmp_path / f"db{workers}.sqlite3")
        code, out, err = run(capsys, "online", "ingest", str(src), "--db", db, "--workers", workers)
        assert code == 0 and f"{src}:{len(records)}: invalid JSON" in err
        until = ("--until", str(T0 + 10_000))
        _, dash, _ = run(capsys, "online", "dashboard", "--db", db, "--window", "all", *until)
        outputs.append((out, dash))
    assert outputs[0] == outputs[1]
    assert "40 responses, 16 events" in outputs[0][0]
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "online", "ingest", str(src), "--workers", "-1")
    assert exit_info.value.code == 2
    assert "argument --workers: must be >= 0, got -1" in capsys.readouterr().err


def test_ingest_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write(tmp_path / "e.jsonl", [*events(2, "v1", "control", 0, 0), "{oops", {"type": "x"}])
    path = str(tmp_path / "db.sqlite3")
    code, out, err = run(capsys, "online", "ingest", str(src), "--db", path)
    assert code == 0
    assert f"{src}:3: invalid JSON" in err
    assert f"{src}:4: field 'timestamp': is required" in err
    assert "2 bad line(s) skipped" in out
    strict_db = str(tmp_path / "strict.sqlite3")
    code, out, err = run(capsys, "online", "ingest", str(src), "--db", strict_db, "--strict")
    assert code == 1
    assert "rejected" in err
    code, out, _ = run(
        capsys, "online", "dashboard", "--db", strict_db, "--window", "all", "--json"
    )
    assert json.loads(out)["responses_shown"] == 0


def test_dashboard_json(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "online",
        "dashboard",
        "--db",
        db,
        "--window",
        "24h",
        "--until",
        UNTIL,
        "--by",
        "variant",
        "--json",
    )
    assert code == 0
    d = json.loads(out)
    assert d["responses_shown"] == 600
    for name in (
        "copy_rate",
        "session_continuation_rate",
        "rephrase_retry_rate",
        "thumbs_up_rate",
        "thumbs_down_rate",
        "positive_rate",
        "feedback_response_rate",
    ):
        assert set(d[name]) >= {"rate", "numerator", "denominator", "ci"}
    assert (d["copy_rate"]["numerator"], d["copy_rate"]["denominator"]) == (150, 600)
    assert d["by_variant"]["treatment"]["thumbs_down_rate"]["numerator"] == 45
    # --until makes it reproducible: before anything happened the window is empty
    code, out, _ = run(
        capsys,
        "online",
        "dashboard",
        "--db",
        db,
        "--window",
        "1h",
        "--until",
        "2020-01-01T00:00:00Z",
        "--json",
    )
    empty = json.loads(out)
    assert empty["copy_rate"] == {"rate": None, "numerator": 0, "denominator": 0, "ci": None}


def test_dashboard_text(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "online", "dashboard", "--db", db, "--window", "all", "--by", "model"
    )
    assert code == 0
    assert "600 responses shown" in out
    assert "copy_rate" in out and "v2" in out and "150/600" in out


def test_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], db: str) -> None:
    missing = str(tmp_path / "nope.sqlite3")
    code, _, err = run(capsys, "online", "dashboard", "--db", missing)
    assert code == 2
    assert err.strip() == (
        f"llmeval: error: no event store at {missing} (run `llmeval online ingest` first)"
    )
    assert not Path(missing).exists()  # a reader never creates a store
    code, _, err = run(
        capsys,
        "online",
        "canary",
        "--db",
        db,
        "--control",
        "v1",
        "--candidate",
        "v9",
        "--guardrail",
        "thumbs_down_rate",
    )
    assert code == 2 and "v9" in err and "Traceback" not in err
    code, _, err = run(
        capsys,
        "online",
        "ab",
        "--db",
        db,
        "--experiment",
        "exp-1",
        "--metric",
        "copy_rate",
        "--treatment",
        "nope",
    )
    assert code == 2 and "unknown variant 'nope'" in err
    code, _, err = run(
        capsys, "online", "ab", "--db", db, "--experiment", "exp-1", "--metric", "clicks"
    )
    assert code == 2
    assert err.startswith("llmeval: error: unknown metric 'clicks'; choose one of copy_rate")
    assert err.count("\n") == 1
    code, _, err = run(capsys, "online", "ingest", str(tmp_path / "missing.jsonl"), "--db", db)
    assert code == 2 and "no such file" in err


def test_no_traceback_from_the_console_script(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pytest_llmeval.cli import main; sys.exit(main())",
            "online",
            "dashboard",
            "--db",
            str(tmp_path / "missing.sqlite3"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_canary_exit_codes(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "online",
        "canary",
        "--db",
        db,
        "--control",
        "v1",
        "--candidate",
        "v2",
        "--guardrail",
        "thumbs_down_rate",
        "--guardrail",
        "rephrase_retry_rate",
        "--window",
        "all",
    )
    assert code == 1
    assert "(model)" in out and "WORSE" in out and "canary: FAIL" in out
    code, out, _ = run(
        capsys,
        "online",
        "canary",
        "--db",
        db,
        "--control",
        "v2",
        "--candidate",
        "v1",
        "--guardrail",
        "thumbs_down_rate",
        "--window",
        "all",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["passed"] is True
    code, out, _ = run(
        capsys,
        "online",
        "canary",
        "--db",
        db,
        "--control",
        "control",
        "--candidate",
        "treatment",
        "--guardrail",
        "thumbs_down_rate",
        "--window",
        "all",
        "--json",
    )
    assert code == 1 and json.loads(out)["by"] == "variant"


def test_ab_readout(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "online",
        "ab",
        "--db",
        db,
        "--experiment",
        "exp-1",
        "--metric",
        "copy_rate",
        "--guardrail",
        "thumbs_down_rate",
        "--json",
    )
    assert code == 0
    r = json.loads(out)
    assert r["users"] == {"control": 300, "treatment": 300}
    assert r["hits"]["treatment"] == {"copy_rate": 90, "thumbs_down_rate": 45}
    assert r["recommendation"] == "no_ship"  # copies up, but thumbs-down significantly worse
    code, out, _ = run(
        capsys, "online", "ab", "--db", db, "--experiment", "exp-1", "--metric", "copy_rate"
    )
    assert code == 0 and "recommendation: ship" in out


def test_flywheel_dry_run_then_write(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evals = tmp_path / "evals"
    evals.mkdir()
    (evals / "llmeval_core.jsonl").write_text('{"id": "x", "question": "question 0 for v1"}\n')
    out_file = evals / "llmeval_production_failures.jsonl"
    argv = [
        "flywheel",
        "--db",
        db,
        "--since",
        "all",
        "--seed",
        "1",
        "--cases",
        str(evals),
        "--out",
        str(out_file),
    ]
    # 60 thumbs-down responses; one question is already an existing case
    code, out, _ = run(capsys, *argv, "--limit", "100", "--dry-run")
    assert code == 0
    assert "would add 59 case(s)" in out and "1 exact" in out
    assert not out_file.exists()
    argv += ["--limit", "5"]
    code, out, _ = run(capsys, *argv, "--json")
    result = json.loads(out)
    assert len(result["added"]) == 5
    lines = out_file.read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [c["id"] for c in result["added"]]
    code, out, _ = run(capsys, *argv, "--dry-run", "--json")
    assert [c["id"] for c in json.loads(out)["added"]] != [c["id"] for c in result["added"]]
    code, _, err = run(
        capsys, "flywheel", "--db", db, "--cases", str(tmp_path / "none"), "--out", str(out_file)
    )
    assert code == 2 and "no such file or folder" in err


SYSTEMS = """
def production(case):
    return "Refunds are possible."

def shadow(case):
    return "You can ask for a refund within 30 days of delivery."

def broken(case):
    raise RuntimeError("down")
"""


def test_shadow_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_systems.py").write_text(SYSTEMS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = tmp_path / "llmeval_refunds.jsonl"
    cases.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"c{i}",
                    "question": f"How long do I have for a refund, case {i}?",
                    "ground_truth": "30 days from delivery",
                }
            )
            + "\n"
            for i in range(12)
        )
    )
    argv = [
        "shadow",
        "--production",
        "my_systems:production",
        "--shadow",
        "my_systems:shadow",
        "--cases",
        str(cases),
        "--db",
        str(tmp_path / "unused.sqlite3"),
    ]
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["shadow_wins"], report["production_wins"]) == (12, 0)
    assert report["recommendation"] == "promote_shadow"
    assert report["judge"]["name"] == "local-pairwise"
    code, out, _ = run(capsys, *argv)
    assert "recommendation: promote_shadow" in out
    assert "verbosity bias " in out and "probe(s)" in out
    code, out, _ = run(
        capsys,
        "shadow",
        "--production",
        "my_systems:production",
        "--shadow",
        "my_systems:broken",
        "--cases",
        str(cases),
    )
    assert code == 0 and "errors 12" in out and "recommendation: inconclusive" in out
    code, _, err = run(
        capsys,
        "shadow",
        "--shadow",
        "my_systems:nope",
        "--cases",
        str(cases),
        "--production",
        "my_systems:production",
    )
    assert code == 2 and "has no 'nope'" in err
    code, _, err = run(capsys, "shadow", "--shadow", "my_systems:shadow", "--from-store")
    assert code == 2 and "no event store" in err


def test_shadow_from_store(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_systems2.py").write_text(SYSTEMS)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, _ = run(
        capsys,
        "shadow",
        "--db",
        db,
        "--shadow",
        "my_systems2:shadow",
        "--from-store",
        "--since",
        "all",
        "--limit",
        "1000",
        "--json",
    )
    assert code == 0
    report = json.loads(out)
    probe = report["verbosity_bias"]  # ties everywhere: padding cannot move the local judge
    assert (probe["probed"], probe["moved"], probe["rate"]) == (20, 0, 0.0)
    assert report["n"] == 600  # no --production needed: the stored answers are compared
    assert {c["production"] for c in report["comparisons"]} == {"an answer"}
    # 60 responses carry a thumbs-down. Stored responses have no reference answer, so the
    # local judge abstains (ties) on every one: no agreement can be measured.
    agreement = report["feedback_agreement"]
    assert (agreement["n"], agreement["ties_skipped"], agreement["agree"]) == (0, 60, 0)


def test_ingest_goes_on_after_bad_text_and_deep_nesting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = events(3, "v1", "control", 1, 1)
    first = tmp_path / "a.jsonl"
    lines = [json.dumps(r) for r in good[:2]]
    lines.append('{"type": "copy", "response_id": "\\ud800", "timestamp": 1700000000}')
    lines.append(json.dumps(good[2])[:-1] + ', "metadata": {"x": "caf\xe9"}}')
    deep = '{"type": "copy", "response_id": "v1-0", "timestamp": 1700000001, "metadata": '
    lines.append(deep + '{"a": ' * 1200 + "1" + "}" * 1200 + "}")
    lines.append("[" * 5000 + "]" * 5000)
    lines += [json.dumps(r) for r in good[3:]]
    data = "\n".join(lines).encode("utf-8") + b"\n"
    data = data.replace("caf\xe9".encode(), b"caf\xe9")  # Latin-1, not UTF-8
    first.write_bytes(data)
    second = write(tmp_path / "b.jsonl", events(2, "v2", "treatment", 0, 0))
    path = str(tmp_path / "db.sqlite3")
    code, out, err = run(capsys, "online", "ingest", str(first), str(second), "--db", path)
    assert code == 0, err
    assert f"{first}:3: contains a lone surrogate" in err
    assert f"{first}:4: not UTF-8" in err
    assert f"{first}:5: " in err and "nested too deeply" in err.split(f"{first}:5: ")[1]
    assert f"{first}:6: invalid JSON: nested too deeply" in err
    assert "Traceback" not in err and "RecursionError" not in err
    assert "4 bad line(s) skipped" in out
    code, out, _ = run(capsys, "online", "dashboard", "--db", path, "--window", "all", "--json")
    # the 3 responses of a.jsonl (its bad lines were events) and the 2 of b.jsonl
    dash = json.loads(out)
    assert dash["responses_shown"] == 5
    assert dash["copy_rate"]["numerator"] == 0  # the only copy was the line with bad bytes


FLYWHEEL_RUN = """
import sys, time
from pytest_llmeval.cli import main
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.001)
sys.exit(main(sys.argv[2:]))
"""


def test_two_flywheel_runs_at_once_append_each_case_once(db: str, tmp_path: Path) -> None:
    import os
    import time

    from pytest_llmeval.core.cases import iter_cases

    evals = tmp_path / "evals"
    evals.mkdir()
    out_file = evals / "llmeval_production_failures.jsonl"
    argv = ["flywheel", "--db", db, "--since", "all", "--cases", str(evals)]
    argv += ["--out", str(out_file), "--limit", "40"]
    start = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FLYWHEEL_RUN, start, *argv, "--seed", str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    ids = [json.loads(line)["id"] for line in out_file.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 60  # 60 thumbs-down responses, each once
    cases = list(iter_cases(str(out_file), out_file.read_bytes()))
    assert all(not isinstance(c, Exception) for c in cases)
    mask = os.umask(0o022)
    os.umask(mask)
    assert out_file.stat().st_mode & 0o777 == 0o666 & ~mask
