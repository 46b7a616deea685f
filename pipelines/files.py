"""Atomic writes and fingerprints: a crash never leaves a file that looks finished, and
every artifact records a hash of its inputs and config."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import lzma
import os
import secrets
import shutil
import sys
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
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing (materialize the asset that writes it first)")
    return json.loads(path.read_text())


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
    """A (possibly compressed) UTF-8 text file; a leading byte-order mark is dropped."""
    with open_binary(path) as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: invalid UTF-8 at byte {e.start}") from e


def read_json_file(path: str | os.PathLike) -> Any:
    """A (possibly compressed) JSON file."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:line {e.lineno}: not valid JSON ({e.msg})") from e


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(line number, object) for each non-blank line of a (possibly compressed) JSONL
    file; invalid UTF-8 or JSON fails with the file and line named. A byte-order mark at the
    start of the file (some Windows tools write one) is dropped."""
    with open_binary(path) as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(f"{path}:line {lineno}: invalid UTF-8 at byte {e.start} of the line") from e
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from e
            yield lineno, record
