"""Model selection of MLL (Section 4.3, Eq. 5-7), label-only: no candidate model runs here.

Pure functions implement the equations; :class:`MLLSelector` wires them to a hub's graph and labels.

* :func:`transfer_matrix`  — Z: for each class the ``k_nodes`` graph nodes whose captions are most similar to
  the class captions; ``z_vy`` is that cosine similarity (0 elsewhere). ``normalize=True`` (an option, not the
  paper) rescales each class's column to sum to 1.
* :func:`node_precision`   — Eq. 5: ``p_{m,v}`` = share of node v's sample images that model m assigns to v
  among the *selected* nodes (argmax of Eq. 2's similarity). ``metric="f1"`` is the official code's variant.
* :func:`class_estimates`  — Eq. 6: ``p_{m,y} = sum_v p_{m,v} z_{vy}``.
* :func:`reuse_scores`     — Eq. 7: ``r_{m,y} = alpha p_{m,y} + (1 - alpha) mean_{y'} p_{m,y'}``.
* :func:`top_k_models`     — the per-class ensemble members (ties keep hub order).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, fields
from typing import Literal, Sequence

import numpy as np

from ..concepts.graph import SemanticGraph
from ..errors import ConfigError, NotFittedError, NotLabeledError, SelectionError, TaskError
from ..labeling.labels import LabelStore, caption_key
from ..models.text import CachedTextEmbedder, get_text_embedder
from ..settings import Settings, get_settings
from ..tasks import Task
from .captions import DEFAULT_SOURCES, CaptionSource, class_captions
from .equations import class_estimates, reuse_scores, top_k_models

#: tasks whose class embeddings a fitted selector remembers (least recently used dropped first)
TASK_CACHE_SIZE = 256

__all__ = [
    "transfer_matrix",
    "node_precision",
    "class_estimates",
    "reuse_scores",
    "top_k_models",
    "Metric",
    "MLLConfig",
    "ClassSelection",
    "Selection",
    "MLLSelector",
]

Metric = Literal["precision", "f1"]


def transfer_matrix(class_emb: np.ndarray, node_emb: np.ndarray, k_nodes: int, *, normalize: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z of Section 4.3. Returns ``(selected node indices (S,), Z (S x C), class-node similarities (C x V))``."""
    if k_nodes < 1:
        raise SelectionError("k_nodes must be >= 1")
    from .fastpath import fast_transfer_matrix

    selected, Z, sims, _top = fast_transfer_matrix(class_emb, node_emb, k_nodes, normalize=normalize)
    return selected, Z, sims


def node_precision(
    image_emb: np.ndarray,
    caption_emb: np.ndarray,
    membership: Sequence[tuple[int, int]],
    *,
    metric: Metric = "precision",
) -> np.ndarray:
    """Eq. 5 for one model.

    ``image_emb`` (N x D) are the model's embeddings of the distinct sample images, ``caption_emb`` (S x D) its
    embeddings of the selected nodes' captions, and ``membership`` lists ``(node position, image row)`` pairs
    (``x in X_v``). Returns ``p_{m,v}`` (S,); a node without images gets 0.
    """
    from .fastpath import exact_node_precision

    # one implementation: the decision is exact and shape-independent (float32 BLAS rounding depends on the
    # batch; ties go to the lower node), so the fast path and this reference agree bit for bit
    return exact_node_precision(image_emb, caption_emb, membership, metric=metric)


@dataclass(frozen=True)
class MLLConfig:
    """Hyper-parameters of selection. Defaults follow the paper where it fixes them (alpha = 0.7)."""

    k_models: int = 3
    alpha: float = 0.7
    k_nodes: int = 5
    metric: Metric = "precision"
    normalize_z: bool = False
    caption_sources: tuple[CaptionSource, ...] = DEFAULT_SOURCES
    text_embedder: str = "minilm"
    #: which rendition of the sample images the labels are read under: "original" (the paper), a
    #: :class:`~vlmhub.concepts.renditions.Rendition` value, or "auto" (chosen from the task's domain text)
    rendition: str = "original"
    #: use the exact fast path for Eq. 5 (:mod:`vlmhub.selection.fastpath`); same decisions, ~30x faster
    fast: bool = True
    fast_L: int = 64
    #: models whose predictions (and memory-mapped selection blocks) one query holds at once: bounds its memory
    fast_block_models: int = 32

    #: options read only when a selection is computed: changing them never refits (no label is re-read)
    QUERY_TIME = ("k_models", "alpha", "k_nodes", "metric", "normalize_z")

    def fit_key(self) -> tuple:
        """The options a fitted selector depends on (everything but :attr:`QUERY_TIME`): equal keys share a fit."""
        return tuple((f.name, getattr(self, f.name)) for f in fields(self) if f.name not in self.QUERY_TIME)

    def __post_init__(self) -> None:
        from .config import SelectionConfig

        # one validation of the ranges (k, alpha, nodes, metric) for every entry point
        SelectionConfig(k=self.k_models, alpha=self.alpha, k_nodes=self.k_nodes, metric=self.metric)
        from ..concepts.renditions import Rendition

        if self.rendition != "auto" and self.rendition not in {r.value for r in Rendition}:
            raise TaskError(f"unknown rendition {self.rendition!r}; use auto or one of {[r.value for r in Rendition]}.")


