"""How far the local judges agree with people, on the development data in benchmarks/data/.

Prints Cohen's kappa (with its 95% interval), accuracy and AUROC of the local judge against the
human labels of EVOUNA for short answers (FiD), sentence-length answers (the chat models) and
all; pairwise accuracy (a tie counts half) of the local pairwise judge per LLMBar/MT-Bench set
next to trivial heuristics and to the best a reference-free lexical rule reaches (each lexical
signal alone, per set, and a logistic regression on all of them, 5-fold cross-validated on the
pooled pairs); and judgments per second on one core (several references per case).
Every answer is judged through the plugin's own path: the case line is parsed by the case
loader (``ground_truth`` as the list of accepted answers), scored by ``SimilarityJudge.score``
and decided by ``finalize`` with the default rule settings (threshold 0.7).

``--pytest N`` also runs the first N short and N long answers through pytest in a temporary
project (the SUT returns the recorded answer) and checks that every verdict matches.
The last line is the headline: kappa short / long / all, the lowest pairwise accuracy and the
throughput, each against its target.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pytest_llmeval.core.agreement import Agreement, agreement
from pytest_llmeval.core.cases import Case, iter_cases
from pytest_llmeval.core.checks import RuleSettings, finalize
from pytest_llmeval.judges.pairwise_local import LocalPairwiseJudge
from pytest_llmeval.judges.similarity import SimilarityJudge

DATA = Path(__file__).parent / "data"
TARGETS = {"short": 0.85, "long": 0.70, "all": 0.75}
PAIRWISE_TARGET = 0.65
THROUGHPUT_TARGET = 2000.0
GROUPS = ("Natural", "Adversarial", "MT-Bench")


def read_gz(name: str) -> list[dict[str, Any]]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def case_line(row: dict[str, Any]) -> dict[str, Any]:
    """One EVOUNA row as a labelled case line (the recorded answer in metadata.response)."""
    return {
        "id": row["id"],
        "question": row["question"],
        "ground_truth": row["golden"],
        "human_verdict": "pass" if row["label"] == 1 else "fail",
        "tags": ["short" if row["model"] == "fid" else "long"],
        "metadata": {"response": row["answer"]},
    }


def load_cases(rows: Iterable[dict[str, Any]]) -> list[Case]:
    data = "\n".join(json.dumps(case_line(r)) for r in rows).encode("utf-8")
    cases = []
    for found in iter_cases("evouna_dev.jsonl", data):
        if not isinstance(found, Case):
            raise SystemExit(f"bad generated line: {found}")
        cases.append(found)
    return cases


def judge_all(cases: Sequence[Case]) -> list[tuple[float, bool]]:
    """(score, passed) of every case through the plugin's path: score() then finalize()."""
    judge, rules = SimilarityJudge(), RuleSettings()
    out = []
    for case in cases:
        response = case.metadata["response"]
        verdict = finalize(case, response, judge.score(case, response), judge.identity, rules)
        out.append((verdict.score, verdict.passed))
    return out


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney U / n_pos n_neg, ties count half)."""
    ranked = sorted(zip(scores, labels, strict=True))
    rank_sum, i = 0.0, 0
    while i < len(ranked):
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2
        rank_sum += mid_rank * sum(1 for _, y in ranked[i:j] if y)
        i = j
    pos = sum(labels)
    neg = len(labels) - pos
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def fmt_agreement(name: str, a: Agreement, auc: float) -> str:
    assert a.kappa is not None and a.accuracy is not None
    return (
        f"{name:<6} n={a.n:>6}  kappa {a.kappa:.3f} [{a.kappa_low:.3f}, {a.kappa_high:.3f}]"
        f"  accuracy {a.accuracy:.3f}  AUROC {auc:.3f}  TPR {a.tpr:.3f}  TNR {a.tnr:.3f}"
        f"  judge passes {a.judge_pass_rate:.0%} (people {a.human_pass_rate:.0%})"
    )


def group_of(name: str) -> str:
    return "Natural" if "Natural" in name else "MT-Bench" if "MT-Bench" in name else "Adversarial"


def pairwise_accuracy(
    pairs: Sequence[dict[str, Any]], prefer: Callable[[dict[str, Any]], str]
) -> dict[str, tuple[float, float]]:
    """Per group: (accuracy with a tie counted half, tie rate)."""
    out = {}
    for group in GROUPS:
        rows = [p for p in pairs if group_of(p["set"]) == group]
        points = ties = 0.0
        for row in rows:
            choice = prefer(row)
            gold = "a" if row["label"] == 1 else "b"
            ties += choice == "tie"
            points += 0.5 if choice == "tie" else float(choice == gold)
        out[group] = (points / len(rows), ties / len(rows))
    return out


def _signals(instruction: str, output: str, idf: Callable[[str], float]) -> dict[str, float]:
    """Reference-free lexical signals of one response to an instruction."""
    from pytest_llmeval.judges.similarity import content_tokens

    asked, said = set(content_tokens(instruction)), content_tokens(output)
    shared = asked & set(said)
    return {
        "longer": math.log1p(len(output.split())),
        "covers more of the instruction": (sum(map(idf, shared)) / max(1e-9, sum(map(idf, asked)))),
        "more of its words from the instruction": len(shared) / max(1, len(set(said))),
        "less repetitive": len(set(said)) / max(1, len(said)),
        "more lines": float(output.count("\n")),
    }


def reference_free_ceiling(pairs: Sequence[dict[str, Any]]) -> None:
    """Print what reference-free lexical signals can do on each set: each signal alone ("the
    response with more of it wins") and a logistic regression on all their differences, fit on
    the pooled pairs and scored by 5-fold cross-validation (a fixed shuffle). A signal that helps
    on one set and hurts on another cannot be one rule's default."""
    import numpy as np
    from scipy.optimize import minimize

    from pytest_llmeval.judges.similarity import content_tokens

    df: dict[str, int] = {}
    for row in pairs:
        for key in ("input", "output_1", "output_2"):
            for token in set(content_tokens(row[key])):
                df[token] = df.get(token, 0) + 1
    n_docs = 3 * len(pairs)

    def idf(token: str) -> float:
        return math.log((n_docs + 1) / (df.get(token, 0) + 1)) + 1

    names = list(_signals("", "", idf))
    diffs = []
    for row in pairs:
        a, b = (_signals(row["input"], row[k], idf) for k in ("output_1", "output_2"))
        diffs.append([a[n] - b[n] for n in names])
    x = np.array(diffs)
    y = np.array([1.0 if row["label"] == 1 else -1.0 for row in pairs])
    groups = np.array([group_of(row["set"]) for row in pairs])

    def accuracy(score: Any) -> str:
        cells = []
        for group in GROUPS:
            s, gold = score[groups == group], y[groups == group]
            points = np.where(s == 0, 0.5, (np.sign(s) == gold).astype(float))
            cells.append(f"{group} {points.mean():.3f}")
        return "  ".join(cells)

    print("  reference-free lexical signals (the response with more of it wins):")
    for i, name in enumerate(names):
        print(f"    {name:<40} {accuracy(x[:, i])}")

    def fit(xs: Any, ys: Any) -> Any:
        def loss(w: Any) -> float:
            return float(np.logaddexp(0.0, -ys * (xs @ w)).sum() + 0.5 * w @ w)

        return minimize(loss, np.zeros(xs.shape[1])).x

    order = np.random.default_rng(0).permutation(len(y))
    predicted = np.zeros(len(y))
    for fold in np.array_split(order, 5):
        train = np.setdiff1d(order, fold)
        predicted[fold] = x[fold] @ fit(x[train], y[train])
    print(f"    {'all of them (logistic, 5-fold CV)':<40} {accuracy(predicted)}")


def throughput(cases: Sequence[Case], repeat: int) -> float:
    """Judgments per second (score + finalize) in this process, best of ``repeat`` passes: the
    tokeniser caches are warm after the first pass (see :func:`cold_throughput`)."""
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        judge_all(cases)
        runs.append(len(cases) / (time.perf_counter() - t0))
    return max(runs)


def cold_throughput(cases: Sequence[Case]) -> float:
    """Judgments per second in a fresh interpreter (no warm tokeniser caches)."""
    code = (
        "import sys, time, json, gzip\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import bench_judge_agreement as b\n"
        "cases = b.load_cases(b.read_gz('evouna_dev.jsonl.gz'))\n"
        "t0 = time.perf_counter(); b.judge_all(cases)\n"
        "print(len(cases) / (time.perf_counter() - t0))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


CONFTEST = """
import pytest

@pytest.fixture
def llmeval_sut():
    return lambda case: case.metadata["response"]
"""


def through_pytest(cases: Sequence[Case], expected: Sequence[bool]) -> tuple[int, int]:
    """Run the cases through pytest; return (cases compared, verdicts that differ)."""
    with tempfile.TemporaryDirectory(prefix="llmeval-bench-agreement-") as tmp:
        root = Path(tmp)
        lines = []
        for case in cases:
            line = {
                "id": case.id,
                "question": case.question,
                "ground_truth": list(case.references),
                "metadata": dict(case.metadata),
            }
            lines.append(json.dumps(line))
        (root / "llmeval_bench.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (root / "conftest.py").write_text(CONFTEST, encoding="utf-8")
        (root / "pytest.ini").write_text(
            "[pytest]\nllmeval_judge = local\naddopts = -p no:cacheprovider\n", encoding="utf-8"
        )
        report = root / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--llmeval-no-cache", "--llmeval-report",
             str(report)],
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "ANTHROPIC_API_KEY": ""},
        )  # fmt: skip
        if not report.exists():
            raise SystemExit("the pytest run wrote no report")
        got = {c["id"]: c["verdict"] == "pass" for c in json.loads(report.read_text())["cases"]}
    wanted = {c.id: e for c, e in zip(cases, expected, strict=True)}
    return len(got), sum(1 for k, v in wanted.items() if got.get(k) != v)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed passes (best counts)")
    parser.add_argument(
        "--pytest", type=int, default=0, metavar="N", help="also run N short + N long via pytest"
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")

    cases = load_cases(read_gz("evouna_dev.jsonl.gz"))
    refs = statistics.mean(len(c.references) for c in cases)
    print(f"EVOUNA dev: {len(cases):,} labelled answers, {refs:.1f} references per case on average")
    judged = judge_all(cases)
    kappas = {}
    for name, keep in (
        ("short", lambda c: "short" in c.tags),
        ("long", lambda c: "long" in c.tags),
        ("all", lambda c: True),
    ):
        idx = [i for i, c in enumerate(cases) if keep(c)]
        labels = [cases[i].human_passed is True for i in idx]
        found = agreement((judged[i][1], labels[k]) for k, i in enumerate(idx))
        print(fmt_agreement(name, found, auroc([judged[i][0] for i in idx], labels)))
        kappas[name] = found.kappa or 0.0

    pairs = read_gz("pairwise_dev.jsonl.gz")
    local = LocalPairwiseJudge()
    heuristics: dict[str, Callable[[dict[str, Any]], str]] = {
        "local pairwise judge": lambda r: (
            local.compare(r["input"], r["output_1"], r["output_2"]).preference
        ),
        "longer wins": lambda r: _by(len(r["output_1"].split()) - len(r["output_2"].split())),
        "shorter wins": lambda r: _by(len(r["output_2"].split()) - len(r["output_1"].split())),
    }
    print(f"pairwise dev: {len(pairs)} pairs (accuracy, a tie counts half; tie rate)")
    lowest = 1.0
    for name, prefer in heuristics.items():
        result = pairwise_accuracy(pairs, prefer)
        cells = "  ".join(f"{g} {acc:.3f} (ties {tie:.0%})" for g, (acc, tie) in result.items())
        print(f"  {name:<22} {cells}")
        if name == "local pairwise judge":
            lowest = min(acc for acc, _ in result.values())
    reference_free_ceiling(pairs)

    warm = throughput(cases, args.repeat)
    cold = cold_throughput(cases)
    print(f"throughput: {cold:,.0f} judgments/s cold (fresh process), {warm:,.0f}/s warm")

    if args.pytest:
        short = [i for i, c in enumerate(cases) if "short" in c.tags][: args.pytest]
        long = [i for i, c in enumerate(cases) if "long" in c.tags][: args.pytest]
        subset = [cases[i] for i in short + long]
        n, differ = through_pytest(subset, [judged[i][1] for i in short + long])
        print(f"through pytest: {n} cases, {differ} verdicts differ from the direct path")

    ok = (
        all(kappas[k] >= t for k, t in TARGETS.items())
        and lowest >= PAIRWISE_TARGET
        and cold >= THROUGHPUT_TARGET
    )
    print(
        f"kappa short {kappas['short']:.3f} / long {kappas['long']:.3f} / all {kappas['all']:.3f}"
        f" (targets 0.85 / 0.70 / 0.75); lowest pairwise accuracy {lowest:.3f} (target 0.65);"
        f" {cold:,.0f} judgments/s (target 2,000): {'OK' if ok else 'BELOW TARGET'}"
    )


def _by(diff: int) -> str:
    return "a" if diff > 0 else "b" if diff < 0 else "tie"


if __name__ == "__main__":
    main()
