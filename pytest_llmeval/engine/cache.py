"""The judge cache: SQLite in WAL mode, safe for several pytest-xdist workers.

It stores judge results under a key that covers everything that can change a verdict (see
:func:`cache_key`). It never judges. A corrupt or unreadable file is moved aside, reported and
rebuilt: the run goes on with an empty cache, never with a stale verdict.

The key needs the SUT's answer, so each row also carries a *prekey*: the same hash without the
response (:class:`KeyParts`). The runner reads the rows of many upcoming cases by prekey in one
query before their SUT answers, then matches each answer's full key in memory; it learns early
which cases are probably cached (no run-ahead, no SDK for them) and which will need the judge.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_llmeval.core.cases import Case
from pytest_llmeval.core.secrets import scrub
from pytest_llmeval.core.verdict import JudgeIdentity, JudgeResult
from pytest_llmeval.engine.store import ensure_state_dir
from pytest_llmeval.errors import JudgeError

SCHEMA_VERSION = 2  # 2: the prekey column and its index (version 1 files are upgraded)
BUSY_WAIT_S = 30.0
READ_CHUNK = 500  # prekeys per SELECT, below SQLite's oldest limit of 999 parameters
_SEPARATORS = (",", ":")


def _is_busy(exc: sqlite3.Error) -> bool:
    """A lock held by another process (SQLITE_BUSY/SQLITE_LOCKED), not a damaged file."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if isinstance(code, int):
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (extended codes too)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class KeyParts:
    """The cache key of one (judge, case, sample) before the response is known.

    ``head + json(response) + tail`` is exactly the JSON that :func:`cache_key` hashes (sorted
    keys: case, judge, response, sample), so :meth:`key` gives the same key without
    re-encoding the case. ``prekey`` hashes the same JSON without the response.
    """

    prekey: str
    head: str
    tail: str

    def key(self, response: str) -> str:
        return _sha256(self.head + json.dumps(response, ensure_ascii=False) + self.tail)


@functools.lru_cache(maxsize=64)
def _judge_json(judge: JudgeIdentity) -> str:
    return json.dumps(
        [judge.name, judge.model, judge.prompt_version, judge.version, judge.source_hash],
        ensure_ascii=False,
        separators=_SEPARATORS,
    )


def key_parts(judge: JudgeIdentity, case: Case, sample: int = 0) -> KeyParts:
    """The :class:`KeyParts` of ``case`` judged by ``judge`` (sample index ``sample``)."""
    judge_json = _judge_json(judge)
    case_json = json.dumps(
        case.content_key(), sort_keys=True, ensure_ascii=False, separators=_SEPARATORS
    )
    head = f'{{"case":{case_json},"judge":{judge_json},"response":'
    tail = f',"sample":{int(sample)}}}'
    return KeyParts(_sha256("prekey-1" + head + tail), head, tail)


def cache_key(judge: JudgeIdentity, case: Case, response: str, sample: int = 0) -> str:
    """sha256 over judge identity (with source hash), case content, response and sample index."""
    return key_parts(judge, case, sample).key(response)


class JudgeCache:
    """A key -> JudgeResult store. ``problems`` collects what went wrong (for the summary)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        #: the file holds rows without a prekey: a prekey miss is not proof of a miss
        self.legacy = False
        self._adopted: list[tuple[str, str]] = []

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
            if version not in (0, 1, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"unknown cache schema version {version}")
            if version != SCHEMA_VERSION:
                self._migrate(conn)
            # rows written before prekeys (version 1) are found by their full key only
            self.legacy = (
                conn.execute("SELECT 1 FROM verdicts WHERE prekey IS NULL LIMIT 1").fetchone()
                is not None
            )
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        """Create the table (or add the prekey to a version 1 table) under the write lock, so
        two workers opening the same old file cannot both add the column."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS verdicts ("
                " key TEXT PRIMARY KEY, result TEXT NOT NULL, created REAL NOT NULL,"
                " prekey TEXT)"
            )
            columns = {row[1] for row in conn.execute("PRAGMA table_info(verdicts)")}
            if "prekey" not in columns:
                conn.execute("ALTER TABLE verdicts ADD COLUMN prekey TEXT")
            conn.execute("CREATE INDEX IF NOT EXISTS verdicts_prekey ON verdicts (prekey)")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

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
                if write:
                    conn.commit()
                return rows

    def get(self, key: str) -> JudgeResult | None:
        rows = self._run("SELECT result FROM verdicts WHERE key = ?", (key,))
        return self.decode(key, rows[0][0]) if rows else None

    def rows_for(self, prekeys: Iterable[str]) -> dict[str, dict[str, str]]:
        """Every row whose prekey is in ``prekeys``: ``{prekey: {key: stored result}}``
        (undecoded, see :meth:`decode`). One SELECT per :data:`READ_CHUNK` prekeys and no
        commit: a read."""
        wanted = list(dict.fromkeys(prekeys))
        found: dict[str, dict[str, str]] = {}
        for start in range(0, len(wanted), READ_CHUNK):
            chunk = wanted[start : start + READ_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT prekey, key, result FROM verdicts WHERE prekey IN ({marks})"
            for prekey, key, stored in self._run(sql, tuple(chunk)):
                found.setdefault(prekey, {})[key] = stored
        return found

    def decode(self, key: str, stored: str) -> JudgeResult | None:
        """A stored result, or None (and a problem noted) if it no longer reads as one."""
        try:
            return JudgeResult.from_dict(json.loads(stored))
        except (ValueError, KeyError, TypeError, JudgeError) as exc:
            self.problems.append(f"judge cache entry {key[:12]} unreadable ({exc}); re-judging")
            return None

    def put(self, key: str, result: JudgeResult, prekey: str | None = None) -> None:
        self._run(
            "INSERT OR REPLACE INTO verdicts (key, result, created, prekey) VALUES (?, ?, ?, ?)",
            # a verdict's texts (a custom judge's reasoning may quote the answer) never carry a key
            (key, scrub(json.dumps(result.to_dict(), sort_keys=True)), time.time(), prekey),
            write=True,
        )

    def adopt(self, key: str, prekey: str) -> None:
        """A row from before prekeys was hit: give it its prekey (written in batches), so the
        next run finds it in the batched read."""
        self._adopted.append((prekey, key))
        if len(self._adopted) >= READ_CHUNK:
            self.flush()

    def flush(self) -> None:
        """Write the prekeys of adopted rows, in one transaction."""
        with self._lock:
            rows, self._adopted = self._adopted, []
            if not rows or self._conn is None:
                return
            try:
                self._conn.executemany(
                    "UPDATE verdicts SET prekey = ? WHERE key = ? AND prekey IS NULL", rows
                )
                self._conn.commit()
            except sqlite3.DatabaseError as exc:  # best effort: the rows still hit by key
                with contextlib.suppress(sqlite3.DatabaseError):
                    self._conn.rollback()
                self.problems.append(f"judge cache {self.path}: prekeys not written ({exc})")

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
