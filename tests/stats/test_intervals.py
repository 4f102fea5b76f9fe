"""pytest_llmeval.stats.intervals: Wilson, Clopper-Pearson and Newcombe intervals.

References: statsmodels and scipy (test-only dependencies), closed forms evaluated here with
``math`` only, and published tables (Newcombe 1998a/b).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stats_helpers import close
from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
    proportion_confint,
)

from pytest_llmeval import stats

# ---------------------------------------------------------------------------
# proportion_ci
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        # Newcombe, Statistics in Medicine 17 (1998) 857-872, Table I: Wilson score (method 3)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_published(k: int, n: int, low: float, high: float) -> None:
    got_low, got_high = stats.proportion_ci(k, n)
    assert got_low == pytest.approx(low, abs=5e-5)
    assert got_high == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 20), (1, 29), (81, 263), (500, 1000), (9999, 10000)]
)
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
@pytest.mark.parametrize(
    ("method", "sm_method"), [("wilson", "wilson"), ("clopper-pearson", "beta")]
)
def test_proportion_ci_matches_statsmodels(
    k: int, n: int, level: float, method: str, sm_method: str
) -> None:
    low, high = stats.proportion_ci(k, n, method=method, level=level)
    sm_low, sm_high = proportion_confint(k, n, alpha=1 - level, method=sm_method)
    # statsmodels computes Wilson's lower bound as centre - half (cancellation near 0), hence
    # a tiny absolute tolerance on top of the relative one.
    assert close(low, float(sm_low), abs_=1e-12)
    assert close(high, float(sm_high), abs_=1e-12)


def test_proportion_ci_edges_are_exact() -> None:
    assert stats.proportion_ci(0, 50)[0] == 0.0
    assert stats.proportion_ci(50, 50)[1] == 1.0
    low, high = stats.proportion_ci(0, 50, method="clopper-pearson")
    assert low == 0.0
    assert close(high, 1 - 0.025 ** (1 / 50))  # closed form at k = 0


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 100_000),
    frac=st.floats(0, 1),
    level=st.floats(0.5, 0.999),
    method=st.sampled_from(["wilson", "clopper-pearson"]),
)
def test_proportion_ci_contains_point_estimate(
    n: int, frac: float, level: float, method: str
) -> None:
    k = round(frac * n)
    low, high = stats.proportion_ci(k, n, method=method, level=level)
    assert 0.0 <= low <= k / n <= high <= 1.0


# ---------------------------------------------------------------------------
# every ValueError
# ---------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, Callable[[], object], str]] = [
    ("ci n zero", lambda: stats.proportion_ci(0, 0), "n"),
    ("ci k > n", lambda: stats.proportion_ci(5, 4), "k"),
    ("ci k < 0", lambda: stats.proportion_ci(-1, 4), "k"),
    ("ci method", lambda: stats.proportion_ci(1, 4, method="wald"), "method"),
    ("ci level", lambda: stats.proportion_ci(1, 4, level=0), "level"),
]


@pytest.mark.parametrize(
    ("call", "match"), [(c, m) for _, c, m in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS]
)
def test_bad_input_raises_value_error(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
