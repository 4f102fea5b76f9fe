"""Judge-human agreement: confusion counts, Cohen's kappa and its interval, thresholds, panels."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_llmeval.core.agreement import (
    Agreement,
    agreement,
    best_threshold,
    fleiss_kappa,
    from_counts,
    pairwise_kappas,
)


def test_confusion_counts_and_rates() -> None:
    pairs = [(True, True)] * 40 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 45
    a = agreement(pairs)
    assert (a.n, a.tp, a.fp, a.fn, a.tn) == (100, 40, 5, 10, 45)
    assert a.accuracy == pytest.approx(0.85)
    assert a.tpr == pytest.approx(40 / 50) and a.tnr == pytest.approx(45 / 50)
    assert a.judge_pass_rate == pytest.approx(0.45) and a.human_pass_rate == pytest.approx(0.5)
    assert a.kappa == pytest.approx(0.7)
    assert a.kappa_low is not None and a.kappa_high is not None
    assert a.kappa_low < 0.7 < a.kappa_high
    assert "kappa 0.70" in a.summary() and "n=100" in a.summary()


@pytest.mark.parametrize(
    "table", [(40, 5, 10, 45), (90, 3, 2, 5), (5, 5, 5, 5), (1, 2, 3, 0), (30, 0, 1, 2)]
)
def test_kappa_and_interval_match_statsmodels(table: tuple[int, int, int, int]) -> None:
    """statsmodels' std_kappa is the Fleiss-Cohen-Everitt (1969) asymptotic SE."""
    import numpy as np
    from statsmodels.stats.inter_rater import cohens_kappa  # type: ignore[import-untyped]

    tp, fp, fn, tn = table
    ours = from_counts(tp, fp, fn, tn)
    theirs = cohens_kappa(np.array([[tp, fp], [fn, tn]]))
    assert ours.kappa == pytest.approx(theirs.kappa)
    assert ours.kappa_low == pytest.approx(max(-1.0, theirs.kappa_low))
    assert ours.kappa_high == pytest.approx(min(1.0, theirs.kappa_upp))


def test_a_wider_confidence_gives_a_wider_interval() -> None:
    a95, a99 = from_counts(40, 5, 10, 45), from_counts(40, 5, 10, 45, confidence=0.99)
    assert a99.kappa_low is not None and a95.kappa_low is not None
    assert a99.kappa_low < a95.kappa_low
    with pytest.raises(ValueError):
        from_counts(1, 1, 1, 1, confidence=1.0)


def test_undefined_values_are_none_not_numbers() -> None:
    empty = agreement([])
    assert empty.n == 0 and empty.accuracy is None and empty.kappa is None
    assert empty.summary() == "no labelled responses"
    one_class = agreement([(True, True)] * 5)  # both raters only ever said pass
    assert one_class.kappa is None and one_class.accuracy == 1.0 and one_class.tnr is None
    assert "one class only" in one_class.summary()


def test_round_trip_and_validation() -> None:
    a = from_counts(12, 3, 4, 9, confidence=0.9)
    assert Agreement.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="tp must be a count"):
        Agreement.from_dict({**a.to_dict(), "tp": "x"})
    with pytest.raises(ValueError, match="count"):
        Agreement.from_dict({**a.to_dict(), "fn": -1})


def test_best_threshold_maximises_kappa() -> None:
    data = [(0.1, False), (0.2, False), (0.5, True), (0.55, False), (0.6, True), (0.9, True)]
    found = best_threshold(data)
    assert found.threshold == 0.5
    assert found.agreement.kappa == pytest.approx(2 / 3)
    assert found.candidates == 6
    assert found.to_dict()["agreement"]["tp"] == 3
    # brute force agrees
    for t, _ in data:
        k = agreement((s >= t, h) for s, h in data).kappa
        best = found.agreement.kappa
        assert best is not None
        assert k is None or k <= best + 1e-12
    with pytest.raises(ValueError):
        best_threshold([])


def test_best_threshold_takes_the_middle_of_a_plateau() -> None:
    data = [(0.1, False), (0.3, True), (0.4, True), (0.5, True)]
    # t = 0.3 separates perfectly; only 0.3 reaches kappa 1, so it is chosen
    assert best_threshold(data).threshold == 0.3
    flat = [(0.1, False), (0.2, False), (0.8, True), (0.8, True)]
    assert best_threshold(flat).threshold == 0.8


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=30))
def test_best_threshold_is_never_beaten_by_another_observed_score(
    data: list[tuple[float, bool]],
) -> None:
    found = best_threshold(data)
    best = found.agreement.kappa if found.agreement.kappa is not None else -2.0
    for t, _ in data:
        k = agreement((s >= t, h) for s, h in data).kappa
        assert k is None or k <= best + 1e-9


def test_fleiss_kappa_matches_statsmodels() -> None:
    import numpy as np
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = random.Random(3)
    ratings = []
    for _ in range(60):
        truth = rng.random() < 0.6
        ratings.append([truth if rng.random() < 0.8 else not truth for _ in range(3)])
    table, _ = aggregate_raters(np.array(ratings, dtype=int))
    assert fleiss_kappa(ratings) == pytest.approx(sm_fleiss(table))
    assert fleiss_kappa([]) is None
    assert fleiss_kappa([[True, True], [True, True]]) is None
    with pytest.raises(ValueError):
        fleiss_kappa([[True], [False]])


def test_pairwise_kappas() -> None:
    out = pairwise_kappas({"a": [True, False, True], "b": [True, False, False], "c": [True] * 3})
    assert set(out) == {("a", "b"), ("a", "c"), ("b", "c")}
    assert out[("a", "b")].tp == 1 and out[("a", "b")].fp == 1
    with pytest.raises(ValueError):
        pairwise_kappas({"a": [True], "b": [True, False]})
