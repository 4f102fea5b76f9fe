"""The judge cache: SQLite in WAL mode, safe for several pytest-xdist workers.

It stores judge results under a key that covers everything that can change a verdict (see
:func:`cache_key`). It never judges. A corrupt or unreadable file is moved aside, reported and
rebuilt: the run goes on with an empty cache, never with a stale verdict.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult
from pytest_llmeval.engine.store import ensure_state_dir
from pytest_llmeval.errors import JudgeError

SCHEMA_VERSION = 1
BUSY_WAIT_S = 30.0


def _is_busy(exc: sqlite3.Error) -> bool:
    """A lock held by another process (SQLITE_BUSY/SQLITE_LOCKED), not a damaged file."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if isinstance(code, int):
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (extended codes too)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def cache_key(judge: JudgeIdentity, case: Case, response: str, sample: int = 0) -> str:
    """sha256 over judge identity (with source hash), case content, response and sample index."""
    payload = {
        "judge": [judge.name, judge.model, judge.prompt_version, judge.version, judge.source_hash],
        "case": case.content_key(),
        "response": response,
        "sample": sample,
    }
    raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class JudgeCache:
    """A key -> JudgeResult store. ``problems`` collects what went wrong (for the summary)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        ensure_state_dir(self.path.parent)  # the folder, and its .gitignore for the cache
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            try:
                self._conn = self._open()
                return self._conn
            except sqlite3.DatabaseError as exc:
                if not _is_busy(exc):
                    self._quarantine(exc)
                    self._conn = self._open()
                    return self._conn
                # another process (an xdist worker) is creating the file or switching it to
                # WAL; SQLite may answer BUSY at once (deadlock avoidance), so wait here
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown cache schema version {version}")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS verdicts ("
                " key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL NOT NULL)"
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
            conn.execute("SELECT count(*) FROM verdicts LIMIT 1").fetchone()
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _quarantine(self, exc: Exception) -> None:
        """Move an unreadable cache aside (kept for inspection) so a fresh one can be built."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}-{os.getpid()}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                try:
                    os.replace(src, Path(str(aside) + suffix))
                except OSError:
                    src.unlink(missing_ok=True)
        self.problems.append(
            f"judge cache {self.path} was unreadable ({exc}); moved to {aside.name} and rebuilt"
        )

    def _run(self, sql: str, params: tuple[Any, ...], *, write: bool = False) -> list[Any]:
        with self._lock:
            try:
                conn = self._connect()
                rows = conn.execute(sql, params).fetchall()
                if write:
                    conn.commit()
                return rows
            except sqlite3.DatabaseError as exc:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
                if _is_busy(exc):
                    # locked by another process for longer than the busy timeout: the file is
                    # healthy, so never move it aside; go on without the cache for this call
                    self.problems.append(f"judge cache {self.path} busy ({exc}); not used once")
                    return []
                self._quarantine(exc)
                conn = self._connect()
                rows = conn.execute(sql, params).fetchall()
                conn.commit()
                return rows

    def get(self, key: str) -> JudgeResult | None:
        rows = self._run("SELECT result FROM verdicts WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            return JudgeResult.from_dict(json.loads(rows[0][0]))
        except (ValueError, KeyError, TypeError, JudgeError) as exc:
            self.problems.append(f"judge cache entry {key[:12]} unreadable ({exc}); re-judging")
            return None

    def put(self, key: str, result: JudgeResult) -> None:
        self._run(
            "INSERT OR REPLACE INTO verdicts (key, result, created) VALUES (?, ?, ?)",
            (key, json.dumps(result.to_dict(), sort_keys=True), time.time()),
            write=True,
        )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
