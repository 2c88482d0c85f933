"""Class-separability scores on second moments of the features: H-score (Bao et al., ICIP 2019),
shrinkage H-score (Ibrahim et al. 2022), SFDA (Shao et al., ECCV 2022) and GBC (Pandy et al., CVPR 2022)."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy import special

from ...errors import ConfigError
from .base import _EPS, _TINY, _class_means, _features_labels, _thin_svd, pca_reduce

__all__ = ["h_score", "shrinkage_h_score", "ledoit_wolf_shrinkage", "sfda", "gbc"]

# ---------------------------------------------------------------------------------------------
# H-score (plain and shrinkage)
# ---------------------------------------------------------------------------------------------


def ledoit_wolf_shrinkage(centred: np.ndarray) -> float:
    """Ledoit-Wolf (2004) shrinkage intensity of the (1/N) covariance of centred data.

    Same estimator as ``sklearn.covariance.ledoit_wolf_shrinkage`` (clipped to [0, 1]); the
    shrunk covariance is ``(1 - a) S + a (tr S / D) I``.
    """
    x = np.asarray(centred, dtype=np.float64)
    n, d = x.shape
    if d == 1:
        return 0.0
    s = np.linalg.svd(x, compute_uv=False)
    e = s**2 / n  # eigenvalues of S = X^T X / N
    trace = float(e.sum())
    mu = trace / d
    beta_ = float(np.sum(np.sum(x * x, axis=1) ** 2))  # sum((X^2)^T X^2) = sum_i ||x_i||^4
    delta_ = float(np.sum(e**2))  # ||S||_F^2
    beta = (beta_ / n - delta_) / (d * n)
    delta = (delta_ - 2.0 * mu * trace + d * mu**2) / d
    if delta <= 0.0:
        return 0.0
    return float(np.clip(min(beta, delta) / delta, 0.0, 1.0))


def _hscore_parts(
    features: Any, labels: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Return (cov eigenvalues e_k, ||B v_k||^2, centred x, D) on the numerical range of cov(f)."""
    x, y, c, counts = _features_labels(features, labels)
    n, d = x.shape
    xc = x - x.mean(axis=0)
    _, s, vt = _thin_svd(xc)
    e = s**2 / n
    means = _class_means(xc, y, c, counts)
    b = np.sqrt(counts / n)[:, None] * means  # cov(E[f|y]) = B^T B
    proj2 = np.sum((b @ vt.T) ** 2, axis=0)
    return e, proj2, xc, d


def h_score(features: Any, labels: Any) -> float:
    """H-score (Bao et al., ICIP 2019). Higher is better.

        H(f) = tr( cov(f)^+ cov(E[f | y]) ),

    with ``cov(E[f|y]) = sum_c (n_c/N)(mu_c - mu)(mu_c - mu)^T`` and ``^+`` the pseudo-inverse on
    the numerical range (relative cut-off ``max(N, D) * eps``; the reference code uses
    ``pinv(rcond=1e-15)``). 0 <= H <= C - 1, invariant to any invertible linear map of the features.

    Caveat (the reason for :func:`shrinkage_h_score`): when ``D >= N - 1`` the features span all
    centred directions and ``H = C - 1`` for *any* labelling, so the plain score cannot rank models.
    """
    e, proj2, _, _ = _hscore_parts(features, labels)
    if e.size == 0:
        return 0.0
    return float(np.sum(proj2 / e))


def shrinkage_h_score(features: Any, labels: Any) -> float:
    """Shrinkage-regularised H-score H_alpha (Ibrahim, Ponomareva & Mazumder 2022). Higher is better.

        H_alpha(f) = tr( cov_alpha(f)^-1 (1 - alpha) cov(E[f | y]) ),
        cov_alpha(f) = (1 - alpha) cov(f) + alpha (tr cov(f) / D) I,

    with alpha the Ledoit-Wolf shrinkage intensity (:func:`ledoit_wolf_shrinkage`); covariances use
    1/N. Unlike :func:`h_score` it stays informative when D > N.
    """
    e, proj2, xc, d = _hscore_parts(features, labels)
    if e.size == 0:
        return 0.0
    a = ledoit_wolf_shrinkage(xc)
    mu = float(e.sum()) / d
    e_a = (1.0 - a) * e + a * mu
    ok = e_a > e.max() * max(xc.shape) * _EPS
    return float((1.0 - a) * np.sum(proj2[ok] / e_a[ok]))


# ---------------------------------------------------------------------------------------------
# SFDA
# ---------------------------------------------------------------------------------------------


def _sfda_probs(
    x: np.ndarray, y: np.ndarray, c: int, counts: np.ndarray, shrinkage: float | None
) -> tuple[np.ndarray, float]:
    """Regularised-FDA class posteriors p(y | x) (N x C) and the shrinkage used."""
    n, d = x.shape
    priors = counts / n
    mean_all = x.mean(axis=0)
    xc = x - mean_all  # centring is exact for softmax scores (class-independent terms cancel)
    means = _class_means(xc, y, c, counts)
    xw = xc - means[y]
    sw = xw.T @ xw / n  # within scatter  sum_c pi_c cov_c
    ew, uw = np.linalg.eigh(0.5 * (sw + sw.T))
    ew = np.maximum(ew, 0.0)
    if shrinkage is None:
        shrinkage = max(math.exp(-5.0 * float(ew.max())), 1e-10)
    mu = float(ew.sum()) / d
    e_shr = (1.0 - shrinkage) * ew + shrinkage * mu
    total_scale = float(np.sum(xc * xc)) / (n * d)
    scale = max(float(e_shr.max()), total_scale)
    floor = 1e-12 * scale if scale > 0 else 1.0  # scale == 0: centred features are all zero
    inv = 1.0 / np.maximum(e_shr, floor)
    coef = ((means @ uw) * inv) @ uw.T  # M S_w~^-1  (== M V V^T for the Fisher eigenvectors V)
    logits = xc @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(priors)
    return special.softmax(logits, axis=1), shrinkage


