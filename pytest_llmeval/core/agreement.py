"""How far a judge agrees with people: Cohen's kappa with a confidence interval, and more.

Pure: no pytest, no I/O, stdlib only. "Positive" is *pass*: ``tp`` counts responses both the
judge and the human passed, ``fp`` responses the judge passed and the human failed, and so on.

Cohen's kappa (Cohen 1960) is the agreement beyond chance, ``(p_o - p_e) / (1 - p_e)``. Its
interval uses the large-sample standard error of Fleiss, Cohen and Everitt (1969), "Large sample
standard errors of kappa and weighted kappa", Psychological Bulletin 72(5), the non-null
variance (the one for an interval, not for testing kappa = 0); it is the ``std_kappa`` of
``statsmodels.stats.inter_rater.cohens_kappa``. The interval is clipped to [-1, 1].

Between several judges (a panel) :func:`fleiss_kappa` gives Fleiss' kappa (Fleiss 1971) over
pass/fail ratings, and :func:`pairwise_kappas` Cohen's kappa for each pair of judges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

KAPPA_METHOD = "Cohen's kappa, Fleiss-Cohen-Everitt (1969) asymptotic standard error"


@dataclass(frozen=True)
class Agreement:
    """Agreement of a judge's pass/fail with people's on ``n`` labelled responses.

    Rates and kappa are None where they are undefined (no labelled response, no human pass for
    ``tpr``, no human fail for ``tnr``, a kappa when both raters used one class only).
    """

    n: int
    tp: int
    fp: int
    fn: int
    tn: int
    accuracy: float | None
    kappa: float | None
    kappa_low: float | None
    kappa_high: float | None
    tpr: float | None
    """True-positive rate: of the responses people passed, the share the judge passed."""
    tnr: float | None
    """True-negative rate: of the responses people failed, the share the judge failed."""
    confidence: float = 0.95
    method: str = KAPPA_METHOD

    @property
    def judge_pass_rate(self) -> float | None:
        return (self.tp + self.fp) / self.n if self.n else None

    @property
    def human_pass_rate(self) -> float | None:
        return (self.tp + self.fn) / self.n if self.n else None

    def summary(self) -> str:
        """One line for a terminal: ``kappa 0.81 [0.78, 0.84], accuracy 93% ...``."""
        if not self.n:
            return "no labelled responses"

        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.0%}"

        if self.kappa is None:
            kappa = "kappa n/a (one class only)"
        else:
            kappa = f"kappa {self.kappa:.2f} [{self.kappa_low:.2f}, {self.kappa_high:.2f}]"
        return (
            f"{kappa}, accuracy {pct(self.accuracy)}, passes {pct(self.tpr)} of what people"
            f" pass and fails {pct(self.tnr)} of what they fail (n={self.n}: tp {self.tp},"
            f" fp {self.fp}, fn {self.fn}, tn {self.tn})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "accuracy": self.accuracy,
            "kappa": self.kappa,
            "kappa_low": self.kappa_low,
            "kappa_high": self.kappa_high,
            "tpr": self.tpr,
            "tnr": self.tnr,
            "confidence": self.confidence,
            "method": self.method,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Agreement:
        """Rebuild from :meth:`to_dict` output (the derived numbers are recomputed from the
        counts, so a hand-edited file cannot carry inconsistent ones)."""
        counts = {k: data[k] for k in ("tp", "fp", "fn", "tn")}
        for key, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"agreement: {key} must be a count, got {value!r}")
        confidence = data.get("confidence", 0.95)
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
            raise ValueError(f"agreement: confidence must be a number, got {confidence!r}")
        return from_counts(**counts, confidence=float(confidence))


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def from_counts(tp: int, fp: int, fn: int, tn: int, *, confidence: float = 0.95) -> Agreement:
    """The :class:`Agreement` of a 2x2 confusion table (judge rows, human columns)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = tp + fp + fn + tn
    kappa = low = high = None
    if n:
        # p[i][j]: judge said i, human said j (0 = pass, 1 = fail)
        p = ((tp / n, fp / n), (fn / n, tn / n))
        row = (p[0][0] + p[0][1], p[1][0] + p[1][1])
        col = (p[0][0] + p[1][0], p[0][1] + p[1][1])
        p_o = p[0][0] + p[1][1]
        p_e = row[0] * col[0] + row[1] * col[1]
        if p_e < 1.0:
            kappa = (p_o - p_e) / (1 - p_e)
            # Fleiss, Cohen & Everitt (1969), eq. 13: the non-null asymptotic variance
            diag = sum(p[i][i] * (1 - (row[i] + col[i]) * (1 - kappa)) ** 2 for i in (0, 1))
            off = (1 - kappa) ** 2 * sum(
                p[i][j] * (col[i] + row[j]) ** 2 for i in (0, 1) for j in (0, 1) if i != j
            )
            var = (diag + off - (kappa - p_e * (1 - kappa)) ** 2) / (n * (1 - p_e) ** 2)
            se = math.sqrt(max(var, 0.0))
            z = NormalDist().inv_cdf(0.5 + confidence / 2)
            low, high = max(-1.0, kappa - z * se), min(1.0, kappa + z * se)
    return Agreement(
        n=n,
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
        accuracy=_ratio(tp + tn, n),
        kappa=kappa,
        kappa_low=low,
        kappa_high=high,
        tpr=_ratio(tp, tp + fn),
        tnr=_ratio(tn, tn + fp),
        confidence=confidence,
    )


