"""The committed state: the baseline snapshot and the pass-rate history. Never decides.

Reading validates both files against the JSON Schemas shipped in ``pytest_llmeval/schemas``
(``baseline.schema.json``, ``history.schema.json``) plus the few rules a schema cannot say, and
every problem is a :class:`StateFileError` naming the file, the line and the field. Reading
never writes.

Writing is atomic (a temp file in the same folder, then ``os.replace``), so a killed process
leaves either the old or the new file, never half of one, and happens under an exclusive lock
(``fcntl.flock`` on ``<file>.lock`` beside it), so two runs ending at once cannot lose each
other's update:

* the history is append-only: under the lock, the current bytes are read and written back
  unchanged plus one line. ``O_APPEND`` of one line would be cheaper, but a short write (a full
  disk, a kill) would leave half a line that breaks every later read, and repairing a missing
  final newline before appending would itself be a read-then-write race; the file is small;
* the baseline is read at the start of a run and written at its end, so :func:`save_baseline`
  takes ``expected_sha256`` (the digest of the bytes that were read, see
  :func:`load_baseline_with_sha256`) and refuses, under the lock, to replace a file that
  changed meanwhile.

The state folder gets a ``.gitignore`` for what must not be committed (the judge cache, lock and
temp files), as pytest does for ``.pytest_cache``: see :func:`ensure_state_dir`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pytest_llmeval.core.baseline import BASELINE_VERSION, Baseline, BaselineEntry
from pytest_llmeval.core.jsontext import structure_problem
from pytest_llmeval.core.verdict import JudgeIdentity
from pytest_llmeval.errors import StateFileError

__all__ = [
    "GITIGNORE",
    "UNCHECKED",
    "Baseline",
    "BaselineEntry",
    "StateFileError",
    "append_history",
    "atomic_write",
    "dump_baseline",
    "ensure_state_dir",
    "file_sha256",
    "git_commit",
    "load_baseline",
    "load_baseline_with_sha256",
    "load_history",
    "save_baseline",
]

RECOVER = "fix the file or restore it from version control (git checkout -- <file>)"
# state files nest four levels; anything much deeper is damage (and would overflow the stack)
MAX_DEPTH = 32
GITIGNORE = (
    "# Created by pytest-llmeval automatically. Commit baseline.json and history.jsonl;\n"
    "# the judge cache, lock files and temp files stay local.\n"
    "cache.sqlite3*\n"
    "*.lock\n"
    ".*.tmp\n"
)
_SCHEMAS = Path(__file__).parent.parent / "schemas"


class _Unchecked(enum.Enum):
    TOKEN = 0


UNCHECKED: Literal[_Unchecked.TOKEN] = _Unchecked.TOKEN
"""``save_baseline(..., expected_sha256=UNCHECKED)``: replace whatever is there (tests, tools)."""


# -- folder, locks, atomic writes -------------------------------------------------------------


def ensure_state_dir(path: Path) -> None:
    """Create the state folder ``path`` if needed, and its ``.gitignore`` if it has none.

    A ``.gitignore`` that exists (the user's own, or a symlink) is never touched. The new one
    appears whole or not at all (hard-linked from a complete temp file, which never replaces
    an existing name).
    """
    path.mkdir(parents=True, exist_ok=True)
    target = path / ".gitignore"
    if os.path.lexists(target):
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gitignore.", suffix=".tmp", dir=path)
    except OSError:  # a read-only folder: the write that follows will say so
        return
    try:
        os.chmod(tmp, _new_file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(GITIGNORE.encode("utf-8"))
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass  # another process (or the user) was first
        except OSError:  # no hard links on this file system
            try:
                with open(target, "xb") as out:
                    out.write(GITIGNORE.encode("utf-8"))
            except OSError:
                pass
    finally:
        Path(tmp).unlink(missing_ok=True)


def _new_file_mode() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<target>.lock`` (blocks until it is free).

    The lock file stays: removing it would let a third process lock a new file while a second
    still holds the old one. Without ``fcntl`` (Windows) nothing is locked.
    """
    fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
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


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode it had, or the usual umask-based one
        try:
            mode = os.stat(path).st_mode & 0o777
        except FileNotFoundError:
            mode = _new_file_mode()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when it does not exist."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


# -- parsing and validation -------------------------------------------------------------------


class _BadNumber:
    """What the parser returns for NaN, Infinity and integers too long to convert."""

    made = 0  # how many were ever made: a parse that made none holds none

    def __init__(self, text: str) -> None:
        self.text = text
        _BadNumber.made += 1


def _parse_int(text: str) -> int | _BadNumber:
    return int(text) if len(text) <= 30 else _BadNumber(text)


# a baseline's scores and thresholds are mostly a few values (1.0, 0.0, 0.7): one float each
_FLOATS: dict[str, float] = {}


def _parse_float(text: str) -> float | _BadNumber:
    value = _FLOATS.get(text)
    if value is not None:
        return value
    value = float(text)
    if not math.isfinite(value):
        return _BadNumber(text)
    if len(_FLOATS) < 256:
        _FLOATS[text] = value
    return value


def _loads(text: str) -> Any:
    """``json.loads`` that turns NaN, +-Infinity and huge numbers into :class:`_BadNumber`
    (found with their field by :func:`_structure_problem`) instead of accepting or crashing."""
    return json.loads(
        text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_BadNumber
    )


def _bad_number(value: Any) -> str | None:
    if isinstance(value, _BadNumber):
        shown = value.text if len(value.text) <= 20 else value.text[:12] + "..."
        return f"{shown} is not a usable JSON number (NaN, infinite or too large)"
    return None


# In text decoded as strict UTF-8 a lone surrogate can only come from a \\u escape of one
# (a match, e.g. half of an escaped emoji's pair, only means the full walk runs).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _structure_problem(
    value: Any, text: str | None = None, bad_numbers_before: int | None = None
) -> tuple[list[Any], str] | None:
    """The first bad number, lone surrogate or too-deep nesting in ``value``.

    A fast path for ``value`` just parsed from the strict UTF-8 ``text`` by :func:`_loads`,
    with ``bad_numbers_before`` the :attr:`_BadNumber.made` count before that parse: when no
    bad number was made since and ``text`` escapes no surrogate, only the nesting is checked
    (containers only)."""
    if (
        text is not None
        and bad_numbers_before == _BadNumber.made
        and _SURROGATE_ESCAPE.search(text) is None
        and _nesting_within(value, MAX_DEPTH)
    ):
        return None
    return structure_problem(value, max_depth=MAX_DEPTH, other=_bad_number)


