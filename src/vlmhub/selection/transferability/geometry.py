"""Scores of the geometry of the whole probe set: PARC (Bolya et al., NeurIPS 2021, pairwise
representational correlation) and TransRate (Huang et al., ICML 2022, coding rate)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from .base import _features_labels, _one_hot, pca_reduce

__all__ = ["parc", "transrate"]


# ---------------------------------------------------------------------------------------------
# PARC
# ---------------------------------------------------------------------------------------------


def _row_correlation(x: np.ndarray) -> np.ndarray:
    """Pearson correlation between rows; rows without variance correlate 0 with everything."""
    xc = x - x.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(xc, axis=1)
    scale = norms.max() if norms.size else 0.0
    ok = norms > scale * 1e-12 if scale > 0 else np.zeros_like(norms, dtype=bool)
    xn = np.zeros_like(xc)
    xn[ok] = xc[ok] / norms[ok, None]
    return xn @ xn.T


def parc(features: Any, labels: Any, *, pca_dim: int | None = 32) -> float:
    """PARC (Bolya, Mittapalli & Hoffman, NeurIPS 2021). Higher is better, in [-1, 1].

    With features reduced by PCA to ``pca_dim`` dimensions (as in the reference code; ``None``
    keeps them) and standardised per column, and one-hot labels Y:

        D_f = 1 - corrcoef(f_i, f_j),   D_y = 1 - corrcoef(Y_i, Y_j)       (Pearson across dims)
        PARC = Spearman( {D_f[i, j]}_{i<j}, {D_y[i, j]}_{i<j} ).

    The reference code multiplies by 100; we return the plain correlation. Samples whose
    (reduced) feature vector is constant correlate 0 with all others; if either dissimilarity
    vector is constant the score is 0.
    """
    x, y, c, _ = _features_labels(features, labels)
    n, d = x.shape
    if pca_dim is not None and d > pca_dim:
        x = pca_reduce(x, n_components=pca_dim)
    sd = x.std(axis=0)
    x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    iu = np.triu_indices(n, k=1)
    df = 1.0 - _row_correlation(x)[iu]
    dy = 1.0 - _row_correlation(_one_hot(y, c))[iu]
    if np.ptp(df) <= 0 or np.ptp(dy) <= 0:
        return 0.0
    rho = stats.spearmanr(df, dy).statistic
    return float(rho) if np.isfinite(rho) else 0.0



# ---------------------------------------------------------------------------------------------
# TransRate
# ---------------------------------------------------------------------------------------------


def _coding_rate(z: np.ndarray, eps: float) -> float:
    """R(Z, eps) = 1/2 logdet(I_d + Z^T Z / (n eps)), via the smaller Gram matrix."""
    n, d = z.shape
    gram = z @ z.T if n <= d else z.T @ z
    ev = np.maximum(np.linalg.eigvalsh(0.5 * (gram + gram.T)), 0.0)
    return 0.5 * float(np.sum(np.log1p(ev / (n * eps))))


def transrate(features: Any, labels: Any, *, eps: float = 1e-4) -> float:
    """TransRate (Huang et al., ICML 2022). Higher is better.

    On centred features Z (N x D), with the coding rate ``R(Z, eps) = 1/2 logdet(I + Z^T Z / (N eps))``
    (``eps`` plays the role of the paper's epsilon^2, default 1e-4 as in the paper's code):

        TransRate = R(Z, eps) - R(Z, eps | Y),   R(Z, eps | Y) = 1/C sum_c R(Z_c, eps),

    where ``Z_c`` are the (globally centred) rows of class c, normalised by their own count. The
    score is the mutual-information proxy "rate of the whole minus mean rate of the classes"; it is
    scale-dependent, like the original.
    """
    x, y, c, _ = _features_labels(features, labels)
    z = x - x.mean(axis=0)
    rz = _coding_rate(z, eps)
    rzy = float(np.mean([_coding_rate(z[y == k], eps) for k in range(c)]))
    return float(rz - rzy)
