"""Snapshots: --llmeval-update-baseline, --llmeval-record-history, narrowed runs, judges."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

A = "llmeval_a.jsonl"
B = "llmeval_b.jsonl"


def two_files(project: Project) -> None:
    project.cases(
        A,
        [
            project.case("zeta", tags=["billing"]),
            project.case("alpha", tags=["billing"]),
            project.case("bad"),
        ],
    )
    project.cases(B, [project.case("beta", tags=["shipping"]), project.case("gamma")])
    project.answers(
        {
            "zeta": project.GOOD,
            "alpha": project.GOOD,
            "bad": project.BAD,
            "beta": project.GOOD,
            "gamma": project.GOOD,
        }
    )


ALL_KEYS = [f"{A}::alpha", f"{A}::bad", f"{A}::zeta", f"{B}::beta", f"{B}::gamma"]


def test_update_baseline_writes_a_sorted_baseline_and_one_history_line(
    project: Project, run_args: tuple[str, ...]
) -> None:
    two_files(project)
    result = project.run("--llmeval-update-baseline", *run_args)
    result.stdout.fnmatch_lines(
        [
            "wrote baseline .llmeval/baseline.json: 5 created, 0 updated, 0 removed, 5 cases",
            "wrote history .llmeval/history.jsonl: 1 run appended",
        ]
    )
    text = project.baseline_path.read_text(encoding="utf-8")
    data = json.loads(text)
    assert list(data["cases"]) == ALL_KEYS  # sorted
    case_lines = [ln for ln in text.splitlines() if ln.startswith('    "')]
    assert [json.loads("{" + ln.rstrip(",") + "}").popitem()[0] for ln in case_lines] == ALL_KEYS
    assert data["judge"] == {
        "model": None,
        "name": "local",
        "prompt_version": "sim-2",
        "version": None,
    }
    alpha = data["cases"][f"{A}::alpha"]
    assert alpha["verdict"] == "pass" and alpha["threshold"] == 0.7
    assert 0.7 <= alpha["score"] <= 1.0
    assert re.fullmatch("[0-9a-f]{64}", alpha["response_sha256"])
    assert data["cases"][f"{A}::bad"]["verdict"] == "fail"
    (line,) = project.history()
    assert line["total"] == 5 and line["passed"] == 4 and line["pass_rate"] == 0.8
    assert 0 < line["mean_score"] < 1
    assert line["judge"]["name"] == "local"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line["timestamp"])
    assert "commit" in line
    # the next plain run compares against it: a known failure is xfailed, nothing written
    before = project.state_bytes()
    result = project.run(*run_args)
    result.assert_outcomes(passed=4, xfailed=1)
    assert result.ret == 0
    assert project.state_bytes() == before


def test_update_baseline_accepts_regressions(project: Project) -> None:
    two_files(project)
    project.run("--llmeval-update-baseline")
    project.answers(
        {
            "zeta": project.BAD,
            "alpha": project.GOOD,
            "bad": project.GOOD,
            "beta": project.GOOD,
            "gamma": project.GOOD,
        }
    )
    result = project.run("--llmeval-update-baseline")
    # "regressions do not fail that run"
    assert result.ret == 0, result.stdout.str()
    assert result.parseoutcomes().get("failed", 0) == 0
    result.stdout.fnmatch_lines(
        [
            "*PASS regressions: 1 regression accepted (updating the baseline)*",
            "wrote baseline .llmeval/baseline.json: 0 created, 2 updated, 0 removed, 5 cases",
        ]
    )
    cases = project.baseline()["cases"]
    assert cases[f"{A}::zeta"]["verdict"] == "fail"
    assert cases[f"{A}::bad"]["verdict"] == "pass"
    assert len(project.history()) == 2
    # the accepted state is now the reference
    result = project.run()
    result.assert_outcomes(passed=4, xfailed=1)


def test_history_appends_keep_earlier_lines(project: Project) -> None:
    two_files(project)
    project.run("--llmeval-update-baseline")
    first = project.history_path.read_bytes()
    project.run("--llmeval-record-history")
    project.run("--llmeval-update-baseline")
    data = project.history_path.read_bytes()
    assert data.startswith(first)
    assert len(project.history()) == 3


def test_record_history_leaves_the_baseline_alone(project: Project) -> None:
    two_files(project)
    result = project.run("--llmeval-record-history")
    assert not project.baseline_path.exists()
    assert len(project.history()) == 1
    result.stdout.fnmatch_lines(["wrote history .llmeval/history.jsonl: 1 run appended"])
    project.write_baseline({key: "pass" for key in ALL_KEYS})
    before = project.baseline_path.read_bytes()
    project.run("--llmeval-record-history")
    assert project.baseline_path.read_bytes() == before
    assert len(project.history()) == 2


def test_plain_run_writes_nothing(project: Project) -> None:
    two_files(project)
    project.run()
    assert not project.baseline_path.exists()
    assert not project.history_path.exists()


@pytest.mark.parametrize(
    "narrowing",
    [
        pytest.param(("-k", "billing"), id="keyword"),
        pytest.param((f"{A}::alpha", f"{B}::beta"), id="node-ids"),
        pytest.param((A,), id="one-file"),
    ],
)
def test_narrowed_update_keeps_other_entries_and_appends_no_history(
    project: Project, narrowing: tuple[str, ...]
) -> None:
    two_files(project)
    project.run("--llmeval-update-baseline")
    history_before = project.history_path.read_bytes()
    # now alpha regresses; update only part of the suite
    project.answers(
        {
            "zeta": project.GOOD,
            "alpha": project.BAD,
            "bad": project.BAD,
            "beta": project.GOOD,
            "gamma": project.GOOD,
        }
    )
    result = project.run("--llmeval-update-baseline", *narrowing)
    result.stdout.fnmatch_lines(["history not appended: the run was narrowed*"])
    assert project.history_path.read_bytes() == history_before
    cases = project.baseline()["cases"]
    assert list(cases) == ALL_KEYS  # nothing dropped
    assert cases[f"{A}::alpha"]["verdict"] == "fail"  # what ran was updated
    assert "unused baseline entries" not in result.stdout.str()
    skip = [ln for ln in project.section(result) if "SKIP history" in ln]
    assert skip and "narrowed" in skip[0]


def test_marker_deselection_writes_nothing(project: Project) -> None:
    two_files(project)
    project.run("--llmeval-update-baseline")
    before = project.state_bytes()
    result = project.run("--llmeval-update-baseline", "-m", "not llmeval")
    result.assert_outcomes(deselected=5)
    assert project.state_bytes() == before


def test_narrowed_record_history_appends_nothing(project: Project) -> None:
    two_files(project)
    result = project.run("--llmeval-record-history", "-k", "billing")
    result.stdout.fnmatch_lines(["history not appended: the run was narrowed*"])
    assert not project.history_path.exists()


def with_unused_entries(project: Project) -> None:
    two_files(project)
    project.write_baseline(
        {
            **{key: "pass" for key in ALL_KEYS if key != f"{A}::bad"},
            f"{A}::bad": "fail",
            f"{A}::deleted-case": "pass",
            "llmeval_gone.jsonl::old": "pass",
        }
    )


def test_unused_entries_are_reported_and_removed_only_by_a_full_update(
    project: Project, run_args: tuple[str, ...]
) -> None:
    with_unused_entries(project)
    result = project.run(*run_args)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["unused baseline entries (cases gone): 2: deleted-case, old"])
    assert len(project.baseline()["cases"]) == 7  # a plain run removes nothing
    result = project.run("--llmeval-update-baseline", *run_args)
    result.stdout.fnmatch_lines(
        ["wrote baseline .llmeval/baseline.json: 0 created, * updated, 2 removed, 5 cases"]
    )
    assert list(project.baseline()["cases"]) == ALL_KEYS


@pytest.mark.parametrize(
    "narrowing",
    [
        pytest.param(("-k", "billing"), id="keyword"),
        pytest.param((f"{A}::alpha",), id="node-id"),
        pytest.param((A,), id="one-file"),
    ],
)
def test_narrowed_update_neither_reports_nor_removes_unused_entries(
    project: Project, narrowing: tuple[str, ...]
) -> None:
    with_unused_entries(project)
    result = project.run("--llmeval-update-baseline", *narrowing)
    assert "unused baseline entries" not in result.stdout.str()
    assert len(project.baseline()["cases"]) == 7


OTHER_JUDGE = {
    "name": "anthropic",
    "model": "claude-sonnet-4-5",
    "prompt_version": "judge-v3",
    "version": None,
}


def test_baseline_of_another_judge_is_refused(project: Project) -> None:
    two_files(project)
    verdicts = {key: "fail" if key.endswith("::bad") else "pass" for key in ALL_KEYS}
    project.write_baseline(verdicts, judge=OTHER_JUDGE)
    before = project.state_bytes()
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "baseline.json was made by another judge" in err
    assert "name: baseline 'anthropic' vs now 'local'" in err
    assert "model: baseline 'claude-sonnet-4-5' vs now None" in err
    assert "pytest --llmeval-update-baseline" in err
    assert "--llmeval-judge" in err
    assert "Traceback" not in err + result.stdout.str()
    assert project.state_bytes() == before
    # re-baselining with this judge is the way out
    result = project.run("--llmeval-update-baseline")
    assert result.ret == 0
    assert project.baseline()["judge"]["name"] == "local"
    assert project.run().ret == 0


def test_corrupt_baseline_is_a_clear_usage_error(project: Project) -> None:
    two_files(project)
    project.write_baseline({key: "pass" for key in ALL_KEYS})
    text = project.baseline_path.read_text().splitlines()
    text[3] = text[3] + " oops"
    project.baseline_path.write_text("\n".join(text))
    before = project.state_bytes()
    result = project.run("--llmeval-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert ".llmeval/baseline.json:4: not valid JSON" in err
    assert "Traceback" not in err
    assert project.state_bytes() == before


def test_corrupt_history_is_a_clear_usage_error(project: Project) -> None:
    two_files(project)
    project.write_history([0.9, 1.0])
    with project.history_path.open("a") as fh:
        fh.write('{"total": 3, "passed": 3}\n')
    before = project.state_bytes()
    result = project.run("--llmeval-record-history")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert ".llmeval/history.jsonl:3: field 'pass_rate' is missing" in result.stderr.str()
    assert project.state_bytes() == before


JUDGE_V1 = """
CALLS = __import__("pathlib").Path(__file__).with_name("judge_calls.txt")


