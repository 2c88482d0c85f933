"""Batched image inference over several models, sharing trunks and (optionally) a feature cache.

Models with the same ``trunk_key`` run their expensive network once per image; decoding and preprocessing of
the next batch overlap with the forward pass of the current one (a background thread).
"""

from __future__ import annotations

import concurrent.futures as cf
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ..storage import EmbeddingTable
from .base import ZeroShotModel
from .imaging import load_image

__all__ = ["group_by_trunk", "trunk_features", "embed_images", "ImageRef"]

ImageRef = tuple[str, Path]  # (stable id, file path)


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


def trunk_features(
    model: ZeroShotModel,
    refs: Sequence[ImageRef],
    *,
    batch_size: int = 64,
    cache: EmbeddingTable | None = None,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Trunk features (N x F) of ``refs`` for ``model``'s trunk; cached rows are read, missing ones computed.

    With a cache, new rows are appended to it batch by batch (resumable after a kill).
    """
    todo = list(refs)
    if cache is not None:
        missing = set(cache.missing([r[0] for r in refs]))
        todo = list({r[0]: r for r in refs if r[0] in missing}.values())  # cache rows are keyed by id: once each
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
        return cache.get([r[0] for r in refs])
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
        cache = EmbeddingTable(feature_cache_dir / _safe(key)) if feature_cache_dir is not None else None
        feats = trunk_features(group[0], refs, batch_size=batch_size, cache=cache, progress=progress)
        for m in group:
            out[m.id] = m.project_image(feats)
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
