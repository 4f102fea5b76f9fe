"""pytest_llmeval.stats.history: the mean - k*sd bounds and the prediction bound.

References: statsmodels and scipy (test-only dependencies), closed forms evaluated here with
``math`` only, and published tables (Newcombe 1998a/b).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import statsmodels.api as sm  # type: ignore[import-untyped]
from scipy.stats import t as student_t
from stats_helpers import close, plain_builtins

from pytest_llmeval import stats

# ---------------------------------------------------------------------------
# history gate helpers
# ---------------------------------------------------------------------------


def test_history_bounds() -> None:
    rates = [0.80, 0.82, 0.79, 0.85]
    mean, std, lower = stats.history_bounds(rates, 2.0)
    m = sum(rates) / 4
    s = math.sqrt(sum((r - m) ** 2 for r in rates) / 3)
    assert close(mean, m) and close(std, s) and close(lower, m - 2 * s)
    assert stats.history_bounds([0.9, 0.9], 2.0) == (0.9, 0.0, 0.9)
    assert stats.history_bounds(rates, 2.0).to_dict()["sample_std"] == std


@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.025])
def test_prediction_bound_is_statsmodels_ols_prediction(alpha: float) -> None:
    y = np.array([0.81, 0.84, 0.79, 0.83, 0.86, 0.8])
    got = stats.prediction_bound(y.tolist(), alpha)
    frame = sm.OLS(y, np.ones((y.size, 1))).fit().get_prediction(np.ones((1, 1)))
    assert got.lower == pytest.approx(frame.summary_frame(alpha=2 * alpha)["obs_ci_lower"][0])
    assert got.t == pytest.approx(student_t.ppf(1 - alpha, y.size - 1))
    sd = float(np.std(y, ddof=1))
    assert got.lower == pytest.approx(y.mean() - got.t * sd * math.sqrt(1 + 1 / y.size))


@pytest.mark.parametrize("h", [3, 10])
def test_prediction_bound_has_its_nominal_false_alarm_rate(h: int) -> None:
    rng = np.random.default_rng(h)
    runs = rng.normal(0.85, 0.02, (4000, h + 1))
    below = [row[-1] < stats.prediction_bound(row[:-1].tolist(), 0.05).lower for row in runs]
    assert np.mean(below) == pytest.approx(0.05, abs=0.012)


def test_prediction_bound_needs_two_points() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        stats.prediction_bound([0.9])
    with pytest.raises(ValueError, match="alpha"):
        stats.prediction_bound([0.9, 0.8], 1.0)


# ---------------------------------------------------------------------------
# every ValueError
# ---------------------------------------------------------------------------

BAD_INPUTS: list[tuple[str, Callable[[], object], str]] = [
    ("history one point", lambda: stats.history_bounds([0.9], 2.0), "at least 2"),
    ("history empty", lambda: stats.history_bounds([], 2.0), "at least 2"),
    ("history rate > 1", lambda: stats.history_bounds([0.9, 1.2], 2.0), r"pass_rates\[1\]"),
    ("history negative k", lambda: stats.history_bounds([0.9, 0.8], -1.0), "k"),
]


@pytest.mark.parametrize(
    ("call", "match"), [(c, m) for _, c, m in BAD_INPUTS], ids=[i for i, _, _ in BAD_INPUTS]
)
def test_bad_input_raises_value_error(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_results_to_dict_are_plain_builtins() -> None:
    results: list[Any] = [
        stats.history_bounds([0.5, 0.6], 1.0),
    ]
    for res in results:
        data = res.to_dict()
        assert plain_builtins(data), data
        json.dumps(data, allow_nan=False)
