"""Out-of-core selection index: one block of memory-mapped arrays per model.

Selection at hub scale must not hold every label in RAM (10,000 nodes x 500 models of 384-d float32 labels are
15.4 GB). A query of :class:`~vlmhub.selection.fastpath.FastEq5` needs, per model, only (a) the first few
positions of each selected image's certified node ranking and (b) for the rare undecided images, the image's
embedding and the selected nodes' caption embeddings. Both are stored per model as plain ``.npy`` files and
opened with ``np.load(..., mmap_mode="r")``: a query pages in exactly the rows it touches.

Layout (one folder per model under the graph version's cache)::

    <home>/cache/fastpath/<graph version>/<model id>/
        ranks.npy      (L, N) int16 (int32 from 32,767 nodes): certified ranking prefixes, position-major
                       (one ranking position of every image is contiguous: what a query walks), -1 padded
        images.npy     (N, D) float32: the label's image embeddings in the graph's sorted image order
        captions.npy   (V, D) float32: the label's caption embeddings, one row per node
        block.json     format, model id, graph version, label fingerprint, L, shapes, dtypes

Memory bound: the arrays are read-only ``mmap`` views, so the pages a query touches count towards the process's
resident set until the kernel evicts them. :meth:`ModelBlock.release` drops them (``madvise(MADV_DONTNEED)``;
they stay in the page cache, a later read re-faults them), and :class:`~vlmhub.selection.fastpath.FastEq5`
releases each group of ``block_models`` models once their predictions are counted: a query's resident memory
is bounded by that setting, not by the number of models.

``block.json`` is written last, every file atomically: a block without it, or whose fingerprint, ``L`` or
shapes disagree, is rebuilt. Adding a model writes one new folder and touches no other block; relabeling a
model rebuilds only its block.

Why the fallback embeddings stay float32: Eq. 5's decision is the exact argmax of the float32 label
similarities (:func:`~vlmhub.selection.fastpath.canonical_argmax`). Rounding the embeddings to float16 moves a
similarity by up to ~1e-3, which is larger than the gap between the best two selected nodes for a share of the
fallback images (counted by ``benchmarks/bench_outofcore.py``), so float16 would change selections. The ranks
are already 2-byte integers; the fallback rows are read only for undecided images.
"""

from __future__ import annotations

import logging
import mmap
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..errors import LabelError
from ..storage.atomic import atomic_write_json, atomic_write_npy, read_json

__all__ = ["BLOCK_FORMAT", "ModelBlock", "BlockError", "block_folder", "write_block", "open_block", "open_or_none"]

BLOCK_FORMAT = "vlmhub.selection-block/1"
_FILES = ("ranks.npy", "images.npy", "captions.npy")
_log = logging.getLogger("vlmhub.selection")


class BlockError(LabelError, ValueError):
    """A selection block on disk is damaged (it is a cache: the caller rebuilds it from the label)."""


