"""Judge panels: aggregations, members kept in the result, inter-judge agreement, the spec."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.checks import RuleSettings, finalize
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult, Usage
from pytest_llmeval.errors import JudgeError
from pytest_llmeval.judges import load_judge
from pytest_llmeval.judges.base import Judge
from pytest_llmeval.judges.panel import JudgePanel, inter_judge_agreement, parse_panel_spec
from pytest_llmeval.judges.similarity import SimilarityJudge

CASE = Case(id="c", question="Refund window?", ground_truth="30 days from delivery")


@dataclass
class Fixed:
    """A judge that always gives the same score (and optionally its own pass/fail)."""

    value: float
    passed: bool | None = None
    name: str = "fixed"
    identity: JudgeIdentity = field(init=False)

    def __post_init__(self) -> None:
        self.identity = JudgeIdentity(name=self.name, version=str(self.value))

    def score(self, case: Case, response: str) -> JudgeResult:
        return JudgeResult(
            score=self.value, passed=self.passed, usage=Usage(input_tokens=10, requests=1)
        )


def panel(*scores: float, aggregation: str = "majority") -> JudgePanel:
    members = tuple(Fixed(s, name=f"j{i}") for i, s in enumerate(scores))
    return JudgePanel(members, aggregation)  # type: ignore[arg-type]


def final(judge: Judge, case: Case = CASE) -> bool:
    response = "Thirty days from delivery, no questions asked."
    result = judge.score(case, response)
    return finalize(case, response, result, judge.identity, RuleSettings()).passed


@pytest.mark.parametrize(
    ("scores", "aggregation", "score", "passed"),
    [
        ((0.9, 0.8, 0.1), "majority", 0.8, True),
        ((0.9, 0.2, 0.1), "majority", 0.2, False),
        ((0.9, 0.8, 0.1, 0.1), "majority", 0.1, False),  # 2 of 4 is no majority
        ((0.9, 0.8, 0.75), "all", 0.75, True),
        ((0.9, 0.8, 0.1), "all", 0.1, False),
        ((0.9, 0.8, 0.1), "mean", 0.6, None),
    ],
)
def test_aggregations(
    scores: tuple[float, ...], aggregation: str, score: float, passed: bool | None
) -> None:
    judge = panel(*scores, aggregation=aggregation)
    result = judge.score(CASE, "x")
    assert result.score == pytest.approx(score)
    assert result.passed is passed
    # the final verdict agrees with the aggregation's decision
    assert final(judge) is (passed if passed is not None else score >= 0.7)


def test_members_are_kept_with_their_decisions_and_usage_adds_up() -> None:
    result = panel(0.9, 0.8, 0.1).score(CASE, "x")
    assert [m.judge for m in result.members] == [
        "j0 version=0.9",
        "j1 version=0.8",
        "j2 version=0.1",
    ]
    assert [m.passed for m in result.members] == [True, True, False]
    assert result.usage.requests == 3 and result.usage.input_tokens == 30
    assert "panel_split" in result.failure_modes
    assert "2 of 3 pass" in result.reasoning
    again = JudgeResult.from_dict(result.to_dict())
    assert again == result


def test_a_single_judge_result_serialises_as_before() -> None:
    plain = JudgeResult(score=0.5, reasoning="r")
    assert set(plain.to_dict()) == {"score", "reasoning", "failure_modes", "passed", "usage"}
    assert JudgeResult.from_dict(plain.to_dict()) == plain


def test_a_member_saying_fail_votes_fail() -> None:
    judge = JudgePanel((Fixed(0.9, passed=False, name="a"), Fixed(0.9, name="b")), "all")
    result = judge.score(CASE, "x")
    assert result.passed is False and [m.passed for m in result.members] == [False, True]


def test_the_case_threshold_decides_members_votes() -> None:
    strict = Case(id="c", question="q", ground_truth="x", threshold=0.95)
    assert panel(0.9, 0.9, 0.9).score(strict, "x").passed is False


def test_identity_combines_the_members() -> None:
    judge = JudgePanel((SimilarityJudge(), Fixed(0.5)), "majority")
    assert judge.identity.name == "panel:majority"
    assert judge.identity.version == "local prompt=sim-2 + fixed version=0.5"
    other = JudgePanel((SimilarityJudge(), Fixed(0.6)), "majority")
    assert other.identity != judge.identity
    assert not judge.network
    assert not judge.checks_only_without_ground_truth  # Fixed does not declare it
    both_local = JudgePanel((SimilarityJudge(), SimilarityJudge()), "all")
    assert both_local.checks_only_without_ground_truth
    assert both_local.estimate_cost(Usage()) == 0.0
    assert judge.estimate_cost(Usage()) is None  # Fixed has no price: unknown, not zero


def test_a_member_error_is_the_panel_error() -> None:
    @dataclass
    class Broken:
        identity: JudgeIdentity = field(default_factory=lambda: JudgeIdentity(name="broken"))

        def score(self, case: Case, response: str) -> JudgeResult:
            raise JudgeError("unreachable")

    judge = JudgePanel((SimilarityJudge(), Broken()), "majority")
    with pytest.raises(JudgeError, match="unreachable"):
        judge.score(CASE, "x")


def test_ascore_asks_members_concurrently_and_agrees_with_score() -> None:
    @dataclass
    class Async:
        identity: JudgeIdentity = field(default_factory=lambda: JudgeIdentity(name="async"))

        def score(self, case: Case, response: str) -> JudgeResult:  # pragma: no cover
            raise AssertionError("ascore must be preferred")

        async def ascore(self, case: Case, response: str) -> JudgeResult:
            await asyncio.sleep(0)
            return JudgeResult(score=0.8)

    judge = JudgePanel((SimilarityJudge(), Async(), Fixed(0.1)), "majority")
    result = asyncio.run(judge.ascore(CASE, "30 days from delivery"))
    assert result.passed is True and len(result.members) == 3


def test_panel_validation() -> None:
    with pytest.raises(ValueError, match="at least two"):
        JudgePanel((SimilarityJudge(),), "majority")
    with pytest.raises(ValueError, match="aggregation"):
        JudgePanel((SimilarityJudge(), SimilarityJudge()), "vote")  # type: ignore[arg-type]


@dataclass
class Reads:
    """Reads its score from the response: "0.9 0.1 0.5" gives member i the i-th number."""

    index: int
    identity: JudgeIdentity = field(init=False)

    def __post_init__(self) -> None:
        self.identity = JudgeIdentity(name=f"reads{self.index}")

    def score(self, case: Case, response: str) -> JudgeResult:
        return JudgeResult(score=float(response.split()[self.index]))


def test_inter_judge_agreement() -> None:
    judge = JudgePanel((Reads(0), Reads(1), Reads(2)), "majority")
    responses = ["0.9 0.9 0.1", "0.1 0.1 0.1", "0.9 0.9 0.9", "0.1 0.9 0.1"] * 2
    results = [judge.score(CASE, r) for r in responses]
    found = inter_judge_agreement([*results, JudgeResult(score=1.0)])  # a plain one is skipped
    assert found.n == 8 and found.unanimous == 4
    assert found.judges == ("reads0", "reads1", "reads2")
    assert found.fleiss_kappa is not None
    assert len(found.pairwise) == 3
    assert found.to_dict()["pairwise"][0]["judges"] == list(found.judges[:2])
    assert inter_judge_agreement([]).n == 0
    with pytest.raises(ValueError, match="different judges"):
        inter_judge_agreement([results[0], panel(0.5, 0.5).score(CASE, "x")])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("panel:local,anthropic", "expected panel:majority"),
        ("panel:vote:local,local", "unknown aggregation"),
        ("panel:majority:local", "two or more"),
        ("panel:majority:local,", "two or more"),
        ("panel:all:local,panel:all:local,local", "another panel"),
    ],
)
def test_bad_panel_specs(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_panel_spec(spec)
    with pytest.raises(ValueError, match=message):
        load_judge(spec, {})


def test_load_judge_builds_a_panel_with_custom_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "panel_members.py").write_text(
        "def strict(case, response):\n    return 0.2\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    judge = load_judge("panel:majority: local , panel_members:strict, local", {"threshold": 0.6})
    assert isinstance(judge, JudgePanel)
    assert judge.threshold == 0.6 and len(judge.members) == 3
    assert judge.identity.version is not None and "panel_members:strict" in judge.identity.version
    result = judge.score(CASE, "Within 30 days from delivery.")
    assert result.passed is True and [m.passed for m in result.members] == [True, False, True]
    # the threshold key is harmless for every other judge
    assert isinstance(load_judge("local", {"threshold": 0.6}), SimilarityJudge)
