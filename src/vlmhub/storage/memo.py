"""Values derived from small files, remembered until the file changes (no re-read, no re-parse per call).

A :class:`FileMemo` keys each path's value by the file's ``(size, mtime_ns, ctime_ns, inode)``: the atomic
writes of :mod:`vlmhub.storage.atomic` rename a new file into place (a new inode and new times), and an edit
in place changes the times, so a change made by any process is seen on the next call; an unchanged file costs
one ``stat``. A missing file is never remembered (the loader runs, and may raise, every time).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Any, Callable

__all__ = ["FileMemo", "file_key"]


def file_key(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """``(size, mtime_ns, ctime_ns, inode)`` of ``path``, or ``None`` when it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


class FileMemo:
    """``get(path, load)``: ``load(path)`` remembered per path until the file changes (see module doc).

    Thread-safe; at most ``max_entries`` paths are remembered (least recently used dropped first). ``load``
    runs outside the lock, so two threads may both load a changed file once; both get a correct value.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[tuple, Any]] = OrderedDict()

    def get(self, path: str | os.PathLike, load: Callable[[str], Any]) -> Any:
        p = os.fspath(path)
        key = file_key(p)
        if key is None:
            with self._lock:
                self._entries.pop(p, None)
            return load(p)
        with self._lock:
            hit = self._entries.get(p)
            if hit is not None and hit[0] == key:
                self._entries.move_to_end(p)
                return hit[1]
        value = load(p)
        if file_key(p) == key:  # unchanged while it was read: the value belongs to this key
            with self._lock:
                self._entries[p] = (key, value)
                self._entries.move_to_end(p)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
