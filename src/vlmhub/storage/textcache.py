"""A bounded, O(1)-append vector cache in one SQLite file (stdlib ``sqlite3``, WAL journal).

Layout of ``<file>.sqlite`` (format ``vlmhub.textcache/1``)::

    meta(key TEXT PRIMARY KEY, value TEXT)        format, dim, count (rows in ``vectors``)
    vectors(key TEXT PRIMARY KEY, vec BLOB, used REAL)   one row per key: float32 vector bytes, last use (unix s)
    index vectors_used ON vectors(used)

* ``put`` inserts new rows and updates the row count in one transaction; when the count exceeds
  ``max_entries`` the least recently used rows are deleted (through the ``used`` index), so the file stays
  bounded and an insert costs the same at 10 or 100,000 rows.
* ``get`` reads the requested rows by primary key and refreshes ``used`` of rows last touched more than
  ``touch_s`` seconds ago (so hot lookups do not write every time).
* A damaged file (truncated, overwritten, wrong schema, a row of the wrong size) heals itself: it is
  deleted, or the row dropped, with a logged warning, and the caller recomputes what is missing.

Several processes may share the file (SQLite locking, WAL); one :class:`VectorCache` object holds one
connection, guarded by a lock so threads may share it. Nothing is kept at module level.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["VectorCache", "TEXTCACHE_FORMAT", "DEFAULT_MAX_ENTRIES"]

TEXTCACHE_FORMAT = "vlmhub.textcache/1"
DEFAULT_MAX_ENTRIES = 20_000  # ~30 MB of 384-d float32 vectors
_CHUNK = 500  # keys per SELECT (below SQLite's host-parameter limit)
_log = logging.getLogger("vlmhub.storage")


class VectorCache:
    """Key -> float32 vector cache with least-recently-used eviction (see module docstring)."""

    def __init__(self, path: str | os.PathLike, *, max_entries: int = DEFAULT_MAX_ENTRIES, touch_s: float = 60.0,
                 timeout_s: float = 30.0):
        if isinstance(max_entries, bool) or not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"max_entries must be a whole number >= 1, not {max_entries!r}")
        self.path = Path(path)
        self.max_entries = max_entries
        self.touch_s = touch_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None

    def __getstate__(self) -> dict:
        """Pickles (a model holding this cache is shipped to Ray workers) without its lock and connection; the
        copy opens its own connection to the same file on first use."""
        state = self.__dict__.copy()
        state["_lock"], state["_con"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- connection ----------------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("BEGIN IMMEDIATE")
            con.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            con.execute("CREATE TABLE IF NOT EXISTS vectors(key TEXT PRIMARY KEY, vec BLOB NOT NULL, used REAL NOT NULL)")
            con.execute("CREATE INDEX IF NOT EXISTS vectors_used ON vectors(used)")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (TEXTCACHE_FORMAT,))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('count', '0')")
            fmt = con.execute("SELECT value FROM meta WHERE key='format'").fetchone()[0]
            if fmt != TEXTCACHE_FORMAT:
                raise sqlite3.DatabaseError(f"format {fmt!r}, expected {TEXTCACHE_FORMAT!r}")
            con.execute("COMMIT")
        except BaseException:
            con.close()
            raise
        return con

    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            try:
                self._con = self._open()
            except sqlite3.DatabaseError as exc:  # "file is not a database", malformed schema, foreign format
                self._heal(exc)
                self._con = self._open()
        return self._con

    def _heal(self, exc: Exception) -> None:
        _log.warning("vlmhub: text cache %s is damaged (%s); deleting it (it is recomputed)", self.path, exc)
        if self._con is not None:
            self._con.close()
            self._con = None
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    def _run(self, fn):
        """Run ``fn(connection)``; a damaged database is deleted once and ``fn`` retried on a fresh one."""
        with self._lock:
            try:
                return fn(self._connection())
            except sqlite3.DatabaseError as exc:
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise
                self._heal(exc)
                return fn(self._connection())

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> "VectorCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        con = getattr(self, "_con", None)
        if con is not None:
            con.close()

    # -- reading ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._run(lambda con: int(con.execute("SELECT value FROM meta WHERE key='count'").fetchone()[0]))

    @property
    def dim(self) -> int | None:
        """Vector length of the stored rows (``None`` while empty)."""
        def q(con):
            row = con.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
            return int(row[0]) if row else None
        return self._run(q)

    def get(self, keys: Sequence[str], dim: int | None = None) -> dict[str, np.ndarray]:
        """The stored vectors of ``keys`` (absent keys are left out); rows of the wrong size are dropped."""
        want = list(dict.fromkeys(keys))

        def q(con):
            out: dict[str, np.ndarray] = {}
            stored = con.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
            d = dim if dim is not None else (int(stored[0]) if stored else None)
            if stored is not None and dim is not None and int(stored[0]) != dim:
                return out  # vectors of another embedder size: treated as absent, replaced by put()
            bad: list[str] = []
            stale: list[str] = []
            now = time.time()
            for a in range(0, len(want), _CHUNK):
                chunk = want[a : a + _CHUNK]
                rows = con.execute(f"SELECT key, vec, used FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
                for key, blob, used in rows:
                    if not isinstance(blob, bytes) or d is None or len(blob) != 4 * d:
                        bad.append(key)
                        continue
                    out[key] = np.frombuffer(blob, dtype=np.float32)
                    if used < now - self.touch_s:
                        stale.append(key)
            if bad or stale:
                con.execute("BEGIN IMMEDIATE")
                try:
                    if bad:
                        _log.warning("vlmhub: text cache %s: dropping %d damaged row(s)", self.path, len(bad))
                        self._delete(con, bad)
                    con.executemany("UPDATE vectors SET used=? WHERE key=?", [(now, k) for k in stale])
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            return out

        return self._run(q)

    # -- writing ---------------------------------------------------------------------------------------
    @staticmethod
    def _delete(con: sqlite3.Connection, keys: Sequence[str]) -> None:
        n = 0
        for a in range(0, len(keys), _CHUNK):
            chunk = list(keys[a : a + _CHUNK])
            n += con.execute(f"DELETE FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk).rowcount
        con.execute("UPDATE meta SET value = CAST(value AS INTEGER) - ? WHERE key='count'", (n,))

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one row per key (existing keys are replaced), then evict least recently used rows."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(keys):
            raise ValueError(f"need one row per key: {len(keys)} keys, vectors of shape {vectors.shape}")
        if len(keys) == 0:
            return
        if not np.all(np.isfinite(vectors)):
            raise ValueError(f"refusing to cache non-finite vectors in {self.path}")
        d = int(vectors.shape[1])

        def w(con):
            now = time.time()
            con.execute("BEGIN IMMEDIATE")
            try:
                stored = con.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
                if stored is not None and int(stored[0]) != d:  # another embedder size: start over
                    _log.warning("vlmhub: text cache %s holds %s-d vectors, now %d-d; clearing it", self.path, stored[0], d)
                    con.execute("DELETE FROM vectors")
                    con.execute("UPDATE meta SET value='0' WHERE key='count'")
                con.execute("INSERT OR REPLACE INTO meta VALUES ('dim', ?)", (str(d),))
                uniq = dict(zip(keys, range(len(keys))))  # last row wins for repeated keys
                self._delete(con, list(uniq))
                con.executemany("INSERT INTO vectors VALUES (?, ?, ?)",
                                [(k, vectors[i].tobytes(), now) for k, i in uniq.items()])
                con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key='count'", (len(uniq),))
                count = int(con.execute("SELECT value FROM meta WHERE key='count'").fetchone()[0])
                if count > self.max_entries:
                    n = con.execute("DELETE FROM vectors WHERE key IN (SELECT key FROM vectors ORDER BY used, rowid LIMIT ?)",
                                    (count - self.max_entries,)).rowcount
                    con.execute("UPDATE meta SET value = CAST(value AS INTEGER) - ? WHERE key='count'", (n,))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise

        self._run(w)
