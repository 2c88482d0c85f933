"""Reference selectors: ImageNet baseline, best mean on history, and ModelGPT (LOVM's linear model)."""

from __future__ import annotations

import numpy as np

from ...errors import TableError
from ..records import PerformanceTable, TaskDescription
from .base import TableSelector, register_selector, ridge_fit

__all__ = ["INBSelector", "BestMeanSelector", "ModelGPTSelector"]


@register_selector
class INBSelector(TableSelector):
    """ImageNet baseline (INB): rank models by their ImageNet-1k zero-shot accuracy."""

    name = "inb"
    paper = "ImageNet baseline as used by MLL and LOVM"
    summary = "ImageNet-1k accuracy"

    def __init__(self) -> None:
        pass

    def _fit(self, history: PerformanceTable) -> None:
        j = history.reference_index()
        if j is None:
            raise TableError(
                "INB needs an ImageNet-1k column in the history (a dataset named 'ImageNet 1k' or 'imagenet1k'); "
                "add it to the table or choose another selector"
            )
        self.imagenet_ = history.acc[:, j].copy()

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        return self.imagenet_


@register_selector
class BestMeanSelector(TableSelector):
    """Mean accuracy over every history dataset (missing cells ignored)."""

    name = "best-mean"
    paper = "baseline"
    summary = "mean accuracy over the history datasets"

    def __init__(self) -> None:
        pass

    def _fit(self, history: PerformanceTable) -> None:
        with np.errstate(all="ignore"):
            self.mean_ = np.nanmean(np.where(np.isnan(history.acc).all(1, keepdims=True), 0.0, history.acc), axis=1)

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        return self.mean_


@register_selector
class ModelGPTSelector(TableSelector):
    """ModelGPT (LOVM, Zohar et al. 2023): a linear model from seven text-derived scores to accuracy.

    Every (model, history dataset) pair with its ModelGPT features (IN-score, text-f1, text-acc1,
    intraclass_sim, inter_close, intra_close, superclass_metric) is one training example; the target's
    features (passed as ``features``, shape ``(n_models, n_features)``) give the predicted accuracies.
    Features are standardised; ``alpha`` is a small ridge penalty for numerical stability.
    """

    name = "modelgpt"
    paper = "LOVM: Language-Only Vision Model Selection (Zohar et al., NeurIPS 2023)"
    summary = "linear regression on ModelGPT's 7 text-derived features"
    requires_features = True

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def _fit(self, history: PerformanceTable) -> None:
        names = sorted(history.features)
        X = np.stack([history.features[k].ravel() for k in names], axis=1)
        y = history.acc.ravel()
        ok = np.isfinite(y) & np.isfinite(X).all(1)
        if ok.sum() < len(names) + 2:
            raise TableError(f"modelgpt: only {ok.sum()} complete (model, dataset) rows; it needs more history")
        X, y = X[ok], y[ok]
        self.mu_, sd = X.mean(0), X.std(0)
        self.sd_ = np.where(sd > 1e-12, sd, 1.0)
        self.coef_, self.intercept_ = ridge_fit((X - self.mu_) / self.sd_, y[:, None], self.alpha * len(y))
        self.feature_names_ = names

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        if features is None:
            raise TableError(
                f"modelgpt needs the target's {len(self.feature_names_)} ModelGPT features per model "
                f"({', '.join(self.feature_names_)}); it cannot rank a task described only by text"
            )
        F = np.asarray(features, dtype=np.float64)
        if F.shape != (self.history_.n_models, len(self.feature_names_)):
            raise TableError(f"modelgpt: target features have shape {F.shape}, expected {(self.history_.n_models, len(self.feature_names_))}")
        return (((F - self.mu_) / self.sd_) @ self.coef_ + self.intercept_).ravel()