class KeywordJudge:
    network = False

    def score(self, case, response):
        with CALLS.open("a") as fh:
            fh.write(case.id + "\\n")
        return 0.9 if "30 days" in response else 0.1


judge = KeywordJudge()
"""


def judge_calls(project: Project) -> list[str]:
    path = project.path / "judge_calls.txt"
    return path.read_text().split() if path.exists() else []


def test_editing_a_custom_judge_re_judges_but_keeps_the_baseline(project: Project) -> None:
    project.module("kw_judge", JUDGE_V1)
    project.ini(llmeval_judge="kw_judge:judge")
    project.cases(A, [project.case("a"), project.case("b")])
    project.answers({"a": project.GOOD, "b": project.BAD})
    result = project.run("--llmeval-update-baseline")
    result.stdout.fnmatch_lines(["*judge calls: 2  cache hits: 0*"])
    assert project.baseline()["judge"]["name"] == "kw_judge:judge"
    assert "source_hash" not in project.baseline()["judge"]
    result = project.run()
    result.stdout.fnmatch_lines(["*judge calls: 0  cache hits: 2*"])
    assert len(judge_calls(project)) == 2
    # an edit that changes verdicts: the cache must not replay the old ones
    project.module("kw_judge", JUDGE_V1.replace('"30 days" in response', '"office" in response'))
    result = project.run()
    assert result.ret == 1  # accepted baseline, new verdicts: a regression and an improvement
    result.stdout.fnmatch_lines(["*judge calls: 2  cache hits: 0*"])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*regressions (passed in the baseline, fail now): 1: a*"])
    assert len(judge_calls(project)) == 4


def test_a_judge_version_attribute_replaces_the_source_hash(project: Project) -> None:
    project.module("kw_judge", JUDGE_V1 + "\nKeywordJudge.version = '7'\n")
    project.ini(llmeval_judge="kw_judge:judge")
    project.cases(A, [project.case("a")])
    project.answers({"a": project.GOOD})
    project.run("--llmeval-update-baseline")
    assert project.baseline()["judge"]["version"] == "7"
    # a cosmetic edit with the same version reuses the cache ...
    project.module("kw_judge", "# reformatted\n" + JUDGE_V1 + "\nKeywordJudge.version = '7'\n")
    project.run().stdout.fnmatch_lines(["*judge calls: 0  cache hits: 1*"])
    # ... a new version is another judge: the baseline must be re-made
    project.module("kw_judge", JUDGE_V1 + "\nKeywordJudge.version = '8'\n")
    result = project.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "version: baseline '7' vs now '8'" in result.stderr.str()