def _nesting_within(value: Any, max_depth: int) -> bool:
    """No array or object in ``value`` deeper than ``max_depth`` (as structure_problem counts)."""
    stack = [(value, 1)] if type(value) in (dict, list) else []
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            return False
        for item in node.values() if type(node) is dict else node:
            if type(item) in (dict, list):
                stack.append((item, depth + 1))
    return True


@lru_cache(maxsize=2)
def _validator(name: str) -> Any:
    from jsonschema import Draft202012Validator

    with open(_SCHEMAS / f"{name}.schema.json", encoding="utf-8") as fh:
        schema = json.load(fh)
    return Draft202012Validator(schema)


_KINDS = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return _short(value)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if not text.isprintable():  # control, unassigned or format characters: show them escaped
        text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


_MAX_COUNT = 2**53 - 1


def _count(value: Any, low: int = 0) -> bool:
    return type(value) is int and low <= value <= _MAX_COUNT


def _number(value: Any, low: float = 0.0, high: float = 1.0) -> bool:
    return type(value) in (int, float) and low <= value <= high


def _strings(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value)


def _fast_judge(judge: Any) -> bool:
    if judge is None:
        return True
    return (
        type(judge) is dict
        and type(judge.get("name")) is str
        and judge["name"] != ""
        and all(
            judge.get(k) is None or type(judge[k]) is str
            for k in ("model", "prompt_version", "version")
        )
    )


