"""Ranking metrics of one target column (pure numpy/scipy).

For a score vector ``s`` (higher = better) and the true accuracies ``y`` of the same models:

* ``selected_acc``: accuracy of the top-1 ranked model (ties broken by the first model in table order);
* ``regret``: ``(max(y) - selected_acc) * 100`` -- in accuracy points;
* ``tau``: Kendall's tau-b (``scipy.stats.kendalltau``);
* ``tau_w``: weighted tau (``scipy.stats.weightedtau(y, s)``, hyperbolic weights, rank=True), as Model Spider;
* ``pearson``: Pearson correlation of ``s`` and ``y`` (NaN if either is constant);
* ``top5``: LOVM's ``|top5(s) & top5(y)| / 5``.

Models with a NaN true accuracy are dropped before every metric.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..errors import TableError

__all__ = ["TargetMetrics", "target_metrics", "top_k_overlap", "METRIC_NAMES"]

METRIC_NAMES = ("selected_acc", "best_acc", "regret", "tau", "tau_w", "pearson", "top5")


@dataclass(frozen=True)
class TargetMetrics:
    """Metrics of one selector on one target dataset (regret in points)."""

    selected_acc: float
    best_acc: float
    regret: float
    tau: float
    tau_w: float
    pearson: float
    top5: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in METRIC_NAMES}


def top_k_overlap(scores: np.ndarray, truth: np.ndarray, k: int = 5) -> float:
    """``|top-k(scores) & top-k(truth)| / k`` (stable order, first index wins ties)."""
    k = min(k, len(truth))
    if k == 0:
        return math.nan
    a = set(np.argsort(-scores, kind="stable")[:k].tolist())
    b = set(np.argsort(-truth, kind="stable")[:k].tolist())
    return len(a & b) / k


def target_metrics(scores: np.ndarray, truth: np.ndarray) -> TargetMetrics:
    """All metrics of ``scores`` against ``truth`` (both length n_models; NaN truths are ignored)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(truth, dtype=np.float64)
    if s.shape != y.shape or s.ndim != 1:
        raise TableError(f"scores of shape {s.shape} do not match the {y.shape} true accuracies")
    ok = np.isfinite(y)
    s, y = s[ok], y[ok]
    if y.size < 2:
        raise TableError("a target needs true accuracies for at least two models")
    fin = np.isfinite(s)
    # a model the selector cannot score (NaN) ranks last
    s_fin = np.where(fin, s, (np.min(s[fin]) - 1.0) if fin.any() else 0.0)
    sel = int(np.argmax(s_fin))
    best = float(np.max(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tau = stats.kendalltau(s_fin, y).statistic
        tau_w = stats.weightedtau(y, s_fin).statistic
        pearson = stats.pearsonr(s_fin, y).statistic if np.std(s_fin) > 0 and np.std(y) > 0 else math.nan
    return TargetMetrics(
        selected_acc=float(y[sel]),
        best_acc=best,
        regret=(best - float(y[sel])) * 100.0,
        tau=float(tau),
        tau_w=float(tau_w),
        pearson=float(pearson),
        top5=top_k_overlap(s_fin, y, 5),
    )
