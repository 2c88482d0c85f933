"""Bayesian evidence scores: LogME (You et al., ICML 2021)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vlmhub.errors import DataError

from .base import _TINY, _check_features, _features_labels, _thin_svd

__all__ = ["logme", "logme_evidence"]

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
