"""Mixture-model scores: N-LEEP (Li et al., CVPR 2021), LEEP on the posteriors of a seeded Gaussian
mixture fitted to PCA-reduced features."""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from scipy import linalg as sla
from scipy import special

from ...errors import ConfigError
from .base import _EPS, _TINY, _features_labels, _one_hot, pca_reduce
from .label_based import _leep_from_probs

__all__ = ["gaussian_mixture_posteriors", "nleep"]


# ---------------------------------------------------------------------------------------------
# Gaussian mixture (for N-LEEP)
# ---------------------------------------------------------------------------------------------


def _sqdist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d2 = np.sum(x * x, axis=1)[:, None] - 2.0 * x @ c.T + np.sum(c * c, axis=1)[None, :]
    return np.maximum(d2, 0.0)


def _kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 20) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn) followed by Lloyd iterations; returns hard labels."""
    n = x.shape[0]
    n_trials = 2 + int(math.log(k)) if k > 1 else 1
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(n)]
    d2 = _sqdist(x, centers[:1])[:, 0]
    for j in range(1, k):
        total = float(d2.sum())
        if total <= 0.0:  # fewer distinct points than components
            cand = rng.integers(n, size=n_trials)
        else:
            cand = np.searchsorted(np.cumsum(d2), rng.random(n_trials) * total, side="right")
            cand = np.minimum(cand, n - 1)
        cand_d2 = np.minimum(d2[:, None], _sqdist(x, x[cand]))  # N x trials
        best = int(np.argmin(cand_d2.sum(axis=0)))
        centers[j] = x[cand[best]]
        d2 = cand_d2[:, best]
    labels = np.argmin(_sqdist(x, centers), axis=1)
    for _ in range(n_iter):
        counts = np.bincount(labels, minlength=k).astype(np.float64)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        nonempty = counts > 0
        centers[nonempty] = sums[nonempty] / counts[nonempty, None]
        new = np.argmin(_sqdist(x, centers), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    return labels


def _safe_cholesky(cov: np.ndarray) -> np.ndarray:
    """Cholesky factor, adding growing diagonal jitter if ``cov`` is numerically indefinite."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        scale = max(float(np.trace(cov)) / cov.shape[0], _TINY)
        for jitter in (1e-10, 1e-8, 1e-6, 1e-4, 1e-2):
            try:
                return np.linalg.cholesky(cov + jitter * scale * np.eye(cov.shape[0]))
            except np.linalg.LinAlgError:
                continue
        raise


def _gmm_log_prob(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray, covariance: str
) -> np.ndarray:
    """log pi_k + log N(x_i | mu_k, Sigma_k), shape N x K."""
    n, d = x.shape
    k = means.shape[0]
    if covariance == "diag":
        prec = 1.0 / covs  # K x d
        maha = (x * x) @ prec.T - 2.0 * x @ (means * prec).T + np.sum(means * means * prec, axis=1)
        logdet = np.sum(np.log(covs), axis=1)
    else:
        maha = np.empty((n, k))
        logdet = np.empty(k)
        for j in range(k):
            chol = _safe_cholesky(covs[j])
            sol = sla.solve_triangular(chol, (x - means[j]).T, lower=True)
            maha[:, j] = np.sum(sol * sol, axis=0)
            logdet[j] = 2.0 * np.sum(np.log(np.diag(chol)))
    return np.log(np.maximum(weights, _TINY)) - 0.5 * (d * math.log(2 * math.pi) + logdet + np.maximum(maha, 0.0))


def _gmm_m_step(
    x: np.ndarray, resp: np.ndarray, covariance: str, reg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, d = x.shape
    nk = resp.sum(axis=0) + 10 * _EPS
    means = resp.T @ x / nk[:, None]
    if covariance == "diag":
        covs = resp.T @ (x * x) / nk[:, None] - means**2
        covs = np.maximum(covs, 0.0) + reg
    else:
        covs = np.empty((means.shape[0], d, d))
        for j in range(means.shape[0]):
            diff = x - means[j]
            cov = (resp[:, j, None] * diff).T @ diff / nk[j]
            covs[j] = 0.5 * (cov + cov.T) + reg * np.eye(d)
    return nk / n, means, covs


def gaussian_mixture_posteriors(
    features: np.ndarray,
    n_components: int,
    *,
    covariance: Literal["diag", "full"] = "diag",
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
) -> tuple[np.ndarray, float]:
    """Fit a Gaussian mixture by EM (numpy only) and return (posteriors N x K, mean log-likelihood).

    Initialisation: seeded k-means++ + Lloyd (as scikit-learn's default ``init_params='kmeans'``);
    EM stops when the mean log-likelihood improves by less than ``tol``. ``reg_covar`` is added to
    the covariance diagonal, *relative* to the mean feature variance (scale-invariant). Posteriors
    are those of the final E-step.
    """
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    if covariance not in ("diag", "full"):
        raise ConfigError(f"covariance must be 'diag' or 'full', got {covariance!r}")
    k = max(1, min(int(n_components), n))
    mean_var = float(np.mean(np.var(x, axis=0)))
    reg = reg_covar * (mean_var if mean_var > 0 else 1.0)
    rng = np.random.default_rng(seed)
    resp = _one_hot(_kmeans_labels(x, k, rng), k)
    weights, means, covs = _gmm_m_step(x, resp, covariance, reg)
    prev = -np.inf
    mean_ll = -np.inf
    for _ in range(max_iter):
        logp = _gmm_log_prob(x, weights, means, covs, covariance)
        lse = special.logsumexp(logp, axis=1)
        mean_ll = float(lse.mean())
        resp = np.exp(logp - lse[:, None])
        if abs(mean_ll - prev) < tol:
            break
        prev = mean_ll
        weights, means, covs = _gmm_m_step(x, resp, covariance, reg)
    return resp, mean_ll


def nleep(
    features: Any,
    labels: Any,
    *,
    variance: float = 0.8,
    components_per_class: int = 5,
    covariance: Literal["diag", "full"] = "diag",
    seed: int = 0,
    max_iter: int = 100,
) -> float:
    """N-LEEP (Li et al., CVPR 2021 "Ranking neural checkpoints"). Higher is better.

    1. PCA of the features keeping the fewest components explaining ``variance`` (80%) of the variance;
    2. fit a Gaussian mixture with ``K = components_per_class * C`` components (5 x C in the paper,
       capped at N) by EM; its posteriors ``theta(x_i)_z = p(z | x_i)`` replace the source classifier;
    3. ``N-LEEP = LEEP(theta, y) = 1/N sum_i log sum_z P^(y_i | z) theta(x_i)_z``.

    The GMM is seeded (``seed``) and uses diagonal covariances by default (robust with ~10 points
    per component; ``covariance='full'`` matches scikit-learn's default used by the reference code).
    """
    x, y, c, _ = _features_labels(features, labels)
    z = pca_reduce(x, variance=variance)
    k = min(components_per_class * c, x.shape[0])
    post, _ = gaussian_mixture_posteriors(z, k, covariance=covariance, seed=seed, max_iter=max_iter)
    return _leep_from_probs(post, y, c)