def sfda(features: Any, labels: Any, *, use_log: bool = False) -> float:
    """SFDA (Shao et al., ECCV 2022, "Not all models are equal"). Higher is better.

    1. Regularised Fisher space: within scatter ``S_w = sum_c pi_c cov_c``; shrinkage
       ``lambda = max(exp(-5 sigma_max(S_w)), 1e-10)`` (sigma_max: largest eigenvalue; the reference
       code estimates it with 3 power iterations, we use the exact value);
       ``S_w~ = (1 - lambda) S_w + lambda (tr S_w / D) I``, ``S_t~`` likewise for the total scatter,
       ``S_b = S_t~ - S_w~``; the Fisher projection V solves ``S_b V = S_w~ V Lambda`` (``V^T S_w~ V = I``).
    2. Class posteriors in the (full, D-dim) Fisher space:
       ``p(y=c | x) = softmax_c( x^T V V^T mu_c - 1/2 mu_c^T V V^T mu_c + log pi_c )``; since
       ``V V^T = S_w~^-1`` this is computed as LDA with ``S_w~`` (identical, no eigen-solve needed).
    3. ConfMix self-challenge: ``p_i = softmax(p(. | x_i))_{y_i}`` (the reference code's softening)
       and ``x_i <- p_i x_i + (1 - p_i) mu_{not y_i}`` where ``mu_{not c}`` is the mean of the other
       classes' means.
    4. Refit step 1-2 on the mixed features with the same lambda; ``SFDA = 1/N sum_i p(y_i | x~_i)``.

    The paper writes the score as a likelihood; the authors' released code (used for their tables)
    drops the log "for stability", which we follow; ``use_log=True`` gives the mean log-probability.
    """
    x, y, c, counts = _features_labels(features, labels)
    n = x.shape[0]
    prob, lam = _sfda_probs(x, y, c, counts, None)
    soft = special.softmax(prob, axis=1)
    p_true = soft[np.arange(n), y][:, None]
    means = _class_means(x, y, c, counts)
    outer = (means.sum(axis=0)[None, :] - means) / (c - 1)
    x_mix = p_true * x + (1.0 - p_true) * outer[y]
    prob2, _ = _sfda_probs(x_mix, y, c, counts, lam)
    pt = prob2[np.arange(n), y]
    if use_log:
        return float(np.mean(np.log(np.maximum(pt, _TINY))))
    return float(np.mean(pt))


# ---------------------------------------------------------------------------------------------
# GBC
# ---------------------------------------------------------------------------------------------


def gbc(
    features: Any,
    labels: Any,
    *,
    gaussian: Literal["spherical", "diagonal"] = "spherical",
    pca_dim: int | None = 64,
    min_variance: float = 1e-4,
) -> float:
    """GBC, Gaussian Bhattacharyya Coefficient (Pándy et al., CVPR 2022). Higher is better (<= 0).

    Features are reduced by PCA to ``pca_dim`` dims (64 in the paper); each class is modelled as
    ``N(mu_c, Sigma_c)`` with diagonal (or spherical: mean of the diagonal) covariance, variances
    floored at ``min_variance`` as in the reference code. With ``Sigma = (Sigma_i + Sigma_j) / 2``:

        D_B(i, j) = 1/8 (mu_i - mu_j)^T Sigma^-1 (mu_i - mu_j) + 1/2 ln( det Sigma / sqrt(det Sigma_i det Sigma_j) )
        GBC = - sum_{i != j} exp(-D_B(i, j)).

    The paper's overlap sum is lower-is-better; GBC is defined with the minus sign, so higher is
    better. The spherical log-determinant counts all D dims (the reference code omits the factor D).
    """
    if gaussian not in ("spherical", "diagonal"):
        raise ConfigError(f"gaussian must be 'spherical' or 'diagonal', got {gaussian!r}")
    x, y, c, counts = _features_labels(features, labels)
    if pca_dim is not None and x.shape[1] > pca_dim:
        x = pca_reduce(x, n_components=pca_dim)
    d = x.shape[1]
    means = _class_means(x, y, c, counts)
    var = np.zeros_like(means)
    np.add.at(var, y, (x - means[y]) ** 2)
    var = np.maximum(var / counts[:, None], min_variance)
    if gaussian == "spherical":
        var = np.repeat(var.mean(axis=1, keepdims=True), d, axis=1)
    avg = 0.5 * (var[:, None, :] + var[None, :, :])  # C x C x d
    diff2 = (means[:, None, :] - means[None, :, :]) ** 2
    logv = np.log(var)
    db = np.sum(diff2 / avg, axis=2) / 8.0 + 0.5 * (
        np.sum(np.log(avg), axis=2) - 0.5 * logv.sum(axis=1)[:, None] - 0.5 * logv.sum(axis=1)[None, :]
    )
    bc = np.exp(-db)
    np.fill_diagonal(bc, 0.0)
    return float(-bc.sum())
