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
from .equations import class_estimates, reuse_scores

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

INDEX_FORMAT = "vlmhub.fastpath/1"
DEFAULT_L = 64
#: models whose predictions a query holds (and whose block pages it keeps resident) at once
DEFAULT_BLOCK_MODELS = 32

Metric = Literal["precision", "f1"]
_U64 = 2.0**-53
_U32 = 2.0**-24


def _gamma(d: int, u: float) -> float:
    """Rigorous relative bound of a length-``d`` dot product in unit roundoff ``u`` (any summation order),
    with a safety factor of 2 for the norms' own rounding."""
    n = (d + 2) * u
    return 2.0 * n / (1.0 - n)


# ---------------------------------------------------------------------------------------------------------
# the canonical decision (reference semantics)
# ---------------------------------------------------------------------------------------------------------
def _exact_dot(x: np.ndarray, c: np.ndarray) -> float:
    """Correctly rounded dot product of two float32 vectors (exact float64 products, one rounding)."""
    p = np.asarray(x, np.float64) * np.asarray(c, np.float64)
    if not p.any():
        return 0.0
    return math.fsum(p.tolist())


def canonical_argmax(image_emb: np.ndarray, caption_emb: np.ndarray) -> np.ndarray:
    """Per image, the caption row with the largest exact similarity; ties go to the lowest row.

    Float64 products of float32 inputs are exact; rows whose float64 maximum is not separated from a rival by
    the rigorous rounding bound are decided with :func:`math.fsum` (exact ties: duplicate captions, zero
    similarities of sparse embeddings). The result does not depend on which other rows are passed.
    """
    X = np.asarray(image_emb, np.float32)
    C = np.asarray(caption_emb, np.float32)
    n, S = X.shape[0], C.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    if S == 0:
        raise TaskError("no captions to choose from")
    X64, C64 = X.astype(np.float64), C.astype(np.float64)
    G = X64 @ C64.T
    xn = np.sqrt((X64 * X64).sum(axis=1))
    cmax = float(np.sqrt((C64 * C64).sum(axis=1).max()))
    e = _gamma(X.shape[1], _U64) * xn * cmax  # per image: |G - exact| <= e for every caption
    t = np.argmax(G, axis=1)
    lo = G[np.arange(n), t] - 2 * e
    cand = G >= lo[:, None]  # could tie or beat the float64 winner: settle exactly
    amb = np.flatnonzero(cand.sum(axis=1) > 1)
    pred = t.astype(np.int64)
    for r in amb:
        cs = np.flatnonzero(cand[r])
        cv = [_exact_dot(X[r], C[s]) for s in cs]
        best = max(cv)
        pred[r] = cs[cv.index(best)]  # first = lowest row among exact ties
    return pred


def _precision_from_counts(tp: np.ndarray, n_v: np.ndarray, n_pred: np.ndarray | None, metric: str) -> np.ndarray:
    """The tail of ``node_precision`` on (..., S) count arrays, elementwise (bitwise the same arithmetic)."""
    shape = np.broadcast_shapes(tp.shape, n_v.shape)
    recall = np.divide(tp, n_v, out=np.zeros(shape), where=n_v > 0)
    if metric == "precision":
        return recall
    if metric == "f1":
        assert n_pred is not None
        prec = np.divide(tp, n_pred, out=np.zeros(shape), where=n_pred > 0)
        return np.divide(2 * prec * recall, prec + recall, out=np.zeros(shape), where=(prec + recall) > 0)
    raise SelectionError(f"unknown metric {metric!r}; use 'precision' (Eq. 5) or 'f1' (official code)")


def exact_node_precision(
    image_emb: np.ndarray,
    caption_emb: np.ndarray,
    membership: Sequence[tuple[int, int]],
    *,
    metric: Metric = "precision",
) -> np.ndarray:
    """``node_precision`` with the canonical decision (:func:`canonical_argmax`) instead of float32 argmax."""
    S = caption_emb.shape[0]
    if metric not in ("precision", "f1"):
        raise SelectionError(f"unknown metric {metric!r}; use 'precision' (Eq. 5) or 'f1' (official code)")
    if len(membership) == 0:
        return np.zeros(S)
    pred = canonical_argmax(image_emb, caption_emb)
    mem = np.asarray(membership, dtype=np.int64)
    v, x = mem[:, 0], mem[:, 1]
    hit = (pred[x] == v).astype(np.float64)
    n_v = np.bincount(v, minlength=S).astype(np.float64)
    tp = np.bincount(v, weights=hit, minlength=S)
    n_pred = np.bincount(pred[x], minlength=S).astype(np.float64) if metric == "f1" else None
    return _precision_from_counts(tp, n_v, n_pred, metric)


# ---------------------------------------------------------------------------------------------------------
# transfer matrix without full sorts
# ---------------------------------------------------------------------------------------------------------
def _topk_by_sort(sims: np.ndarray, k: int) -> np.ndarray:
    """Rows of ``stable_topk`` with ties at the k-th value: the exact tie rule on a mask of the candidates."""
    C = sims.shape[0]
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    thr = np.take_along_axis(sims, part, axis=1).min(axis=1)[:, None]  # the k-th largest value
    gt = sims > thr
    eq = sims == thr
    need = k - gt.sum(axis=1)
    mask = gt | (eq & (np.cumsum(eq, axis=1) <= need[:, None]))
    cols = np.nonzero(mask)[1].reshape(C, k)  # row-major: columns ascending within each row
    vals = np.take_along_axis(sims, cols, axis=1)
    order = np.lexsort((cols, -vals), axis=-1)
    return np.take_along_axis(cols, order, axis=1)