@dataclass(frozen=True)
class ModelBlock:
    """One model's part of the selection index (arrays are read-only memory maps when opened from disk)."""

    model_id: str
    ranks: np.ndarray  # (L, N) int16/int32, position-major, -1 padded
    images: np.ndarray  # (N, D) float32
    captions: np.ndarray  # (V, D) float32
    graph_version: str = ""
    fingerprint: str = ""
    maps: tuple[mmap.mmap, ...] = field(default=(), repr=False, compare=False)  # the mappings behind the arrays

    def release(self) -> None:
        """Drop the pages of this block that queries paged in from this process's resident memory (they stay
        in the OS page cache; the arrays stay valid and re-read on the next access). No-op in RAM."""
        if not hasattr(mmap, "MADV_DONTNEED"):  # not on every platform
            return
        for m in self.maps:
            if not m.closed:
                m.madvise(mmap.MADV_DONTNEED)

    @property
    def L(self) -> int:
        return int(self.ranks.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes of the three arrays (on disk, or in RAM for an in-memory block)."""
        return int(self.ranks.nbytes + self.images.nbytes + self.captions.nbytes)


def block_folder(cache_dir: str | Path, graph_version: str) -> Path:
    """The folder holding every model's block for one graph version."""
    return Path(cache_dir) / "fastpath" / graph_version


def write_block(folder: str | Path, model_id: str, ranks: np.ndarray, images: np.ndarray, captions: np.ndarray, *,
                graph_version: str = "", fingerprint: str = "") -> ModelBlock:
    """Write one model's block atomically (arrays first, ``block.json`` last) and return it memory-mapped.

    ``ranks`` is position-major (L x N); ``images`` (N x D) and ``captions`` (V x D) are stored as float32.
    """
    d = Path(folder) / model_id
    ranks = np.ascontiguousarray(ranks)
    if ranks.dtype not in (np.int16, np.int32):
        raise TypeError(f"ranks must be int16 or int32, got {ranks.dtype}")
    images = np.ascontiguousarray(images, np.float32)
    captions = np.ascontiguousarray(captions, np.float32)
    if images.shape[0] != ranks.shape[1] or images.shape[1:] != captions.shape[1:]:
        raise ValueError(f"block shapes disagree: ranks {ranks.shape}, images {images.shape}, captions {captions.shape}")
    (d / "block.json").unlink(missing_ok=True)  # a half-rewritten block is never taken for a complete one
    for name, arr in zip(_FILES, (ranks, images, captions)):
        atomic_write_npy(d / name, arr)
    atomic_write_json(d / "block.json", {
        "format": BLOCK_FORMAT, "model_id": model_id, "graph_version": graph_version, "fingerprint": fingerprint,
        "L": int(ranks.shape[0]), "n_images": int(ranks.shape[1]), "n_nodes": int(captions.shape[0]),
        "dim": int(images.shape[1]), "ranks_dtype": ranks.dtype.name,
    })
    block = open_block(folder, model_id, fingerprint=fingerprint, graph_version=graph_version)
    assert block is not None
    return block


_HEADER_READERS = MappingProxyType({(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0})


def _mmap(path: Path, shape: tuple[int, ...], dtype: str) -> tuple[np.ndarray, mmap.mmap | None]:
    """A read-only view of the array in a ``.npy`` file over our own ``mmap`` (so it can be released)."""
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version not in _HEADER_READERS:
                raise BlockError(f"selection block file {path} has unsupported .npy format version {version}")
            got_shape, fortran, got_dtype = _HEADER_READERS[version](fh)
            offset = fh.tell()
            if fortran or got_shape != shape or got_dtype.name != dtype:
                raise BlockError(f"selection block file {path} holds {got_dtype.name} {got_shape}"
                                 f"{' (Fortran order)' if fortran else ''}, its block.json says {dtype} {shape}")
            need = offset + int(np.prod(shape, dtype=np.int64)) * got_dtype.itemsize
            size = path.stat().st_size
            if size < need:
                raise BlockError(f"selection block file {path} is truncated: {size} bytes, the array needs {need}")
            if need == offset:  # an empty array: nothing to map
                return np.zeros(shape, got_dtype), None
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    except BlockError:
        raise
    except (OSError, ValueError, EOFError) as exc:  # missing, truncated, not a .npy file
        raise BlockError(f"selection block file {path} is unreadable ({type(exc).__name__}: {exc})") from None
    return np.ndarray(shape, got_dtype, buffer=mm, offset=offset), mm


def open_block(folder: str | Path, model_id: str, *, fingerprint: str | None = None, L: int | None = None,
               graph_version: str | None = None, n_images: int | None = None,
               n_nodes: int | None = None) -> ModelBlock | None:
    """Memory-map one model's block; ``None`` when it is absent or stale (another fingerprint, ``L``, graph or
    shape than asked). A damaged block raises :class:`BlockError` (the caller rebuilds it)."""
    d = Path(folder) / model_id
    meta_path = d / "block.json"
    if not meta_path.is_file():
        return None
    meta = read_json(meta_path, "selection block", error=BlockError, fix="It is rebuilt from the label.")
    if not isinstance(meta, dict) or meta.get("format") != BLOCK_FORMAT:
        raise BlockError(f"selection block {meta_path} is not a {BLOCK_FORMAT} file")
    try:
        Lm, N, V, D = (int(meta[k]) for k in ("L", "n_images", "n_nodes", "dim"))
        rdt = str(meta["ranks_dtype"])
    except (KeyError, TypeError, ValueError):
        raise BlockError(f"selection block {meta_path} lacks its shapes") from None
    wanted = {"fingerprint": fingerprint, "graph_version": graph_version}
    if any(v is not None and meta.get(k) != v for k, v in wanted.items()):
        return None
    if (L is not None and Lm != min(L, V)) or (n_images is not None and N != n_images) or (n_nodes is not None and V != n_nodes):
        return None
    if rdt not in ("int16", "int32"):
        raise BlockError(f"selection block {meta_path} names ranks dtype {rdt!r}")
    (ranks, m1), (images, m2), (captions, m3) = (_mmap(d / "ranks.npy", (Lm, N), rdt),
                                                 _mmap(d / "images.npy", (N, D), "float32"),
                                                 _mmap(d / "captions.npy", (V, D), "float32"))
    return ModelBlock(model_id, ranks, images, captions, str(meta.get("graph_version", "")),
                      str(meta.get("fingerprint", "")), tuple(m for m in (m1, m2, m3) if m is not None))


def open_or_none(folder: Path, model_id: str, **want) -> ModelBlock | None:
    """:func:`open_block`, with a damaged block logged and reported as absent (so it is rebuilt)."""
    try:
        return open_block(folder, model_id, **want)
    except BlockError as exc:
        _log.warning("vlmhub: %s; rebuilding it", exc)
        return None
