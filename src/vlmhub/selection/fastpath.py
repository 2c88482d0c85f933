"""An exact fast path for Eq. 5 (``p_{m,v}``) and the rest of MLL selection.

Why the reference is slow
-------------------------
:func:`~vlmhub.selection.mll.node_precision` gathers, per model and task, the embeddings of every image of
the selected nodes and multiplies them with the selected captions: O(models x images x dim x |S|) per task.

Idea: one canonical node ranking per image
------------------------------------------
For a pair ``(v, x)`` (``x in X_v``) the *confusers* are the nodes ``u`` that beat ``v`` on image ``x``. All
pairs of one image share one order, so the confuser list of ``(v, x)`` is the prefix, before ``v``, of the
image's **ranking** of all nodes by similarity. :class:`ConfuserIndex` therefore stores per model, once per
graph version, the first ``L`` nodes of every image's ranking (``N x L`` int16/int32, -1 padded). For a
selected set ``S`` the prediction of Eq. 5 is the first listed node that lies in ``S``; the pair ``(v, x)`` is
correct iff that node is ``v``. If no listed node lies in ``S`` the image *falls back* to an exact dot product
over ``S`` (:func:`canonical_argmax`). F1 needs the same per-image prediction, so both metrics come from it.
A query costs O(models x |images of S| x few) gathers instead of dot products.

Exactness (read this)
---------------------
The decision rule is **canonical**: ``pred(x) = argmax_s cv(x, s)``, ties to the lowest selected position
(= lowest node index, since ``S`` is sorted), where ``cv`` is the correctly rounded exact dot product of the
stored float32 vectors (products are exact in float64; ``math.fsum`` rounds their sum once). It is a pure
function of ``x`` and ``S``. The ranking is *certified*: a float64 similarity is within a rigorous bound
``gamma_D |x| |c|`` of the exact one, and a listed position is kept only when it is separated from every
later node by more than the bounds (identical caption vectors tie exactly and are expanded in node order);
the list is cut before the first uncertain position, so it is always a prefix of the canonical ranking.

The float32 reference :func:`node_precision` is *not* a function of ``x`` and ``S`` alone: OpenBLAS sgemm
rounds an entry differently depending on the matrix shape (which other images and captions a task has; 1-2
ulp), and two identical caption columns (nodes with the same caption) can get different values in one call,
so its tie-breaking is arbitrary. Away from float32 near-ties (|gap| < ~1e-6) both agree exactly (tested);
:func:`exact_node_precision` is the reference with the canonical rule, which :class:`FastEq5` matches
bit-for-bit in every case, ties included. Making ``node_precision`` use :func:`canonical_argmax` removes the
last difference.

Also here: :func:`fast_transfer_matrix` (identical output to ``transfer_matrix``, top-k by partition instead of
a full sort, Z scattered without Python loops) and :meth:`FastEq5.estimate` (everything
``MLLSelector.estimate`` computes from class embeddings).

Storage: one selection block per model, ``<home>/cache/fastpath/<graph version>/<model id>/`` (memory-mapped
``.npy`` rankings and fallback embeddings, :mod:`vlmhub.selection.blocks`), keyed by a fingerprint of the
label's tables and ``L``; a relabel or another ``L`` rebuilds that model's block only. :class:`ConfuserIndex`
``.npz`` files (:meth:`ConfuserIndex.save`) remain readable for callers that keep their own.
"""

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
from .confusers import DEFAULT_L, INDEX_FORMAT, ConfuserIndex, GraphMembership, _node_dtype  # noqa: F401 (re-exported)
from .equations import class_estimates, reuse_scores
from .exact import (  # noqa: F401  (re-exported: the fast path's public names stay importable from here)
    _U32, _U64, Metric, _exact_dot, _gamma, _precision_from_counts, _topk_by_sort, canonical_argmax,
    exact_node_precision, fast_transfer_matrix, stable_topk,
)

__all__ = [
    "INDEX_FORMAT",
    "DEFAULT_L",
    "DEFAULT_BLOCK_MODELS",
    "canonical_argmax",
    "exact_node_precision",
    "fast_transfer_matrix",
    "stable_topk",
    "GraphMembership",
    "ConfuserIndex",
    "QueryStats",
    "FastEq5",
]

#: models whose predictions a query holds (and whose block pages it keeps resident) at once
DEFAULT_BLOCK_MODELS = 32

