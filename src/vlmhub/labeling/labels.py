"""Storage of model labels.

The label ``S_m`` of Eq. 2-4 is the set of similarities ``s_{m,x}^v = sim(I_m(x), T_m(d_v))`` for every sample
image ``x`` and every node caption ``d_v``. vlmhub stores its two factors instead: the model's normalised
embedding of every sample image and of every node caption. Any similarity of Eq. 2, hence Eq. 5 for *any* set
of selected nodes, is then one dot product away and exact, and growth is incremental (a new image or node
adds one row). Layout under ``<home>/labels/<model id>/``::

    manifest.json          {"format", "model_id", "spec_fingerprint", "embed_dim", "graphs": {version: {...}}}
    images/                EmbeddingTable keyed by image id   (N_images x D float32)
    captions/              EmbeddingTable keyed by sha1(caption) (N_nodes x D float32)

Size: ``4 * D * (N_images + N_nodes)`` bytes per model, linear in images, nodes and models
(default hub: D = 384 / 1000 / 1860, 1,980 images and 1,860 nodes -> 6 MB / 15 MB / 29 MB per model).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import LabelError, NotLabeledError
from ..models.base import ModelSpec
from ..settings import Settings, get_settings
from ..storage import EmbeddingTable
from ..storage.atomic import atomic_write_json, file_lock, read_json
from ..storage.schema import check_label_manifest

__all__ = ["LABEL_FORMAT", "ModelLabel", "LabelStore", "caption_key", "spec_fingerprint"]

LABEL_FORMAT = "vlmhub.label/1"


def caption_key(caption: str) -> str:
    return hashlib.sha1(caption.encode("utf-8")).hexdigest()


def spec_fingerprint(spec: ModelSpec) -> str:
    d = spec.to_dict()
    d.pop("imagenet_top1", None)  # metadata that does not change embeddings
    d.pop("description", None)
    d.pop("tags", None)
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class ModelLabel:
    """One model's label: image and caption embedding tables plus its manifest."""

    model_id: str
    directory: Path

    @property
    def rebuild(self) -> str:
        """The command that recomputes this label (named by every error about a damaged label file)."""
        return f"vlmhub label --force {self.model_id}"

    @property
    def images(self) -> EmbeddingTable:
        return EmbeddingTable(self.directory / "images", rebuild=self.rebuild)

    @property
    def captions(self) -> EmbeddingTable:
        return EmbeddingTable(self.directory / "captions", rebuild=self.rebuild)

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def manifest(self) -> dict:
        if not self.manifest_path.exists():
            return {}
        fix = f"Run `{self.rebuild}`."
        m = check_label_manifest(read_json(self.manifest_path, "label manifest", error=LabelError, fix=fix), self.manifest_path, fix=fix)
        if m.get("format") != LABEL_FORMAT:
            raise LabelError(f"{self.manifest_path} is not a vlmhub label (format {m.get('format')!r}). Run `vlmhub label --force {self.model_id}`.")
        return m

    def is_complete(self, graph_version: str) -> bool:
        return bool(self.manifest().get("graphs", {}).get(graph_version, {}).get("complete"))

    def renditions(self, graph_version: str) -> list[str]:
        """Renditions this label covers for a graph version (``original`` for labels made before renditions)."""
        g = self.manifest().get("graphs", {}).get(graph_version, {})
        return list(g.get("renditions", ["original"])) if g.get("complete") else []

    def covers(self, image_ids: Sequence[str], captions: Sequence[str]) -> bool:
        """Whether every given image row and caption row exists (any graph built from labeled images)."""
        return not self.images.missing(image_ids) and not self.captions.missing([caption_key(c) for c in captions])

    def mark_complete(self, spec: ModelSpec, graph_version: str, **info) -> None:
        with file_lock(self.directory / ".lock"):
            m = self.manifest() or {"format": LABEL_FORMAT, "model_id": self.model_id, "graphs": {}}
            m["spec_fingerprint"] = spec_fingerprint(spec)
            m["embed_dim"] = spec.embed_dim
            m["spec"] = spec.to_dict()
            m["graphs"][graph_version] = {"complete": True, "labeled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **info}
            atomic_write_json(self.manifest_path, m)

    def check_spec(self, spec: ModelSpec) -> None:
        m = self.manifest()
        if m and m.get("spec_fingerprint") not in (None, spec_fingerprint(spec)):
            raise LabelError(
                f"the stored label of {spec.id} was computed for another version of the model "
                f"(fingerprint {m.get('spec_fingerprint')} vs {spec_fingerprint(spec)}). Run `vlmhub label --force {spec.id}`."
            )


class LabelStore:
    """All labels of a hub (``<home>/labels``)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()

    @property
    def root(self) -> Path:
        return self.settings.labels_dir

    def label(self, model_id: str) -> ModelLabel:
        return ModelLabel(model_id, self.root / model_id)

    def labeled_models(self, graph_version: str) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(d.name for d in self.root.iterdir() if d.is_dir() and ModelLabel(d.name, d).is_complete(graph_version))

    def require(self, model_ids: Sequence[str], graph_version: str) -> None:
        missing = [m for m in model_ids if not self.label(m).is_complete(graph_version)]
        if missing:
            raise NotLabeledError(
                f"{len(missing)} model(s) have no label for graph {graph_version}: {', '.join(missing)}. Run `vlmhub label` first."
            )

    def load_embeddings(self, model_id: str, image_ids: Sequence[str], captions: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        lab = self.label(model_id)
        return lab.images.get(image_ids), lab.captions.get([caption_key(c) for c in captions])
