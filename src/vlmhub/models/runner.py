"""Batched image inference over several models, sharing trunks and (optionally) a feature cache.

Models with the same ``trunk_key`` run their expensive network once per image; decoding and preprocessing of
the next batch overlap with the forward pass of the current one (a background thread).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import ImageError
from ..storage import EmbeddingTable
from .base import ZeroShotModel
from .. import imaging
from ..imaging import InMemoryImage, load_image

__all__ = ["group_by_trunk", "trunk_features", "embed_images", "ImageRef", "content_key", "preprocess_identity"]

ImageRef = tuple[str, Path]  # (stable id, file path)

#: bump when the meaning of a cached feature row changes (its key, the decoder, the preprocessing)
FEATURE_CACHE_VERSION = 2


def group_by_trunk(models: Sequence[ZeroShotModel]) -> dict[str, list[ZeroShotModel]]:
    groups: dict[str, list[ZeroShotModel]] = {}
    for m in models:
        groups.setdefault(m.trunk_key, []).append(m)
    return groups


def _batches(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _prep_batch(model: ZeroShotModel, refs: Sequence[ImageRef]):
    """Decode and preprocess a batch; a ref ``(id, path, rendition)`` is rendered first (see concepts.renditions)."""
    import torch

    from ..concepts.renditions import render

    out = []
    for ref in refs:
        im = load_image(ref[1])
        if len(ref) > 2 and ref[2] not in (None, "original"):
            im = render(im, ref[2])
        out.append(model.preprocess(im))
    return torch.stack(out)


def content_key(ref) -> str:
    """Feature-cache key of a ref ``(id, path[, rendition])``: the sha256 of the image bytes (+ the rendition).

    The display id (``<task folder>/<class>/<file>``) is not a key: two task folders with the same folder,
    class and file names but different images must never share cached features.
    """
    src = ref[1]
    h = hashlib.sha256()
    if isinstance(src, InMemoryImage):
        h.update(src.data)
    else:
        try:
            with open(src, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
        except FileNotFoundError:
            raise ImageError(f"image not found: {src}. Check the path.") from None
        except OSError as exc:
            raise ImageError(f"cannot read image {src} ({exc}). Remove or replace the file.") from None
    rendition = ref[2] if len(ref) > 2 and ref[2] not in (None, "original") else "original"
    return f"sha256:{h.hexdigest()}:{rendition}"


def preprocess_identity(model: ZeroShotModel) -> str:
    """A short digest of what turns image bytes into ``model``'s trunk features (trunk, decoder, preprocessing).

    Feature caches live in a folder per identity, so a change of any of these never reuses stale rows.
    """
    spec = model.spec
    ident = {
        "cache": FEATURE_CACHE_VERSION,
        "decode": getattr(imaging, "DECODE_VERSION", 1),
        "trunk": model.trunk_key,
        "impl": f"{type(model).__module__}.{type(model).__qualname__}",
        "image_size": getattr(spec, "image_size", None),
        "pretrained": getattr(spec, "pretrained", None),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def trunk_features(
    model: ZeroShotModel,
    refs: Sequence[ImageRef],
    *,
    batch_size: int = 64,
    cache: EmbeddingTable | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Trunk features (N x F) of ``refs`` for ``model``'s trunk; cached rows are read, missing ones computed.

    With a cache, rows are keyed by image content (:func:`content_key`), not by id, and new rows are appended
    to it batch by batch (resumable after a kill). The cache must be specific to the model's
    :func:`preprocess_identity` (as :func:`embed_images` arranges).
    """
    todo = list(refs)
    keys: list[str] = []
    if cache is not None:
        keys = [content_key(r) for r in refs]
        missing = set(cache.missing(keys))
        # (key, ref) once per distinct content
        todo = list({k: (k, *r[1:]) for k, r in zip(keys, refs) if k in missing}.values())
        if progress:
            progress(len(refs) - len(todo))
    out: list[np.ndarray] = []  # without a cache: rows in input order (ids need not be unique)
    if todo:
        with cf.ThreadPoolExecutor(max_workers=1) as pool:
            chunks = list(_batches(todo, batch_size))
            fut = pool.submit(_prep_batch, model, chunks[0])
            for i, chunk in enumerate(chunks):
                pixels = fut.result()
                if i + 1 < len(chunks):
                    fut = pool.submit(_prep_batch, model, chunks[i + 1])
                feats = model.image_features(pixels)
                feats = feats.detach().float().cpu().numpy() if hasattr(feats, "detach") else np.asarray(feats, np.float32)
                ids = [r[0] for r in chunk]
                if cache is not None:
                    cache.append(ids, feats)
                else:
                    out.append(feats)
                if progress:
                    progress(len(chunk))
    if cache is not None:
        return cache.get(keys)
    return np.concatenate(out, axis=0) if out else np.zeros((0, 0), np.float32)


def embed_images(
    models: Sequence[ZeroShotModel],
    refs: Sequence[ImageRef],
    *,
    batch_size: int = 64,
    feature_cache_dir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Normalised image embeddings of every model for ``refs`` (trunks shared, features optionally cached)."""
    out: dict[str, np.ndarray] = {}
    for key, group in group_by_trunk(models).items():
        cache = (EmbeddingTable(feature_cache_dir / f"{_safe(key)}-{preprocess_identity(group[0])}")
                 if feature_cache_dir is not None else None)
        feats = trunk_features(group[0], refs, batch_size=batch_size, cache=cache, progress=progress)
        for m in group:
            out[m.id] = m.project_image(feats)
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