_MISS, _END = -1, -2  # posmap values of a listed node that is not selected / of the -1 padding
_CHUNK = 8  # ranking positions the walk first reads at once for its stragglers (measured: 8-16 are best)
#: undecided images below which the walk reads chunks of positions instead of one (NumPy's per-call cost
#: against its per-element cost: measured best between ~1,200 and ~3,000)
_STRAGGLERS = 2048


def _position_map(sel: np.ndarray, n_nodes: int) -> np.ndarray:
    """``(n_nodes + 1,)`` int32: the position in ``sel`` of each selected node, ``_MISS`` for the others and
    ``_END`` in the last slot, which the rankings' -1 padding indexes."""
    posmap = np.full(n_nodes + 1, _MISS, np.int32)
    posmap[sel] = np.arange(len(sel), dtype=np.int32)
    posmap[-1] = _END
    return posmap



@dataclass(frozen=True)
class QueryStats:
    """What one :meth:`FastEq5.precision_matrix` call did."""

    n_selected: int
    n_images: int  # images of the selected nodes
    n_pairs: int
    fallback: int  # (model, image) decisions computed by dot products
    seconds: float


EmbLoader = Callable[[], tuple[np.ndarray, np.ndarray]]  # -> (images N x D, captions V x D, one row per node)


def _label_fingerprint(label_dir: Path, L: int) -> str:
    h = hashlib.sha1(f"{INDEX_FORMAT}|L={L}|".encode())
    for name in ("manifest.json", "images/index.json", "captions/index.json"):
        p = label_dir / name
        h.update(p.read_bytes() if p.is_file() else b"-")
    return h.hexdigest()[:20]


