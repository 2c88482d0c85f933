"""A sharded, append-only table of embeddings keyed by string ids.

Layout of a table folder::

    index.json          {"format": "vlmhub.embeddings/1", "dim": D, "dtype": "float32",
                         "shards": [{"file": "shard-000001-<rand>.npz", "count": N}, ...], "meta": {...}}
    shard-000001-<rand>.npz   arrays ``ids`` (unicode) and ``vectors`` (N x D)

Appends hold an advisory lock on ``.lock`` and re-read the index, so several writers can share a table. Each shard is written atomically *before* the index names it, and the index is rewritten atomically, so a
kill at any point loses at most the shard being written: :meth:`EmbeddingTable.append` after a restart
just continues (``missing()`` tells what is left). Files are plain ``.npz`` read with ``allow_pickle=False``.

Damaged files: a table made with ``rebuild="<command>"`` (model labels) raises a one-line
:class:`~vlmhub.errors.LabelError` naming the damaged file and that command. A table without it is a *cache*
and heals itself: an unreadable index resets the table, an unreadable shard is dropped from the index, each
with a logged warning, and the dropped rows are recomputed by the caller (``missing()`` reports them).
"""

from __future__ import annotations

import logging
import uuid
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import LabelError, VlmhubError
from .atomic import atomic_write_json, atomic_write_npz, file_lock, read_json
from .schema import check_embedding_index

__all__ = ["EmbeddingTable", "FORMAT", "NPZ_ERRORS"]

FORMAT = "vlmhub.embeddings/1"

# what np.load / zipfile raise on a truncated or overwritten .npz (BadZipFile is no OSError)
NPZ_ERRORS = (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile)

_log = logging.getLogger("vlmhub.storage")


