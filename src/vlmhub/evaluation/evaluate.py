"""``vlmhub evaluate``: accuracy of INB, the best single model, MLL (k=1, k=3) and the per-class oracle.

* ``INB`` — the model with the best ImageNet-1k top-1 (``ModelSpec.imagenet_top1``), no target data.
* ``best_single`` — the single model with the best accuracy on the target (uses target labels: a reference).
* ``MLL_k1`` / ``MLL_k3`` — label-free selection (Eq. 5-7) and the ensemble (Eq. 8-10).
* ``oracle_per_class`` — ``sum_y n_y max_m recall_{m,y} / N``: every class served by its best model (uses
  labels; an upper reference for per-class selection).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..models.base import ZeroShotModel
from ..models.runner import embed_images
from ..reuse.ensemble import DEFAULT_WEIGHTING, Weighting, ensemble_scores, zero_shot_probs
from ..settings import Settings, get_settings
from ..tasks import LabeledImages, Task, task_images

__all__ = ["EvalResult", "evaluate_task", "per_class_recall", "model_probabilities", "accuracy", "inb_model"]


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(labels))) if len(labels) else 0.0


def per_class_recall(pred: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    hit = np.bincount(labels, weights=(np.asarray(pred) == labels).astype(float), minlength=n_classes)
    n = np.bincount(labels, minlength=n_classes).astype(float)
    return np.divide(hit, n, out=np.zeros(n_classes), where=n > 0)


def inb_model(models: Sequence[ZeroShotModel]) -> str:
    """ImageNet-best: highest ``imagenet_top1`` (models without one rank last; ties keep hub order)."""
    best = max(models, key=lambda m: (m.spec.imagenet_top1 if m.spec.imagenet_top1 is not None else -1.0))
    return best.id


def model_probabilities(
    models: Sequence[ZeroShotModel],
    task: Task,
    images: LabeledImages,
    settings: Settings | None = None,
    *,
    progress=None,
    templates: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Zero-shot class probabilities (Eq. 1) of every model on the task's images; trunk features are cached."""
    settings = settings or get_settings()
    emb = embed_images(models, images.refs(), batch_size=settings.batch_size,
                       feature_cache_dir=settings.cache_dir / "features", progress=progress)
    return {m.id: zero_shot_probs(emb[m.id], m.class_embeddings(list(task.classes), templates), m.logit_scale) for m in models}


@dataclass
class EvalResult:
    dataset: str
    n_images: int
    accuracy: dict[str, float]
    per_model: dict[str, float] = field(default_factory=dict)
    selections: dict[str, dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    #: true per-class recall of every model (model id -> one value per class)
    per_class: dict[str, list[float]] = field(default_factory=dict)
    #: the Selection objects behind ``selections`` (key "k1", "k3", ...), for plots; not serialised
    selection_objects: dict[str, object] = field(default_factory=dict, repr=False)

    def to_dict(self, detail: bool = False) -> dict:
        d = {"dataset": self.dataset, "n_images": self.n_images, "accuracy": {k: round(v, 4) for k, v in self.accuracy.items()}}
        if detail:
            d["per_model"] = {k: round(v, 4) for k, v in self.per_model.items()}
            d["selections"] = self.selections
            d["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
            d["per_class_recall"] = {m: [round(x, 4) for x in v] for m, v in self.per_class.items()}
        return d

    def format(self) -> str:
        lines = [f"{self.dataset}: {self.n_images} images"]
        for k, v in self.accuracy.items():
            lines.append(f"  {k:<18} {v:.4f}")
        if self.per_model:
            lines.append("  single models: " + ", ".join(f"{m} {a:.3f}" for m, a in sorted(self.per_model.items(), key=lambda t: -t[1])))
        return "\n".join(lines)


def evaluate_task(
    task: Task,
    models: Sequence[ZeroShotModel],
    selector,
    settings: Settings | None = None,
    *,
    ks: Sequence[int] = (1, 3),
    weighting: Weighting = DEFAULT_WEIGHTING,
    limit_per_class: int | None = None,
    progress: bool = True,
    probs: Mapping[str, np.ndarray] | None = None,
    images: LabeledImages | None = None,
) -> EvalResult:
    """Evaluate INB, best single, MLL for each k and the per-class oracle on ``task``'s images."""
    from tqdm.auto import tqdm

    settings = settings or get_settings()
    images = images or task_images(task, limit_per_class=limit_per_class)
    labels = np.asarray(images.labels)
    C = len(task.classes)
    t0 = time.perf_counter()
    if probs is None:
        bar = tqdm(total=len(images) * len({m.trunk_key for m in models}), desc=f"run {len(models)} models on {task.name}",
                   unit="img", disable=not progress)
        probs = model_probabilities(models, task, images, settings, progress=bar.update)
        bar.close()
    t_models = time.perf_counter() - t0
    per_model = {m: accuracy(p.argmax(1), labels) for m, p in probs.items()}
    recalls = np.stack([per_class_recall(probs[m.id].argmax(1), labels, C) for m in models])
    counts = np.bincount(labels, minlength=C)
    acc: dict[str, float] = {}
    inb = inb_model(models)
    acc["INB"] = per_model[inb]
    acc["best_single"] = max(per_model.values())
    selections, objects = {}, {}
    t1 = time.perf_counter()
    for k in ks:
        sel = selector.select(task, k=min(k, len(selector.model_ids_)))  # MLL_k3 on a 2-model hub = all models
        scores = ensemble_scores({m: probs[m] for m in sel.used_models()}, [sel.members(c) for c in range(C)], weighting)
        acc[f"MLL_k{k}"] = accuracy(scores.argmax(1), labels)
        selections[f"k{k}"] = sel.to_dict()
        objects[f"k{k}"] = sel
    t_sel = time.perf_counter() - t1
    acc["oracle_per_class"] = float((recalls.max(axis=0) * counts).sum() / counts.sum())
    return EvalResult(task.name, len(images), acc, per_model, {"INB_model": {"id": inb}, **selections},
                      {"models": t_models, "selection_and_reuse": t_sel},
                      {m.id: recalls[i].tolist() for i, m in enumerate(models)}, objects)
