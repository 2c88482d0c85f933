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

:func:`run_mll_benchmark` runs all of it on a hub and returns a frozen :class:`BenchmarkResult`;
:mod:`vlmhub.evaluation.benchmark_report` renders it (Markdown, CSV, plots, ``summary.json``) for
``vlmhub benchmark``. Spearman correlations follow :mod:`vlmhub.ranking`.
"""

from __future__ import annotations

import time
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..assets import data_root_for
from ..errors import DataError
from ..models.base import ZeroShotModel
from ..ranking import spearman_rho
from ..reuse.ensemble import DEFAULT_WEIGHTING, ensemble_scores
from ..tasks import LabeledImages, Task, task_images
from .evaluate import accuracy, inb_model, model_probabilities, per_class_recall

__all__ = ["TargetData", "load_target", "method_accuracies", "growth_curve", "label_quality", "Variant",
           "default_ablations", "run_ablations", "crossfit_best_single", "caption_accuracy", "spearman",
           "mll_accuracy", "modelgpt_picks", "DEFAULT_TARGETS", "BenchmarkConfig", "AccuracyRow", "LabelQuality",
           "BenchmarkResult", "run_mll_benchmark"]

#: the shared target tasks ``vlmhub benchmark``, ``score-study`` and ``demo`` run on by default
DEFAULT_TARGETS = ("cifar10-test", "mnist-test", "gtsrb-test", "fer2013-test", "dtd10", "flowers5")


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
    """Spearman's rho of ``a`` (the estimate) against ``b`` (the truth), :func:`vlmhub.ranking.spearman_rho`
    (NaN where the truth is constant, 0 where only the estimate is)."""
    return spearman_rho(a, b)


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


# ---------------------------------------------------------------------------------------------
# The whole benchmark on a hub
# ---------------------------------------------------------------------------------------------

_WEIGHTINGS = ("entropy", "inverse_entropy", "uniform")


@dataclass(frozen=True)
class BenchmarkConfig:
    """What :func:`run_mll_benchmark` measures. Invalid values raise :class:`~vlmhub.errors.DataError`."""

    limit_per_class: int | None = 50  # seeded images per class and target (None: all)
    orders: int = 30  # random hub orders of the growth curve
    weighting: str = DEFAULT_WEIGHTING  # reuse weighting of every MLL ensemble (Eq. 9)
    ablations: bool = True  # also run :func:`default_ablations` (labels only)
    growth_k: int = 3  # models per class of the growth curve's MLL ensemble

    def __post_init__(self) -> None:
        if self.limit_per_class is not None and (isinstance(self.limit_per_class, bool) or self.limit_per_class < 1):
            raise DataError(f"limit_per_class must be a whole number >= 1 or None for every image, got {self.limit_per_class!r}")
        if isinstance(self.orders, bool) or self.orders < 1:
            raise DataError(f"orders (random hub orders of the growth curve) must be >= 1, got {self.orders!r}")
        if self.weighting not in _WEIGHTINGS:
            raise DataError(f"unknown weighting {self.weighting!r}; use one of {', '.join(_WEIGHTINGS)}")
        if isinstance(self.growth_k, bool) or self.growth_k < 1:
            raise DataError(f"growth_k must be >= 1, got {self.growth_k!r}")


@dataclass(frozen=True)
class AccuracyRow:
    """Accuracy of every method on one target (or their ``mean`` over targets)."""

    dataset: str
    images: int
    accuracy: Mapping[str, float]  # method -> accuracy, in method order

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "images": self.images, **self.accuracy}


@dataclass(frozen=True)
class LabelQuality:
    """How well the labels' p(m, y) predict true per-class recall on one target (:func:`label_quality`)."""

    dataset: str
    per_class_rho: float
    per_model_rho: float
    dataset_rho: float

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "per_class_rho": self.per_class_rho, "per_model_rho": self.per_model_rho,
                "dataset_rho": self.dataset_rho}


