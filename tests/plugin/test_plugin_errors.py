"""Bad input and broken infrastructure: clear errors, nothing lost, never a traceback."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Project

GOOD_FILE = "llmeval_good.jsonl"
BAD_FILE = "llmeval_bad.jsonl"


def line(**fields: object) -> bytes:
    return json.dumps(fields).encode()


# (id, bad line, what the error must say after "llmeval_bad.jsonl:2:")
BAD_INPUTS = [
    ("bad-json", b'{"question": "q",', " invalid JSON"),
    ("non-object", b'["question"]', " expected a JSON object, got list"),
    ("wrong-type", line(question="q", tags="billing"), " field 'tags': 'billing' is not of type"),
    ("unknown-difficulty", line(question="q", difficulty="extreme"), " field 'difficulty':"),
    (
        "unknown-check-type",
        line(question="q", checks=[{"type": "fuzzy", "value": "x"}]),
        " field 'checks[0].type':",
    ),
    (
        "both-question-and-messages",
        line(question="q", messages=[{"role": "user", "content": "q"}]),
        " field 'question': has both 'question' and 'messages'",
    ),
    ("neither", line(id="x", ground_truth="y"), " field 'question': needs 'question' or"),
    ("threshold-range", line(question="q", threshold=1.2), " field 'threshold':"),
    (
        "invalid-regex",
        line(question="q", checks=[{"type": "regex", "value": "([a-z"}]),
        " field 'checks[0].value': invalid regular expression",
    ),
    (
        "invalid-json-schema",
        line(question="q", checks=[{"type": "json_schema", "value": {"type": 12}}]),
        " field 'checks[0].value': invalid JSON schema",
    ),
    ("duplicate-id", line(id="first", question="again?"), " field 'id': duplicate id 'first'"),
    ("invalid-utf8", b'{"question": "\xff\xfe"}', " invalid UTF-8"),
    ("unknown-field", line(question="q", answer="42"), " field 'answer': unknown field"),
]


def bad_project(project: Project, bad: bytes) -> None:
    project.cases(GOOD_FILE, [project.case("g1"), project.case("g2")])
    first = json.dumps(project.case("first")).encode()
    project.raw_cases(BAD_FILE, first + b"\n" + bad + b"\n")
    project.answers({"g1": project.GOOD, "g2": project.GOOD, "first": project.GOOD})
    project.write_baseline({f"{GOOD_FILE}::g1": "pass", f"{BAD_FILE}::first": "pass"})
    project.write_history([0.9, 1.0])


@pytest.mark.parametrize(
    ("bad", "message"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_is_a_collection_error_naming_file_line_field(
    project: Project, bad: bytes, message: str
) -> None:
    bad_project(project, bad)
    before = project.state_bytes()
    result = project.run("--llmeval-update-baseline")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"*ERROR collecting {BAD_FILE}*",
            f"{BAD_FILE}: 1 invalid case line(s); nothing in this file was run",
            f"{BAD_FILE}:2:{message}*".replace("[", "[[]"),  # fnmatch: [ opens a set
        ]
    )
    out = result.stdout.str()
    assert "Traceback" not in out and "cases.py" not in out and "items.py" not in out
    assert project.state_bytes() == before  # a collection error never touches them


def test_other_files_still_collect(project: Project, run_args: tuple[str, ...]) -> None:
    bad_project(project, b"{oops")
    result = project.run("--collect-only", "-q", *run_args)
    result.stdout.fnmatch_lines_random(
        [f"{GOOD_FILE}::g1", f"{GOOD_FILE}::g2", f"*ERROR collecting {BAD_FILE}*"]
    )


def test_continue_on_collection_errors_runs_the_good_files_and_writes_nothing(
    project: Project,
) -> None:
    bad_project(project, b"{oops")
    before = project.state_bytes()
    result = project.run("--continue-on-collection-errors", "--llmeval-update-baseline")
    result.assert_outcomes(passed=2, errors=1)
    assert project.state_bytes() == before


def test_all_bad_lines_of_a_file_are_listed(project: Project) -> None:
    project.raw_cases(BAD_FILE, b"{\n" + line(question="ok") + b"\n[]\n" + line(question=1))
    result = project.run()
    result.stdout.fnmatch_lines(
        [
            f"{BAD_FILE}: 3 invalid case line(s); nothing in this file was run",
            f"{BAD_FILE}:1: invalid JSON*",
            f"{BAD_FILE}:3: expected a JSON object*",
            f"{BAD_FILE}:4: field 'question'*",
        ]
    )


def test_empty_file_warns_and_collects_nothing(project: Project) -> None:
    project.raw_cases("llmeval_empty.jsonl", b"\n\n")
    project.cases(GOOD_FILE, [project.case("g1")])
    project.answers({"g1": project.GOOD})
    result = project.run()
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*llmeval_empty.jsonl: no cases (the file is empty)*"])


def test_bom_crlf_and_blank_lines_are_accepted(project: Project) -> None:
    data = (
        b"\xef\xbb\xbf"
        + json.dumps(project.case("a")).encode()
        + b"\r\n\r\n"
        + json.dumps(project.case("b")).encode()
        + b"\r\n"
    )
    project.raw_cases(GOOD_FILE, data)
    project.answers({"a": project.GOOD, "b": project.GOOD})
    result = project.run("-v")
    result.assert_outcomes(passed=2)


def test_only_matching_files_are_collected(project: Project) -> None:
    project.cases("evals/llmeval_nested.jsonl", [project.case("nested")])
    project.cases("other.jsonl", [{"not": "a case"}])
    project.cases("data/llmeval_x.json", [{"not": "a case"}])
    project.answers({"nested": project.GOOD})
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines(["evals/llmeval_nested.jsonl::nested", "1 test collected*"])


def test_llmeval_files_globs_are_configurable(project: Project) -> None:
    project.ini(llmeval_files="cases_*.jsonl\n    golden.jsonl")
    project.cases("cases_one.jsonl", [project.case("one")])
    project.cases("golden.jsonl", [project.case("two")])
    project.cases("llmeval_ignored.jsonl", [project.case("three")])
    result = project.run("--collect-only", "-q")
    result.stdout.fnmatch_lines_random(["cases_one.jsonl::one", "golden.jsonl::two"])
    assert "three" not in result.stdout.str()


# -- the judge cache -----------------------------------------------------------------------------

COUNTING_JUDGE = """
import pathlib

