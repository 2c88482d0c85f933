"""Exact arithmetic of the fast path: the certified argmax of Eq. 2, Eq. 5 from counts, and a stable top-k
(split from :mod:`vlmhub.selection.fastpath`; the numbers and their guarantees are documented there)."""

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

    A float32 product screens first: a row whose float32 maximum is separated from every rival by the
    rigorous float32 rounding bound is decided by it (the exact maximum lies within the bound of it). The
    other rows go to float64, whose products of float32 inputs are exact; rows whose float64 maximum is not
    separated from a rival by its bound are decided with :func:`math.fsum` (exact ties: duplicate captions,
    zero similarities of sparse embeddings). Each stage returns the exact argmax, so the result is the same
    with or without the screen, and does not depend on which other rows are passed.
    """
    X = np.asarray(image_emb, np.float32)
    C = np.asarray(caption_emb, np.float32)
    n, S = X.shape[0], C.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    if S == 0:
        raise TaskError("no captions to choose from")
    X64 = X.astype(np.float64)
    xn = np.sqrt((X64 * X64).sum(axis=1))
    cmax = float(np.sqrt((C.astype(np.float64) ** 2).sum(axis=1).max()))
    # |G32 - exact| <= e32 per image, in any summation order; the absolute term covers flushed subnormals
    e32 = _gamma(X.shape[1], _U32) * xn * cmax + X.shape[1] * 2.0**-125
    G = X @ C.T
    t = np.argmax(G, axis=1)
    lo = G[np.arange(n), t].astype(np.float64) - 2 * e32
    multi = np.flatnonzero((G >= lo[:, None]).sum(axis=1) > 1)  # a rival within the bound: settle in float64
    pred = t.astype(np.int64)
    if len(multi):
        pred[multi] = _canonical_argmax64(X[multi], C)
    return pred


def _canonical_argmax64(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    """:func:`canonical_argmax` without the float32 screen (float64, then :func:`math.fsum` for near-ties)."""
    n = X.shape[0]
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
