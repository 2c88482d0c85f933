"""Score study, protocol: the configuration, seeded splits, the linear probe and the metrics (pure).

See :mod:`vlmhub.evaluation.score_study` for the study design."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import DataError
from ...ranking import kendall_tau, pick_index, pick_value, spearman_rho

__all__ = [
    "PROBE_ZS",
    "MLL",
    "INB",
    "LABEL_FREE",
    "StudyConfig",
    "LogisticProbe",
    "CrossFitResult",
    "split_eval_pool",
    "draw_probe",
    "stratified_folds",
    "fit_logistic",
    "cross_fit_accuracy",
    "rank_agreement",
    "pick_accuracy",
]

PROBE_ZS = "probe_zs_acc"
MLL = "mll"
INB = "inb"
LABEL_FREE = (MLL, INB)


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyConfig:
    """What the study measures. Invalid values raise :class:`~vlmhub.errors.DataError`."""

    shots: tuple[int, ...] = (5, 10, 50)
    repeats: int = 3
    eval_per_class: int = 100
    pool_per_class: int | None = None  # probe pool per class; None = 2 * max(shots)
    folds: int = 5
    l2: float = 1.0
    seed: int = 0
    scores: tuple[str, ...] | None = None  # None = every transferability score

    def __post_init__(self) -> None:
        shots = tuple(int(s) for s in self.shots)
        if not shots or min(shots) < 2:
            raise DataError(f"shots must be integers >= 2 (every class needs 2 probe images), got {list(self.shots)}")
        object.__setattr__(self, "shots", tuple(sorted(set(shots))))
        if self.repeats < 1:
            raise DataError(f"repeats (seeds) must be >= 1, got {self.repeats}")
        if self.eval_per_class < 2:
            raise DataError(f"eval_per_class must be >= 2, got {self.eval_per_class}")
        if self.pool_per_class is not None and self.pool_per_class < 2:
            raise DataError(f"pool_per_class must be >= 2, got {self.pool_per_class}")
        if self.folds < 2:
            raise DataError(f"folds must be >= 2 for cross-fitting, got {self.folds}")
        if not (self.l2 > 0 and math.isfinite(self.l2)):
            raise DataError(f"l2 must be a positive number, got {self.l2}")
        if self.scores is not None:
            from ...selection.transferability import get_score

            object.__setattr__(self, "scores", tuple(get_score(s).name for s in self.scores))

    @property
    def pool_size(self) -> int:
        return self.pool_per_class if self.pool_per_class is not None else 2 * max(self.shots)

    def score_list(self) -> tuple[str, ...]:
        from ...selection.transferability import score_names

        return self.scores if self.scores is not None else tuple(score_names())

    def to_dict(self) -> dict:
        return {"shots": list(self.shots), "repeats": self.repeats, "eval_per_class": self.eval_per_class,
                "pool_per_class": self.pool_size, "folds": self.folds, "l2": self.l2, "seed": self.seed,
                "scores": list(self.score_list())}


# ---------------------------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------------------------


def _check_labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
        raise DataError("labels must be a non-empty 1-D array of non-negative integer class ids")
    return arr.astype(np.int64)


def split_eval_pool(labels: Any, eval_per_class: int, pool_per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint per-class evaluation and probe-pool row indices (both sorted).

    Each class's rows are shuffled with a seed of ``(seed, class)``; the first ``eval_per_class`` go
    to evaluation and the next ``pool_per_class`` to the probe pool. A class with fewer than
    ``eval_per_class + pool_per_class`` images is split in that ratio (at least 2 on each side).
    Raises :class:`DataError` if a class has fewer than 4 images.
    """
    labels = _check_labels(labels)
    if eval_per_class < 2 or pool_per_class < 2:
        raise DataError(f"eval_per_class and pool_per_class must be >= 2 (got {eval_per_class}, {pool_per_class})")
    ev, pool = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([seed, int(c), 1]).permutation(idx.size)]
        n = idx.size
        if n < 4:
            raise DataError(f"class {int(c)} has only {n} image(s); the study needs at least 4 per class "
                            f"(2 for evaluation, 2 for probes). Add images or drop the class.")
        if n >= eval_per_class + pool_per_class:
            e, p = eval_per_class, pool_per_class
        else:
            e = min(max(int(round(n * eval_per_class / (eval_per_class + pool_per_class))), 2), n - 2)
            p = n - e
        ev.append(np.sort(idx[:e]))
        pool.append(np.sort(idx[e:e + p]))
    return np.concatenate(ev), np.concatenate(pool)


