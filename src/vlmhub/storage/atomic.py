"""Atomic file writes: write to a temporary file in the same folder, fsync, rename into place.

A reader sees either the old file or the new one, never a half-written one, and a crash leaves at most a
``.tmp-*`` file behind that the next write ignores.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import DataError

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_npz",
    "atomic_write_npy",
    "read_json",
    "file_lock",
]


def _atomic_stream(path: str | os.PathLike, write: Callable[[Any], Any], suffix: str = "") -> Path:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, fsync it, rename it onto ``path``; on any
    failure the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (rename into place) and return the path."""
    return _atomic_stream(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False, ensure_ascii=False) + "\n")


def atomic_write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    """Write numpy arrays as an uncompressed ``.npz`` atomically. Object arrays are refused (no pickle)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; vlmhub never stores pickled data")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write one array as a ``.npy`` file atomically (streamed to a temporary file in the same folder, fsync,
    rename), so it can later be memory-mapped with ``np.load(path, mmap_mode="r")``. Object arrays are refused."""
    array = np.asarray(array)
    if array.dtype == object:
        raise TypeError("array has dtype object; vlmhub never stores pickled data")
    return _atomic_stream(path, lambda fh: np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False),
                          suffix=".npy")


def read_json(path: str | os.PathLike, what: str = "file", error: type[DataError] | type[Exception] = DataError,
              fix: str | None = None) -> Any:
    """Read a JSON file, turning a missing or malformed file into ``error`` (a :class:`DataError` by default)
    whose message names the file and the fix (``fix``, e.g. the command that rebuilds the file)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} not found: {path}. {fix or 'Check the path.'}") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc}.{' ' + fix if fix else ''}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start}). {fix or 'Save it as UTF-8 JSON.'}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(
            f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). {fix or 'Fix or recreate it.'}"
        ) from None


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed) for the duration of the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