@dataclass(frozen=True)
class FastEq5:
    """Eq. 5 for every model at once from :class:`ConfuserIndex` rankings (see module docstring).

    ``blocks[m]`` is model m's ranking, position-major (L x N: one ranking position of every image is
    contiguous, which is what a query walks), an in-memory array or a read-only memory map of its selection
    block (:mod:`vlmhub.selection.blocks`); ``loaders[m]`` returns model m's image and per-node caption
    embeddings for the exact fallback and is called at most once (lazily). Nothing stacks the models: a query
    visits the blocks one by one and pages in only the positions and rows it reads.

    Memory of a query: models are handled in groups of ``block_models``; a group's predictions (models x
    images of ``S``, int32) are counted, then ``releasers`` of its models drop the pages the group read
    (:meth:`~vlmhub.selection.blocks.ModelBlock.release`). The resident memory of a query is therefore bounded
    by ``block_models`` (and ``|S|``), not by the number of models. Results do not depend on ``block_models``.
    """

    membership: GraphMembership
    model_ids: tuple[str, ...]
    blocks: tuple[np.ndarray, ...] = field(repr=False)
    loaders: tuple[EmbLoader, ...] = field(repr=False)
    build_seconds: float = 0.0
    n_built: int = 0  # blocks built (not read from the cache) by the constructor
    block_models: int = DEFAULT_BLOCK_MODELS
    releasers: tuple[Callable[[], None], ...] = field(default=(), repr=False, compare=False)
    _emb: dict = field(default_factory=dict, repr=False, compare=False)
    _stats: list = field(default_factory=list, repr=False, compare=False)

    # -- construction --------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        if not self.blocks:
            raise SelectionError("no models to select from; label at least one model (vlmhub label)")
        N, V = self.membership.n_images, self.membership.n_nodes
        for mid, b in zip(self.model_ids, self.blocks):
            if b.ndim != 2 or b.shape[1] != N:
                raise LabelError(f"index of {mid} was built for another graph ({b.shape[1]} images, graph has {N}); "
                                 "run `vlmhub label` to rebuild it")
        if len(self.model_ids) != len(self.blocks) or len(self.loaders) != len(self.blocks):
            raise SelectionError("one model id, ranking block and loader per model")
        if self.releasers and len(self.releasers) != len(self.blocks):
            raise SelectionError("one releaser per model (or none)")
        if isinstance(self.block_models, bool) or not isinstance(self.block_models, int) or self.block_models < 1:
            raise SelectionError(f"block_models must be a whole number >= 1 (got {self.block_models!r})")
        del V

    @classmethod
    def from_indexes(cls, membership: GraphMembership, model_ids: Sequence[str], indexes: Sequence[ConfuserIndex],
                     loaders: Sequence[EmbLoader], build_seconds: float = 0.0, *,
                     block_models: int = DEFAULT_BLOCK_MODELS) -> "FastEq5":
        if not indexes:
            raise SelectionError("no models to select from; label at least one model (vlmhub label)")
        for m, ix in enumerate(indexes):
            if ix.ranks.shape[0] != membership.n_images or ix.n_nodes != membership.n_nodes:
                raise LabelError(f"index of {model_ids[m]} was built for another graph")
        blocks = tuple(np.ascontiguousarray(ix.ranks.T) for ix in indexes)
        return cls(membership, tuple(model_ids), blocks, tuple(loaders), build_seconds, len(indexes), block_models)

    @classmethod
    def from_embeddings(cls, membership: GraphMembership, model_ids: Sequence[str],
                        embeddings: Sequence[tuple[np.ndarray, np.ndarray]], L: int = DEFAULT_L, *,
                        block_models: int = DEFAULT_BLOCK_MODELS) -> "FastEq5":
        """From in-memory ``(image N x D, caption V x D)`` pairs (tests, benchmarks)."""
        t0 = time.perf_counter()
        idx = [ConfuserIndex.build(i, c, L, graph_version=membership.graph_version) for i, c in embeddings]
        loaders = [(lambda e=e: e) for e in embeddings]
        return cls.from_indexes(membership, model_ids, idx, loaders, time.perf_counter() - t0, block_models=block_models)

    @classmethod
    def from_blocks(cls, membership: GraphMembership, blocks: Sequence, *, build_seconds: float = 0.0,
                    n_built: int = 0, block_models: int = DEFAULT_BLOCK_MODELS) -> "FastEq5":
        """From :class:`~vlmhub.selection.blocks.ModelBlock` s (memory-mapped: nothing is read until a query)."""
        return cls(membership, tuple(b.model_id for b in blocks), tuple(b.ranks for b in blocks),
                   tuple((lambda b=b: (b.images, b.captions)) for b in blocks), build_seconds, n_built,
                   block_models, tuple(b.release for b in blocks))

    @staticmethod
    def build_block(folder: Path, model_id: str, images: np.ndarray, captions: np.ndarray, L: int = DEFAULT_L, *,
                    graph_version: str = "", fingerprint: str = ""):
        """Build one model's index from its label embeddings (graph order) and write its block; returns it."""
        from .blocks import write_block

        ix = ConfuserIndex.build(images, captions, L, graph_version=graph_version, fingerprint=fingerprint)
        return write_block(folder, model_id, ix.ranks.T, images, captions, graph_version=graph_version,
                           fingerprint=fingerprint)

    @classmethod
    def from_labels(cls, store, model_ids: Sequence[str], graph, settings=None, *, L: int = DEFAULT_L,
                    cache: bool = True, membership: GraphMembership | None = None,
                    block_models: int = DEFAULT_BLOCK_MODELS) -> "FastEq5":
        """Open (or build and store) every model's selection block from its label in ``store`` (a ``LabelStore``).

        Blocks: ``<home>/cache/fastpath/<graph version>/<model id>/`` (:mod:`vlmhub.selection.blocks`), one
        per model: a model whose block is missing, stale (its label changed: fingerprint) or damaged is built
        alone; the others are only memory-mapped. ``cache=False`` builds every index in memory (and holds every
        label's embeddings once a fallback reads them). ``block_models``: see the class docstring.
        """
        from .blocks import block_folder, open_or_none

        settings = settings or store.settings
        mem = membership or GraphMembership.from_graph(graph)
        folder = block_folder(settings.cache_dir, graph.version)
        t0 = time.perf_counter()
        blocks, indexes, loaders, built = [], [], [], 0
        for mid in model_ids:
            lab = store.label(mid)
            fp = _label_fingerprint(lab.directory, L)
            if not cache:
                loader = _LabelLoader(lab, mem.image_ids, mem.caption_keys)
                img, cap = loader()
                indexes.append(ConfuserIndex.build(img, cap, L, graph_version=graph.version, fingerprint=fp))
                loaders.append(loader)
                continue
            b = open_or_none(folder, mid, fingerprint=fp, L=L, graph_version=graph.version,
                             n_images=mem.n_images, n_nodes=mem.n_nodes)
            if b is None:
                img, cap = _LabelLoader(lab, mem.image_ids, mem.caption_keys)()
                b = cls.build_block(folder, mid, img, cap, L, graph_version=graph.version, fingerprint=fp)
                built += 1
                del img, cap
            b.release()  # a fresh block's pages were just written: not part of any query's memory
            blocks.append(b)
        if not cache:
            return cls.from_indexes(mem, model_ids, indexes, loaders, time.perf_counter() - t0, block_models=block_models)
        return cls.from_blocks(mem, blocks, build_seconds=time.perf_counter() - t0, n_built=built,
                               block_models=block_models)

    # -- accounting ----------------------------------------------------------------------------------
    @property
    def ranks(self) -> np.ndarray:
        """Every model's ranking stacked (M x L x N, -1 padded). Materialises all blocks: for inspection only."""
        L = max(b.shape[0] for b in self.blocks)
        out = np.full((len(self.blocks), L, self.membership.n_images), -1, _node_dtype(self.membership.n_nodes))
        for m, b in enumerate(self.blocks):
            out[m, : b.shape[0]] = b
        return out

    @property
    def nbytes(self) -> int:
        """Bytes of the rankings and the membership arrays (mapped, not necessarily resident; not counting the
        fallback embeddings)."""
        return int(sum(b.nbytes for b in self.blocks) + self.membership.indptr.nbytes + self.membership.indices.nbytes)

    def bytes_per_model(self) -> int:
        return int(self.blocks[0].nbytes) if self.blocks else 0

    @property
    def last_stats(self) -> QueryStats | None:
        return self._stats[-1] if self._stats else None

    def _embeddings(self, m: int) -> tuple[np.ndarray, np.ndarray]:
        if m not in self._emb:
            self._emb[m] = self.loaders[m]()
        return self._emb[m]

    # -- Eq. 5 ---------------------------------------------------------------------------------------
    def predictions(self, selected: np.ndarray, rows: np.ndarray,
                    models: range | None = None) -> tuple[np.ndarray, int]:
        """Selected position predicted for each model (of ``models``, default all) and image row in ``rows``
        (len(models) x len(rows), int32); and the number of fallback decisions.

        Per model, reads ranking position 0 of every image, then one position at a time over the still-undecided
        images (most are decided within a few positions) until at most ``_STRAGGLERS`` are left, then the next
        8, 16, ... positions of those stragglers at once; the images with no selected node before the padding are
        decided exactly over ``S``.
        """
        sel = np.asarray(selected, np.int64)
        rows = np.asarray(rows, np.int64)
        models = range(len(self.blocks)) if models is None else models
        posmap = _position_map(sel, self.membership.n_nodes)
        pred = np.full((len(models), len(rows)), -1, np.int32)
        n_fb = 0
        for i, m in enumerate(models):
            n_fb += self._predict_model(m, sel, rows, posmap, pred[i])
        return pred, n_fb

    def _predict_model(self, m: int, sel: np.ndarray, rows: np.ndarray, posmap: np.ndarray, pm: np.ndarray) -> int:
        """Fill ``pm`` (len(rows),) with model m's predictions; returns its number of fallback decisions.

        ``posmap`` (:func:`_position_map`) turns a listed node into its selected position (>= 0), ``_MISS``
        (not selected: walk on) or ``_END`` (the -1 padding: the certified prefix ended, fall back). Every step
        writes its lookups for the still-undecided images (a miss is overwritten later); only ``np.take`` (an
        int16 fancy index is converted first: ~3x slower), integer-array stores and ``np.flatnonzero``; boolean
        masks and ``np.put`` are several times slower here.
        """
        R = self.blocks[m]
        Lr = R.shape[0]
        idx = r = np.zeros(0, np.int64)
        if Lr == 0:
            pm[:] = _END
        elif len(rows):  # position 0 for every image: written in place, the misses walk on
            posmap.take(R[0].take(rows), out=pm)
            idx = (pm == _MISS).nonzero()[0]
            r = rows.take(idx)
        p, k = 1, _CHUNK
        while p < Lr and len(idx):
            if len(idx) > _STRAGGLERS:  # many undecided images: one position at a time, keeping only the misses
                q = posmap.take(R[p].take(r))
                p += 1
                pm[idx] = q
                go = (q == _MISS).nonzero()[0]
            else:  # stragglers: the next k positions at once (k doubles), the first selected one wins
                q = posmap.take(R[p : p + k].take(r, axis=1))  # k x n
                p, k = p + k, 2 * k
                qq = np.take_along_axis(q, (q >= 0).argmax(axis=0)[None], axis=0)[0]  # no hit: q[0] (miss/end)
                pm[idx] = qq
                go = ((qq == _MISS) & (q[-1] == _MISS)).nonzero()[0]  # padding is trailing: q[-1] sees an end
            idx, r = idx.take(go), r.take(go)
        us = np.flatnonzero(pm < 0)
        if len(us):  # nothing selected in the certified prefix: decide exactly over S
            img, cap = self._embeddings(m)
            pm[us] = canonical_argmax(img[rows[us]], cap[sel])
        return len(us)

    def precision_matrix(self, selected: Sequence[int] | np.ndarray, metric: Metric = "precision") -> np.ndarray:
        """``P`` (models x |S|): ``exact_node_precision`` of every model for the sorted node indices ``selected``."""
        if metric not in ("precision", "f1"):
            raise SelectionError(f"unknown metric {metric!r}; use 'precision' (Eq. 5) or 'f1' (official code)")
        t0 = time.perf_counter()
        sel = np.asarray(selected, np.int64)
        if np.any(sel[1:] <= sel[:-1]):
            raise SelectionError("selected node indices must be sorted and unique (np.unique)")
        S, M = len(sel), len(self.model_ids)
        pos, img_rows, lens = self.membership.pairs(sel)
        if len(pos) == 0:
            return np.zeros((M, S))
        rows, pair_u = np.unique(img_rows, return_inverse=True)
        nU = len(rows)
        # tp[m, s] = #{x in X_S[s] : pred[m, x] = s}
        tp = np.zeros((M, S))
        n_pred = np.zeros((M, S)) if metric == "f1" else None
        mult = np.bincount(pair_u, minlength=nU).astype(np.float64) if metric == "f1" else None  # pairs per image
        n_fb = 0
        for g0 in range(0, M, self.block_models):  # one group of models at a time: bounded memory
            group = range(g0, min(M, g0 + self.block_models))
            pred, nf = self.predictions(sel, rows, group)  # len(group) x nU
            n_fb += nf
            for a in range(len(group)):  # tp: the positions of the pairs whose image predicts them, counted
                tp[g0 + a] = np.bincount(pos.take((pred[a].take(pair_u) == pos).nonzero()[0]), minlength=S)
            if n_pred is not None:
                offs = (np.arange(len(group), dtype=np.int64) * S)[:, None]
                n_pred[group.start : group.stop] = np.bincount(
                    (pred + offs).ravel(), weights=np.broadcast_to(mult, pred.shape).ravel(),
                    minlength=len(group) * S).reshape(len(group), S)
            del pred
            for m in (group if self.releasers else ()):
                self.releasers[m]()
        n_v = lens.astype(np.float64)
        P = _precision_from_counts(tp, np.broadcast_to(n_v, (M, S)), n_pred, metric)
        self._stats.append(QueryStats(S, nU, len(pos), n_fb, time.perf_counter() - t0))
        del self._stats[:-1]
        return P

    # -- everything MLLSelector.estimate computes -------------------------------------------------------
    def estimate(self, class_emb: np.ndarray, node_emb: np.ndarray, *, k_nodes: int = 5, alpha: float = 0.7,
                 metric: Metric = "precision", normalize_z: bool = False) -> dict:
        """``selected, Z, sims, top, P, p, r`` as in ``MLLSelector.estimate`` (``top``: C x k_nodes)."""
        selected, Z, sims, top = fast_transfer_matrix(class_emb, node_emb, k_nodes, normalize=normalize_z)
        P = self.precision_matrix(selected, metric)
        p_my = class_estimates(P, Z)
        return {"selected": selected, "Z": Z, "sims": sims, "top": top, "P": P, "p": p_my, "r": reuse_scores(p_my, alpha)}


class _LabelLoader:
    """Reads one model's image and per-node caption embeddings from its label (once)."""

    def __init__(self, label, image_ids: Sequence[str], caption_keys: Sequence[str]):
        self.label, self.image_ids, self.caption_keys = label, image_ids, caption_keys

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        return self.label.images.get(list(self.image_ids)), self.label.captions.get(list(self.caption_keys))