CALLS = pathlib.Path(__file__).with_name("judge_calls.txt")


class RemoteJudge:
    network = True  # pretends to call an LLM

    def score(self, case, response):
        with CALLS.open("a") as fh:
            fh.write(case.id + "\\n")
        return 0.9 if "30 days" in response else 0.1


judge = RemoteJudge()
"""


def judge_calls(project: Project) -> list[str]:
    path = project.path / "judge_calls.txt"
    return path.read_text().split() if path.exists() else []


def cache_project(project: Project) -> None:
    project.module("remote_judge", COUNTING_JUDGE)
    project.ini(llmeval_judge="remote_judge:judge")
    project.cases(GOOD_FILE, [project.case("a"), project.case("b")])
    project.answers({"a": project.GOOD, "b": project.GOOD})


def test_cache_hits_and_misses_in_the_summary(project: Project, run_args: tuple[str, ...]) -> None:
    cache_project(project)
    first = project.run(*run_args)
    first.stdout.fnmatch_lines(["judge: remote_judge:judge*judge calls: 2  cache hits: 0"])
    assert sorted(judge_calls(project)) == ["a", "b"]
    assert (project.state / "cache.sqlite3").exists()
    second = project.run(*run_args)
    second.assert_outcomes(passed=2)
    second.stdout.fnmatch_lines(["judge: *judge calls: 0  cache hits: 2"])
    assert len(judge_calls(project)) == 2
    # a changed answer is a miss for that case only
    project.answers({"a": project.GOOD + " Anything else?", "b": project.GOOD})
    third = project.run(*run_args)
    third.stdout.fnmatch_lines(["judge: *judge calls: 1  cache hits: 1"])
    assert judge_calls(project)[2:] == ["a"]


def test_no_cache_bypasses_the_cache(project: Project) -> None:
    cache_project(project)
    project.run("--llmeval-no-cache")
    assert not (project.state / "cache.sqlite3").exists()
    project.run()
    result = project.run("--llmeval-no-cache")
    result.stdout.fnmatch_lines(["judge: *judge calls: 2  cache hits: 0"])
    assert len(judge_calls(project)) == 6


def test_offline_miss_is_an_error_and_calls_nothing(
    project: Project, run_args: tuple[str, ...]
) -> None:
    cache_project(project)
    result = project.run("--llmeval-offline", *run_args)
    result.assert_outcomes(errors=2)
    assert judge_calls(project) == []
    out = result.stdout.str()
    assert "--llmeval-offline: no cached verdict for this response" in out
    assert "needs the network" in out
    assert "Traceback" not in out
    # once the cache is filled online, offline runs replay it
    project.run()
    result = project.run("--llmeval-offline", *run_args)
    result.assert_outcomes(passed=2)
    assert len(judge_calls(project)) == 2


def test_offline_with_a_local_judge_still_judges(project: Project) -> None:
    project.cases(GOOD_FILE, [project.case("a")])
    project.answers({"a": project.GOOD})
    result = project.run("--llmeval-offline")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x01garbage" * 500, b"SQLite format 3\x00" + b"\xa5" * 8000],
    ids=["garbage", "bad-pages"],
)
def test_corrupt_cache_is_rebuilt_with_a_warning(
    project: Project, run_args: tuple[str, ...], garbage: bytes
) -> None:
    cache_project(project)
    project.state.mkdir()
    (project.state / "cache.sqlite3").write_bytes(garbage)
    result = project.run(*run_args)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["warning: judge cache *cache.sqlite3 was unreadable*rebuilt"])
    assert "Traceback" not in result.stdout.str()
    assert sorted(judge_calls(project)) == ["a", "b"]  # re-judged, nothing stale
    # the rebuilt cache works
    again = project.run(*run_args)
    again.stdout.fnmatch_lines(["judge: *judge calls: 0  cache hits: 2"])
    assert "warning: judge cache" not in again.stdout.str()
    assert any(".corrupt-" in p.name for p in project.state.iterdir())


# -- custom judges -------------------------------------------------------------------------------

CUSTOM_JUDGES = {
    "object-with-score": """
        class Judge:
            def score(self, case, response):
                return 0.9 if "30 days" in response else 0.2

        judge = Judge()
    """,
    "class-with-score": """
        class judge:
            def score(self, case, response):
                return 0.9 if "30 days" in response else 0.2
    """,
    "plain-callable": """
        def judge(case, response):
            return 0.9 if "30 days" in response else 0.2
    """,
    "returns-judge-result": """
        from pytest_llmeval import JudgeResult

        def judge(case, response):
            ok = "30 days" in response
            return JudgeResult(score=0.9 if ok else 0.2, reasoning="keyword check",
                               failure_modes=() if ok else ("missing_fact",))
    """,
    "returns-verdict": """
        from pytest_llmeval import JudgeIdentity, Verdict

        def judge(case, response):
            ok = "30 days" in response
            return Verdict(score=0.9 if ok else 0.2, passed=ok, threshold=0.5,
                           reasoning="keyword check", failure_modes=(),
                           judge=JudgeIdentity("mine"))
    """,
}


@pytest.mark.parametrize("source", CUSTOM_JUDGES.values(), ids=CUSTOM_JUDGES.keys())
def test_custom_judges(project: Project, source: str) -> None:
    project.module("my_judge", source)
    project.ini(llmeval_judge="my_judge:judge")
    project.cases(GOOD_FILE, [project.case("good"), project.case("bad")])
    project.answers({"good": project.GOOD, "bad": project.BAD})
    result = project.run("--llmeval-report=out.json")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["judge: my_judge:judge  judge calls: 2  cache hits: 0"])
    cases = {c["id"]: c for c in json.loads((project.path / "out.json").read_text())["cases"]}
    assert cases["good"]["score"] == 0.9
    assert cases["bad"]["score"] == 0.2
    assert cases["bad"]["verdict"] == "fail"


def test_custom_judge_returning_nonsense_is_an_error(project: Project) -> None:
    project.module("my_judge", "def judge(case, response):\n    return 'looks fine'\n")
    project.ini(llmeval_judge="my_judge:judge")
    project.cases(GOOD_FILE, [project.case("a")])
    project.answers({"a": project.GOOD})
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*custom judge returned str*"])


def test_custom_judge_score_out_of_range_is_an_error(project: Project) -> None:
    project.module("my_judge", "def judge(case, response):\n    return 7\n")
    project.ini(llmeval_judge="my_judge:judge")
    project.cases(GOOD_FILE, [project.case("a")])
    project.answers({"a": project.GOOD})
    result = project.run()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*score outside [[]0, 1[]]*"])


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("missing_module:judge", "cannot import 'missing_module'"),
        ("local2", "expected auto, local, anthropic, module:attr or panel:"),
    ],
)
def test_unknown_judge_is_a_usage_error(project: Project, spec: str, words: str) -> None:
    project.cases(GOOD_FILE, [project.case("a")])
    project.answers({"a": project.GOOD})
    result = project.run(f"--llmeval-judge={spec}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    assert words in result.stderr.str() + result.stdout.str()