def _fast_entry(raw: Any) -> bool:
    return (
        type(raw) is dict
        and raw.get("verdict") in ("pass", "fail")
        and type(raw["verdict"]) is str
        and _number(raw.get("score"))
        and ("response_sha256" not in raw or type(raw["response_sha256"]) is str)
        and ("threshold" not in raw or _number(raw["threshold"]))
        and ("passes" not in raw or _count(raw["passes"]))
        and ("samples" not in raw or _count(raw["samples"], 1))
        and ("response" not in raw or type(raw["response"]) is str)
    )


def _fast_baseline(obj: Any) -> bool:
    """True only for baselines that certainly satisfy ``baseline.schema.json`` (a speed path:
    jsonschema takes ~0.1 ms an entry; anything unusual goes through it).
    ``tests/engine/test_state_files_property.py`` checks it never accepts an invalid file."""
    if type(obj) is not dict or type(obj.get("version")) is not int or obj["version"] != 1:
        return False
    if not _fast_judge(obj.get("judge")) or type(obj.get("cases")) is not dict:
        return False
    if "default_threshold" in obj and not _number(obj["default_threshold"]):
        return False
    return all(key != "" and _fast_entry(raw) for key, raw in obj["cases"].items())


_AGREEMENT_NUMBERS = ("accuracy", "kappa", "kappa_low", "kappa_high", "tpr", "tnr")


def _fast_agreement(raw: Any) -> bool:
    return (
        type(raw) is dict
        and all(_count(raw.get(k)) for k in ("tp", "fp", "fn", "tn"))
        and ("n" not in raw or _count(raw["n"]))
        and all(
            raw.get(k) is None or _number(raw[k], -math.inf, math.inf) for k in _AGREEMENT_NUMBERS
        )
        and ("confidence" not in raw or (_number(raw["confidence"]) and 0 < raw["confidence"] < 1))
        and ("method" not in raw or type(raw["method"]) is str)
    )


def _fast_history(obj: Any) -> bool:
    """True only for lines that certainly satisfy ``history.schema.json`` (a speed path)."""
    if type(obj) is not dict:
        return False
    get = obj.get
    return (
        _count(get("total"))
        and _count(get("passed"))
        and _number(get("pass_rate"))
        and ("timestamp" not in obj or type(obj["timestamp"]) is str)
        and (get("commit") is None or type(obj["commit"]) is str)
        and ("errors" not in obj or _count(obj["errors"]))
        and (get("mean_score") is None or _number(obj["mean_score"]))
        and ("judge" not in obj or _fast_judge(obj["judge"]))
        and ("failed" not in obj or _strings(obj["failed"]))
        and ("keys_sha256" not in obj or type(obj["keys_sha256"]) is str)
        and ("errored" not in obj or _strings(obj["errored"]))
        and ("samples" not in obj or _count(obj["samples"], 1))
        and (
            "sample_passes" not in obj
            or (
                type(obj["sample_passes"]) is dict
                and all(
                    type(pair) is list and len(pair) == 2 and _count(pair[0]) and _count(pair[1], 1)
                    for pair in obj["sample_passes"].values()
                )
            )
        )
        and ("agreement" not in obj or _fast_agreement(obj["agreement"]))
    )


_FAST = {"baseline": _fast_baseline, "history": _fast_history}