class EmbeddingTable:
    """Append-only id -> vector table stored as atomic shards (see module docstring).

    ``rebuild``: the command that recomputes the table (e.g. ``"vlmhub label --force ID"``), named by the
    error on a damaged file; ``None`` makes the table a self-healing cache.
    """

    def __init__(self, directory: str | Path, dim: int | None = None, dtype: str = "float32", *, rebuild: str | None = None):
        self.directory = Path(directory)
        self.rebuild = rebuild
        self._dim = dim
        self._dtype = np.dtype(dtype)
        self._index: dict | None = None
        self._rows: dict[str, int] | None = None
        self._matrix: np.ndarray | None = None
        self._shard_ids: dict[str, frozenset[str]] = {}  # shard file -> its ids (shards never change)

    # -- index ----------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.directory / "index.json"

    @property
    def _fix(self) -> str:
        return f"Run `{self.rebuild}` to rebuild it." if self.rebuild else f"Delete {self.directory} to recompute it."

    def _damaged(self, message: str) -> None:
        """A damaged file: raise for a table with a rebuild command, else warn (the caller then heals)."""
        if self.rebuild:
            raise LabelError(f"{message}. Run `{self.rebuild}` to rebuild it.")
        _log.warning("vlmhub: %s; dropping it from the cache at %s (it is recomputed)", message, self.directory)

    def _empty_index(self) -> dict:
        return {"format": FORMAT, "dim": self._dim, "dtype": self._dtype.name, "shards": [], "meta": {}}

    def _read_index(self) -> dict | None:
        """The index on disk, ``None`` when absent or (for a cache) damaged."""
        if not self.index_path.exists():
            return None
        try:
            raw = read_json(self.index_path, "embedding index")
        except VlmhubError as exc:  # not JSON, not UTF-8, a folder, ...
            self._damaged(f"embedding index {self.index_path} is unreadable ({str(exc).rstrip('.')})")
            return None
        try:
            idx = check_embedding_index(raw, self.index_path, fix="")
        except LabelError as exc:
            self._damaged(str(exc).strip().rstrip("."))
            return None
        if idx["format"] != FORMAT:
            self._damaged(f"{self.index_path} is not a vlmhub embedding index (format {idx['format']!r})")
            return None
        return idx

    def _load_index(self) -> dict:
        if self._index is None:
            idx = self._read_index()
            if idx is not None and self._dim is not None and idx["dim"] not in (None, self._dim):
                raise LabelError(
                    f"{self.directory} holds {idx['dim']}-d embeddings but {self._dim}-d were expected. "
                    f"{self._fix}"
                )
            self._index = idx if idx is not None else self._empty_index()
        return self._index

    @property
    def dim(self) -> int | None:
        return self._load_index()["dim"]

    @property
    def meta(self) -> dict:
        return dict(self._load_index().get("meta", {}))

    def set_meta(self, **meta) -> None:
        idx = self._load_index()
        idx.setdefault("meta", {}).update(meta)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.index_path, idx)

    # -- reading --------------------------------------------------------------------------------
    def _read_shard(self, shard: dict, dim: int | None) -> tuple[list[str], np.ndarray] | None:
        """One shard's ids and vectors, ``None`` (after :meth:`_damaged`) when it is unreadable or inconsistent."""
        path = self.directory / shard["file"]
        try:
            with np.load(path, allow_pickle=False) as z:
                sid = [str(s) for s in z["ids"]]
                vec = np.asarray(z["vectors"], dtype=self._dtype)
        except NPZ_ERRORS as exc:
            self._damaged(f"embedding shard {path} is unreadable ({type(exc).__name__}: {exc})")
            return None
        if len(sid) != shard["count"] or vec.shape != (len(sid), dim):
            self._damaged(f"embedding shard {path} does not match its index")
            return None
        return sid, vec

    def _load_rows(self) -> None:
        if self._rows is not None:
            return
        idx = self._load_index()
        ids: list[str] = []
        mats: list[np.ndarray] = []
        bad: list[str] = []
        for shard in idx["shards"]:
            got = self._read_shard(shard, idx["dim"])
            if got is None:
                bad.append(shard["file"])
                continue
            ids.extend(got[0])
            mats.append(got[1])
        if bad:
            self._drop_shards(bad)
        self._rows = {}
        for i, s in enumerate(ids):
            self._rows[s] = i  # later shards win (re-appended ids)
        dim = idx["dim"] or 0
        self._matrix = np.concatenate(mats, axis=0) if mats else np.zeros((0, dim), dtype=self._dtype)

    def _drop_shards(self, files: list[str]) -> None:
        """Cache healing: remove damaged shards from the index on disk (under the lock) and delete them."""
        with file_lock(self.directory / ".lock"):
            idx = self._read_index()
            if idx is not None:
                idx["shards"] = [s for s in idx["shards"] if s["file"] not in files]
                atomic_write_json(self.index_path, idx)
            for f in files:
                (self.directory / f).unlink(missing_ok=True)
        if self._index is not None:
            self._index["shards"] = [s for s in self._index["shards"] if s["file"] not in files]

    def ids(self) -> set[str]:
        self._load_rows()
        assert self._rows is not None
        return set(self._rows)

    def __len__(self) -> int:
        self._load_rows()
        assert self._rows is not None
        return len(self._rows)

    def __contains__(self, item: str) -> bool:
        self._load_rows()
        assert self._rows is not None
        return item in self._rows

    def missing(self, ids: Iterable[str]) -> list[str]:
        """The ids (in order, without duplicates) not yet stored."""
        self._load_rows()
        assert self._rows is not None
        seen: set[str] = set()
        out = []
        for i in ids:
            if i not in self._rows and i not in seen:
                seen.add(i)
                out.append(i)
        return out

    def get(self, ids: Sequence[str]) -> np.ndarray:
        """Vectors for ``ids`` in order; a :class:`LabelError` names the first missing id."""
        self._load_rows()
        assert self._rows is not None and self._matrix is not None
        try:
            rows = [self._rows[i] for i in ids]
        except KeyError as exc:
            raise LabelError(
                f"{self.directory} has no embedding for {exc.args[0]!r}. Run `vlmhub label` to complete the labels."
            ) from None
        return self._matrix[np.asarray(rows, dtype=np.int64)] if rows else np.zeros((0, self.dim or 0), self._dtype)

    # -- writing --------------------------------------------------------------------------------
    def append(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Store a shard of vectors atomically, then record it in the index atomically; ids already stored are skipped."""
        vectors = np.asarray(vectors, dtype=self._dtype)
        if vectors.ndim != 2 or vectors.shape[0] != len(ids):
            raise ValueError(f"need one row per id: {len(ids)} ids, vectors of shape {vectors.shape}")
        if len(ids) == 0:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with file_lock(self.directory / ".lock"):  # several writers (threads, processes) may share a table
            self._index = None  # re-read: another writer may have added shards
            idx = self._load_index()
            if idx["dim"] is None:
                idx["dim"] = int(vectors.shape[1])
            elif vectors.shape[1] != idx["dim"]:
                raise LabelError(f"cannot append {vectors.shape[1]}-d vectors to a {idx['dim']}-d table at {self.directory}")
            if not np.all(np.isfinite(vectors)):
                raise LabelError(f"refusing to store non-finite embeddings in {self.directory}")
            if idx["shards"]:  # another writer may have stored some of these ids meanwhile: store each id once
                stored = self._stored_ids(idx)
                keep = [j for j, i in enumerate(ids) if i not in stored]
                if not keep:
                    return
                ids, vectors = [ids[j] for j in keep], vectors[keep]
            name = f"shard-{len(idx['shards']) + 1:06d}-{uuid.uuid4().hex[:8]}.npz"
            atomic_write_npz(self.directory / name, ids=np.asarray(list(ids), dtype=np.str_), vectors=vectors)
            idx["shards"].append({"file": name, "count": len(ids)})
            atomic_write_json(self.index_path, idx)
        # invalidate the in-memory view
        self._rows = None
        self._matrix = None

    def _stored_ids(self, idx: dict) -> set[str]:
        """Every id stored in the shards ``idx`` names (only the ``ids`` arrays are read; shards are immutable,
        so each is read once per table object)."""
        seen = self._shard_ids
        out: set[str] = set()
        for shard in idx["shards"]:
            name = shard["file"]
            if name not in seen:
                path = self.directory / name
                try:
                    with np.load(path, allow_pickle=False) as z:
                        seen[name] = frozenset(str(s) for s in z["ids"])
                except (OSError, KeyError, ValueError) as exc:
                    raise LabelError(f"embedding shard {path} is unreadable ({exc}). Delete {self.directory} to recompute it.") from None
            out |= seen[name]
        return out

    def nbytes(self) -> int:
        """Bytes on disk of all shards."""
        return sum(p.stat().st_size for s in self._load_index()["shards"] if (p := self.directory / s["file"]).is_file())