def agreement(pairs: Iterable[tuple[bool, bool]], *, confidence: float = 0.95) -> Agreement:
    """Agreement of ``(judge passed, human passed)`` pairs."""
    tp = fp = fn = tn = 0
    for judge_passed, human_passed in pairs:
        if judge_passed and human_passed:
            tp += 1
        elif judge_passed:
            fp += 1
        elif human_passed:
            fn += 1
        else:
            tn += 1
    return from_counts(tp, fp, fn, tn, confidence=confidence)


@dataclass(frozen=True)
class Threshold:
    """The score threshold (pass when ``score >= threshold``) that maximises kappa on the data
    it was chosen from; check it on held-out labels before trusting it."""

    threshold: float
    agreement: Agreement
    candidates: int
    """How many distinct thresholds were tried (every distinct score)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "agreement": self.agreement.to_dict(),
            "candidates": self.candidates,
        }


def best_threshold(
    scores_and_labels: Iterable[tuple[float, bool]], *, confidence: float = 0.95
) -> Threshold:
    """The threshold among the observed scores that maximises Cohen's kappa against the human
    labels (``(score, human passed)`` pairs). On a plateau of equal kappa the middle candidate
    is returned: it is the one least sensitive to a small shift of the scores.

    Raises ValueError without data. O(n log n): one sweep over the sorted scores.
    """
    data = sorted(((float(s), bool(h)) for s, h in scores_and_labels), reverse=True)
    if not data:
        raise ValueError("best_threshold needs at least one (score, label) pair")
    positives = sum(1 for _, h in data if h)
    negatives = len(data) - positives
    # sweep from the highest score down: everything at or above t passes
    tp = fp = 0
    results: list[tuple[float, float, int, int]] = []  # (kappa, threshold, tp, fp)
    i = 0
    while i < len(data):
        t = data[i][0]
        while i < len(data) and data[i][0] == t:
            if data[i][1]:
                tp += 1
            else:
                fp += 1
            i += 1
        found = from_counts(tp, fp, positives - tp, negatives - fp, confidence=confidence)
        kappa = found.kappa if found.kappa is not None else -math.inf
        results.append((kappa, t, tp, fp))
    best = max(k for k, *_ in results)
    plateau = [r for r in results if r[0] >= best - 1e-12]
    _, t, tp, fp = plateau[len(plateau) // 2]
    return Threshold(
        threshold=t,
        agreement=from_counts(tp, fp, positives - tp, negatives - fp, confidence=confidence),
        candidates=len(results),
    )


def fleiss_kappa(ratings: Sequence[Sequence[bool]]) -> float | None:
    """Fleiss' kappa (Fleiss 1971) of pass/fail ratings: one row per response, one column per
    judge (every row the same number of judges, at least two). None when undefined (no rows,
    or every rating the same)."""
    if not ratings:
        return None
    raters = len(ratings[0])
    if raters < 2 or any(len(row) != raters for row in ratings):
        raise ValueError("fleiss_kappa needs the same number (>= 2) of ratings in every row")
    n = len(ratings)
    passes = [sum(1 for r in row if r) for row in ratings]
    p_pass = sum(passes) / (n * raters)
    p_e = p_pass**2 + (1 - p_pass) ** 2
    if p_e >= 1.0:
        return None
    p_i = [
        (k * (k - 1) + (raters - k) * (raters - k - 1)) / (raters * (raters - 1)) for k in passes
    ]
    p_bar = sum(p_i) / n
    return (p_bar - p_e) / (1 - p_e)


def pairwise_kappas(
    ratings: Mapping[str, Sequence[bool]], *, confidence: float = 0.95
) -> dict[tuple[str, str], Agreement]:
    """Cohen's kappa between every pair of named raters (equal-length pass/fail sequences);
    in each pair the first name is taken as the "judge", the second as the reference."""
    names = list(ratings)
    lengths = {len(v) for v in ratings.values()}
    if len(lengths) > 1:
        raise ValueError("pairwise_kappas needs the same number of ratings from every rater")
    out: dict[tuple[str, str], Agreement] = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            out[(a, b)] = agreement(zip(ratings[a], ratings[b], strict=True), confidence=confidence)
    return out
