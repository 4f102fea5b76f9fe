"""The collection ledger: which cases exist, which ran, and whether the run was narrowed.

"Narrowed" is decided from which cases of the collected case files actually produced a result,
not from which flags were given: ``-k``, ``-m``, node ids, ``--lf``, ``-x``, a shard, a timeout
or a crash all leave some collected case without a result. Workers under xdist send their
ledger as plain builtins; the controller merges them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CollectionLedger:
    """What collection saw on this process (or, on the xdist controller, on all workers)."""

    collected_files: set[str] = field(default_factory=set)
    collected_keys: set[str] = field(default_factory=set)  # every case of every collected file
    collection_errors: int = 0
    worker_problems: list[str] = field(default_factory=list)
    expected_cases: int = 0  # case items this run will run (after deselection)
    unscoreable: set[str] = field(default_factory=set)  # no reference and no checks

    def note_file(self, rel: str, keys: Iterable[str]) -> None:
        self.collected_files.add(rel)
        self.collected_keys.update(keys)

    def to_builtins(self) -> dict[str, Any]:
        """For ``workeroutput`` (plain builtins only)."""
        return {
            "collected_files": sorted(self.collected_files),
            "collected_keys": sorted(self.collected_keys),
            "collection_errors": int(self.collection_errors),
            "unscoreable": sorted(self.unscoreable),
        }

    def merge_worker(self, data: Mapping[str, Any], problems: Iterable[str]) -> None:
        """Every worker collects the same items: merge by union, errors by max."""
        self.collected_files.update(data.get("collected_files", ()))
        self.collected_keys.update(data.get("collected_keys", ()))
        self.unscoreable.update(data.get("unscoreable", ()))
        self.collection_errors = max(self.collection_errors, int(data.get("collection_errors", 0)))
        self.worker_problems.extend(p for p in problems if p not in self.worker_problems)

    def narrowed_reasons(
        self,
        ran: Iterable[str],
        *,
        baseline_keys: Iterable[str],
        root: Path,
        shard: str | None,
        stopped_early: bool,
    ) -> list[str]:
        """Why this run is not the whole suite (empty: it is)."""
        ran = set(ran)
        reasons: list[str] = []
        if stopped_early:
            reasons.append("the run stopped early (-x/--maxfail)")
        if shard is not None:
            reasons.append(f"shard {shard}")
        not_run = self.collected_keys - ran
        if not_run and shard is None:
            n = len(not_run)
            reasons.append(
                f"{n} collected case{'s' if n != 1 else ''} did not run"
                " (-k, -m, node ids, --lf, a timeout or an early stop)"
            )
        missing = sorted(
            {
                f
                for f in (k.split("::")[0] for k in baseline_keys)
                if f not in self.collected_files and f.endswith(".jsonl") and (root / f).exists()
            }
        )
        if missing:
            reasons.append(f"case files not collected: {', '.join(missing[:3])}")
        return reasons

    def unused_entries(self, baseline_keys: Iterable[str], root: Path) -> list[str]:
        """Baseline entries whose case is gone: its file was collected without it, or the file
        no longer exists."""
        out = []
        for key in baseline_keys:
            if key in self.collected_keys:
                continue
            path = key.split("::")[0]
            if path in self.collected_files or not (root / path).exists():
                out.append(key)
        return sorted(out)
