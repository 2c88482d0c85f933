"""Input validation, :class:`ProbeSet` and the linear-algebra helpers shared by every score family.

Conventions (see the package docstring): float64 throughout, labels re-indexed to the classes that
occur, rank-deficient inputs valid (pseudo-inverses on the numerical range), invalid input raises
:class:`vlmhub.errors.DataError` naming the problem and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import linalg as sla

from vlmhub.errors import ConfigError, DataError

__all__ = ["ProbeSet", "pca_reduce"]

_EPS = np.finfo(np.float64).eps
_TINY = 1e-300
_PROB_SUM_ATOL = 1e-2


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
            raise ConfigError(f"variance must be in (0, 1], got {variance}")
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
