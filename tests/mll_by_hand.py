"""Eq. 1 and 8-10 written out directly, one image and one model at a time: the tests' independent reference.

It uses no vlmhub code of the reuse path (no ``embed_images``, ``zero_shot_probs``, ``entropy``,
``ensemble_scores``, ``MLLEnsemble``, ``BatchPredictor``): only the model's own public encoders
(``preprocess``, ``image_features``, ``project_image``, ``class_embeddings``) and plain NumPy / PIL.
Tests compare ``Hub.predict``, the batch-prediction job and the service with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

__all__ = ["zero_shot_distribution", "ensemble_by_hand"]


def zero_shot_distribution(model, image_path: Path, class_names: Sequence[str]) -> list[float]:
    """Eq. 1 for one image: softmax over classes of ``logit_scale * cos(image, class)``."""
    with Image.open(image_path) as im:
        pixels = model.preprocess(im.convert("RGB"))
    feats = model.image_features(pixels[None])
    emb = np.asarray(model.project_image(feats), np.float64)[0]
    emb = emb / np.linalg.norm(emb)
    cls = np.asarray(model.class_embeddings(list(class_names)), np.float64)
    logits = [model.logit_scale * float(emb @ (c / np.linalg.norm(c))) for c in cls]
    top = max(logits)
    e = [math.exp(z - top) for z in logits]
    return [x / sum(e) for x in e]


def ensemble_by_hand(models: Mapping[str, object], members: Sequence[Sequence[str]], class_names: Sequence[str],
                     files: Sequence[Path], weighting: str = "inverse_entropy") -> list[dict]:
    """Eq. 8-10 per image: ``{image, class, confidence, scores}`` (confidence: the winner's share of Eq. 8).

    ``members[y]`` are the models chosen for class y (the selection); weights are Eq. 9's entropy, the
    official code's inverse entropy, or uniform, normalised over the class's members.
    """
    out = []
    for f in files:
        probs = {m: zero_shot_distribution(models[m], f, class_names) for m in {m for ms in members for m in ms}}
        H = {m: -sum(p * math.log(p) for p in ps if p > 0) for m, ps in probs.items()}
        scores = []
        for y, ms in enumerate(members):
            if weighting == "uniform":
                w = [1.0] * len(ms)
            elif weighting == "entropy":
                w = [H[m] for m in ms]
            else:
                w = [1.0 / H[m] for m in ms]
            scores.append(sum(wj * probs[m][y] for wj, m in zip(w, ms)) / sum(w))
        best = max(range(len(scores)), key=lambda y: (scores[y], -y))  # Eq. 10; ties: first class
        out.append({"image": str(f), "class": class_names[best], "confidence": scores[best] / sum(scores),
                    "scores": scores})
    return out


def selection_by_reference(hub, task, k: int) -> list[list[tuple[str, float, float]]]:
    """Per class, the top-``k`` ``(model, r, p)`` of Eq. 5-7 by ``benchmarks/reference_mll.py`` over the
    hub's stored labels (ties: hub model order). The text side (class and node caption embeddings) is the
    hub selector's, since the reference starts from embeddings."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import reference_mll

    from vlmhub.concepts.graph import current_graph
    from vlmhub.labeling.labels import LabelStore, caption_key

    sel = hub.selector()
    graph = current_graph(hub.settings)
    ids = graph.image_ids()
    row = {x: i for i, x in enumerate(ids)}
    node_images = [[row[x] for x in n.images] for n in graph.nodes]
    keys = [caption_key(n.caption) for n in graph.nodes]
    store = LabelStore(hub.settings)
    models = hub.labeled_model_ids()
    labels = [(store.label(m).images.get(ids), store.label(m).captions.get(keys)) for m in models]
    class_emb, _ = sel.task_embeddings(task)
    cfg = sel.config
    est = reference_mll.reference_estimate(class_emb, sel.node_emb_, node_images, labels, k_nodes=cfg.k_nodes,
                                           alpha=cfg.alpha, metric=cfg.metric, normalize_z=cfg.normalize_z)
    out = []
    for y in range(len(task.classes)):
        order = sorted(range(len(models)), key=lambda m: (-est.r[m, y], m))[:k]
        out.append([(models[m], float(est.r[m, y]), float(est.p[m, y])) for m in order])
    return out