@dataclass(frozen=True)
class ClassSelection:
    name: str
    models: tuple[tuple[str, float, float], ...]  # (model id, r, p) ranked, top-k first
    nodes: tuple[tuple[str, str, float], ...]  # (wnid, name, similarity)
    captions: tuple[str, ...] = ()

    def to_dict(self, k: int | None = None) -> dict:
        models = self.models if k is None else self.models[:k]
        return {
            "name": self.name,
            "models": [{"id": m, "score": round(r, 6), "p": round(p, 6)} for m, r, p in models],
            "nodes": [{"id": n, "name": nm, "similarity": round(s, 6)} for n, nm, s in self.nodes],
            "captions": list(self.captions),
        }


@dataclass(frozen=True)
class Selection:
    """Result of selection: per class the ranked models (r, p) and the matched nodes; explains itself."""

    task: Task
    model_ids: tuple[str, ...]
    classes: tuple[ClassSelection, ...]
    k: int
    config: MLLConfig
    r: np.ndarray = field(repr=False)
    p: np.ndarray = field(repr=False)
    graph_version: str = ""
    seconds: float = 0.0

    def members(self, c: int) -> list[str]:
        return [m for m, _, _ in self.classes[c].models[: self.k]]

    def used_models(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in range(len(self.classes)):
            for m in self.members(c):
                seen.setdefault(m, None)
        return list(seen)

    def to_dict(self) -> dict:
        return {
            "task": self.task.name,
            "k": self.k,
            "alpha": self.config.alpha,
            "graph_version": self.graph_version,
            "seconds": round(self.seconds, 4),
            "classes": [c.to_dict(self.k) for c in self.classes],
            "models_used": self.used_models(),
        }

    def format(self, width: int = 100) -> str:
        lines = [f"task {self.task.name}: {len(self.classes)} classes, k={self.k}, alpha={self.config.alpha}, "
                 f"{len(self.model_ids)} models, graph {self.graph_version} ({self.seconds * 1000:.1f} ms)",
                 "  r = Eq. 7 reuse score, p = Eq. 6 estimate (a Z-weighted sum over matched nodes; with the paper's "
                 "unnormalised Z it can exceed 1)"]
        for c in self.classes:
            ms = ", ".join(f"{m} (r={r:.3f}, p={p:.3f})" for m, r, p in c.models[: self.k])
            ns = ", ".join(f"{nm} {s:.2f}" for _, nm, s in c.nodes[:3])
            lines.append(f"  {c.name[:28]:<28} {ms}")
            lines.append(f"  {'':<28}   nodes: {ns}")
        return "\n".join(lines)


class MLLSelector:
    """Select models per class from labels (scikit-learn style: constructor stores, ``fit`` returns self)."""

    def __init__(self, settings: Settings | None = None, config: MLLConfig | None = None, **overrides):
        self.settings = settings or get_settings()
        self.config = config or MLLConfig()
        if overrides:
            from dataclasses import replace

            self.config = replace(self.config, **overrides)

    def with_query(self, **options) -> "MLLSelector":
        """This fitted selector with other query-time options (``alpha``, ``k_nodes``, ``metric``,
        ``normalize_z``, ``k_models``): a shallow copy sharing the loaded labels and index, so nothing is
        refitted. A fit-time option (captions, text embedder, rendition, fast path) needs a new ``fit``."""
        import copy
        from dataclasses import replace

        fit_time = sorted(set(options) - set(MLLConfig.QUERY_TIME))
        if fit_time:
            raise ConfigError(f"{', '.join(fit_time)} change what fit() loads; build MLLSelector(settings, config) "
                              f"and fit it. Query-time options are {', '.join(MLLConfig.QUERY_TIME)}.")
        if not options:
            return self
        out = copy.copy(self)
        out.config = replace(self.config, **options)
        return out

    # ------------------------------------------------------------------------------------------
    def fit(self, model_ids: Sequence[str] | None = None, graph: SemanticGraph | None = None, *,
            require_complete: bool = True) -> "MLLSelector":
        """Load the graph, the labels of ``model_ids`` (default: all labeled) and the node caption embeddings.

        With ``require_complete=False`` any graph whose images and captions all have label rows is accepted
        (e.g. a sub-graph of the labeled one: fewer sample sets or fewer images per node, for ablations).
        """
        from ..concepts.graph import current_graph

        self.graph_ = graph or current_graph(self.settings)
        store = LabelStore(self.settings)
        ids = list(model_ids) if model_ids is not None else store.labeled_models(self.graph_.version)
        if not ids:
            raise NotLabeledError(f"no labeled models for graph {self.graph_.version}. Run `vlmhub label` first.")
        if require_complete:
            store.require(ids, self.graph_.version)
        else:
            img, caps = self.graph_.image_ids(), self.graph_.captions()
            short = [m for m in ids if not store.label(m).covers(img, caps)]
            if short:
                raise NotLabeledError(f"labels of {', '.join(short)} do not cover this graph. Run `vlmhub label` on it.")
        self.model_ids_ = tuple(ids)
        self._task_cache: dict[str, tuple] = {}  # task_embeddings() by task; shared with with_query() copies
        self._task_cache_lock = threading.Lock()
        self.embedder_ = CachedTextEmbedder(get_text_embedder(self.config.text_embedder), self.settings.cache_dir / "text")
        self.node_emb_ = self.embedder_.encode(self.graph_.captions())
        self._img_tables = [store.label(m).images for m in ids]
        self._cap_tables = [store.label(m).captions for m in ids]
        self._wordnet = None
        self.fast_ = None
        if self.config.fast and self.config.rendition == "original":
            from .fastpath import FastEq5

            self.fast_ = FastEq5.from_labels(store, ids, self.graph_, self.settings, L=self.config.fast_L,
                                             block_models=self.config.fast_block_models)
            self.node_emb64_ = np.asarray(self.node_emb_, np.float64)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "graph_"):
            raise NotFittedError("this selector is not fitted: call fit(labels) before select()")

    @staticmethod
    def _task_key(task: Task) -> str:
        import json

        return json.dumps([task.classes, task.domain, task.task, sorted((k, list(v)) for k, v in task.captions.items())],
                          ensure_ascii=True)

    def knows_task(self, task: Task) -> bool:
        """Whether :meth:`task_embeddings` of ``task`` is remembered (a repeated task: no text is encoded)."""
        cache = getattr(self, "_task_cache", None)
        return cache is not None and self._task_key(task) in cache

    def task_embeddings(self, task: Task) -> tuple[np.ndarray, list[list[str]]]:
        """Mean normalised embedding of each class's captions (C x d) and the captions themselves.

        A fitted selector remembers the answers for the last :data:`TASK_CACHE_SIZE` tasks (keyed by the
        task's classes, domain, type and captions; shared by its :meth:`with_query` copies, which cannot change
        what is embedded), so a repeated task pays neither caption building nor text encoding."""
        self._check_fitted()
        cache, lock = self._task_cache, self._task_cache_lock
        key = self._task_key(task)
        with lock:
            hit = cache.pop(key, None)
            if hit is not None:
                cache[key] = hit  # most recently used last
                return hit[0], [list(c) for c in hit[1]]
        emb, caps = self._task_embeddings(task)
        emb.setflags(write=False)
        with lock:
            cache[key] = (emb, tuple(tuple(c) for c in caps))
            while len(cache) > TASK_CACHE_SIZE:
                cache.pop(next(iter(cache)))
        return emb, caps

    def _task_embeddings(self, task: Task) -> tuple[np.ndarray, list[list[str]]]:
        from ..concepts.wordnet import get_wordnet

        if "wordnet" in self.config.caption_sources and self._wordnet is None:
            self._wordnet = get_wordnet(self.settings)
        caps = class_captions(task, sources=self.config.caption_sources, wordnet=self._wordnet, embedder=self.embedder_)
        flat = [c for cs in caps for c in cs]
        emb = self.embedder_.encode(flat)
        out = np.zeros((len(caps), emb.shape[1]), np.float32)
        i = 0
        for ci, cs in enumerate(caps):
            out[ci] = emb[i : i + len(cs)].mean(axis=0)
            i += len(cs)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out, caps

    def estimate(self, task: Task) -> dict:
        """Everything selection computes: Z, p_{m,v}, p_{m,y}, r_{m,y} (no model runs)."""
        self._check_fitted()
        cfg = self.config
        class_emb, caps = self.task_embeddings(task)
        if self.fast_ is not None and self.rendition_for(task) == "original":
            est = self.fast_.estimate(class_emb, self.node_emb64_, k_nodes=cfg.k_nodes, alpha=cfg.alpha,
                                      metric=cfg.metric, normalize_z=cfg.normalize_z)
            est.update(captions=caps, rendition="original")
            return est
        selected, Z, sims = transfer_matrix(class_emb, self.node_emb_, cfg.k_nodes, normalize=cfg.normalize_z)
        nodes = [self.graph_.nodes[i] for i in selected]
        image_ids = sorted({x for n in nodes for x in n.images})
        row = {x: i for i, x in enumerate(image_ids)}
        membership = [(vi, row[x]) for vi, n in enumerate(nodes) for x in n.images]
        cap_keys = [caption_key(n.caption) for n in nodes]
        rendition = self.rendition_for(task)
        from ..concepts.renditions import rendered_id

        label_rows = [rendered_id(x, rendition) for x in image_ids]
        P = np.zeros((len(self.model_ids_), len(nodes)))
        for mi in range(len(self.model_ids_)):
            missing = self._img_tables[mi].missing(label_rows[:1] + label_rows[-1:])
            if missing:
                raise NotLabeledError(f"{self.model_ids_[mi]} has no label rows for rendition {rendition!r}. "
                                      f"Run `vlmhub label --renditions {rendition}`.")
            P[mi] = node_precision(self._img_tables[mi].get(label_rows), self._cap_tables[mi].get(cap_keys), membership, metric=cfg.metric)
        p_my = class_estimates(P, Z)
        return {"selected": selected, "Z": Z, "sims": sims, "P": P, "p": p_my, "r": reuse_scores(p_my, cfg.alpha),
                "captions": caps, "rendition": rendition}

    def rendition_for(self, task: Task) -> str:
        """The rendition the labels are read under for ``task`` (``config.rendition``, or by domain if "auto")."""
        from ..concepts.renditions import rendition_for_domain

        if self.config.rendition == "auto":
            return rendition_for_domain(task.domain).value
        return self.config.rendition

    def select(self, task: Task, k: int | None = None) -> Selection:
        """Rank every model for every class of ``task`` (Eq. 5-7) and keep the top ``k`` per class."""
        from .config import SelectionConfig

        t0 = time.perf_counter()
        self._check_fitted()
        if k is None:  # the configured default is clamped to the hub's size; an explicit k is refused beyond it
            k = min(self.config.k_models, len(self.model_ids_))
        # k=0 is an error, not "the default"; k above the number of models is refused with the range
        SelectionConfig(k=k).check_against(len(self.model_ids_), len(self.graph_), k_nodes=self.config.k_nodes)
        est = self.estimate(task)
        r, p, sims = est["r"], est["p"], est["sims"]
        classes = []
        order_all = np.argsort(-r, axis=0, kind="stable")
        top = est.get("top")
        rT, pT = r.T.tolist(), p.T.tolist()
        for c, name in enumerate(task.classes):
            ranked = tuple((self.model_ids_[m], rT[c][m], pT[c][m]) for m in order_all[:, c].tolist())
            top_nodes = top[c] if top is not None else np.argsort(-sims[c], kind="stable")[: self.config.k_nodes]
            nodes = tuple((self.graph_.nodes[v].id, self.graph_.nodes[v].name, float(sims[c, v])) for v in top_nodes)
            classes.append(ClassSelection(name, ranked, nodes, tuple(est["captions"][c])))
        return Selection(task, self.model_ids_, tuple(classes), k, self.config, r, p,
                         self.graph_.version, time.perf_counter() - t0)
