"""Experiment design: sample size, sample-ratio mismatch, sticky variant assignment."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_llmeval.stats._common import (
    _alternative,
    _count,
    _open_unit,
    _rate,
    _real,
    _Result,
)

# ---------------------------------------------------------------------------
# sample size
# ---------------------------------------------------------------------------


def sample_size(
    baseline_rate: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.80,
    relative: bool = True,
    alternative: str = "two-sided",
) -> int:
    """Units needed per arm to detect ``mde`` with a two-proportion z-test.

    Pooled variance under the null, unpooled under the alternative, equal arms::

        p1 = baseline_rate;  p2 = p1 * (1 + mde) if relative else p1 + mde
        p̄  = (p1 + p2) / 2
        n  = ceil( (z_a * sqrt(2 p̄ (1 - p̄)) + z_b * sqrt(p1 (1 - p1) + p2 (1 - p2)))^2
                   / (p2 - p1)^2 )

    with ``z_a = Φ⁻¹(1 - alpha/2)`` (two-sided) or ``Φ⁻¹(1 - alpha)`` (one-sided) and
    ``z_b = Φ⁻¹(power)``, both exact from scipy. Reference: Fleiss, Levin & Paik, *Statistical
    Methods for Rates and Proportions*, 3rd ed. (2003), §4.2, eq. 4.14 (without continuity
    correction); Chow, Shao & Wang, *Sample Size Calculations in Clinical Research* (2008),
    §4.2. Matches ``statsmodels.stats.proportion.samplesize_proportions_2indep_onetail``.

    Example: 12% baseline, 15% relative MDE -> 5443 per arm (alpha 0.01 -> 8099).

    ``alternative="greater"``/``"less"`` are one-sided and require the MDE to point that way.
    """
    p1 = _rate("baseline_rate", baseline_rate)
    effect = _real("mde", mde)
    alpha_ = _open_unit("alpha", alpha)
    power_ = _open_unit("power", power)
    alt = _alternative(alternative)
    if effect == 0.0:
        raise ValueError("mde must be non-zero (a zero effect needs infinitely many units)")
    if relative and p1 == 0.0:
        raise ValueError("baseline_rate must be > 0 for a relative mde (0 * (1 + mde) is 0)")
    p2 = p1 * (1.0 + effect) if relative else p1 + effect
    if not 0.0 < p2 < 1.0:
        kind = "relative" if relative else "absolute"
        raise ValueError(
            f"mde {effect!r} ({kind}) puts the treatment rate at {p2!r}, outside (0, 1)"
        )
    if alt == "greater" and p2 < p1:
        raise ValueError("alternative='greater' needs a positive mde (treatment rate higher)")
    if alt == "less" and p2 > p1:
        raise ValueError("alternative='less' needs a negative mde (treatment rate lower)")

    from scipy.stats import norm

    tail = alpha_ / 2.0 if alt == "two-sided" else alpha_
    z_a = float(norm.isf(tail))
    z_b = float(norm.ppf(power_))
    p_bar = (p1 + p2) / 2.0
    root = z_a * math.sqrt(2.0 * p_bar * (1.0 - p_bar)) + z_b * math.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    return math.ceil(root * root / ((p2 - p1) ** 2))


# ---------------------------------------------------------------------------
# sample-ratio mismatch and assignment
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SRMResult(_Result):
    """Chi-square goodness-of-fit of the observed arm sizes to the planned split."""

    observed: tuple[int, ...]
    expected_ratios: tuple[float, ...]
    expected_counts: tuple[float, ...]
    statistic: float
    df: int
    p_value: float
    threshold: float
    mismatch: bool


def srm_check(
    observed_counts: Sequence[int],
    expected_ratios: Sequence[float],
    *,
    threshold: float = 0.001,
) -> SRMResult:
    """Sample-ratio mismatch check (Pearson's chi-square goodness of fit).

    ::

        E_i = N · r_i / Σr,   X² = Σ (O_i - E_i)² / E_i,   p = P[χ²_{g-1} >= X²]

    ``mismatch`` is ``p < threshold``; the strict default 0.001 follows Kohavi, Tang & Xu,
    *Trustworthy Online Controlled Experiments* (2020), ch. 21, since an SRM check runs on every
    experiment. Ratios are normalised by their sum, so ``[1, 1]`` and ``[0.5, 0.5]`` are the same.
    Reference: Pearson, *Phil. Mag.* 50 (1900); Fabijan et al., KDD 2019 (SRM in practice).
    """
    observed = tuple(_count(f"observed_counts[{i}]", v) for i, v in enumerate(observed_counts))
    ratios = tuple(_real(f"expected_ratios[{i}]", v) for i, v in enumerate(expected_ratios))
    threshold_ = _open_unit("threshold", threshold)
    if len(observed) < 2:
        raise ValueError(f"observed_counts needs at least 2 arms, got {len(observed)}")
    if len(ratios) != len(observed):
        raise ValueError(
            f"expected_ratios has {len(ratios)} entries but observed_counts has {len(observed)}"
        )
    for i, r in enumerate(ratios):
        if r <= 0.0:
            raise ValueError(f"expected_ratios[{i}] must be > 0, got {r!r}")
    total = sum(observed)
    if total == 0:
        raise ValueError("observed_counts must not all be 0")
    ratio_sum = sum(ratios)
    shares = tuple(r / ratio_sum for r in ratios)
    expected = tuple(total * s for s in shares)
    from scipy.stats import chi2

    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
    df = len(observed) - 1
    p_value = float(chi2.sf(stat, df))
    return SRMResult(
        observed=observed,
        expected_ratios=shares,
        expected_counts=expected,
        statistic=float(stat),
        df=df,
        p_value=p_value,
        threshold=threshold_,
        mismatch=p_value < threshold_,
    )


_DEFAULT_WEIGHTS: Mapping[str, float] = {"control": 0.5, "treatment": 0.5}


def _bucket(user_id: str | int, experiment_id: str) -> float:
    """A uniform number in [0, 1) from sha256 of the length-prefixed experiment id + user id."""
    salt = str(experiment_id).encode("utf-8", "surrogatepass")
    # The length prefix makes ("ab", "c") and ("a", "bc") different inputs.
    payload = (
        str(len(salt)).encode("ascii")
        + b":"
        + salt
        + b":"
        + str(user_id).encode("utf-8", "surrogatepass")
    )
    digest = hashlib.sha256(payload).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_variant(
    user_id: str | int,
    experiment_id: str,
    *,
    weights: Mapping[str, float] = _DEFAULT_WEIGHTS,
) -> str:
    """Sticky, salted assignment of a user to a variant.

    ``u = int(sha256(f"{len(e)}:{e}:{user_id}")[:8 bytes], big-endian) / 2**64`` with ``e`` the
    UTF-8 experiment id; variants are taken in sorted name order, each owning a slice of [0, 1)
    proportional to its weight, and the user gets the variant whose slice holds ``u``. sha256
    (not Python's ``hash``) makes it identical in every process, machine and Python version; the
    experiment id salts it so assignments of different experiments are independent. Weights are
    normalised by their sum; a zero weight gets no users. With the default two variants, raising
    the treatment weight only moves control users into treatment (ramp-ups stay sticky).
    Reference: Kohavi, Tang & Xu (2020), ch. 4 (randomization unit and hashing).
    """
    if not isinstance(experiment_id, str) or not experiment_id:
        raise ValueError(f"experiment_id must be a non-empty string, got {experiment_id!r}")
    if not weights:
        raise ValueError("weights must name at least one variant")
    items: list[tuple[str, float]] = []
    for name in sorted(weights):
        if not isinstance(name, str) or not name:
            raise ValueError(f"weights keys must be non-empty variant names, got {name!r}")
        w = _real(f"weights[{name!r}]", weights[name])
        if w < 0.0:
            raise ValueError(f"weights[{name!r}] must be >= 0, got {w!r}")
        items.append((name, w))
    total = sum(w for _, w in items)
    if total <= 0.0:
        raise ValueError("weights must not all be 0")
    u = _bucket(user_id, experiment_id)
    cumulative = 0.0
    for name, w in items:
        cumulative += w / total
        if w > 0.0 and u < cumulative:
            return name
    # Rounding can leave the cumulative sum a hair below 1: the last live variant owns the rest.
    return next(name for name, w in reversed(items) if w > 0.0)
