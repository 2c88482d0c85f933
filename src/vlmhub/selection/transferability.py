"""Classic forward-feature transferability scores, implemented from their papers.

Every score takes a small *labelled probe set* of target images already encoded by one candidate
model (:class:`ProbeSet`) and returns one float where **higher means more transferable** for every
score (papers whose quantity is lower-is-better are sign-flipped; see each docstring). They are the
supervised baselines that Model Label Learning (label-free VLM selection) is compared against.

Scores (registry name: paper; "*" = needs ``source_probs``):

* ``logme``: You et al., ICML 2021, "LogME: practical assessment of pre-trained models"
* ``leep`` *: Nguyen et al., ICML 2020, "LEEP: a new measure to evaluate transferability"
* ``nce`` *: Tran, Nguyen & Hassner, ICCV 2019, "Transferability and hardness of supervised
  classification tasks"
* ``hscore``: Bao et al., ICIP 2019, "An information-theoretic approach to transferability"
* ``hscore_shrinkage``: Ibrahim, Ponomareva & Mazumder 2022 (arXiv:2110.06893), "Newer is not
  always better: rethinking transferability metrics"
* ``nleep``: Li et al., CVPR 2021, "Ranking neural checkpoints"
* ``parc``: Bolya, Mittapalli & Hoffman, NeurIPS 2021, "Scalable diverse model selection"
* ``sfda``: Shao et al., ECCV 2022, "Not all models are equal: predicting model transferability
  in a self-challenging Fisher space"
* ``transrate``: Huang et al., ICML 2022, "Frustratingly easy transferability estimation"
* ``gbc``: Pándy et al., CVPR 2022, "Transferability estimation using Bhattacharyya class
  separability"

Each score is also available as a plain function on arrays (``logme(features, labels)``,
``leep(source_probs, labels)``, ...) that exposes its hyper-parameters.

Conventions shared by all scores:

* arithmetic is float64 throughout; inputs of any real dtype are copied to float64;
* labels are re-indexed to the classes that actually occur (absent class ids are ignored);
* rank-deficient inputs (``D > N``, constant columns, duplicate rows) are valid and never produce
  NaN: inverses are pseudo-inverses on the numerical range and log-determinants are computed from
  singular values with ``log1p``;
* the only randomness (the GMM initialisation of N-LEEP) is seeded, so every score is
  deterministic.

Scores of different kinds live on different scales; compare models with *one* score at a time
(:func:`rank_models`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import linalg as sla
from scipy import special, stats

from vlmhub.errors import DataError, VlmhubError

__all__ = [
    "ProbeSet",
    "ScoreFn",
    "SCORES",
    "UnknownScoreError",
    "score_names",
    "get_score",
    "compute_score",
    "rank_models",
    # array-level scores
    "logme",
    "leep",
    "nce",
    "h_score",
    "shrinkage_h_score",
    "nleep",
    "parc",
    "sfda",
    "transrate",
    "gbc",
    # building blocks that are useful on their own / in tests
    "logme_evidence",
    "ledoit_wolf_shrinkage",
    "gaussian_mixture_posteriors",
    "pca_reduce",
]

_EPS = np.finfo(np.float64).eps
_TINY = 1e-300
_PROB_SUM_ATOL = 1e-2


# ---------------------------------------------------------------------------------------------
# Errors and input validation
# ---------------------------------------------------------------------------------------------


class UnknownScoreError(VlmhubError, KeyError):
    """A transferability score name is not in :data:`SCORES`."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _check_features(features: Any, name: str = "features") -> np.ndarray:
    try:
        arr = np.asarray(features)
    except Exception as exc:  # ragged lists etc.
        raise DataError(
            f"{name} could not be converted to an array ({exc}); pass an N x D numeric numpy array"
        ) from exc
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(
            f"{name} has dtype {arr.dtype}, expected a real numeric dtype; "
            f"pass features as a float array (e.g. embeddings.astype(np.float32))"
        )
    if arr.ndim != 2:
        raise DataError(
            f"{name} must be 2-D (N samples x D dims) but has shape {arr.shape}; "
            f"reshape it, e.g. features.reshape(len(features), -1)"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {arr.shape}); encode at least 4 probe images")
    arr = np.array(arr, dtype=np.float64, copy=True)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise DataError(
            f"{name} contain NaN or infinite values in {bad} row(s); drop or re-encode those images "
            f"(check the encoder for overflow, e.g. run it in float32)"
        )
    return arr


