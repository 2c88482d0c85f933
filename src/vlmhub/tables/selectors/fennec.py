"""Fennec (Bai et al., "Pre-Trained Model Recommendation for Downstream Fine-tuning").

* Transfer phase: non-negative matrix factorisation of the history matrix ``P ~ M D^T`` with L2 penalties
  (Eq. 4), by Lee-Seung multiplicative updates; ``M`` are model vectors, ``D`` task vectors.
* A regressor from a task's proxy features to its task vector (Eq. 6). The paper feeds CLIP image
  features of the task to a random forest; with only a task description available we feed its text
  embedding (description + class captions) to a ridge regression (few dozen history tasks make a forest
  no better than a ridge here). ``TRANS_SCORE = m_i . d_t`` (Eq. 7).
* Meta phase: a linear regression from ``[model meta features, task meta features]`` to accuracy (Eq. 8):
  log params, log FLOPs, architecture-family and pretraining-data one-hots (the paper's archi2vec
  reduces to family one-hots here: every model is a CLIP-style ViT/ResNet/ConvNext/EVA/CoCa), and the
  task's log class count.
* Merge: ``s = (1 - alpha) * TRANS + alpha * META`` with the paper's default ``alpha = 0.5`` (Eq. 10).
"""

from __future__ import annotations

import math

import numpy as np

from ..records import PerformanceTable, TaskDescription
from ..text import embed_task, task_vector
from .base import TableSelector, fill_missing, model_meta_features, register_selector, ridge_fit

__all__ = ["FennecSelector", "nmf"]


def nmf(P: np.ndarray, k: int, *, alpha_m: float = 1e-3, alpha_d: float = 1e-3, n_iter: int = 500, seed: int = 0):
    """``P ~ M @ D.T`` with ``M, D >= 0`` and L2 penalties (multiplicative updates). Returns ``(M, D)``."""
    rng = np.random.default_rng(seed)
    n, h = P.shape
    scale = math.sqrt(max(P.mean(), 1e-6) / k)
    M = rng.uniform(0.5, 1.5, (n, k)) * scale
    D = rng.uniform(0.5, 1.5, (h, k)) * scale
    eps = 1e-12
    for _ in range(n_iter):
        M *= (P @ D) / (M @ (D.T @ D) + alpha_m * M + eps)
        D *= (P.T @ M) / (D @ (M.T @ M) + alpha_d * D + eps)
    return M, D


def _task_meta(task: TaskDescription) -> np.ndarray:
    return np.array([math.log(max(len(task.classes), 2))])


@register_selector
class FennecSelector(TableSelector):
    """NMF task/model vectors + text-to-task-vector regressor + meta-feature regression, merged by alpha."""

    name = "fennec"
    paper = "Fennec: Pre-Trained Model Recommendation for Downstream Fine-tuning (Bai et al., 2024)"
    summary = "NMF of history, text->task-vector ridge, meta-feature LR, alpha merge"

    def __init__(self, embedder="minilm", k: int = 8, alpha: float = 0.5, ridge: float = 1.0, seed: int = 0, class_limit: int = 64) -> None:
        self.embedder = embedder
        self.k = k
        self.alpha = alpha
        self.ridge = ridge
        self.seed = seed
        self.class_limit = class_limit

    def _task_features(self, task: TaskDescription) -> np.ndarray:
        return task_vector(embed_task(self.embedder, task, self.class_limit)).astype(np.float64)

    def _fit(self, history: PerformanceTable) -> None:
        P = fill_missing(history.acc)
        k = max(1, min(self.k, history.n_datasets, history.n_models))
        self.M_, self.D_ = nmf(P, k, seed=self.seed)
        G = np.stack([self._task_features(d) for d in history.datasets])
        self.W_, self.b_ = ridge_fit(G, self.D_, self.ridge)
        # meta phase
        self.model_feats_, self.model_feat_names_ = model_meta_features(history.models)
        Tm = np.stack([_task_meta(d) for d in history.datasets])
        n, h = P.shape
        X = np.concatenate([np.repeat(self.model_feats_, h, axis=0), np.tile(Tm, (n, 1))], axis=1)
        ok = np.isfinite(history.acc).ravel()
        if X.shape[1] == 0:
            self.meta_W_, self.meta_b_ = np.zeros((0, 1)), np.array([np.nanmean(history.acc)])
        else:
            self.meta_W_, self.meta_b_ = ridge_fit(X[ok], history.acc.ravel()[ok][:, None], 1e-3 * ok.sum())

    def transfer_score(self, task: TaskDescription) -> np.ndarray:
        d = self._task_features(task) @ self.W_ + self.b_
        return self.M_ @ np.clip(d, 0.0, None)

    def meta_score(self, task: TaskDescription) -> np.ndarray:
        n = self.history_.n_models
        X = np.concatenate([self.model_feats_, np.tile(_task_meta(task), (n, 1))], axis=1)
        return (X @ self.meta_W_ + self.meta_b_).ravel() if X.shape[1] else np.full(n, float(self.meta_b_[0]))

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        return (1.0 - self.alpha) * self.transfer_score(task) + self.alpha * self.meta_score(task)
