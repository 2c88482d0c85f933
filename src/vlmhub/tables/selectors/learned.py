"""Learned peer selectors in torch (CPU, seeded): guided recommendation (FM) and Model Spider.

* :class:`GuidedFMSelector` -- Li et al., "Guided Recommendation for Model Fine-Tuning" (CVPR 2023): a
  factorization machine ``S(z) = w0 + sum_i w_i z_i + sum_{i<j} <u_i, u_j> z_i z_j`` over the concatenated
  model and dataset features, trained by MSE on every history (model, dataset) accuracy. Model features:
  architecture family, pretraining data (one-hots), log params, log FLOPs, the existing model-selection
  score (ImageNet accuracy, the paper's "additional feature") and, optionally, a model-id one-hot. Dataset
  features: the first principal components of the task's text embedding and its log class count.
* :class:`ModelSpiderSelector` -- Zhang et al., "Model Spider: Learning to Rank Pre-Trained Models
  Efficiently" (NeurIPS 2023): learned model tokens ``theta_m``; a task is the set of its (projected) text
  embeddings -- the description and up to ``n_class_tokens`` class captions, standing in for the paper's
  class centres of a frozen image encoder; a one-layer transformer reads ``[theta_m, mu(T)]`` and an FC
  layer maps its first output to a score (Eq. 6); trained with the listwise ranking loss of Eq. 4 on the
  history tasks' true rankings.
"""

from __future__ import annotations

import contextlib

import numpy as np

from ..records import PerformanceTable, TaskDescription
from ..text import embed_task, task_vector
from .base import TableSelector, fill_missing, model_meta_features, register_selector

__all__ = ["GuidedFMSelector", "ModelSpiderSelector", "listwise_rank_loss"]


def _torch():
    import torch

    return torch


@contextlib.contextmanager
def _few_threads(n: int = 1):
    """Train the small models on one thread (faster than contended multi-threading); restore after."""
    torch = _torch()
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def listwise_rank_loss(scores, truth):
    """Model Spider's Eq. 4: ``sum_m -log softmax over the models ranked at or below m`` (per row).

    ``scores`` and ``truth`` are ``(n_tasks, n_models)`` tensors; NaN truths are excluded.
    """
    torch = _torch()
    order = torch.argsort(torch.nan_to_num(truth, nan=-1e9), dim=1, descending=True)
    s = torch.gather(scores, 1, order)
    valid = torch.gather(~torch.isnan(truth), 1, order)
    s = torch.where(valid, s, torch.full_like(s, -1e9))
    # log-sum-exp over the suffix l >= m: reverse cumulative logsumexp
    rev = torch.flip(s, dims=[1])
    lse = torch.flip(torch.logcumsumexp(rev, dim=1), dims=[1])
    loss = (lse - s) * valid
    return loss.sum() / valid.sum().clamp(min=1)