def _check_labels(labels: Any, n: int | None = None) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(
            f"labels have dtype {arr.dtype}, expected integers in [0, C); "
            f"map class names to ids and pass e.g. labels.astype(np.int64)"
        )
    if arr.ndim != 1:
        raise DataError(f"labels must be 1-D of length N but have shape {arr.shape}; pass labels.ravel()")
    if n is not None and arr.shape[0] != n:
        raise DataError(
            f"labels have {arr.shape[0]} entries but features have {n} rows; "
            f"pass exactly one label per probe image, in the same order"
        )
    if arr.size and arr.min() < 0:
        raise DataError(f"labels contain negative ids (min {int(arr.min())}); class ids must lie in [0, C)")
    arr = arr.astype(np.int64, copy=True)
    _, counts = np.unique(arr, return_counts=True)
    if counts.size < 2:
        raise DataError(
            f"labels contain {counts.size} distinct class(es); a transferability score needs at least "
            f"2 classes with at least 2 probe images each - add images of other classes"
        )
    if counts.min() < 2:
        singles = np.unique(arr)[counts < 2].tolist()
        raise DataError(
            f"class id(s) {singles[:10]} have a single probe image; every class present needs at least 2 "
            f"images - add more images of those classes or drop them from the probe set"
        )
    return arr


def _check_probs(probs: Any, n: int) -> np.ndarray:
    arr = _check_features(probs, name="source_probs")
    if arr.shape[0] != n:
        raise DataError(
            f"source_probs have {arr.shape[0]} rows but there are {n} labels; "
            f"pass one probability row per probe image, in the same order"
        )
    if (arr < 0).any():
        raise DataError(
            "source_probs contain negative values; pass probabilities (apply a softmax to the logits)"
        )
    sums = arr.sum(axis=1)
    if not np.allclose(sums, 1.0, rtol=0.0, atol=_PROB_SUM_ATOL):
        worst = float(sums[np.argmax(np.abs(sums - 1.0))])
        raise DataError(
            f"source_probs rows must sum to 1 (found a row summing to {worst:.4g}); "
            f"pass probabilities, e.g. scipy.special.softmax(logits, axis=1)"
        )
    return arr / sums[:, None]


def _compact(labels: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Re-index labels to 0..C'-1 over the classes present; return (y, C', counts)."""
    _, y, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return y.astype(np.int64), int(counts.size), counts.astype(np.float64)


def _features_labels(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    x = _check_features(features)
    lab = _check_labels(labels, x.shape[0])
    y, c, counts = _compact(lab)
    return x, y, c, counts


def _probs_labels(source_probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, int]:
    lab = _check_labels(labels)
    p = _check_probs(source_probs, lab.shape[0])
    y, c, _ = _compact(lab)
    return p, y, c


# ---------------------------------------------------------------------------------------------
# ProbeSet
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProbeSet:
    """A small labelled probe set of target images encoded by one candidate model.

    Attributes:
        features: ``N x D`` real array of image features (stored as a read-only float64 copy).
        labels: ``(N,)`` integer class ids in ``[0, C)``; at least 2 classes must occur and every
            class that occurs needs at least 2 images.
        source_probs: optional ``N x K`` class probabilities of the model itself (for a zero-shot
            VLM: its zero-shot softmax over the target classes or over its source classes). Needed
            by LEEP and NCE only. Rows must sum to 1 (within 1e-2; they are renormalised).

    Invalid input raises :class:`vlmhub.errors.DataError` naming the problem and the fix. The
    dataclass is frozen and compares by identity (numpy arrays have no scalar equality).
    """

    features: np.ndarray
    labels: np.ndarray
    source_probs: np.ndarray | None = None

    def __post_init__(self) -> None:
        x = _check_features(self.features)
        y = _check_labels(self.labels, x.shape[0])
        p = None if self.source_probs is None else _check_probs(self.source_probs, x.shape[0])
        for arr in (x, y, p):
            if arr is not None:
                arr.setflags(write=False)
        object.__setattr__(self, "features", x)
        object.__setattr__(self, "labels", y)
        object.__setattr__(self, "source_probs", p)

    @property
    def n_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of distinct classes present in :attr:`labels`."""
        return int(np.unique(self.labels).size)

    def __repr__(self) -> str:
        k = None if self.source_probs is None else self.source_probs.shape[1]
        return f"ProbeSet(N={self.n_samples}, D={self.dim}, classes={self.n_classes}, source_classes={k})"