def _schema_problem(name: str, obj: Any) -> tuple[list[Any], str] | None:
    """The clearest schema error of ``obj``: (field path, message), or None when valid."""
    if _FAST[name](obj):
        return None  # no jsonschema import for a file the fast path accepts (~0.1 s)
    from jsonschema.exceptions import best_match

    validator = _validator(name)
    if validator.is_valid(obj):
        return None
    error = best_match(validator.iter_errors(obj))
    if error is None:  # pragma: no cover - is_valid said there is one
        return None
    parts = list(error.absolute_path)
    kind = error.validator
    value = error.instance
    if kind == "required":
        missing = [p for p in error.validator_value if p not in value]
        return [*parts, missing[0]], "is missing"
    if kind == "type":
        raw: Any = error.validator_value
        types: list[str] = raw if isinstance(raw, list) else [raw]
        wanted = " or ".join(_KINDS.get(t, t) for t in types)
        return parts, f"must be {wanted}, got {_kind(value)}"
    if kind in ("enum", "const"):
        allowed = error.validator_value if kind == "enum" else [error.validator_value]
        return parts, f"must be {' or '.join(map(_short, allowed))}, got {_kind(value)}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">"}.get(kind, "<")
        return parts, f"must be {word} {error.validator_value}, got {_short(value)}"
    if kind in ("minItems", "maxItems"):
        return parts, f"must be a pair [passes, samples], got {_short(value)}"
    if kind == "minLength":
        return parts, "must not be empty"
    message = error.message
    return parts, message if len(message) <= 120 else message[:117] + "..."


def _shown_key(key: Any) -> str:
    """A key as a message shows it: quoted, escaped when it holds unprintable characters."""
    text = str(key)
    return f"'{text}'" if text.isprintable() and "'" not in text else json.dumps(text)


def _dotted(parts: Sequence[Any]) -> str:
    """``a.b[0].c``; a deep path is cut after a few steps."""
    out = ""
    for i, part in enumerate(parts):
        if i == 6:
            return out + "..."
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = str(part) if str(part).isprintable() else json.dumps(str(part))
        out += f".{text}" if out else text
    return out


def _where(parts: Sequence[Any]) -> str:
    """`` case 'f::a': field 'score'`` / `` field 'judge'`` / ``""`` for a message."""
    if len(parts) >= 2 and parts[0] == "cases":
        where = f" case {_shown_key(parts[1])}:"
        return where + (f" field '{_dotted(parts[2:])}'" if len(parts) > 2 else "")
    return f" field '{_dotted(parts)}'" if parts else ""


class _Problem(Exception):
    """A file's content is invalid: ``text`` is ``file:line: what`` (without advice)."""

    def __init__(self, text: str, advice: str = RECOVER) -> None:
        super().__init__(text)
        self.text = text
        self.advice = advice

    def error(self) -> StateFileError:
        return StateFileError(f"{self.text}; {self.advice}")


# -- baseline ---------------------------------------------------------------------------------

