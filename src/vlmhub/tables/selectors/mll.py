"""MLL at dataset granularity (Model Label Learning, the project's own paper, Eqs. 5-7).

The history datasets play the role of MLL's semantic-graph nodes and their accuracy columns the role of
the model labels ``p_{m,v}``. Each target class caption (and the task description, as one extra "class")
is matched by text embedding to the class captions of every history dataset; its ``k`` most similar
captions, weighted by their similarity, form the transfer matrix ``Z`` (Eq. 6), which turns the history
accuracies into a per-class estimate ``p_{m,y}``. Eq. 7 then mixes the class estimate with the model's
global ability: ``r_m = alpha * mean_y p_{m,y} + (1 - alpha) * mean_v p_{m,v}``. ``alpha = 0.7`` as in
the paper.
"""

from __future__ import annotations

import numpy as np

from ..records import PerformanceTable, TaskDescription
from ..text import embed_task
from .base import TableSelector, fill_missing, register_selector

__all__ = ["MLLSelector"]


@register_selector
class MLLSelector(TableSelector):
    """MLL's caption matching and Eq. 7 with history datasets as graph nodes."""

    name = "mll"
    paper = "Model Label Learning: Pre-trained VLM selection and reuse (the project's seed paper)"
    summary = "caption matching to history datasets, Eq. 7 alpha-mix with the global mean"

    def __init__(self, embedder="minilm", alpha: float = 0.7, k: int = 3, class_limit: int = 64) -> None:
        self.embedder = embedder
        self.alpha = alpha
        self.k = k
        self.class_limit = class_limit

    def _fit(self, history: PerformanceTable) -> None:
        caps, owner = [], []
        for j, d in enumerate(history.datasets):
            t = embed_task(self.embedder, d, self.class_limit)
            caps.append(t.desc[None, :])
            owner.append(j)
            if len(t.classes):
                caps.append(t.classes)
                owner.extend([j] * len(t.classes))
        self.nodes_ = np.concatenate(caps, axis=0)
        # the description row is appended before the class rows of each dataset
        self.owner_ = np.asarray(owner)
        self.acc_ = fill_missing(history.acc)
        self.global_ = self.acc_.mean(1)

    def dataset_weights(self, task: TaskDescription) -> np.ndarray:
        """Weight of each history dataset for ``task`` (rows of Z summed per dataset, mean over classes)."""
        t = embed_task(self.embedder, task, self.class_limit)
        queries = np.concatenate([t.desc[None, :], t.classes], axis=0) if len(t.classes) else t.desc[None, :]
        sim = queries @ self.nodes_.T  # (n_queries, n_nodes)
        k = max(1, min(self.k, sim.shape[1]))
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        w = np.zeros(self.history_.n_datasets)
        for q in range(sim.shape[0]):
            z = np.clip(sim[q, top[q]], 1e-6, None)
            z = z / z.sum()
            np.add.at(w, self.owner_[top[q]], z)
        return w / w.sum()

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        est = self.acc_ @ self.dataset_weights(task)
        return self.alpha * est + (1.0 - self.alpha) * self.global_

