"""pytest_llmeval.stats.tests: two-proportion z, binomial drop, McNemar, sign, Fisher, flip count.

References: statsmodels and scipy (test-only dependencies), closed forms evaluated here with
``math`` only, and published tables (Newcombe 1998a/b).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest
from stats_helpers import REL, close, hypergeom_lower_tail, normal_two_sided, plain_builtins
from statsmodels.stats.contingency_tables import (  # type: ignore[import-untyped]
    mcnemar as sm_mcnemar,
)
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    confint_proportions_2indep,
    proportions_ztest,
)

from pytest_llmeval import stats

# ---------------------------------------------------------------------------
# two_proportion_test
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n1", "k1", "n2", "k2"),
    [
        (1000, 120, 1000, 150),
        (5443, 653, 5443, 735),
        (30, 27, 30, 20),
        (200, 0, 150, 3),
        (7, 7, 9, 8),
    ],
)
@pytest.mark.parametrize(
    ("alternative", "sm_alternative"),
    [("two-sided", "two-sided"), ("greater", "larger"), ("less", "smaller")],
)
def test_two_proportion_matches_statsmodels(
    n1: int, k1: int, n2: int, k2: int, alternative: str, sm_alternative: str
) -> None:
    res = stats.two_proportion_test(n1, k1, n2, k2, alternative=alternative)
    # statsmodels tests count[0]/nobs[0] - count[1]/nobs[1]: put arm 2 first
    z, p = proportions_ztest([k2, k1], [n2, n1], alternative=sm_alternative)
    assert close(res.z, float(z))
    assert close(res.p_value, float(p))
    low, high = confint_proportions_2indep(k2, n2, k1, n1, method="newcomb", compare="diff")
    assert close(res.ci_low, float(low), abs_=1e-12)
    assert close(res.ci_high, float(high), abs_=1e-12)
    assert res.p1 == k1 / n1 and res.p2 == k2 / n2
    assert close(res.diff, k2 / n2 - k1 / n1)


def test_two_proportion_closed_form() -> None:
    res = stats.two_proportion_test(1000, 120, 1000, 150)
    pooled = 270 / 2000
    z = 0.03 / math.sqrt(pooled * (1 - pooled) * (2 / 1000))
    assert close(res.z, z)
    assert z > 0  # arm 2 higher -> positive z
    assert close(res.p_value, normal_two_sided(z))
    assert close(res.relative_lift or 0.0, 0.25)
    assert res.significant(0.05) and not res.significant(0.01)


@pytest.mark.parametrize(
    ("n1", "k1", "n2", "k2", "low", "high"),
    [
        # Newcombe, Statistics in Medicine 17 (1998) 873-890, Table II, method 10,
        # written as arm 2 - arm 1.
        (80, 48, 70, 56, 0.0524, 0.3339),
        (10, 3, 10, 9, 0.1705, 0.8090),
        (7, 2, 7, 6, 0.0582, 0.8062),
        (29, 0, 56, 5, -0.0381, 0.1926),
        (20, 0, 10, 0, -0.1611, 0.2775),
        (10, 0, 10, 0, -0.2775, 0.2775),
    ],
)
def test_difference_ci_newcombe_published(
    n1: int, k1: int, n2: int, k2: int, low: float, high: float
) -> None:
    res = stats.two_proportion_test(n1, k1, n2, k2)
    assert res.ci_low == pytest.approx(low, abs=5e-5)
    assert res.ci_high == pytest.approx(high, abs=5e-5)


def test_two_proportion_degenerate_arms() -> None:
    res = stats.two_proportion_test(10, 0, 20, 0)
    assert (res.z, res.p_value) == (0.0, 1.0)
    assert res.relative_lift is None  # lift over a zero rate is undefined
    full = stats.two_proportion_test(10, 10, 20, 20)
    assert (full.z, full.p_value) == (0.0, 1.0)


@settings(max_examples=150, deadline=None)
@given(
    n1=st.integers(1, 5000),
    n2=st.integers(1, 5000),
    f1=st.floats(0, 1),
    f2=st.floats(0, 1),
    alternative=st.sampled_from(["two-sided", "greater", "less"]),
)
def test_two_proportion_properties(
    n1: int, n2: int, f1: float, f2: float, alternative: str
) -> None:
    k1, k2 = round(f1 * n1), round(f2 * n2)
    res = stats.two_proportion_test(n1, k1, n2, k2, alternative=alternative)
    assert 0.0 <= res.p_value <= 1.0
    assert -1.0 - 1e-12 <= res.ci_low <= res.diff <= res.ci_high <= 1.0 + 1e-12
    if k2 / n2 > k1 / n1:
        assert res.z > 0
    swapped = stats.two_proportion_test(n2, k2, n1, k1, alternative=alternative)
    assert close(swapped.z, -res.z, abs_=1e-12)
    if alternative == "two-sided":
        assert close(swapped.p_value, res.p_value, abs_=1e-15)


def test_binomial_drop_test_depends_on_suite_size() -> None:
    # the same 3-point drop from a 90% history: significant on 2,000 cases, not on 30
    big = stats.binomial_drop_test(18_000, 20_000, 1_740, 2_000)
    small = stats.binomial_drop_test(270, 300, 26, 30)
    assert big.diff == pytest.approx(-0.03)
    assert small.diff == pytest.approx(-1 / 30)  # 26/30: even a slightly larger drop
    assert big.p_value < 0.001
    assert small.p_value > 0.2
    assert big.alternative == "less"
    z, p = proportions_ztest([1_740, 18_000], [2_000, 20_000], alternative="smaller")
    assert close(big.z, float(z)) and close(big.p_value, float(p))


def test_binomial_drop_test_rise_is_not_a_drop() -> None:
    assert stats.binomial_drop_test(800, 1000, 95, 100).p_value > 0.99


# ---------------------------------------------------------------------------
# mcnemar, sign test, fisher
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("b", "c"), [(0, 5), (5, 0), (3, 4), (10, 2), (25, 10), (1, 40), (60, 45)])
def test_mcnemar_matches_statsmodels(b: int, c: int) -> None:
    table = [[50, b], [c, 30]]
    exact = stats.mcnemar(b, c)
    assert close(exact.p_value, float(sm_mcnemar(table, exact=True).pvalue))
    chi = stats.mcnemar(b, c, exact=False)
    sm_chi = sm_mcnemar(table, exact=False, correction=True)
    assert close(chi.statistic, float(sm_chi.statistic))
    assert close(chi.p_value, float(sm_chi.pvalue))


def test_mcnemar_closed_forms() -> None:
    assert stats.mcnemar(5, 0).p_value == pytest.approx(2 / 32, rel=REL)
    assert stats.mcnemar(0, 0).p_value == 1.0
    assert stats.mcnemar(0, 0, exact=False).p_value == 1.0
    assert stats.mcnemar(4, 4, exact=False).p_value == 1.0  # no spurious statistic at b == c
    # chi-square with 1 df: P[χ² >= x] = erfc(sqrt(x / 2))
    res = stats.mcnemar(10, 2, exact=False)
    assert res.statistic == pytest.approx(49 / 12, rel=REL)
    assert close(res.p_value, math.erfc(math.sqrt(49 / 24)))


@settings(max_examples=200, deadline=None)
@given(b=st.integers(0, 3000), c=st.integers(0, 3000), exact=st.booleans())
def test_mcnemar_symmetric_and_bounded(b: int, c: int, exact: bool) -> None:
    one = stats.mcnemar(b, c, exact=exact)
    other = stats.mcnemar(c, b, exact=exact)
    assert one.p_value == other.p_value
    assert 0.0 <= one.p_value <= 1.0
    if b == c:
        assert one.p_value == 1.0


def test_sign_test() -> None:
    assert stats.sign_test(9, 1) == pytest.approx(2 * 11 / 1024, rel=REL)
    assert stats.sign_test(0, 0) == 1.0
    assert stats.sign_test(7, 7) == 1.0
    assert stats.sign_test(3, 12) == stats.sign_test(12, 3)


@settings(max_examples=100, deadline=None)
@given(w=st.integers(0, 500), lost=st.integers(0, 500))
def test_sign_test_bounded(w: int, lost: int) -> None:
    assert 0.0 <= stats.sign_test(w, lost) <= 1.0


@pytest.mark.parametrize(
    "table", [[[3, 0], [0, 3]], [[8, 2], [1, 5]], [[0, 10], [10, 0]], [[12, 30], [40, 18]]]
)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_fisher_table_matches_scipy(table: list[list[int]], alternative: str) -> None:
    from scipy.stats import fisher_exact as scipy_fisher

    res = stats.fisher_exact(table, alternative=alternative)
    ref = scipy_fisher(table, alternative=alternative)
    assert close(res.p_value, min(1.0, float(ref.pvalue)))
    assert res.table == (tuple(table[0]), tuple(table[1]))


@pytest.mark.parametrize(
    ("n1", "k1", "n2", "k2"),
    [(3, 3, 3, 0), (3, 2, 3, 1), (5, 5, 5, 0), (20, 15, 25, 9), (8, 0, 8, 4)],
)
def test_fisher_counts_less_is_hypergeometric_tail(n1: int, k1: int, n2: int, k2: int) -> None:
    res = stats.fisher_exact(n1, k1, n2, k2, alternative="less")
    assert close(res.p_value, hypergeom_lower_tail(k2, n2, k1, n1))
    assert res.table == ((k2, n2 - k2), (k1, n1 - k1))
    greater = stats.fisher_exact(n2, k2, n1, k1, alternative="greater")
    assert close(greater.p_value, res.p_value)


def test_repeat_drop_test_wobble_versus_regression() -> None:
    assert stats.repeat_drop_test(2, 3, 1, 3) == pytest.approx(0.5, rel=REL)
    assert stats.repeat_drop_test(3, 3, 0, 3) == pytest.approx(1 / 20, rel=REL)
    assert stats.repeat_drop_test(5, 5, 0, 5) == pytest.approx(1 / 252, rel=REL)
    assert stats.repeat_drop_test(1, 3, 3, 3) == 1.0  # an improvement is never a drop


def test_fisher_odds_ratio_infinite_is_json_safe() -> None:
    res = stats.fisher_exact([[5, 0], [0, 5]])
    assert math.isinf(res.odds_ratio)
    data = res.to_dict()
    assert data["odds_ratio"] is None
    json.dumps(data, allow_nan=False)


@pytest.mark.parametrize(("b", "c"), [(0, 0), (8, 2), (2, 8), (15, 10), (1, 0)])
def test_flip_count_test_is_scipys_binomtest(b: int, c: int) -> None:
    expected = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5, alternative="greater").pvalue
    assert stats.flip_count_test(b, c) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------
# every ValueError
# ---------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, Callable[[], object], str]] = [
    ("n1 zero", lambda: stats.two_proportion_test(0, 0, 10, 1), "n1"),
    ("n2 negative", lambda: stats.two_proportion_test(10, 1, -5, 0), "n2"),
    ("k1 > n1", lambda: stats.two_proportion_test(10, 11, 10, 1), "k1"),
    ("k2 < 0", lambda: stats.two_proportion_test(10, 1, 10, -1), "k2"),
    ("k float", lambda: stats.two_proportion_test(10, 1.5, 10, 1), "k1"),  # type: ignore[arg-type]
    (
        "bad alternative",
        lambda: stats.two_proportion_test(10, 1, 10, 1, alternative="both"),
        "alternative",
    ),
    ("bad level", lambda: stats.two_proportion_test(10, 1, 10, 1, level=1.0), "level"),
    ("mcnemar b < 0", lambda: stats.mcnemar(-1, 3), "b"),
    ("mcnemar c float", lambda: stats.mcnemar(1, 2.0), "c"),  # type: ignore[arg-type]
    ("sign wins < 0", lambda: stats.sign_test(-1, 3), "wins"),
    ("sign losses < 0", lambda: stats.sign_test(1, -3), "losses"),
    ("fisher 3x2", lambda: stats.fisher_exact([[1, 2], [3, 4], [5, 6]]), "2x2"),
    ("fisher negative cell", lambda: stats.fisher_exact([[1, -2], [3, 4]]), r"table\[0\]\[1\]"),
    ("fisher k > n", lambda: stats.fisher_exact(3, 4, 3, 1), "k1"),
    ("fisher missing counts", lambda: stats.fisher_exact(3, 1), "n1, k1, n2, k2"),  # type: ignore[call-overload]
    (
        "fisher alternative",
        lambda: stats.fisher_exact([[1, 2], [3, 4]], alternative="x"),
        "alternative",
    ),
    ("repeat k > n", lambda: stats.repeat_drop_test(4, 3, 1, 3), "k1"),
    ("drop test total zero", lambda: stats.binomial_drop_test(0, 0, 1, 2), "n1"),
    ("drop test now > total", lambda: stats.binomial_drop_test(5, 10, 3, 2), "k2"),
]


@pytest.mark.parametrize(
    ("call", "match"), [(c, m) for _, c, m in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS]
)
def test_bad_input_raises_value_error(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_results_to_dict_are_plain_builtins() -> None:
    results: list[Any] = [
        stats.two_proportion_test(100, 10, 100, 20),
        stats.mcnemar(3, 9),
        stats.fisher_exact(10, 3, 10, 8),
    ]
    for res in results:
        data = res.to_dict()
        assert plain_builtins(data), data
        json.dumps(data, allow_nan=False)