def _pca(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mu = X.mean(0)
    _, _, vt = np.linalg.svd(X - mu, full_matrices=False)
    return mu, vt[: max(1, min(k, vt.shape[0]))].T


@register_selector
class GuidedFMSelector(TableSelector):
    """Factorization machine over model and dataset features (guided recommendation)."""

    name = "guided-fm"
    paper = "Guided Recommendation for Model Fine-Tuning (Li et al., CVPR 2023)"
    summary = "factorization machine over model meta features and task text features"

    def __init__(
        self,
        embedder="minilm",
        fm_rank: int = 8,
        text_dims: int = 8,
        use_model_id: bool = True,
        epochs: int = 400,
        lr: float = 0.02,
        weight_decay: float = 1e-4,
        seed: int = 0,
        class_limit: int = 64,
    ) -> None:
        self.embedder = embedder
        self.fm_rank = fm_rank  # not `rank`: that would shadow TableSelector.rank()
        self.text_dims = text_dims
        self.use_model_id = use_model_id
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed
        self.class_limit = class_limit

    def _task_vec(self, task: TaskDescription) -> np.ndarray:
        return task_vector(embed_task(self.embedder, task, self.class_limit)).astype(np.float64)

    def _dataset_features(self, task: TaskDescription) -> np.ndarray:
        t = (self._task_vec(task) - self.pca_mu_) @ self.pca_W_ / self.pca_sd_
        return np.concatenate([t, [(np.log(max(len(task.classes), 2)) - self.ncls_mu_) / self.ncls_sd_]])

    def _fit(self, history: PerformanceTable) -> None:
        torch = _torch()
        extra = {}
        j = history.reference_index()
        if j is not None:
            extra["imagenet_acc"] = fill_missing(history.acc)[:, j]
        mf, _ = model_meta_features(history.models, extra)
        if self.use_model_id:
            mf = np.concatenate([mf, np.eye(history.n_models)], axis=1)
        self.model_feats_ = mf
        T = np.stack([self._task_vec(d) for d in history.datasets])
        self.pca_mu_, self.pca_W_ = _pca(T, min(self.text_dims, max(1, history.n_datasets - 1)))
        proj = (T - self.pca_mu_) @ self.pca_W_
        sd = proj.std(0)
        self.pca_sd_ = np.where(sd > 1e-9, sd, 1.0)
        ncls = np.log(np.maximum([len(d.classes) for d in history.datasets], 2))
        self.ncls_mu_, self.ncls_sd_ = float(ncls.mean()), float(ncls.std() or 1.0)
        dfeat = np.stack([self._dataset_features(d) for d in history.datasets])
        y = history.acc
        ok = np.isfinite(y)
        self.y_mu_ = float(y[ok].mean())
        g = torch.Generator().manual_seed(self.seed)
        dm, dd = mf.shape[1], dfeat.shape[1]
        self.w0_ = torch.zeros(1, requires_grad=True)
        self.wm_ = torch.zeros(dm, requires_grad=True)
        self.wd_ = torch.zeros(dd, requires_grad=True)
        self.Vm_ = (0.01 * torch.randn(dm, self.fm_rank, generator=g)).requires_grad_(True)
        self.Vd_ = (0.01 * torch.randn(dd, self.fm_rank, generator=g)).requires_grad_(True)
        Xm = torch.tensor(mf, dtype=torch.float32)
        Xd = torch.tensor(dfeat, dtype=torch.float32)
        Y = torch.tensor(np.where(ok, y - self.y_mu_, 0.0), dtype=torch.float32)
        mask = torch.tensor(ok, dtype=torch.float32)
        opt = torch.optim.Adam([self.w0_, self.wm_, self.wd_, self.Vm_, self.Vd_], lr=self.lr, weight_decay=self.weight_decay)
        with _few_threads():
            self._train_fm(opt, Xm, Xd, Y, mask)

    def _train_fm(self, opt, Xm, Xd, Y, mask) -> None:
        for _ in range(self.epochs):
            opt.zero_grad()
            err = (self._fm(Xm, Xd) - Y) * mask
            loss = err.pow(2).sum() / mask.sum()
            loss.backward()
            opt.step()

    def _fm(self, Xm, Xd):
        """FM on every (model, dataset) concatenation ``[x_m, x_d]``, computed blockwise: (n_models, n_datasets).

        Identical to the textbook FM on the concatenated vector: the pairwise term splits into
        model-model, dataset-dataset and model-dataset interactions.
        """
        pm, pd = Xm @ self.Vm_, Xd @ self.Vd_
        intra_m = 0.5 * (pm.pow(2) - Xm.pow(2) @ self.Vm_.pow(2)).sum(1)
        intra_d = 0.5 * (pd.pow(2) - Xd.pow(2) @ self.Vd_.pow(2)).sum(1)
        lin_m = Xm @ self.wm_ + intra_m
        lin_d = Xd @ self.wd_ + intra_d
        return self.w0_ + lin_m[:, None] + lin_d[None, :] + pm @ pd.T

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        torch = _torch()
        Xm = torch.tensor(self.model_feats_, dtype=torch.float32)
        Xd = torch.tensor(self._dataset_features(task)[None, :], dtype=torch.float32)
        with torch.no_grad():
            return self._fm(Xm, Xd).numpy()[:, 0].astype(np.float64) + self.y_mu_


@register_selector
class ModelSpiderSelector(TableSelector):
    """Learned model tokens + one-layer transformer scorer trained with Model Spider's listwise loss."""

    name = "model-spider"
    paper = "Model Spider: Learning to Rank Pre-Trained Models Efficiently (Zhang et al., NeurIPS 2023)"
    summary = "model tokens + 1-layer transformer over task text tokens, listwise ranking loss"

    def __init__(
        self,
        embedder="minilm",
        dim: int = 32,
        n_class_tokens: int = 16,
        heads: int = 2,
        steps: int = 300,
        lr: float = 5e-3,
        weight_decay: float = 1e-4,
        seed: int = 0,
    ) -> None:
        self.embedder = embedder
        self.dim = dim
        self.n_class_tokens = n_class_tokens
        self.heads = heads
        self.steps = steps
        self.lr = lr
        self.weight_decay = weight_decay
        self.seed = seed

    def _task_tokens(self, task: TaskDescription) -> np.ndarray:
        t = embed_task(self.embedder, task, self.n_class_tokens)
        cls = t.classes if len(t.classes) else t.desc[None, :]
        idx = np.arange(self.n_class_tokens) % len(cls)
        return np.concatenate([t.desc[None, :], cls[idx]], axis=0).astype(np.float32)

    def _build(self, n_models: int, in_dim: int):
        torch = _torch()
        nn = torch.nn
        torch.manual_seed(self.seed)
        d = self.dim
        self.theta_ = nn.Parameter(0.1 * torch.randn(n_models, d))
        self.type_ = nn.Parameter(0.1 * torch.randn(2, d))  # model-token / task-token prompts
        self._modules_ = nn.ModuleDict(
            {
                "proj": nn.Linear(in_dim, d),
                "q": nn.Linear(d, d, bias=False),
                "k": nn.Linear(d, d, bias=False),
                "v": nn.Linear(d, d, bias=False),
                "norm": nn.LayerNorm(d),
                "fc": nn.Linear(d, 1),
            }
        )

    def _forward(self, tokens):
        """``tokens``: (B, L, in_dim) task tokens -> (B, n_models) scores.

        The one-layer transformer of Eq. 9, ``z + softmax(zW_Q (zW_K)^T / sqrt(d)) zW_V`` over
        ``z = [theta_m, mu(T)]``, evaluated only at position 0 (the model token, all Eq. 6 reads), with
        ``heads`` attention heads; then LayerNorm and the FC layer of Eq. 6.
        """
        torch = _torch()
        m = self._modules_
        B, L, _ = tokens.shape
        M, d, h = self.theta_.shape[0], self.dim, self.heads
        dh = d // h
        task = m["proj"](tokens) + self.type_[1]  # (B, L, d)
        model = self.theta_ + self.type_[0]  # (M, d)
        q = m["q"](model).reshape(M, h, dh)
        km, vm = m["k"](model).reshape(M, h, dh), m["v"](model).reshape(M, h, dh)
        kt, vt = m["k"](task).reshape(B, L, h, dh), m["v"](task).reshape(B, L, h, dh)
        scale = dh ** -0.5
        self_logit = (q * km).sum(-1)[None, :, :, None].expand(B, M, h, 1)  # (B, M, h, 1)
        task_logit = torch.einsum("mhe,blhe->bmhl", q, kt)  # (B, M, h, L)
        att = torch.softmax(torch.cat([self_logit, task_logit], dim=-1) * scale, dim=-1)
        out = att[..., :1] * vm[None] + torch.einsum("bmhl,blhe->bmhe", att[..., 1:], vt)
        z = model[None] + out.reshape(B, M, d)
        return m["fc"](m["norm"](z)).squeeze(-1)

    def _fit(self, history: PerformanceTable) -> None:
        torch = _torch()
        toks = np.stack([self._task_tokens(d) for d in history.datasets])
        self._build(history.n_models, toks.shape[2])
        params = [self.theta_, self.type_, *self._modules_.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        X = torch.tensor(toks)
        Y = torch.tensor(history.acc.T.copy(), dtype=torch.float32)  # (tasks, models)
        with _few_threads():
            for _ in range(self.steps):
                opt.zero_grad()
                loss = listwise_rank_loss(self._forward(X), Y)
                loss.backward()
                opt.step()

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        torch = _torch()
        with torch.no_grad():
            return self._forward(torch.tensor(self._task_tokens(task)[None])).numpy()[0].astype(np.float64)
