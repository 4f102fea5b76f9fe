"""The flywheel: production failures from the event store become new offline JSONL cases.

One cycle (``llmeval flywheel`` or :func:`run_flywheel`):

1. **Select** failures in a time window (:func:`select_failures`): responses whose latest
   thumb is down, responses followed by a rephrase-retry within ``max_delay_s`` (default 30 s),
   and failures logged explicitly with ``EventStore.log_production_failure``. A response with
   several signals is one candidate; its reason is the most explicit one (logged reason, then
   ``thumbs_down``, then ``rephrase_retry``) and every signal is kept in the provenance.
2. **Sample** reproducibly, stratified by reason (:func:`allocate`): slots in proportion to the
   reasons' sizes by largest remainder, at least one per reason when ``limit`` allows; within
   a reason the order is a shuffle seeded with ``seed``. Slots left by a reason that runs out
   of usable candidates go round-robin to the others.
3. **Deduplicate** against every existing case file (``llmeval_*.jsonl`` under ``--cases``, plus
   the output file) and within the batch: an exact duplicate has the same normalised text
   (:func:`pytest_llmeval.judges.similarity.normalize`); a near duplicate has
   ``min(similarity(a, b), similarity(b, a)) >= threshold`` (default 0.9; both directions,
   because the similarity is recall-weighted and a short text is "contained" in a long one).
4. **Append** valid cases (checked with :func:`pytest_llmeval.core.cases.validate_case_dict`) to the
   output file atomically: the existing bytes are kept exactly, the new lines are appended, the
   whole file is written to a temporary file beside it and moved into place with
   ``os.replace``. Existing lines are never rewritten. Steps 3 and 4 hold an exclusive lock
   (``.<out>.lock`` beside the output file), so two runs at once never append the same case
   twice: the second one sees the first one's lines and skips them as duplicates.

New cases carry tags ``["production_failure", <reason>]``, difficulty ``hard``, and metadata
``{"do_not_train": true, "provenance": {...}}`` (response id, session, time, reason, source,
signals, the production answer). They must never be used as training data: an evaluation set
that leaks into training stops measuring anything. They enter the baseline only through
``pytest --llmeval-update-baseline``, like any new case.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmeval.online.store import EventStore
from pytest_llmeval.online.values import DEFAULT_MAX_DELAY_S, Window, iso

CASE_GLOB = "llmeval_*.jsonl"
DEFAULT_SIMILARITY = 0.9
PRODUCTION_TAG = "production_failure"
# Which signal names a candidate's reason when a response has several (lower wins).
_PRIORITY = {"logged": 0, "thumbs_down": 1, "rephrase_retry": 2}


@dataclass(frozen=True)
class Failure:
    """One production failure that may become a case."""

    key: str
    reason: str
    source: str
    signals: tuple[str, ...]
    question: str | None
    messages: tuple[Mapping[str, str], ...] | None
    response: str | None
    response_id: str | None
    session_id: str | None
    timestamp: float
    variant: str | None = None
    model: str | None = None

    @property
    def text(self) -> str | None:
        """The text compared for duplicates: the question, or every turn of a conversation."""
        if self.messages is not None:
            return "\n".join(m["content"] for m in self.messages)
        return self.question


@dataclass(frozen=True)
class Duplicate:
    """Why a candidate was not added."""

    key: str
    kind: str  # "exact" | "near"
    against: str  # "file:line" of the existing case, or "batch:<key>"
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "kind": self.kind,
            "against": self.against,
            "similarity": self.similarity,
        }


@dataclass(frozen=True)
class FlywheelResult:
    """What a flywheel cycle found and added (or, with ``dry_run``, would add)."""

    out: str
    dry_run: bool
    seed: int
    limit: int
    window: Window
    candidates: int
    by_reason: Mapping[str, int]
    added: tuple[Mapping[str, Any], ...]
    duplicates: tuple[Duplicate, ...]
    skipped_no_question: int
    invalid: tuple[str, ...]
    case_files: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "dry_run": self.dry_run,
            "seed": self.seed,
            "limit": self.limit,
            "window": self.window.to_dict(),
            "candidates": self.candidates,
            "by_reason": dict(self.by_reason),
            "added": [dict(c) for c in self.added],
            "added_by_reason": _count_tags(self.added),
            "duplicates": [d.to_dict() for d in self.duplicates],
            "skipped_no_question": self.skipped_no_question,
            "invalid": list(self.invalid),
            "case_files": list(self.case_files),
        }


def _count_tags(cases: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for case in cases:
        reason = case["metadata"]["provenance"]["reason_tag"]
        out[reason] = out.get(reason, 0) + 1
    return out


def slug(reason: str) -> str:
    """A tag-safe form of a failure reason: lower case, ``[a-z0-9_-]``, at most 64 chars."""
    text = re.sub(r"[^a-z0-9_-]+", "_", reason.strip().lower()).strip("_")[:64]
    return text or "unspecified"


# ---------------------------------------------------------------------------------------------
# 1. selection


def select_failures(
    store: EventStore,
    *,
    since: float | None,
    until: float | None = None,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
) -> list[Failure]:
    """Failures whose signal happened in the last ``since`` seconds before ``until`` (None:
    all time), one per response (logged failures without a response id stand alone), sorted
    by key so the caller's seeded shuffle alone decides the order."""
    win = Window.of(since, until)
    args = {**win.params(), "max_delay": max_delay_s}
    # signal rows: (signal, response_id, time, reason, source, question, messages, response,
    # session_id, failure key)
    signals: list[tuple[str, str | None, float, str, str, Any, Any, Any, Any, str | None]] = []
    thumbs = """
        SELECT e.response_id, e.ts FROM events e
        WHERE e.type = 'thumbs_down' AND e.response_id != '' AND e.ts > :since AND e.ts <= :until
          AND NOT EXISTS (SELECT 1 FROM events u WHERE u.response_id = e.response_id
                          AND u.type = 'thumbs_up' AND u.ts > e.ts AND u.ts <= :until)
    """
    for rid, ts in store.query(thumbs, args):
        signals.append(("thumbs_down", rid, ts, "thumbs_down", "user_feedback", *(None,) * 4, None))
    retries = """
        SELECT e.response_id, e.ts FROM events e JOIN responses r ON r.response_id = e.response_id
        WHERE e.type = 'rephrase_retry' AND e.ts > :since AND e.ts <= :until
          AND (CASE WHEN e.delay_s >= 0 THEN e.delay_s ELSE e.ts - r.ts END) <= :max_delay
    """
    for rid, ts in store.query(retries, args):
        signals.append(
            ("rephrase_retry", rid, ts, "rephrase_retry", "implicit_signal", *(None,) * 4, None)
        )
    logged = """
        SELECT response_id, ts, reason, source, question, messages, response, session_id,
               failure_id
        FROM failures WHERE ts > :since AND ts <= :until
    """
    for rid, ts, reason, source, q, msgs, resp, sid, fid in store.query(logged, args):
        signals.append(("logged", rid, ts, reason, source, q, msgs, resp, sid, fid))

    # Responses referenced by any signal: question, conversation, answer, variant, model.
    ids = sorted({s[1] for s in signals if s[1]})
    info: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in store.query(
            "SELECT response_id, question, messages, response, session_id, variant, model "
            f"FROM responses WHERE response_id IN ({marks})",
            chunk,
        ):
            info[row[0]] = row[1:]

    grouped: dict[str, list[tuple[Any, ...]]] = {}
    for s in signals:
        key = f"response:{s[1]}" if s[1] else f"failure:{s[9]}"
        grouped.setdefault(key, []).append(s)
    out: list[Failure] = []
    for key in sorted(grouped):
        group = sorted(grouped[key], key=lambda s: (_PRIORITY[s[0]], s[2], str(s[3])))
        _kind, rid, ts, reason, source, q, msgs, resp, sid, _fid = group[0]
        stored = info.get(rid) if rid else None
        if q is None and msgs is None and stored is not None:
            q, msgs = stored[0], stored[1]
        if resp is None and stored is not None:
            resp = stored[2]
        if sid is None and stored is not None:
            sid = stored[3]
        messages = tuple(json.loads(msgs)) if msgs else None
        out.append(
            Failure(
                key=key,
                reason=str(reason),
                source=str(source),
                signals=tuple(
                    sorted({g[0] if g[0] != "logged" else f"logged:{g[3]}" for g in group})
                ),
                question=q,
                messages=messages,
                response=resp,
                response_id=rid,
                session_id=sid,
                timestamp=float(ts),
                variant=stored[4] if stored is not None else None,
                model=stored[5] if stored is not None else None,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# 2. stratified allocation


def allocate(sizes: Mapping[str, int], limit: int) -> dict[str, int]:
    """Slots per stratum for a sample of ``limit``.

    Proportional to the strata's sizes by largest remainder (Hamilton's method; ties broken by
    name). When ``limit`` has room for every stratum, a stratum left with no slot takes one
    from the stratum with the most, so rare failure reasons are still represented. Never more
    than a stratum's size; the total is ``min(limit, sum(sizes))``.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    names = sorted(k for k, v in sizes.items() if v > 0)
    total = sum(sizes[k] for k in names)
    if limit >= total:
        return {k: sizes[k] for k in names}
    exact = {k: limit * sizes[k] / total for k in names}
    quota = {k: int(exact[k]) for k in names}
    remaining = limit - sum(quota.values())
    for k in sorted(names, key=lambda k: (-(exact[k] - quota[k]), k))[:remaining]:
        quota[k] += 1
    if limit >= len(names):
        for k in names:
            if quota[k] == 0:
                donor = max(names, key=lambda d: (quota[d], sizes[d], d))
                quota[donor] -= 1
                quota[k] = 1
    return quota


# ---------------------------------------------------------------------------------------------
# 3. duplicates


@dataclass
class _Known:
    """Texts already covered (existing cases, then accepted candidates)."""

    threshold: float
    exact: dict[str, str] = field(default_factory=dict)  # normalised text -> where
    near: list[tuple[str, str, bool]] = field(default_factory=list)  # (text, where, has words)

    def add(self, text: str, where: str) -> None:
        from pytest_llmeval.judges.similarity import content_tokens, normalize

        norm = normalize(text)
        self.exact.setdefault(norm, where)
        self.near.append((text, where, bool(content_tokens(text))))

    def find(self, key: str, text: str) -> Duplicate | None:
        from pytest_llmeval.judges.similarity import content_tokens, normalize, similarity

        norm = normalize(text)
        if norm in self.exact:
            return Duplicate(key, "exact", self.exact[norm])
        if not content_tokens(text):
            return None  # nothing to compare beyond the exact text
        for other, where, has_words in self.near:
            if not has_words:
                continue
            score = min(similarity(other, text), similarity(text, other))
            if score >= self.threshold:
                return Duplicate(key, "near", where, score)
        return None


def case_files(
    cases: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Existing case files: ``cases`` itself when it is a file, else every ``llmeval_*.jsonl``
    below it (hidden folders skipped), plus ``out`` when it exists."""
    root = Path(cases)
    found: list[Path] = []
    if root.is_file():
        found.append(root)
    elif root.is_dir():
        for path in sorted(root.rglob(CASE_GLOB)):
            if not any(part.startswith(".") for part in path.relative_to(root).parts[:-1]):
                found.append(path)
    else:
        raise FileNotFoundError(f"--cases {root}: no such file or folder")
    if (
        out is not None
        and Path(out).is_file()
        and all(os.path.abspath(p) != os.path.abspath(out) for p in found)
    ):
        found.append(Path(out))
    return found


def _case_text(obj: Mapping[str, Any]) -> str | None:
    question = obj.get("question")
    if isinstance(question, str):
        return question
    messages = obj.get("messages")
    if isinstance(messages, list):
        parts = [m.get("content") for m in messages if isinstance(m, dict)]
        return "\n".join(p for p in parts if isinstance(p, str)) or None
    return None


def load_existing(files: Sequence[Path], threshold: float) -> tuple[_Known, set[str]]:
    """Texts and ids of every case line in ``files`` (lines that are not JSON are ignored:
    the case loader reports them; here they can only fail to match)."""
    known = _Known(threshold)
    ids: set[str] = set()
    for path in files:
        data = path.read_bytes()
        for lineno, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            if isinstance(obj.get("id"), str):
                ids.add(obj["id"])
            text = _case_text(obj)
            if text:
                known.add(text, f"{path}:{lineno}")
    return known, ids


# ---------------------------------------------------------------------------------------------
# 4. cases and the atomic append


def case_for(failure: Failure) -> dict[str, Any]:
    """The JSONL case for one failure (not yet validated)."""
    reason_tag = slug(failure.reason)
    case: dict[str, Any] = {"id": "prod-" + hashlib.sha256(failure.key.encode()).hexdigest()[:12]}
    if failure.messages is not None:
        case["messages"] = [{"role": m["role"], "content": m["content"]} for m in failure.messages]
    else:
        case["question"] = failure.question
    case["tags"] = [PRODUCTION_TAG] + ([reason_tag] if reason_tag != PRODUCTION_TAG else [])
    case["difficulty"] = "hard"
    provenance: dict[str, Any] = {
        "reason": failure.reason,
        "reason_tag": reason_tag,
        "source": failure.source,
        "signals": list(failure.signals),
        "response_id": failure.response_id,
        "session_id": failure.session_id,
        "timestamp": iso(failure.timestamp),
        "variant": failure.variant,
        "model": failure.model,
        "production_response": failure.response,
    }
    case["metadata"] = {
        "do_not_train": True,
        "provenance": {k: v for k, v in provenance.items() if v is not None},
    }
    return case


def append_lines_atomically(path: str | os.PathLike[str], lines: Sequence[str]) -> None:
    """Append ``lines`` to ``path`` without ever exposing a partial file.

    The existing bytes are copied unchanged (a missing final newline gets one before the new
    lines), the result is written and fsynced in a temporary file in the same folder and moved
    over ``path`` with ``os.replace``. If the file changed while we wrote, we start again, so a
    concurrent appender's lines are not lost.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(line + "\n" for line in lines).encode("utf-8")
    for _attempt in range(5):
        try:
            before = target.stat()
            existing = target.read_bytes()
        except FileNotFoundError:
            before, existing = None, b""
        separator = b"\n" if existing and not existing.endswith(b"\n") else b""
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(existing + separator + payload)
                handle.flush()
                os.fsync(handle.fileno())
            # mkstemp creates 0600; a new case file gets the mode any new file would get
            os.chmod(tmp, stat.S_IMODE(before.st_mode) if before is not None else _new_file_mode())
            try:
                now = target.stat()
            except FileNotFoundError:
                now = None
            unchanged = (before is None and now is None) or (
                before is not None
                and now is not None
                and (now.st_size, now.st_mtime_ns, now.st_ino)
                == (before.st_size, before.st_mtime_ns, before.st_ino)
            )
            if not unchanged:
                os.unlink(tmp)
                continue
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        _fsync_dir(target.parent)
        return
    raise OSError(f"{target} kept changing while appending; try again")


def _new_file_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def locked(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>.lock`` beside ``path`` (blocks until free).

    The lock file stays (removing it would let a third process lock a new file while the
    second still holds the old one). Where ``fcntl`` is missing (Windows) nothing is locked.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - not possible on every platform
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# the cycle


def run_flywheel(
    store: EventStore,
    *,
    out: str | os.PathLike[str],
    cases: str | os.PathLike[str] = ".",
    since: float | None = 7 * 24 * 3600.0,
    until: float | None = None,
    limit: int = 50,
    seed: int = 0,
    similarity_threshold: float = DEFAULT_SIMILARITY,
    max_delay_s: float = DEFAULT_MAX_DELAY_S,
    dry_run: bool = False,
) -> FlywheelResult:
    """Select, sample, deduplicate and append production failures as cases (see module doc).

    Deterministic for a given store, window, ``seed`` and set of case files.
    """

    if not 0.0 < similarity_threshold <= 1.0:
        raise ValueError(f"similarity threshold must be in (0, 1], got {similarity_threshold}")
    win = Window.of(since, until)
    failures = select_failures(store, since=since, until=win.until, max_delay_s=max_delay_s)
    usable = [f for f in failures if f.text and f.text.strip()]
    skipped_no_question = len(failures) - len(usable)
    with nullcontext() if dry_run else locked(out):
        files = case_files(cases, out)
        known, ids = load_existing(files, similarity_threshold)
        added, duplicates, invalid = _pick(usable, known, ids, limit, seed, out)
        if added and not dry_run:
            append_lines_atomically(out, [json.dumps(c, ensure_ascii=False) for c in added])
    return FlywheelResult(
        out=os.fspath(out),
        dry_run=dry_run,
        seed=seed,
        limit=limit,
        window=win,
        candidates=len(failures),
        by_reason=_by_reason(usable),
        added=tuple(added),
        duplicates=tuple(duplicates),
        skipped_no_question=skipped_no_question,
        invalid=tuple(invalid),
        case_files=tuple(str(p) for p in files),
    )


def _by_reason(usable: Sequence[Failure]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for failure in usable:
        counts[slug(failure.reason)] = counts.get(slug(failure.reason), 0) + 1
    return dict(sorted(counts.items()))


def _pick(
    usable: Sequence[Failure],
    known: _Known,
    ids: set[str],
    limit: int,
    seed: int,
    out: str | os.PathLike[str],
) -> tuple[list[dict[str, Any]], list[Duplicate], list[str]]:
    """Sample, deduplicate and validate: (cases to add, duplicates, invalid candidates)."""
    from pytest_llmeval.core.cases import validate_case_dict
    from pytest_llmeval.errors import CaseError

    rng = random.Random(seed)
    pools: dict[str, list[Failure]] = {}
    for failure in usable:  # already sorted by key
        pools.setdefault(slug(failure.reason), []).append(failure)
    for reason in sorted(pools):
        rng.shuffle(pools[reason])
    by_reason = {reason: len(pool) for reason, pool in sorted(pools.items())}
    quota = allocate(by_reason, limit)

    added: list[dict[str, Any]] = []
    duplicates: list[Duplicate] = []
    invalid: list[str] = []
    cursor = dict.fromkeys(pools, 0)

    def take(reason: str) -> bool:
        """Accept the next usable candidate of ``reason``; False when the pool is exhausted."""
        pool = pools[reason]
        while cursor[reason] < len(pool):
            failure = pool[cursor[reason]]
            cursor[reason] += 1
            text = failure.text or ""
            dup = known.find(failure.key, text)
            if dup is not None:
                duplicates.append(dup)
                continue
            case = case_for(failure)
            if case["id"] in ids:
                duplicates.append(Duplicate(failure.key, "exact", f"id:{case['id']}"))
                continue
            try:
                validate_case_dict(case, path=str(out), line=0)
            except CaseError as exc:
                invalid.append(f"{failure.key}: {exc.message}")
                continue
            added.append(case)
            ids.add(case["id"])
            known.add(text, f"batch:{failure.key}")
            return True
        return False

    for reason in sorted(pools):
        for _ in range(quota.get(reason, 0)):
            if not take(reason):
                break
    # Slots a stratum could not fill go round-robin to the strata that still have candidates.
    open_reasons = [r for r in sorted(pools) if cursor[r] < len(pools[r])]
    while len(added) < limit and open_reasons:
        for reason in list(open_reasons):
            if len(added) >= limit:
                break
            if not take(reason):
                open_reasons.remove(reason)

    return added, duplicates, invalid
