"""The fast path's graph membership (CSR arrays) and per-model confuser index (split from
:mod:`vlmhub.selection.fastpath`)."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from ..errors import DataError, LabelError, SelectionError, TaskError
from ..storage.atomic import atomic_write_npz
from ..storage.embeddings import NPZ_ERRORS
from .equations import class_estimates, reuse_scores
from .exact import _U64, _U32, _gamma, _exact_dot, canonical_argmax, _precision_from_counts, exact_node_precision, _topk_by_sort, stable_topk, fast_transfer_matrix  # noqa: F401

INDEX_FORMAT = "vlmhub.fastpath/1"
DEFAULT_L = 64

# ---------------------------------------------------------------------------------------------------------
# graph membership as arrays
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphMembership:
    """Which images belong to which node, as CSR arrays over the graph's sorted image ids.

    ``indices[indptr[v]:indptr[v+1]]`` are the image rows of ``X_v`` (ascending); ``caption_keys[v]`` is the
    label key of node v's caption.
    """

    image_ids: tuple[str, ...]
    indptr: np.ndarray  # (V + 1,) int64
    indices: np.ndarray  # (pairs,) int32
    caption_keys: tuple[str, ...]
    graph_version: str = ""

    @property
    def n_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @classmethod
    def from_graph(cls, graph) -> "GraphMembership":
        from ..labeling.labels import caption_key

        ids = graph.image_ids()
        row = {x: i for i, x in enumerate(ids)}
        counts = np.fromiter((len(n.images) for n in graph.nodes), np.int64, len(graph.nodes))
        indptr = np.zeros(len(graph.nodes) + 1, np.int64)
        np.cumsum(counts, out=indptr[1:])
        indices = np.fromiter((row[x] for n in graph.nodes for x in n.images), np.int32, int(indptr[-1]))
        for v in range(len(graph.nodes)):  # rows ascending within a node (image ids are sorted per node)
            seg = indices[indptr[v] : indptr[v + 1]]
            if len(seg) > 1 and np.any(seg[1:] < seg[:-1]):
                seg.sort()
        keys = tuple(caption_key(n.caption) for n in graph.nodes)
        return cls(tuple(ids), indptr, indices, keys, graph.version)

    def pairs(self, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For sorted node indices ``selected``: ``(pair position in S, pair image row, |X_v| per position)``."""
        sel = np.asarray(selected, np.int64)
        starts = self.indptr[sel]
        lens = self.indptr[sel + 1] - starts
        total = int(lens.sum())
        pos = np.repeat(np.arange(len(sel)), lens)
        offs = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens)
        rows = self.indices[np.repeat(starts, lens) + offs]
        return pos, rows, lens


# ---------------------------------------------------------------------------------------------------------
# the per-model index
# ---------------------------------------------------------------------------------------------------------
def _node_dtype(n_nodes: int) -> np.dtype:
    return np.dtype(np.int16) if n_nodes < np.iinfo(np.int16).max else np.dtype(np.int32)