def draw_probe(labels: Any, pool_idx: Any, shots: int, repeat: int, seed: int = 0) -> np.ndarray:
    """Row indices of a probe set: ``shots`` images per class (capped at the pool) from ``pool_idx``.

    The pool of every class is shuffled with a seed of ``(seed, repeat, class)`` and its first
    ``shots`` rows are taken, so for one repeat a smaller set is a subset of a larger one.
    """
    labels = _check_labels(labels)
    pool_idx = np.asarray(pool_idx, dtype=np.int64)
    if shots < 1:
        raise DataError(f"shots must be >= 1, got {shots}")
    out = []
    for c in np.unique(labels[pool_idx]):
        idx = np.sort(pool_idx[labels[pool_idx] == c])
        idx = idx[np.random.default_rng([seed, repeat, int(c), 2]).permutation(idx.size)]
        out.append(idx[:shots])
    return np.sort(np.concatenate(out))


def stratified_folds(labels: Any, k: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train, test) index pairs; every row is in exactly one test fold, classes spread evenly.

    Rows of each class are shuffled (seeded) and dealt round-robin to the folds, continuing where the
    previous class stopped so fold sizes differ by at most one.
    """
    labels = _check_labels(labels)
    if not 2 <= k <= labels.size:
        raise DataError(f"k-fold needs 2 <= k <= {labels.size} (the number of images), got k={k}")
    fold = np.empty(labels.size, dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[np.random.default_rng([seed, int(c), 3]).permutation(idx.size)]
        fold[idx] = (offset + np.arange(idx.size)) % k
        offset += idx.size
    all_idx = np.arange(labels.size)
    return [(all_idx[fold != f], all_idx[fold == f]) for f in range(k)]


# ---------------------------------------------------------------------------------------------
# Linear probe: multinomial logistic regression (L-BFGS, L2, standardised features)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LogisticProbe:
    """A fitted multinomial logistic regression: ``argmax_c ((x - mean) / scale) @ W[:, c] + b[c]``."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray  # D x C
    bias: np.ndarray  # C
    classes: np.ndarray  # class id of each column
    n_iter: int
    converged: bool

    def decision_function(self, features: Any) -> np.ndarray:
        x = (np.asarray(features, np.float64) - self.mean) / self.scale
        return x @ self.weights + self.bias

    def predict(self, features: Any) -> np.ndarray:
        return self.classes[np.argmax(self.decision_function(features), axis=1)]


