"""Shared helpers of the benchmarks: thread pinning, timing, memory, and a synthetic labeled hub.

Nothing here runs at import time. The synthetic hub is written with the real storage classes (a real
``SemanticGraph`` saved under ``graphs/``, real ``EmbeddingTable`` label stores marked complete), so the
reference selector reads it exactly as it reads a labeled hub.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["pin_threads", "thread_report", "timeit", "rss_mb", "SyntheticHub", "make_synthetic_hub", "fmt_ms",
           "SKIP_EXIT", "skip", "synthetic_images", "make_toy_hub", "synthetic_table"]

#: exit status of a benchmark that cannot run here (e.g. ``--smoke`` without the shared data); the smoke test
#: turns it into a pytest skip with the printed ``SKIP:`` reason
SKIP_EXIT = 77


def pin_threads(n: int = 1) -> None:
    """Pin BLAS/OpenMP/torch to ``n`` threads (call before heavy numpy/torch work)."""
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def thread_report() -> str:
    """One line: python, numpy, cpus and every thread setting in force."""
    env = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    extra = ""
    try:
        import torch

        extra = f", torch {torch.__version__} threads={torch.get_num_threads()}"
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_info

        extra += ", blas threads=" + ",".join(str(i.get("num_threads")) for i in threadpool_info())
    except ImportError:
        pass
    return f"python {platform.python_version()}, numpy {np.__version__}, cpus {os.cpu_count()}, env {env}{extra}"


def timeit(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, float, object]:
    """(best s, median s, last result) of ``repeats`` calls after ``warmup`` calls."""
    out = None
    for _ in range(warmup):
        out = fn()
    ts = []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return min(ts), statistics.median(ts), out


def rss_mb() -> float:
    """Peak resident set size of this process (MB, ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fmt_ms(s: float | None) -> str:
    return "-" if s is None else f"{1e3 * s:.1f}"


@dataclass(frozen=True)
class SyntheticHub:
    """A synthetic labeled hub on disk plus the planted text-side embeddings the selector would compute."""

    settings: object  # vlmhub Settings
    graph: object  # SemanticGraph
    model_ids: tuple[str, ...]
    node_emb: np.ndarray  # V x Dt: "text embedder" embedding of every node caption
    latent: np.ndarray  # V x D: planted node concepts
    dim: int
    seconds: float

    def class_embeddings(self, n_classes: int, seed: int = 1) -> np.ndarray:
        """Synthetic task: classes near random nodes (C x Dt, normalised)."""
        rng = np.random.default_rng(seed)
        V = self.latent.shape[0]
        nodes = rng.choice(V, n_classes, replace=n_classes > V)
        e = self.node_emb[nodes] + 0.3 * rng.standard_normal((n_classes, self.node_emb.shape[1])) / np.sqrt(self.node_emb.shape[1])
        return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


def _norm(a: np.ndarray) -> np.ndarray:
    return (a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def make_synthetic_hub(home: Path, n_nodes: int, n_models: int, *, dim: int = 384, img_per_leaf: int = 2,
                       max_images: int = 75, seed: int = 0) -> SyntheticHub:
    """Write a synthetic hub under ``home``: a random tree of ``n_nodes`` nodes (half leaves, each owning
    ``img_per_leaf`` images; inner nodes draw up to ``max_images`` images of their descendants, as the real
    graph does) and ``n_models`` labels. Planted structure: a child's concept vector is its parent's plus
    noise, an image is its leaf's concept plus noise, and model m sees everything through its own noise
    level (models of different quality)."""
    from vlmhub.concepts.graph import Node, SemanticGraph, save_graph
    from vlmhub.labeling.labels import LabelStore, caption_key
    from vlmhub.models.base import ModelSpec
    from vlmhub.settings import Settings

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    settings = Settings(home=home, data_dir=None)
    V = n_nodes
    n_inner = max(1, V // 2)
    parent = np.full(V, -1)
    for v in range(1, V):
        parent[v] = rng.integers(0, min(v, n_inner))
    latent = np.zeros((V, dim))
    latent[0] = rng.standard_normal(dim)
    for v in range(1, V):  # parents come first
        latent[v] = 0.8 * latent[parent[v]] + 0.6 * rng.standard_normal(dim)
    latent = _norm(latent).astype(np.float64)
    leaves = np.arange(n_inner, V)
    own: dict[int, list[str]] = {}
    img_leaf = []
    for l in leaves:
        own[int(l)] = [f"img{len(img_leaf) + j:07d}" for j in range(img_per_leaf)]
        img_leaf.extend([int(l)] * img_per_leaf)
    pool: dict[int, list[str]] = {}
    for l in leaves:
        a = parent[l]
        while a >= 0:
            pool.setdefault(int(a), []).extend(own[int(l)])
            a = parent[a]
    nodes = []
    for v in range(V):
        if v in own:
            imgs = own[v]
        else:
            cand = pool.get(v, [])
            imgs = list(rng.choice(cand, min(max_images, len(cand)), replace=False)) if cand else []
        par = (f"n{parent[v]:08d}",) if parent[v] >= 0 else ()
        nodes.append(Node(f"n{v:08d}", f"node {v}", f"synthetic node {v}, which is a planted concept", par,
                          tuple(sorted(str(i) for i in imgs)), v in own))
    image_ids = [f"img{i:07d}" for i in range(len(img_leaf))]
    graph = SemanticGraph(tuple(nodes), {i: f"/synthetic/{i}.png" for i in image_ids}, ("synthetic",), max_images)
    save_graph(graph, settings)
    img_latent = _norm(latent[np.asarray(img_leaf)] + 0.5 * rng.standard_normal((len(img_leaf), dim)) / np.sqrt(dim) * 3)
    node_emb = _norm(latent + 0.3 * rng.standard_normal((V, dim)) / np.sqrt(dim) * 3)
    store = LabelStore(settings)
    keys = [caption_key(n.caption) for n in nodes]
    ids = []
    for m in range(n_models):
        mid = f"syn-{m:03d}"
        sigma = 0.3 + 1.2 * rng.random()
        spec = ModelSpec(id=mid, family="synthetic", backbone="synthetic", embed_dim=dim, tags=("synthetic",))
        lab = store.label(mid)
        noise = rng.standard_normal((len(image_ids) + V, dim)).astype(np.float32) * np.float32(sigma / np.sqrt(dim) * 3)
        lab.images.append(image_ids, _norm(img_latent + noise[: len(image_ids)]))
        lab.captions.append(keys, _norm(latent + noise[len(image_ids):]))
        lab.mark_complete(spec, graph.version, n_images=len(image_ids), n_nodes=V)
        ids.append(mid)
    return SyntheticHub(settings, graph, tuple(ids), node_emb, latent, dim, time.perf_counter() - t0)


# -- small hermetic inputs for --smoke modes ---------------------------------------------------------------
def skip(reason: str) -> None:
    """Print ``SKIP: reason`` and exit with :data:`SKIP_EXIT` (a benchmark that cannot run here)."""
    print(f"SKIP: {reason}", flush=True)
    raise SystemExit(SKIP_EXIT)


def synthetic_images(folder: Path, n: int, *, size: int = 32, seed: int = 0) -> list[tuple[str, Path]]:
    """``n`` small PNG images (noisy solid colours) under ``folder``, as ``(id, path)`` refs."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    refs = []
    for i in range(n):
        rgb = rng.integers(0, 256, 3)
        arr = np.clip(rgb[None, None, :] + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img{i:04d}.png"
        Image.fromarray(arr).save(path)
        refs.append((f"synthetic/{path.name}", path))
    return refs


def make_toy_hub(home: Path, *, per_concept: int = 4, per_class: int = 4):
    """A labeled hub of the three toy colour models (tag ``test``) under ``home``, and a colour target task.

    The concept samples are noisy swatches in WordNet-id folders of the six colours (the tests' colour data);
    WordNet comes from ``$VLMHUB_WORDNET`` or is copied into ``home`` on first use. Returns ``(hub, task
    folder)``. Seconds, no weights, no shared data.
    """
    import json

    from PIL import Image

    from vlmhub.hub import Hub
    from vlmhub.models.toy import COLOR_RGB
    from vlmhub.settings import Settings

    wnids = {"red": "n04962784", "orange": "n04965179", "yellow": "n04965661", "green": "n04967191",
             "blue": "n04968895", "purple": "n04970059"}
    rng = np.random.default_rng(0)
    samples, task = home / "data" / "color-samples", home / "data" / "color-task"

    def swatch(rgb):
        arr = np.clip(np.asarray(rgb, float)[None, None, :] + rng.normal(0, 12, (16, 16, 3)), 0, 255)
        return Image.fromarray(arr.astype(np.uint8))

    for name, wnid in wnids.items():
        (samples / wnid).mkdir(parents=True, exist_ok=True)
        (task / name).mkdir(parents=True, exist_ok=True)
        for j in range(per_concept):
            swatch(COLOR_RGB[name]).save(samples / wnid / f"s{j}.png")
        for j in range(per_class):
            swatch(COLOR_RGB[name]).save(task / name / f"t{j}.png")
    (samples / "dataset.json").write_text(json.dumps({"name": "color-samples", "kind": "concept-samples",
                                                      "classes": list(wnids.values())}))
    (task / "dataset.json").write_text(json.dumps({"name": "color-task", "domain": "color swatch",
                                                   "task": "color recognition", "classes": list(wnids)}))
    hub = Hub(Settings(home=home / "hub", data_dir=None), model_ids=["toy-a", "toy-b", "toy-c"])
    hub.label(sample_sets=[samples], progress=False)
    return hub, task


def synthetic_table():
    """A 12-model x 7-dataset performance table with known structure (photo vs digit specialists)."""
    from vlmhub.tables import ModelInfo, PerformanceTable, TaskDescription

    rng = np.random.default_rng(0)
    animals = ("dog", "cat", "horse", "sheep", "cow", "tiger", "lion", "zebra")
    models = tuple(ModelInfo(f"m{i}", arch="ViT-B-32" if i < 6 else "RN50", family="ViT" if i < 6 else "RN",
                             pretraining_data="laion2b" if i < 6 else "openai", params_m=100.0 + 10 * i, gflops=5.0 + i)
                   for i in range(12))
    photo = [TaskDescription("ImageNet 1k", "natural photograph", "object recognition", animals)]
    photo += [TaskDescription(f"animals{k}", "natural photograph of animals", "animal recognition", animals[k: k + 5])
              for k in range(3)]
    digit = [TaskDescription(f"digits{k}", "handwritten digit image", "digit classification", tuple("0123456789"))
             for k in range(3)]
    acc = np.zeros((12, 7))
    for i in range(12):
        g, r = divmod(i, 6)
        for j in range(7):
            acc[i, j] = (0.75 if (g == 0) == (j < 4) else 0.35) + 0.03 * r + rng.normal(0, 0.003)
    return PerformanceTable("synthetic", models, tuple(photo + digit), np.clip(acc, 0, 1), reference="ImageNet 1k")


def wait_until_healthy(base: str, proc, timeout_s: float = 600.0) -> None:
    """Poll ``<base>/v1/health`` until it answers 200; exit if ``proc`` (the server process) dies or time runs out."""
    import httpx

    t0 = time.perf_counter()
    while True:
        try:
            if httpx.get(f"{base}/v1/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.perf_counter() - t0 > timeout_s or not proc.is_alive():
            raise SystemExit("the server did not start")
        time.sleep(0.1)