@dataclass(frozen=True)
class ConfuserIndex:
    """One model's certified ranking prefixes: ``ranks[x, :]`` = the first nodes of image x's canonical ranking.

    An image's confusers for node v are the listed nodes before v; ``-1`` pads a list cut at ``L`` or before
    an uncertain position. ``complete`` rows list all ``n_nodes`` nodes.
    """

    ranks: np.ndarray  # (N, L) int16/int32, -1 padded
    n_nodes: int
    L: int
    dim: int
    graph_version: str = ""
    fingerprint: str = ""

    @property
    def nbytes(self) -> int:
        return int(self.ranks.nbytes)

    def lengths(self) -> np.ndarray:
        return (self.ranks >= 0).sum(axis=1)

    @classmethod
    def build(
        cls,
        image_emb: np.ndarray,
        caption_emb: np.ndarray,
        L: int = DEFAULT_L,
        *,
        graph_version: str = "",
        fingerprint: str = "",
        chunk: int = 256,
    ) -> "ConfuserIndex":
        """Rank every node for every image (``image_emb`` N x D, ``caption_emb`` V x D, one row per node).

        A float32 product preselects a window of ``L + extra`` distinct caption vectors per image; the window
        is re-scored in float64 and certified against rigorous rounding bounds (module docstring). Memory is
        bounded by ``chunk`` images at a time.
        """
        if L < 1:
            raise SelectionError("L must be >= 1")
        X = np.ascontiguousarray(image_emb, np.float32)
        C = np.ascontiguousarray(caption_emb, np.float32)
        N, D = X.shape
        V = C.shape[0]
        dtype = _node_dtype(V)
        ranks = np.full((N, min(L, V)), -1, dtype=dtype)
        if N == 0 or V == 0:
            return cls(ranks, V, L, D, graph_version, fingerprint)
        # identical caption vectors tie exactly: rank distinct vectors, expand to nodes in index order
        uniq, inv = np.unique(C, axis=0, return_inverse=True)
        inv = inv.reshape(-1)
        Vu = len(uniq)
        unodes = np.argsort(inv, kind="stable")  # nodes of vector u: unodes[uptr[u]:uptr[u+1]], ascending
        ucount = np.bincount(inv, minlength=Vu)
        uptr = np.zeros(Vu + 1, np.int64)
        np.cumsum(ucount, out=uptr[1:])
        U32 = np.ascontiguousarray(uniq)
        U64 = U32.astype(np.float64)
        un = np.sqrt(np.einsum("ij,ij->i", U64, U64))
        umax = float(un.max()) if Vu else 0.0
        Lr = min(L, V)
        W = min(Vu, Lr + max(8, L // 4))
        g64, g32 = _gamma(D, _U64), _U32 * (D + 2) * 2.0
        step = max(1, min(chunk, int(32e6 // max(1, W * D * 8))))
        for a in range(0, N, step):
            x32 = X[a : a + step]
            n = len(x32)
            x64 = x32.astype(np.float64)
            xn = np.sqrt(np.einsum("ij,ij->i", x64, x64))
            e64 = g64 * xn * umax
            G = x32 @ U32.T  # n x Vu float32 (preselection only)
            if W < Vu:
                win = np.argpartition(-G, W - 1, axis=1)[:, :W]
                kth = np.take_along_axis(G, win, axis=1).min(axis=1).astype(np.float64)
                e32 = g32 * xn * umax + np.abs(kth) * _U32 * 4
                out_bound = kth + e32 + e64  # no distinct vector outside the window scores above this
            else:
                win = np.broadcast_to(np.arange(Vu), (n, Vu))
                out_bound = np.full(n, -np.inf)
            vals = np.einsum("nd,nwd->nw", x64, U64[win])  # float64 re-score of the window
            srt = np.lexsort((win, -vals), axis=-1)
            win = np.take_along_axis(win, srt, axis=1)
            vals = np.take_along_axis(vals, srt, axis=1)
            lo = vals - e64[:, None]
            sep = np.empty((n, W), bool)
            sep[:, :-1] = lo[:, :-1] > vals[:, 1:] + e64[:, None]
            sep[:, -1] = W == Vu
            certain = sep & (lo > out_bound[:, None])
            plen = np.where(certain.all(axis=1), W, np.argmin(certain, axis=1))  # certified prefix (distinct vectors)
            cols = np.arange(W)[None, :]
            use = cols < plen[:, None]
            cnt = np.where(use, ucount[win], 0)
            if Vu == V:  # no duplicates: one node per vector
                nodes = np.where(use, unodes[win], -1)[:, :Lr]
                ranks[a : a + n, : nodes.shape[1]] = nodes
                continue
            start = np.cumsum(cnt, axis=1) - cnt
            rr, jj = np.nonzero(cnt)
            c = cnt[rr, jj]
            tot = int(c.sum())
            off = np.arange(tot) - np.repeat(np.cumsum(c) - c, c)
            posn = np.repeat(start[rr, jj], c) + off
            node = unodes[np.repeat(uptr[win[rr, jj]], c) + off]
            keep = posn < Lr
            ranks[a + np.repeat(rr, c)[keep], posn[keep]] = node[keep]
        return cls(ranks, V, L, D, graph_version, fingerprint)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write an uncompressed ``.npz`` atomically (no object arrays)."""
        return atomic_write_npz(
            path,
            format=np.asarray(INDEX_FORMAT),
            ranks=self.ranks,
            n_nodes=np.asarray(self.n_nodes, np.int64),
            L=np.asarray(self.L, np.int64),
            dim=np.asarray(self.dim, np.int64),
            graph_version=np.asarray(self.graph_version),
            fingerprint=np.asarray(self.fingerprint),
        )

    @classmethod
    def load(cls, path: str | Path) -> "ConfuserIndex":
        """Read an index written by :meth:`save`; a ``ValueError`` names anything malformed."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["format"]) != INDEX_FORMAT:
                    raise DataError(f"{path} is not a {INDEX_FORMAT} file")
                return cls(np.asarray(z["ranks"]), int(z["n_nodes"]), int(z["L"]), int(z["dim"]),
                           str(z["graph_version"]), str(z["fingerprint"]))
        except NPZ_ERRORS as exc:  # truncated / overwritten file (zipfile.BadZipFile is no OSError)
            raise DataError(f"cannot read fast-path index {path}: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------------------------------------------------
# all models together
# ---------------------------------------------------------------------------------------------------------
