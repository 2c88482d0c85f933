"""The MLL benchmark (issue 3): methods x targets, hub growth, label quality, ablations.

Everything here works on cached quantities: every hub model runs once per target image (trunk features are
cached under the hub), selection reads labels only. Methods:

``INB``           the model with the best ImageNet top-1 (no target data)
``ModelGPT``      text-only proxy (LOVM/ModelGPT): each model classifies the class *captions* with its own text
                  tower; a linear model on [ImageNet top-1, caption accuracy] fitted leave-one-target-out on
                  the other targets' true accuracies picks one model per dataset (uses other datasets' labels,
                  as ModelGPT does)
``random``        expected accuracy of a uniformly random model
``best_single_cv`` the best single model chosen on one half of the target's labelled images and scored on the
                  other half, both ways (a label-using reference)
``MLL_k1/k3``     label-free selection + reuse (Eq. 5-10)
``oracle_per_class`` every class served by its best model (label-using upper reference)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..assets import data_root_for
from ..models.base import ZeroShotModel
from ..reuse.ensemble import DEFAULT_WEIGHTING, ensemble_scores
from ..tasks import LabeledImages, Task, task_images
from .evaluate import accuracy, inb_model, model_probabilities, per_class_recall

__all__ = ["TargetData", "load_target", "method_accuracies", "growth_curve", "label_quality", "Variant",
           "default_ablations", "run_ablations", "crossfit_best_single", "caption_accuracy", "spearman"]


@dataclass
class TargetData:
    task: Task
    images: LabeledImages
    labels: np.ndarray
    probs: dict[str, np.ndarray]
    forward_seconds: float = 0.0

    @property
    def n_classes(self) -> int:
        return len(self.task.classes)

    def model_accuracy(self) -> dict[str, float]:
        return {m: accuracy(p.argmax(1), self.labels) for m, p in self.probs.items()}

    def recalls(self, ids: Sequence[str]) -> np.ndarray:
        return np.stack([per_class_recall(self.probs[m].argmax(1), self.labels, self.n_classes) for m in ids])


def load_target(task: Task, models: Sequence[ZeroShotModel], settings, *, limit_per_class: int | None = 50,
                progress=None) -> TargetData:
    images = task_images(task, limit_per_class=limit_per_class)
    t0 = time.perf_counter()
    probs = model_probabilities(models, task, images, settings, progress=progress)
    return TargetData(task, images, np.asarray(images.labels), probs, time.perf_counter() - t0)


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def mll_accuracy(data: TargetData, r: np.ndarray, ids: Sequence[str], k: int, weighting: str = DEFAULT_WEIGHTING) -> float:
    """Accuracy of the MLL ensemble given the reuse scores ``r`` (models x classes) of models ``ids``."""
    k = min(k, len(ids))
    order = np.argsort(-r, axis=0, kind="stable")[:k]
    members = [[ids[i] for i in order[:, c]] for c in range(r.shape[1])]
    used = {m for ms in members for m in ms}
    scores = ensemble_scores({m: data.probs[m] for m in used}, members, weighting)
    return accuracy(scores.argmax(1), data.labels)


def crossfit_best_single(data: TargetData, ids: Sequence[str], seed: int = 0) -> float:
    """Best single model chosen on one stratified half, scored on the other, averaged over both directions."""
    rng = np.random.default_rng(seed)
    half = np.zeros(len(data.labels), bool)
    for c in range(data.n_classes):
        idx = np.flatnonzero(data.labels == c)
        rng.shuffle(idx)
        half[idx[: len(idx) // 2]] = True
    out = []
    for a, b in ((half, ~half), (~half, half)):
        best = max(ids, key=lambda m: accuracy(data.probs[m][a].argmax(1), data.labels[a]))
        out.append(accuracy(data.probs[best][b].argmax(1), data.labels[b]))
    return float(np.mean(out))


def caption_accuracy(model: ZeroShotModel, task: Task, captions: Sequence[Sequence[str]]) -> float:
    """ModelGPT's text proxy: the model's zero-shot classifier applied to its own embeddings of class captions."""
    cls = model.class_embeddings(list(task.classes))
    flat = [c for cs in captions for c in cs]
    y = np.array([i for i, cs in enumerate(captions) for _ in cs])
    emb = model.encode_text(flat)
    return accuracy((emb @ cls.T).argmax(1), y)


def method_accuracies(data: TargetData, models: Sequence[ZeroShotModel], r: np.ndarray, ids: Sequence[str], *,
                      modelgpt_pick: str | None = None, ks: Sequence[int] = (1, 3), weighting: str = DEFAULT_WEIGHTING) -> dict[str, float]:
    acc = data.model_accuracy()
    out = {"INB": acc[inb_model(models)]}
    if modelgpt_pick is not None:
        out["ModelGPT"] = acc[modelgpt_pick]
    out["random"] = float(np.mean([acc[m] for m in ids]))
    out["best_single_cv"] = crossfit_best_single(data, ids)
    for k in ks:
        out[f"MLL_k{k}"] = mll_accuracy(data, r, ids, k, weighting)
    rec = data.recalls(ids)
    counts = np.bincount(data.labels, minlength=data.n_classes)
    out["oracle_per_class"] = float((rec.max(axis=0) * counts).sum() / counts.sum())
    return out


def modelgpt_picks(features: Mapping[str, Mapping[str, tuple[float, float]]], truth: Mapping[str, Mapping[str, float]]) -> dict[str, str]:
    """Leave-one-target-out linear model acc ~ [1, IN top-1, caption acc]; returns the picked model per target."""
    targets = list(features)
    picks = {}
    for t in targets:
        X, y = [], []
        for u in targets:
            if u == t:
                continue
            for m, (inet, cap) in features[u].items():
                X.append([1.0, inet, cap])
                y.append(truth[u][m])
        if len(X) >= 3:
            w = np.linalg.lstsq(np.asarray(X), np.asarray(y), rcond=None)[0]
        else:
            w = np.array([0.0, 1.0, 1.0])
        pred = {m: float(np.dot(w, [1.0, inet, cap])) for m, (inet, cap) in features[t].items()}
        picks[t] = max(pred, key=pred.get)
    return picks


def growth_curve(data_list: Sequence[TargetData], rs: Sequence[np.ndarray], ids: Sequence[str], models: Sequence[ZeroShotModel], *,
                 k: int = 3, orders: int = 30, seed: int = 0, weighting: str = DEFAULT_WEIGHTING) -> dict[str, np.ndarray]:
    """Mean accuracy over targets as the hub grows model by model, over random orders (the paper's Figure 3).

    Returns arrays (orders x M) for ``MLL`` (k-model ensemble), ``INB`` and ``best_single`` (oracle single).
    """
    rng = np.random.default_rng(seed)
    M = len(ids)
    spec = {m.id: m for m in models}
    res = {name: np.zeros((orders, M)) for name in ("MLL", "INB", "best_single")}
    for o in range(orders):
        perm = rng.permutation(M)
        for n in range(1, M + 1):
            sub = perm[:n]
            sub_ids = [ids[i] for i in sub]
            mll, inb, best = [], [], []
            for data, r in zip(data_list, rs):
                mll.append(mll_accuracy(data, r[sub], sub_ids, k, weighting))
                acc = data.model_accuracy()
                inb.append(acc[inb_model([spec[i] for i in sub_ids])])
                best.append(max(acc[i] for i in sub_ids))
            res["MLL"][o, n - 1] = np.mean(mll)
            res["INB"][o, n - 1] = np.mean(inb)
            res["best_single"][o, n - 1] = np.mean(best)
    return res


def label_quality(data: TargetData, p: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
    """How well p(m, y) predicts true per-class recall: Spearman per model across classes (mean), per class
    across models (mean), and per dataset (mean_y p vs accuracy across models)."""
    rec = data.recalls(ids)
    acc = data.model_accuracy()
    per_model = [spearman(p[i], rec[i]) for i in range(len(ids))]
    per_class = [spearman(p[:, c], rec[:, c]) for c in range(p.shape[1])]
    return {
        "per_class_rho": float(np.nanmean(per_class)) if not np.all(np.isnan(per_class)) else float("nan"),
        "per_model_rho": float(np.nanmean(per_model)) if not np.all(np.isnan(per_model)) else float("nan"),
        "dataset_rho": spearman(p.mean(axis=1), [acc[m] for m in ids]),
    }


@dataclass(frozen=True)
class Variant:
    """One ablation: selection-config overrides, an optional sub-graph, reuse weighting and k."""

    name: str
    group: str
    config: tuple[tuple[str, object], ...] = ()
    graph: tuple[tuple[str, object], ...] = ()  # e.g. (("sample_sets", ("shape-renditions",)), ("max_images", 20))
    weighting: str = DEFAULT_WEIGHTING
    mll_captions: bool = False


def default_ablations(has_renditions: Sequence[str] = ()) -> list[Variant]:
    v = [Variant("default (paper's Eq. 5-7, inverse-entropy reuse)", "default")]
    v += [Variant(f"alpha={a}", "alpha", (("alpha", a),)) for a in (0.0, 0.3, 0.5, 0.9, 1.0)]
    v += [Variant(f"nodes={n}", "nodes per class", (("k_nodes", n),)) for n in (1, 3, 10, 20)]
    v += [Variant("Z normalised", "Z", (("normalize_z", True),))]
    v += [Variant("F1 (official)", "Eq. 5 metric", (("metric", "f1"),))]
    v += [Variant("Eq. 9 entropy (paper)", "Eq. 9 weighting", weighting="entropy"),
          Variant("uniform weights", "Eq. 9 weighting", weighting="uniform")]
    v += [Variant("captions: template", "captions", (("caption_sources", ("template",)),)),
          Variant("captions: wordnet", "captions", (("caption_sources", ("wordnet",)),)),
          Variant("captions: MLL GPT + template + wordnet", "captions", mll_captions=True),
          Variant("captions: MLL GPT only", "captions", (("caption_sources", ("user",)),), mll_captions=True)]
    v += [Variant(f"samples: {s}", "sample sets", graph=(("sample_sets", (s,)),))
          for s in ("imagenet-sample", "imagenette-val", "shape-renditions")]
    v += [Variant("samples: imagenette-val + shape-renditions (no imagenet-sample)", "sample sets",
                  graph=(("sample_sets", ("imagenette-val", "shape-renditions")),)),
          Variant("samples: tiny-imagenet-val (20/concept)", "sample sets",
                  graph=(("sample_sets", ("tiny-imagenet-val",)), ("max_per_concept", 20))),
          Variant("samples: default + tiny-imagenet-val (20/concept)", "sample sets",
                  graph=(("sample_sets", ("imagenet-sample", "imagenette-val", "shape-renditions", "tiny-imagenet-val")),
                         ("max_per_concept", 20))),
          Variant("samples: imagenette + shapes + tiny (20/concept)", "sample sets",
                  graph=(("sample_sets", ("imagenette-val", "shape-renditions", "tiny-imagenet-val")), ("max_per_concept", 20)))]
    v += [Variant(f"images/node={n}", "images per node", graph=(("max_images", n),)) for n in (5, 20)]
    for r in has_renditions:
        if r != "original":
            v.append(Variant(f"rendition: {r}", "rendition", (("rendition", r),)))
    if len([r for r in has_renditions if r != "original"]) >= 1:
        v.append(Variant("rendition: auto (by domain)", "rendition", (("rendition", "auto"),)))
    return v


def run_ablations(hub, variants: Sequence[Variant], data_list: Sequence[TargetData], *, base_graph=None,
                  ks: Sequence[int] = (1, 3), progress=None) -> list[dict]:
    """MLL accuracy of every variant on every target (labels only; models do not run again)."""
    from ..concepts.graph import build_graph
    from ..concepts.samples import scan_sample_set
    from ..errors import NotLabeledError
    from ..selection.mll import MLLSelector
    from .mll_captions import attach_mll_captions

    ids = hub.labeled_model_ids()
    base_graph = base_graph or hub.graph()
    graphs: dict[tuple, object] = {}
    rows = []
    for var in variants:
        gkey = var.graph
        if gkey not in graphs:
            if not gkey:
                graphs[gkey] = base_graph
            else:
                g = dict(gkey)
                sets = g.get("sample_sets", base_graph.sample_sets)
                cap = g.get("max_per_concept")
                graphs[gkey] = build_graph([scan_sample_set(hub.resolve_sample_set(s), cap) for s in sets], hub.settings,
                                           max_images=int(g.get("max_images", base_graph.max_images)))
        row = {"variant": var.name, "group": var.group}
        try:
            sel = MLLSelector(hub.settings, **dict(var.config)).fit(ids, graphs[gkey], require_complete=False)
        except NotLabeledError as exc:  # reported in the table, never silently dropped
            row["skipped"] = str(exc)
            rows.append(row)
            if progress:
                progress(1)
            continue
        for data in data_list:
            task = attach_mll_captions(data.task, data_root_for("mll-captions", hub.settings)) if var.mll_captions else data.task
            r = sel.estimate(task)["r"]
            for k in ks:
                row[f"{data.task.name}/k{k}"] = mll_accuracy(data, r, list(sel.model_ids_), k, var.weighting)
        for k in ks:
            row[f"mean/k{k}"] = float(np.mean([row[f"{d.task.name}/k{k}"] for d in data_list]))
        rows.append(row)
        if progress:
            progress(1)
    return rows