# ---------------------------------------------------------------------------------------------
# Linear-algebra helpers
# ---------------------------------------------------------------------------------------------


def _thin_svd(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD truncated to the numerical rank: x = u @ diag(s) @ vt with s > tol."""
    n, d = x.shape
    try:
        u, s, vt = np.linalg.svd(x, full_matrices=False)
    except np.linalg.LinAlgError:  # pragma: no cover - LAPACK gesdd fallback
        u, s, vt = sla.svd(x, full_matrices=False, lapack_driver="gesvd")
    if s.size == 0 or s[0] <= 0.0:
        return u[:, :0], s[:0], vt[:0]
    k = int(np.sum(s > s[0] * max(n, d) * _EPS))
    return u[:, :k], s[:k], vt[:k]


def pca_reduce(
    features: np.ndarray, *, n_components: int | None = None, variance: float | None = None
) -> np.ndarray:
    """Deterministic exact PCA scores of centred ``features``.

    Keep ``n_components`` components, or the fewest components whose explained-variance ratio
    reaches ``variance`` (e.g. 0.8). Signs follow scikit-learn's ``svd_flip`` on the sample side
    (largest-|u| entry positive), which makes the result independent of feature order. A feature
    matrix with no variance returns an ``N x 1`` zero matrix.
    """
    x = np.asarray(features, dtype=np.float64)
    xc = x - x.mean(axis=0)
    u, s, _ = _thin_svd(xc)
    if s.size == 0:
        return np.zeros((x.shape[0], 1))
    idx = np.argmax(np.abs(u), axis=0)
    signs = np.sign(u[idx, np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    u = u * signs
    if variance is not None:
        if not 0.0 < variance <= 1.0:
            raise ValueError(f"variance must be in (0, 1], got {variance}")
        ratio = np.cumsum(s**2) / np.sum(s**2)
        k = int(np.searchsorted(ratio, variance - 1e-12, side="left")) + 1
    elif n_components is not None:
        k = int(n_components)
    else:
        k = s.size
    k = max(1, min(k, s.size))
    return u[:, :k] * s[:k]


def _one_hot(y: np.ndarray, c: int) -> np.ndarray:
    out = np.zeros((y.shape[0], c))
    out[np.arange(y.shape[0]), y] = 1.0
    return out


def _class_means(x: np.ndarray, y: np.ndarray, c: int, counts: np.ndarray) -> np.ndarray:
    means = np.zeros((c, x.shape[1]))
    np.add.at(means, y, x)
    return means / counts[:, None]


# ---------------------------------------------------------------------------------------------
# LogME
# ---------------------------------------------------------------------------------------------


def _logme_fixed_point(
    u: np.ndarray,
    sigma: np.ndarray,
    target: np.ndarray,
    n: int,
    *,
    max_iter: int = 100,
    tol: float = 1e-6,
) -> tuple[float, float, float]:
    """Evidence per sample, alpha, beta for one target column (see :func:`logme_evidence`)."""
    yy = float(target @ target)
    x = u.T @ target
    x2 = x * x
    res_x2 = max(yy - float(x2.sum()), 0.0)  # part of ||y||^2 outside the column space of F
    if sigma.size == 0:  # F == 0: only the noise model remains
        beta = n / max(yy, _TINY)
        ev = 0.5 * n * math.log(beta) - 0.5 * beta * yy - 0.5 * n * math.log(2 * math.pi)
        return ev / n, 1.0, beta
    smax = float(sigma.max())
    m2_floor = 1e-12 * max(yy, _TINY) / smax  # scale-aware guards against 0/0
    res_floor = 1e-12 * max(yy, _TINY)
    lam_lo, lam_hi = smax * 1e-14, smax * 1e14

    def stats_at(lam: float) -> tuple[float, float, float]:
        gamma = float(np.sum(sigma / (sigma + lam)))
        m2 = float(np.sum(sigma * x2 / (sigma + lam) ** 2))
        res2 = float(np.sum(x2 * (lam / (sigma + lam)) ** 2)) + res_x2
        return gamma, m2, res2

    alpha, beta = 1.0, 1.0
    lam = min(max(alpha / beta, lam_lo), lam_hi)
    for _ in range(max_iter):
        gamma, m2, res2 = stats_at(lam)
        alpha = max(gamma, _TINY) / max(m2, m2_floor)
        beta = max(n - gamma, _TINY) / max(res2, res_floor)
        new_lam = min(max(alpha / beta, lam_lo), lam_hi)
        done = abs(new_lam - lam) <= tol * lam
        lam = new_lam
        if done:
            break
    # Evaluate the evidence exactly at the final (alpha, beta): m and the residual use lam = alpha/beta.
    beta = max(beta, _TINY)
    alpha = lam * beta
    _, m2, res2 = stats_at(lam)
    # D/2 log a - 1/2 log|aI + b F^T F| = -1/2 sum_k log(1 + sigma_k / lam)  (exact, D-k zero eigenvalues)
    ev = (
        0.5 * n * math.log(beta)
        - 0.5 * float(np.sum(np.log1p(sigma / lam)))
        - 0.5 * beta * res2
        - 0.5 * alpha * m2
        - 0.5 * n * math.log(2 * math.pi)
    )
    return ev / n, alpha, beta


def logme_evidence(
    features: np.ndarray, target: np.ndarray, *, max_iter: int = 100, tol: float = 1e-6
) -> tuple[float, float, float]:
    """Maximised log evidence per sample of Bayesian linear regression ``target ~ features``.

    Model (You et al. 2021): ``w ~ N(0, alpha^-1 I_D)``, ``y | F, w ~ N(F w, beta^-1 I_N)``, so
    ``y ~ N(0, alpha^-1 F F^T + beta^-1 I_N)`` and, with ``A = alpha I + beta F^T F`` and
    ``m = beta A^-1 F^T y``,

        L(alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2pi
                         - beta/2 ||F m - y||^2 - alpha/2 m^T m - 1/2 log|A|.

    (alpha, beta) are found with the paper's fixed-point iteration on the SVD ``F = U S V^T``
    (sigma = S^2): ``gamma = sum sigma/(sigma + alpha/beta)``, ``alpha = gamma / m^T m``,
    ``beta = (N - gamma) / ||F m - y||^2``, iterated until alpha/beta changes by < ``tol``
    (relative). Returns ``(L / N, alpha, beta)`` with L evaluated exactly at the returned pair.
    """
    x = _check_features(features)
    t = np.asarray(target, dtype=np.float64).reshape(-1)
    if t.shape[0] != x.shape[0]:
        raise DataError(f"target has {t.shape[0]} entries but features have {x.shape[0]} rows")
    u, s, _ = _thin_svd(x)
    return _logme_fixed_point(u, s**2, t, x.shape[0], max_iter=max_iter, tol=tol)


def logme(features: Any, labels: Any, *, max_iter: int = 100, tol: float = 1e-6) -> float:
    """LogME (You et al., ICML 2021): mean over classes of the maximised log evidence per sample.

    For each class c the one-hot column ``y_c = 1[labels == c]`` is regressed on the raw
    (uncentred) features, and ``LogME = 1/C sum_c L_c(alpha*, beta*) / N`` (see
    :func:`logme_evidence` for L). Higher is better; the value is a log-likelihood per sample.

    Differences from the reference code (``_fit_fixed_point``): (i) ``log|A|`` includes the
    ``D - rank(F)`` eigenvalues equal to alpha, i.e. the exact evidence also when D > N (the
    reference sums only over the min(N, D) singular values); (ii) iteration to a 1e-6 relative
    change of alpha/beta (reference: 1e-3, at most 11 steps) and the evidence is evaluated at the
    final (alpha, beta); (iii) only classes that occur in ``labels`` are averaged.
    """
    x, y, c, _ = _features_labels(features, labels)
    n = x.shape[0]
    u, s, _ = _thin_svd(x)
    sigma = s**2
    evs = [
        _logme_fixed_point(u, sigma, (y == k).astype(np.float64), n, max_iter=max_iter, tol=tol)[0]
        for k in range(c)
    ]
    return float(np.mean(evs))


# ---------------------------------------------------------------------------------------------
# LEEP / NCE
# ---------------------------------------------------------------------------------------------


def _leep_from_probs(p: np.ndarray, y: np.ndarray, c: int) -> float:
    n = p.shape[0]
    joint = _one_hot(y, c).T @ p / n  # P^(y, z), C x K
    pz = joint.sum(axis=0)  # P^(z)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P^(y | z)
    eep = np.einsum("iz,iz->i", p, cond[y])  # sum_z P^(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(np.maximum(eep, _TINY))))


def leep(source_probs: Any, labels: Any) -> float:
    """LEEP (Nguyen et al., ICML 2020): log expected empirical prediction. Higher is better.

    With theta(x_i) the model's source-label distribution (``source_probs``, N x K):

        P^(y, z) = 1/N sum_{i: y_i = y} theta(x_i)_z,   P^(y | z) = P^(y, z) / sum_y' P^(y', z)
        LEEP = 1/N sum_i log( sum_z P^(y_i | z) theta(x_i)_z ).

    It is a mean log-likelihood, so LEEP <= 0, with 0 for a perfect deterministic mapping.
    """
    p, y, c = _probs_labels(source_probs, labels)
    return _leep_from_probs(p, y, c)


def nce(source_probs: Any, labels: Any) -> float:
    """NCE (Tran et al., ICCV 2019): negative conditional entropy ``-H(Y | Z)``. Higher is better.

    Source labels are hard: ``z_i = argmax_k source_probs[i, k]``. With the empirical joint
    ``P^(y, z) = #{i: y_i = y, z_i = z} / N``:

        NCE = -H(Y | Z) = sum_{y, z} P^(y, z) log( P^(y, z) / P^(z) ).

    The paper's quantity is the conditional entropy (lower = more transferable); we return its
    negative, as the paper's name says, so NCE <= 0 and 0 means Z determines Y.
    """
    p, y, c = _probs_labels(source_probs, labels)
    z = np.argmax(p, axis=1)
    k = p.shape[1]
    joint = np.zeros((c, k))
    np.add.at(joint, (y, z), 1.0)
    joint /= p.shape[0]
    pz = joint.sum(axis=0)
    nz = joint > 0
    cond = joint[nz] / np.broadcast_to(pz, joint.shape)[nz]
    return float(np.sum(joint[nz] * np.log(cond)))


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
        raise ValueError(f"covariance must be 'diag' or 'full', got {covariance!r}")
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
        raise ValueError(f"gaussian must be 'spherical' or 'diagonal', got {gaussian!r}")
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


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreFn:
    """A registered transferability score: ``score(probe) -> float`` (higher = more transferable)."""

    name: str
    func: Callable[..., float]
    needs_source_probs: bool
    paper: str
    summary: str

    def __call__(self, probe: ProbeSet, **options: Any) -> float:
        if not isinstance(probe, ProbeSet):
            raise DataError(
                f"score '{self.name}' needs a ProbeSet, got {type(probe).__name__}; "
                f"wrap your arrays with ProbeSet(features=..., labels=..., source_probs=...)"
            )
        if self.needs_source_probs and probe.source_probs is None:
            raise DataError(
                f"score '{self.name}' needs the model's own class probabilities but the probe set has "
                f"source_probs=None; pass source_probs (e.g. the zero-shot softmax) or use a "
                f"feature-only score: {', '.join(n for n, s in SCORES.items() if not s.needs_source_probs)}"
            )
        if self.needs_source_probs:
            value = self.func(probe.source_probs, probe.labels, **options)
        else:
            value = self.func(probe.features, probe.labels, **options)
        value = float(value)
        if not math.isfinite(value):  # pragma: no cover - a bug, not a user error
            raise FloatingPointError(f"score '{self.name}' produced a non-finite value {value}")
        return value


SCORES: dict[str, ScoreFn] = {
    s.name: s
    for s in (
        ScoreFn("logme", logme, False, "You et al., ICML 2021", "log marginal evidence of Bayesian linear regression"),
        ScoreFn("leep", leep, True, "Nguyen et al., ICML 2020", "log expected empirical prediction"),
        ScoreFn("nce", nce, True, "Tran et al., ICCV 2019", "negative conditional entropy -H(Y|Z)"),
        ScoreFn("hscore", h_score, False, "Bao et al., ICIP 2019", "tr(cov(f)^+ cov(E[f|y]))"),
        ScoreFn(
            "hscore_shrinkage",
            shrinkage_h_score,
            False,
            "Ibrahim et al. 2022 (arXiv:2110.06893)",
            "H-score with Ledoit-Wolf shrinkage covariance",
        ),
        ScoreFn("nleep", nleep, False, "Li et al., CVPR 2021", "LEEP on GMM posteriors of PCA features"),
        ScoreFn("parc", parc, False, "Bolya et al., NeurIPS 2021", "Spearman of pairwise-correlation dissimilarities"),
        ScoreFn("sfda", sfda, False, "Shao et al., ECCV 2022", "self-challenging Fisher discriminant analysis"),
        ScoreFn("transrate", transrate, False, "Huang et al., ICML 2022", "coding rate R(Z) - R(Z|Y)"),
        ScoreFn("gbc", gbc, False, "Pándy et al., CVPR 2022", "minus Bhattacharyya class overlap"),
    )
}

_ALIASES = {
    "hscorer": "hscore_shrinkage",
    "regularizedhscore": "hscore_shrinkage",
    "shrinkagehscore": "hscore_shrinkage",
    "hscorealpha": "hscore_shrinkage",
}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def score_names() -> list[str]:
    """Names of the registered scores, in registry order."""
    return list(SCORES)


def get_score(name: str) -> ScoreFn:
    """Look a score up by name (case-, ``-``/``_``-insensitive: ``"H-Score"``, ``"N-LEEP"`` work)."""
    if isinstance(name, str):
        key = _norm(name)
        key = _norm(_ALIASES.get(key, key))
        for canonical, fn in SCORES.items():
            if _norm(canonical) == key:
                return fn
    raise UnknownScoreError(
        f"unknown transferability score {name!r}; known scores: {', '.join(score_names())}. "
        f"Pass one of these names"
    )


def compute_score(name: str, probe: ProbeSet, **options: Any) -> float:
    """Compute score ``name`` on ``probe`` (higher = more transferable). ``options`` go to the score."""
    return get_score(name)(probe, **options)


def rank_models(
    probes: Mapping[Hashable, ProbeSet], score: str, **options: Any
) -> list[tuple[Hashable, float]]:
    """Score every model's probe set and return ``[(model_id, score), ...]`` best first.

    Ties keep the mapping's order. A bad probe set raises :class:`DataError` naming the model.
    """
    fn = get_score(score)
    results: list[tuple[Hashable, float]] = []
    for model_id, probe in probes.items():
        try:
            value = fn(probe, **options)
        except DataError as exc:
            raise DataError(f"model {model_id!r}: {exc}") from exc
        results.append((model_id, value))
    order = sorted(range(len(results)), key=lambda i: -results[i][1])  # sorted() is stable
    return [results[i] for i in order]
