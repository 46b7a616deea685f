"""Atomic writes and fingerprints: a crash never leaves a file that looks finished, and
every artifact records a hash of its inputs and config."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import re
import secrets
import shutil
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `final` (file or directory) and rename it into place
    only if the block completes. Leftovers of a killed run start with `.tmp-`. The name is
    unique to the writer (pid and a random part: runs in containers share pids), so two runs
    writing the same file at once each rename a whole file."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{os.getpid()}{secrets.token_hex(4)}-{final.name}"
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            _remove(final)
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def portable_path(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """How a pointer file records `path`: relative to the storage `root` (POSIX separators)
    when it lies under it, so that the storage can be mounted elsewhere; absolute otherwise
    (no root, or a path outside it)."""
    path = Path(path).resolve()
    if root is not None and path.is_relative_to(Path(root).resolve()):
        return path.relative_to(Path(root).resolve()).as_posix()
    return str(path)


def resolve_path(ref: str, root: str | os.PathLike) -> Path:
    """The path a pointer file's `ref` names: a relative ref lies under the storage `root`;
    an absolute one (outside the root, or a file written before refs were relative) is read
    as written."""
    ref_path = Path(ref)
    return ref_path if ref_path.is_absolute() else Path(root).resolve() / ref_path


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file the project wrote (a manifest, a pointer file); one that does not parse
    fails naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (materialize the asset that writes it first)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:line {e.lineno}: not valid JSON ({e.msg})") from e


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A short, stable hash of JSON-serializable parts (configs, upstream fingerprints)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def clean_stale_tmp(directory: str | os.PathLike, names: Iterable[str] | None = None) -> int:
    """Remove `.tmp-*` leftovers of killed runs; returns how many were removed. With `names`,
    only those of these files: a run of a partitioned stage owns its shards' files, not the
    temporary files of runs writing other shards of the same directory."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    patterns = [".tmp-*"] if names is None else [f".tmp-*-{name}" for name in names]
    stale = [p for pattern in patterns for p in directory.glob(pattern)]
    for p in stale:
        _remove(p)
    return len(stale)


def code_fingerprint(*modules: Any) -> str:
    """Hash of the source files of `modules` (a package: every module in its folder):
    artifacts made by changed code get a new fingerprint, so reruns and the re-evaluation
    schedule notice code changes."""
    h = hashlib.sha256()
    for module in modules:
        path = Path(module.__file__)
        for source in sorted(path.parent.rglob("*.py")) if path.name == "__init__.py" else [path]:
            h.update(source.read_bytes())
    return h.hexdigest()[:16]


def exit_status(prog: str, command: Callable[[], int]) -> int:
    """Run a command line's work: bad input (a ValueError or OSError, whose messages name the
    file and record) is one line on stderr and exit status 1, not a traceback."""
    try:
        return command()
    except (ValueError, OSError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1


class RecordError(ValueError):
    """A record of a data file that cannot be read; the message names the file and line."""


def one_line(error: BaseException) -> str:
    """An error's message on one line (Arrow's span several)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


# what a truncated or corrupt .gz/.xz file raises while it is decompressed (BadGzipFile is an OSError)
DECOMPRESSION_ERRORS = (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def open_binary(path: str | os.PathLike):
    """A file, transparently decompressed when it ends in .gz or .xz."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    if path.name.endswith(".xz"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def read_text(path: str | os.PathLike) -> str:
    """A (possibly compressed) UTF-8 text file; a leading byte-order mark is dropped. A
    truncated or corrupt compressed file fails naming it."""
    with open_binary(path) as f:
        try:
            raw = f.read()
        except DECOMPRESSION_ERRORS as e:
            raise RecordError(f"{path}: truncated or corrupt compressed file ({one_line(e)})") from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: invalid UTF-8 at byte {e.start}") from e


def read_json_file(path: str | os.PathLike) -> Any:
    """A (possibly compressed) JSON file; invalid JSON, or a string holding a lone surrogate
    escape (such as "\\ud800": no Unicode character, so no UTF-8 either), fails naming the file
    and the line or string."""
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:line {e.lineno}: not valid JSON ({e.msg})") from e
    _check_unicode(text, value, str(path))
    return value


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-blank line of a (possibly compressed) JSONL
    file; invalid UTF-8 or JSON, a lone surrogate escape in a string, or compressed data that
    ends early (a truncated .gz/.xz: the line being read is named) fail with the file and line
    named. A byte-order mark at the start of the file (some Windows tools write one) is dropped."""
    lineno = 0
    with open_binary(path) as f:
        try:
            for lineno, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise RecordError(f"{path}:line {lineno}: invalid UTF-8 at byte {e.start} of the line") from e
                if line.strip():
                    yield lineno, _parse_line(line, f"{path}:line {lineno}")
        except DECOMPRESSION_ERRORS as e:
            raise RecordError(f"{path}:line {lineno + 1}: truncated or corrupt compressed file ({one_line(e)})") from e


def _parse_line(line: str, where: str) -> Any:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise RecordError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from e
    _check_unicode(line, record, where)
    return record


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # JSON's escape of a UTF-16 surrogate (a pair is one character)
SURROGATE = re.compile("[\ud800-\udfff]")  # in a parsed string: a lone one (json joins a pair into one character)


def _check_unicode(text: str, value: Any, where: str) -> None:
    """`value` (parsed from `text`) holds no lone surrogate: JSON lets "\\ud800" through,
    and the first UTF-8 encoding of it (spaCy, Arrow, a print) fails far from the file."""
    if SURROGATE_ESCAPE.search(text) and (found := _lone_surrogate(value, "")) is not None:
        place, char = found
        raise RecordError(f"{where}: {place or 'the value'} holds a lone surrogate escape \\u{ord(char):04x} "
                          "(not a Unicode character)")


def _lone_surrogate(value: Any, place: str) -> tuple[str, str] | None:
    """(where in `value`, e.g. `["examples"][3]["text"]`, and the surrogate) of the first
    string, key or value, that holds a lone surrogate; None if there is none."""
    if isinstance(value, str):
        match = SURROGATE.search(value)
        return None if match is None else (place, match.group())
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{place}[{json.dumps(key)}]"  # json.dumps escapes a surrogate: the place prints
            if (found := _lone_surrogate(key, f"the key {inner}") or _lone_surrogate(item, inner)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _lone_surrogate(item, f"{place}[{i}]")) is not None:
                return found
    return None