_KEY_LINE = re.compile(r'^(\s*)("(?:[^"\\]|\\.)*")\s*:')


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Where each object key starts a line: ``(key path) -> line``, for pretty-printed JSON
    (the baseline is written one case per line; hand-edited files are usually indented).

    A heuristic used only to place an error: keys deeper in the indentation belong to the key
    above them. A raw newline cannot occur inside a JSON string, so every line starts outside
    one and a line starting with ``"...":`` starts with a key.
    """
    out: dict[tuple[str, ...], int] = {}
    stack: list[tuple[int, str]] = []
    for lineno, line in enumerate(text.split("\n"), start=1):
        found = _KEY_LINE.match(line)
        if found is None:
            continue
        try:
            key = json.loads(found.group(2))
        except ValueError:
            continue
        indent = len(found.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        out.setdefault(tuple(k for _, k in stack), lineno)
    return out


def _line_of(text: str, parts: Sequence[Any]) -> int:
    """The line of the deepest key on the way to ``parts`` that starts a line (else 1)."""
    lines = _key_lines(text)
    keys = tuple(str(p) for p in parts if not isinstance(p, int))
    for n in range(len(keys), 0, -1):
        if keys[:n] in lines:
            return lines[keys[:n]]
    return 1


def _path_at(text: str, line: int) -> tuple[str, ...]:
    """The key path of the last key starting a line at or before ``line``."""
    best: tuple[str, ...] = ()
    best_line = 0
    for parts, at in _key_lines(text).items():
        if best_line < at <= line:
            best, best_line = parts, at
    return best


def _nesting_line(text: str) -> int:
    """The line where brackets first nest deeper than :data:`MAX_DEPTH` (outside strings)."""
    depth, lineno, in_string, escaped = 0, 1, False, False
    for char in text:
        if char == "\n":
            lineno += 1
        elif in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return lineno
        elif char in "]}":
            depth -= 1
    return 1


def _parse_baseline(path: Path, data: bytes) -> Baseline:
    """The baseline in ``data``, or :class:`_Problem` naming ``path``, the line, the field."""
    return _parse_baseline_text(path, _baseline_text(path, data))


def _baseline_text(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        bad = data[exc.start : exc.start + 1]
        raise _Problem(
            f"{path}:{line}: not UTF-8 text (byte {bad!r} at offset {exc.start})"
        ) from None


def _parse_baseline_text(path: Path, text: str) -> Baseline:
    try:
        bad_before = _BadNumber.made
        obj = _loads(text)
    except json.JSONDecodeError as exc:
        raise _Problem(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        line = _nesting_line(text)
        where = _where(_path_at(text, line))
        sep = ":" if where.endswith("'") else ""
        raise _Problem(
            f"{path}:{line}:{where}{sep} nested deeper than {MAX_DEPTH} levels"
        ) from None
    if not isinstance(obj, dict) or not isinstance(obj.get("cases"), dict):
        raise _Problem(f"{path}:1: not a pytest-llmeval baseline (no 'cases' object)")
    version = obj.get("version", BASELINE_VERSION)
    if version != BASELINE_VERSION and isinstance(version, (int, float, str)):
        raise _Problem(
            f"{path}:{_line_of(text, ['version'])}: baseline version {version!r} is not"
            f" supported (this pytest-llmeval reads version {BASELINE_VERSION})",
            "upgrade pytest-llmeval-gate, or restore the file from version control",
        )
    problem = (
        _structure_problem(obj, text, bad_before)
        or _schema_problem("baseline", obj)
        or _entry_rules(obj["cases"])
    )
    if problem is not None:
        parts, message = problem
        where = _where(parts)
        sep = ":" if where.endswith("'") and message != "is missing" else ""
        raise _Problem(f"{path}:{_line_of(text, parts)}:{where}{sep} {message}")
    judge = JudgeIdentity.from_dict(obj["judge"]) if obj.get("judge") else None
    # each raw entry is dropped once it is read: the parsed file and all the entries are never
    # in memory at once (a run's peak memory)
    raw_cases = obj.pop("cases")
    entries = {key: BaselineEntry.from_dict(raw_cases.pop(key)) for key in list(raw_cases)}
    return Baseline(judge=judge, entries=entries)


def _entry_rules(cases: Mapping[str, Any]) -> tuple[list[Any], str] | None:
    """What the schema cannot say about an entry: passes <= samples."""
    for key, raw in cases.items():
        samples = raw.get("samples", 1)
        passes = raw.get("passes", 1 if raw["verdict"] == "pass" else 0)
        if passes > samples:
            return ["cases", key, "passes"], f"{passes} passes out of {samples} samples"
    return None


def load_baseline_with_sha256(path: Path) -> tuple[Baseline | None, str | None]:
    """The baseline at ``path`` and the sha256 of the bytes it was read from ((None, None)
    when there is none). Pass the digest to :func:`save_baseline` as ``expected_sha256``.

    An invalid file is a StateFileError naming the file, the line and the field."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise StateFileError(f"{path}:1: unreadable ({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = _baseline_text(path, data)
        del data  # the bytes go before the parse: the file is not held twice while it runs
        return _parse_baseline_text(path, text), digest
    except _Problem as problem:
        raise problem.error() from None


def load_baseline(path: Path) -> Baseline | None:
    """The baseline at ``path``, or None when there is none (see
    :func:`load_baseline_with_sha256`)."""
    return load_baseline_with_sha256(path)[0]


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


def save_baseline(
    path: Path,
    baseline: Baseline,
    default_threshold: float,
    *,
    expected_sha256: str | Literal[_Unchecked.TOKEN] | None = UNCHECKED,
) -> None:
    """Write the baseline atomically, under the lock, creating the state folder.

    ``expected_sha256`` is the digest of the file this run read (None: there was no file);
    when the file's bytes are no longer those, nothing is written and StateFileError says so
    (another run or an edit saved it meanwhile). A baseline that would not load back is never
    written.
    """
    try:
        data = dump_baseline(baseline, default_threshold)
        _parse_baseline(path, data)
    except _Problem as problem:
        raise StateFileError(f"not written, the new baseline is invalid: {problem.text}") from None
    except (UnicodeEncodeError, ValueError) as exc:
        raise StateFileError(f"{path}: not written, the new baseline is invalid: {exc}") from None
    ensure_state_dir(path.parent)
    with _locked(path):
        if expected_sha256 is not UNCHECKED:
            current = file_sha256(path)
            if current != expected_sha256:
                then = "absent" if expected_sha256 is None else f"sha256 {expected_sha256[:12]}"
                now = "absent" if current is None else f"sha256 {current[:12]}"
                raise StateFileError(
                    f"{path}: not written: the file changed since this run read it ({then}"
                    f" then, {now} now): another run or an edit saved it meanwhile, and"
                    " nothing was overwritten; re-run to update it from its new content"
                )
        atomic_write(path, data)


# -- history ----------------------------------------------------------------------------------


def _history_problem(where: str, record: Any) -> _Problem | None:
    """What is wrong with one history line (``where`` is ``file:line``), or None."""
    if not isinstance(record, dict):
        return _Problem(f"{where}: expected a JSON object, got {_kind(record)}")
    problem = _structure_problem(record) or _schema_problem("history", record)
    if problem is None and record["passed"] > record["total"]:
        problem = ["passed"], f"{record['passed']} passed out of a total of {record['total']}"
    if problem is None:
        for key, pair in (record.get("sample_passes") or {}).items():
            if pair[0] > pair[1]:
                problem = ["sample_passes", key], f"{pair[0]} passes out of {pair[1]} samples"
                break
    if problem is None:
        return None
    parts, message = problem
    if not parts:
        return _Problem(f"{where}: {message}")
    sep = " " if message == "is missing" else ": "
    return _Problem(f"{where}: field '{_dotted(parts)}'{sep}{message}")


def load_history(path: Path) -> list[dict[str, Any]]:
    """History lines, oldest first. A bad line is a StateFileError naming file, line, field."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateFileError(f"{path}:1: unreadable ({exc})") from None
    out: list[dict[str, Any]] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = _loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1]
            problem = _Problem(
                f"{where}: not a JSON line (not UTF-8: byte {bad!r} at column {exc.start + 1})"
            )
        except json.JSONDecodeError as exc:
            problem = _Problem(f"{where}: not a JSON line ({exc})")
        except RecursionError:
            problem = _Problem(f"{where}: nested deeper than {MAX_DEPTH} levels")
        else:
            found = _history_problem(where, record)
            if found is None:
                out.append(record)
                continue
            problem = found
        raise problem.error()
    return out


def append_history(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line, keeping every existing byte and the file's mode.

    Under the lock, the current bytes plus the new line replace the file atomically (see the
    module's docstring for why not ``O_APPEND``). A line that would not load back is never
    written.
    """
    record = dict(record)
    try:
        line = json.dumps(record, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
        encoded = line.encode("utf-8")
        problem = _history_problem(str(path), json.loads(line))
    except (TypeError, ValueError) as exc:
        raise StateFileError(f"{path}: not written, the history line is invalid: {exc}") from None
    if problem is not None:
        raise StateFileError(f"not written, the history line is invalid: {problem.text}")
    ensure_state_dir(path.parent)
    with _locked(path):
        try:
            existing = path.read_bytes()
        except FileNotFoundError:
            existing = b""
        if existing and not existing.endswith(b"\n"):
            existing += b"\n"
        atomic_write(path, existing + encoded)


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
