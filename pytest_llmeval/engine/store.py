"""The committed state: the baseline snapshot and the pass-rate history. Never decides.

Both files are written atomically (a temp file in the same folder, then ``os.replace``), so a
killed process leaves either the old or the new file, never half of one. The history is
append-only: appending rewrites the file with its existing bytes unchanged plus one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.core.verdict import JudgeIdentity
from pytest_llmeval.errors import StateFileError

BASELINE_VERSION = 1


@dataclass(frozen=True)
class BaselineEntry:
    verdict: str  # "pass" | "fail"
    score: float
    response_sha256: str
    threshold: float
    passes: int = 1
    samples: int = 1

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": round(self.score, 6),
            "response_sha256": self.response_sha256,
            "threshold": self.threshold,
            "passes": self.passes,
            "samples": self.samples,
        }


@dataclass(frozen=True)
class Baseline:
    judge: JudgeIdentity | None
    entries: Mapping[str, BaselineEntry] = field(default_factory=dict)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode it had, or the usual umask-based one
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _entry_from(path: Path, key: str, raw: Any) -> BaselineEntry:
    try:
        return BaselineEntry(
            verdict=str(raw["verdict"]),
            score=float(raw["score"]),
            response_sha256=str(raw.get("response_sha256", "")),
            threshold=float(raw.get("threshold", 0.0)),
            passes=int(raw.get("passes", 1 if raw["verdict"] == "pass" else 0)),
            samples=int(raw.get("samples", 1)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StateFileError(f"{path}: case {key!r}: bad entry ({exc!r})") from None


def load_baseline(path: Path) -> Baseline | None:
    """The baseline at ``path``, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path}: unreadable ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateFileError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); fix the file or restore it from"
            " version control (git checkout -- <file>)"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), dict):
        raise StateFileError(f"{path}: not a pytest-llmeval baseline (no 'cases' object)")
    if data.get("version") != BASELINE_VERSION:
        raise StateFileError(f"{path}: baseline version {data.get('version')!r} is not supported")
    judge = JudgeIdentity.from_dict(data["judge"]) if data.get("judge") else None
    entries = {key: _entry_from(path, key, raw) for key, raw in data["cases"].items()}
    return Baseline(judge=judge, entries=entries)


def dump_baseline(baseline: Baseline, default_threshold: float) -> bytes:
    """Diff-friendly JSON: sorted keys, one case per line."""
    head = {
        "version": BASELINE_VERSION,
        "judge": baseline.judge.to_dict() if baseline.judge else None,
        "default_threshold": default_threshold,
    }
    lines = ["{"]
    for key in sorted(head):
        lines.append(f"  {json.dumps(key)}: {json.dumps(head[key], sort_keys=True)},")
    lines.append('  "cases": {')
    keys = sorted(baseline.entries)
    for i, key in enumerate(keys):
        entry = json.dumps(baseline.entries[key].to_dict(), sort_keys=True, ensure_ascii=False)
        comma = "," if i < len(keys) - 1 else ""
        lines.append(f"    {json.dumps(key, ensure_ascii=False)}: {entry}{comma}")
    lines.append("  }")
    lines.append("}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def save_baseline(path: Path, baseline: Baseline, default_threshold: float) -> None:
    atomic_write(path, dump_baseline(baseline, default_threshold))


def load_history(path: Path) -> list[dict[str, Any]]:
    """History lines, oldest first. A bad line is an error naming the file and line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StateFileError(f"{path}:{lineno}: not a JSON line ({exc})") from None
        if not isinstance(record, dict):
            raise StateFileError(f"{path}:{lineno}: expected a JSON object")
        for name in ("pass_rate", "total", "passed"):
            if name not in record:
                raise StateFileError(f"{path}:{lineno}: field '{name}' is missing")
        rate = record["pass_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise StateFileError(f"{path}:{lineno}: field 'pass_rate' must be a number in [0, 1]")
        out.append(record)
    return out


def append_history(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line, atomically, keeping every existing byte."""
    try:
        existing = path.read_bytes()
    except FileNotFoundError:
        existing = b""
    if existing and not existing.endswith(b"\n"):
        existing += b"\n"
    line = json.dumps(dict(record), sort_keys=True, ensure_ascii=False) + "\n"
    atomic_write(path, existing + line.encode("utf-8"))


def git_commit(cwd: Path) -> str | None:
    """The current git commit of ``cwd``, or None outside a repository."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


@dataclass(frozen=True)
class BaselineUpdate:
    baseline: Baseline
    created: int
    updated: int
    removed: int

    def describe(self) -> str:
        return (
            f"{self.created} created, {self.updated} updated, {self.removed} removed,"
            f" {len(self.baseline.entries)} cases"
        )


def updated_baseline(
    old: Baseline | None,
    records: Iterable[Mapping[str, Any]],
    judge: JudgeIdentity,
    *,
    unused: Iterable[str] = (),
    drop_unused: bool = False,
) -> BaselineUpdate:
    """The baseline after accepting this run's verdicts (errors keep their old entry)."""
    entries = dict(old.entries) if old else {}
    created = updated = removed = 0
    for r in records:
        if r["verdict"] == "error":
            continue
        new = BaselineEntry(
            verdict=r["verdict"],
            score=float(r["score"]),
            response_sha256=r["response_sha256"],
            threshold=float(r["threshold"]),
            passes=int(r["passes"]),
            samples=int(r["samples"]),
        )
        key = r["key"] if "key" in r else r["nodeid"]
        if key not in entries:
            created += 1
        elif entries[key] != new:
            updated += 1
        entries[key] = new
    if drop_unused:
        for key in unused:
            if entries.pop(key, None) is not None:
                removed += 1
    return BaselineUpdate(Baseline(judge, entries), created, updated, removed)


def history_record(
    summary: Mapping[str, Any],
    records: Iterable[Mapping[str, Any]],
    judge: JudgeIdentity,
    commit: str | None,
    timestamp: str,
) -> dict[str, Any]:
    """One history line: the run's counts, its judge, and the keys that failed."""
    mean = summary["mean_score"]
    return {
        "timestamp": timestamp,
        "commit": commit,
        "total": summary["passed"] + summary["failed"],
        "passed": summary["passed"],
        "errors": summary["errors"],
        "pass_rate": summary["pass_rate"],
        "mean_score": None if mean is None else round(mean, 6),
        "judge": judge.to_dict(),
        "failed": sorted(r.get("key", r.get("nodeid")) for r in records if r["verdict"] == "fail"),
    }


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when it does not exist."""
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