@dataclass(frozen=True, eq=False)
class BenchmarkResult:
    """Everything one run of :func:`run_mll_benchmark` measured (rendered by :mod:`.benchmark_report`)."""

    config: BenchmarkConfig
    model_ids: tuple[str, ...]
    graph_version: str
    methods: tuple[str, ...]
    rows: tuple[AccuracyRow, ...]  # one per target, then the mean row
    label_quality: tuple[LabelQuality, ...]
    growth: Mapping[str, np.ndarray] = field(default_factory=dict)  # MLL / INB / best_single -> orders x models
    ablations: tuple[Mapping[str, Any], ...] = ()  # rows of :func:`run_ablations`
    seconds: float = math.nan

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(r.dataset for r in self.rows[:-1])

    def growth_rows(self) -> list[dict[str, Any]]:
        """Mean, 10th and 90th percentile of every growth curve at each hub size."""
        g = self.growth
        return [{"hub_size": n + 1, **{f"{k}_mean": float(v[:, n].mean()) for k, v in g.items()},
                 **{f"{k}_p10": float(np.percentile(v[:, n], 10)) for k, v in g.items()},
                 **{f"{k}_p90": float(np.percentile(v[:, n], 90)) for k, v in g.items()}} for n in range(len(self.model_ids))]

    def to_dict(self, out: str | None = None) -> dict[str, Any]:
        """The ``summary.json`` of ``vlmhub benchmark`` (accuracies rounded to 4 places, seconds to 0.1)."""
        return {"targets": list(self.targets),
                "accuracy": {r.dataset: {m: round(r.accuracy[m], 4) for m in self.methods} for r in self.rows},
                "label_quality": [q.to_dict() for q in self.label_quality],
                "growth_end": {k: float(v[:, -1].mean()) for k, v in self.growth.items()},
                "growth_start": {k: float(v[:, 0].mean()) for k, v in self.growth.items()},
                "ablations": [dict(a) for a in self.ablations], "out": out, "seconds": round(self.seconds, 1)}


def run_mll_benchmark(hub: Any, tasks: Sequence[Task], config: BenchmarkConfig = BenchmarkConfig(), *,
                      progress: bool = False) -> BenchmarkResult:
    """The MLL benchmark of a labeled ``hub`` on target task folders: every method of this module per
    target, their mean, label quality, the hub-growth curve and (``config.ablations``) the ablations.

    Every hub model runs once per target image (cached trunk features); ModelGPT's text proxy, the
    growth curve and the ablations read labels only. ``progress`` shows progress bars on stderr.
    """
    from tqdm.auto import tqdm

    from ..concepts.wordnet import get_wordnet
    from ..labeling import LabelStore
    from ..selection.captions import class_captions

    if not tasks:
        raise DataError("no target tasks given; pass at least one task folder (ImageFolder + dataset.json)")
    ids = hub.labeled_model_ids()
    models = hub.models(ids)
    t0 = time.perf_counter()
    datas, rs, ps = [], [], []
    sel = hub.selector()
    for task in tasks:
        bar = tqdm(total=None, desc=f"models on {task.name}", unit="img", disable=not progress)
        data = load_target(task, models, hub.settings, limit_per_class=config.limit_per_class, progress=bar.update)
        bar.close()
        est = sel.estimate(task)
        datas.append(data)
        rs.append(est["r"])
        ps.append(est["p"])
    # ModelGPT-style text-only baseline
    wn = get_wordnet(hub.settings)
    feats, truth = {}, {}
    for data in datas:
        caps = class_captions(data.task, sources=("template", "wordnet"), wordnet=wn, embedder=sel.embedder_)
        feats[data.task.name] = {m.id: (m.spec.imagenet_top1 or 0.0, caption_accuracy(m, data.task, caps)) for m in models}
        truth[data.task.name] = data.model_accuracy()
    picks = modelgpt_picks(feats, truth)
    rows = []
    for data, r in zip(datas, rs):
        acc = method_accuracies(data, models, r, ids, modelgpt_pick=picks[data.task.name], weighting=config.weighting)
        rows.append(AccuracyRow(data.task.name, len(data.labels), acc))
    methods = tuple(rows[0].accuracy)
    rows.append(AccuracyRow("mean", sum(r.images for r in rows),
                            {m: float(np.mean([r.accuracy[m] for r in rows])) for m in methods}))
    lq = tuple(LabelQuality(data.task.name, **label_quality(data, p, ids)) for data, p in zip(datas, ps))
    growth = growth_curve(datas, rs, ids, models, k=config.growth_k, orders=config.orders, weighting=config.weighting)
    abl: list[dict] = []
    version = hub.graph().version
    if config.ablations:
        store = LabelStore(hub.settings)
        rends = set.intersection(*(set(store.label(m).renditions(version)) for m in ids))  # covered by every model
        variants = default_ablations(sorted(rends))
        bar = tqdm(total=len(variants), desc="ablations", disable=not progress)
        abl = run_ablations(hub, variants, datas, progress=bar.update)
        bar.close()
    return BenchmarkResult(config, tuple(ids), version, methods, tuple(rows), lq, growth, tuple(abl),
                           time.perf_counter() - t0)
