"""Ranking metrics of one target column, by :mod:`vlmhub.ranking` (whose conventions hold here).

For a score vector ``s`` (higher = better) and the true accuracies ``y`` of the same models:

* ``selected_acc``: accuracy of the top-1 ranked model; if several models tie at the top score, the mean
  of their accuracies (the expectation of a random tie break, :func:`vlmhub.ranking.pick_value`);
* ``regret``: ``(max(y) - selected_acc) * 100`` -- in accuracy points;
* ``tau``: Kendall's tau-b (equals ``scipy.stats.kendalltau``);
* ``tau_w``: weighted tau (equals ``scipy.stats.weightedtau(y, s)``, hyperbolic weights), as Model Spider;
* ``pearson``: Pearson correlation of ``s`` and ``y``;
* ``top5``: LOVM's ``|top5(s) & top5(y)| / 5``, its expectation when ties are broken at random.

Models with a NaN true accuracy are dropped before every metric; a model the selector cannot score
(NaN) ranks last (:func:`vlmhub.ranking.nan_last`). A selector whose scores are all equal ranks nothing:
its tau, tau_w and Pearson are 0 (not NaN), so means over targets count it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TableError
from ..ranking import nan_last, ranking_metrics, top_k_overlap

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
    m = ranking_metrics(nan_last(s), y, k=5)
    return TargetMetrics(
        selected_acc=m.pick_value,
        best_acc=m.best_value,
        regret=m.regret * 100.0,
        tau=m.tau,
        tau_w=m.tau_w,
        pearson=m.pearson,
        top5=m.top5,
    )
