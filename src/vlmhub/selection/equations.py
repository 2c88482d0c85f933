"""MLL's Eq. 6-7 and the top-k choice as pure NumPy functions (no I/O, no vlmhub imports).

Both the reference selector (:mod:`vlmhub.selection.mll`) and the fast path (:mod:`vlmhub.selection.fastpath`)
compute through these, so the two can only differ in how they get Eq. 5's node precisions.
"""

from __future__ import annotations

import numpy as np
from ..errors import SelectionError

__all__ = ["class_estimates", "reuse_scores", "top_k_models"]


def class_estimates(P: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """Eq. 6: ``p_{m,y} = sum_v p_{m,v} z_{vy}`` for all models at once (M x S) @ (S x C)."""
    return np.asarray(P, np.float64) @ np.asarray(Z, np.float64)


def reuse_scores(p_my: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 7: ``r_{m,y} = alpha p_{m,y} + (1 - alpha) / |Y_T| sum_{y'} p_{m,y'}``."""
    if not 0.0 <= alpha <= 1.0:
        raise SelectionError(f"alpha must lie in [0, 1], got {alpha}")
    p_my = np.asarray(p_my, np.float64)
    return alpha * p_my + (1 - alpha) * p_my.mean(axis=1, keepdims=True)


def top_k_models(r: np.ndarray, k: int) -> np.ndarray:
    """Indices (C x k) of the k highest ``r_{m,y}`` per class, ties resolved by model order."""
    if k < 1:
        raise SelectionError("k must be >= 1")
    k = min(k, r.shape[0])
    return np.argsort(-r, axis=0, kind="stable")[:k].T