def fit_logistic(features: Any, labels: Any, *, l2: float = 1.0, max_iter: int = 500, tol: float = 1e-6) -> LogisticProbe:
    """Fit ``min_{W,b} mean_i CE(softmax(W^T x_i + b), y_i) + l2 / (2N) ||W||^2`` by L-BFGS.

    Features are standardised with the training mean and standard deviation (constant columns get
    scale 1). The bias is not penalised (``l2 = 1`` equals scikit-learn's ``C = 1``). The problem is
    solved exactly in the row space of the standardised training matrix (an L2-penalised solution
    always lies there), which makes wide, low-rank embeddings (D up to ~2,000) cheap.
    """
    from scipy import optimize

    x = np.asarray(features, np.float64)
    y = _check_labels(labels)
    if x.ndim != 2 or x.shape[0] != y.size:
        raise DataError(f"features must be N x D with one row per label; got {x.shape} for {y.size} labels")
    if not np.isfinite(x).all():
        raise DataError("features contain NaN or infinite values; drop or re-encode those images")
    classes, yi = np.unique(y, return_inverse=True)
    n, C = x.shape[0], classes.size
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(x).max(initial=0.0))), scale, 1.0)
    xs = (x - mean) / scale
    if C < 2:
        W = np.zeros((x.shape[1], 1))
        return LogisticProbe(mean, scale, W, np.zeros(1), classes, 0, True)
    # exact reduction to the row space: xs = U S V^T, W = V A
    u, s, vt = np.linalg.svd(xs, full_matrices=False)
    keep = s > s.max(initial=0.0) * max(xs.shape) * np.finfo(np.float64).eps if s.size else np.zeros(0, bool)
    z = u[:, keep] * s[keep]  # n x r
    v = vt[keep].T  # D x r
    r = z.shape[1]
    Y = np.zeros((n, C))
    Y[np.arange(n), yi] = 1.0
    lam = float(l2) / n

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        A = theta[: r * C].reshape(r, C)
        b = theta[r * C:]
        logits = z @ A + b
        logits -= logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits).sum(axis=1))
        p = np.exp(logits - lse[:, None])
        loss = float(np.mean(lse - logits[np.arange(n), yi])) + 0.5 * lam * float((A * A).sum())
        d = (p - Y) / n
        gA = z.T @ d + lam * A
        gb = d.sum(axis=0)
        return loss, np.concatenate([gA.ravel(), gb])

    res = optimize.minimize(loss_grad, np.zeros(r * C + C), jac=True, method="L-BFGS-B",
                            options={"maxiter": int(max_iter), "gtol": tol, "ftol": 1e-12})
    A = res.x[: r * C].reshape(r, C)
    return LogisticProbe(mean, scale, v @ A, res.x[r * C:].copy(), classes, int(res.nit), bool(res.success))


@dataclass(frozen=True)
class CrossFitResult:
    """Cross-fitted linear-probe accuracy: ``accuracy`` is the mean of the held-out fold accuracies."""

    accuracy: float
    fold_accuracies: tuple[float, ...]
    predictions: tuple[int, ...]  # out-of-fold prediction of every row


def cross_fit_accuracy(features: Any, labels: Any, *, folds: int = 5, seed: int = 0, l2: float = 1.0,
                       max_iter: int = 500) -> CrossFitResult:
    """Stratified k-fold linear probe: train on k-1 folds, predict the held-out fold, for every fold."""
    x = np.asarray(features, np.float64)
    y = _check_labels(labels)
    pred = np.full(y.size, -1, dtype=np.int64)
    accs = []
    for train, test in stratified_folds(y, folds, seed):
        probe = fit_logistic(x[train], y[train], l2=l2, max_iter=max_iter)
        pred[test] = probe.predict(x[test])
        accs.append(float(np.mean(pred[test] == y[test])))
    return CrossFitResult(float(np.mean(accs)), tuple(accs), tuple(int(p) for p in pred))


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def rank_agreement(scores: Any, truth: Any) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho) of ``scores`` vs ``truth`` by :mod:`vlmhub.ranking`: NaN if a value
    is not finite or the truth is constant (nothing to rank), 0 when only the scores are constant."""
    return kendall_tau(scores, truth), spearman_rho(scores, truth)


def pick_accuracy(scores: Any, truth: Any) -> tuple[int, float]:
    """(index of the first top-scored model, mean truth over all models tied at the top score); ``(-1, NaN)``
    if a score is not finite (:func:`vlmhub.ranking.pick_index`, :func:`~vlmhub.ranking.pick_value`)."""
    i = pick_index(scores)
    return i, (pick_value(scores, truth) if i >= 0 else float("nan"))