def stable_topk(sims: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(-sims, axis=1, kind="stable")[:, :k]`` via partition (O(C V) instead of O(C V log V)).

    One partition and one comparison pass over ``sims``; only rows with a tie at their k-th value (rare with
    real similarities) take the slower exact tie rule.
    """
    sims = np.asarray(sims)
    C, V = sims.shape
    k = min(k, V)
    if k >= V or C == 0 or V <= 64:
        return np.argsort(-sims, axis=1, kind="stable")[:, :k]
    part = np.argpartition(sims, V - k, axis=1)[:, V - k :]  # the k largest, unordered
    vals = np.take_along_axis(sims, part, axis=1)
    thr = vals.min(axis=1)
    easy = (sims >= thr[:, None]).sum(axis=1) == k  # exactly k values reach the k-th: the set is unique
    out = np.empty((C, k), np.int64)
    e = np.flatnonzero(easy)
    if len(e):
        order = np.lexsort((part[e], -vals[e]), axis=-1)
        out[e] = np.take_along_axis(part[e], order, axis=1)
    h = np.flatnonzero(~easy)
    if len(h):
        out[h] = _topk_by_sort(sims[h], k)
    return out


def fast_transfer_matrix(
    class_emb: np.ndarray, node_emb: np.ndarray, k_nodes: int, *, normalize: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Same ``(selected, Z, sims)`` as :func:`~vlmhub.selection.mll.transfer_matrix`, plus ``top`` (C x k), the
    per-class node ranking ``select`` needs. Pass ``node_emb`` already as float64 to skip a conversion."""
    if k_nodes < 1:
        raise SelectionError("k_nodes must be >= 1")
    sims = np.asarray(class_emb, np.float64) @ np.asarray(node_emb, np.float64).T  # C x V
    top = stable_topk(sims, k_nodes)
    selected = np.unique(top.ravel())
    Z = np.zeros((len(selected), sims.shape[0]))
    pos = np.searchsorted(selected, top)
    cols = np.broadcast_to(np.arange(sims.shape[0])[:, None], top.shape)
    Z[pos, cols] = np.take_along_axis(sims, top, axis=1)
    if normalize:
        Z = np.clip(Z, 0, None)
        Z = Z / np.maximum(Z.sum(axis=0, keepdims=True), 1e-12)
    return selected, Z, sims, top


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

        Per model, walks the ranking one position at a time over the still-undecided images (most are decided
        within a few positions), then decides the rest exactly over ``S``.
        """
        sel = np.asarray(selected, np.int64)
        rows = np.asarray(rows, np.int64)
        models = range(len(self.blocks)) if models is None else models
        V = self.membership.n_nodes
        lut = np.zeros(V + 1, bool)  # lut[-1] (padding) stays False
        lut[sel] = True
        posmap = np.full(V + 1, -1, np.int32)
        posmap[sel] = np.arange(len(sel), dtype=np.int32)
        pred = np.full((len(models), len(rows)), -1, np.int32)
        n_fb = 0
        for i, m in enumerate(models):
            n_fb += self._predict_model(m, sel, rows, lut, posmap, pred[i])
        return pred, n_fb

    def _predict_model(self, m: int, sel: np.ndarray, rows: np.ndarray, lut: np.ndarray, posmap: np.ndarray,
                       pm: np.ndarray) -> int:
        """Fill ``pm`` (len(rows),) with model m's predictions; returns its number of fallback decisions."""
        R = self.blocks[m]
        nU = len(rows)
        idx, r = np.arange(nU), rows
        tail = max(256, nU // 16)
        for p in range(R.shape[0]):
            if len(idx) <= tail:  # few stragglers: the rest of their rankings in one gather
                blk = R[p:][:, r]  # (L - p) x n; -1 padding never lies in S
                h = lut[blk]
                first = np.argmax(h, axis=0)
                cols = np.arange(len(r))
                got = h[first, cols]
                pm[idx[got]] = posmap[blk[first[got], cols[got]]]
                break
            nodes = R[p][r]
            h = lut[nodes]
            pm[idx[h]] = posmap[nodes[h]]
            go = ~h & (nodes >= 0)  # a -1 ends the certified prefix: fall back
            idx, r = idx[go], r[go]
            if len(idx) == 0:
                break
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
        # tp[m, s] = #{x in X_S[s] : pred[m, x] = s}: pairs are grouped by position, so one segmented sum
        starts = np.cumsum(lens) - lens
        nz = np.flatnonzero(lens > 0)
        tp = np.zeros((M, S))
        n_pred = np.zeros((M, S)) if metric == "f1" else None
        mult = np.bincount(pair_u, minlength=nU).astype(np.float64) if metric == "f1" else None  # pairs per image
        step = max(1, 20_000_000 // max(1, len(pos)))
        n_fb = 0
        for g0 in range(0, M, self.block_models):  # one group of models at a time: bounded memory
            group = range(g0, min(M, g0 + self.block_models))
            pred, nf = self.predictions(sel, rows, group)  # len(group) x nU
            n_fb += nf
            for a in range(0, len(group), step):
                hit = pred[a : a + step][:, pair_u] == pos[None, :]
                tp[g0 + a : g0 + a + len(hit), nz] = np.add.reduceat(hit, starts[nz], axis=1, dtype=np.int64)
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
