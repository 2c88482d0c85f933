"""The zero-shot VLM interface every model in the hub implements.

A model maps a batch of images and a list of texts into one embedding space (Eq. 1 of the MLL paper).
To let a hub share work between models built on the same image network, the image side is split into a
*trunk* (``image_features``: the expensive network, shared by every model with the same ``trunk_key``) and
a *head* (``project_image``: cheap). A plain CLIP model has the identity head.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, asdict
from enum import Enum
from typing import Any, Callable, Literal, Sequence

import numpy as np

__all__ = ["ModelSpec", "ModelEntry", "ModelFactory", "ModelOrigin", "Modality", "ZeroShotModel", "l2_normalize"]


class Modality(str, Enum):
    IMAGE = "image"
    TEXT = "text"


@dataclass(frozen=True)
class ModelSpec:
    """Typed metadata of a registered model.

    ``imagenet_top1`` is the model's zero-shot top-1 on ImageNet-1k where known (INB selects by it);
    ``params_m`` and ``gflops`` count the image and text towers together where known.
    """

    id: str
    family: str
    backbone: str
    embed_dim: int
    description: str = ""
    pretrained: str | None = None
    params_m: float | None = None
    gflops: float | None = None
    imagenet_top1: float | None = None
    image_size: int | None = None
    tags: tuple[str, ...] = ()
    config: tuple[tuple[str, Any], ...] = field(default=())

    def cfg(self, key: str, default: Any = None) -> Any:
        return dict(self.config).get(key, default)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tags"] = list(self.tags)
        d["config"] = {k: v for k, v in self.config}
        return d


ModelOrigin = Literal["builtin", "user", "runtime"]
ModelFactory = Callable[["ModelSpec", Any], "ZeroShotModel"]


@dataclass(frozen=True)
class ModelEntry:
    """One catalog entry: a spec, the factory ``factory(spec, settings)`` that builds the model, and where the
    entry comes from (``builtin``: shipped with vlmhub; ``user``: the home's models.json; ``runtime``:
    :meth:`Catalog.register <vlmhub.models.catalog.Catalog.register>` on one catalog object)."""

    spec: "ModelSpec"
    factory: ModelFactory
    origin: ModelOrigin = "builtin"

    @property
    def id(self) -> str:
        return self.spec.id


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


class ZeroShotModel(abc.ABC):
    """Abstract zero-shot VLM. Subclasses implement preprocessing, the trunk, the head and the text tower.

    Embeddings returned by :meth:`encode_image` and :meth:`encode_text` are float32 and L2-normalised, so
    ``image_emb @ text_emb.T`` is the cosine similarity of Eq. 1; ``logit_scale`` multiplies it before the
    softmax (CLIP's learned temperature; 100 for OpenAI CLIP).
    """

    spec: ModelSpec
    logit_scale: float = 100.0
    #: template the model's zero-shot classifier wraps class names in
    text_template: str = "a photo of a {}."

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

    @property
    def trunk_key(self) -> str:
        """Models with equal ``trunk_key`` share preprocessing and ``image_features`` (computed once)."""
        return self.spec.id

    # -- image side ---------------------------------------------------------------------------
    @abc.abstractmethod
    def preprocess(self, image) -> "Any":
        """PIL image -> float tensor (C, H, W) ready for :meth:`image_features`."""

    @abc.abstractmethod
    def image_features(self, pixels) -> "Any":
        """Batch tensor (B, C, H, W) -> trunk features (torch tensor, B x F). Runs under ``torch.no_grad``."""

    def project_image(self, features) -> np.ndarray:
        """Trunk features -> normalised embeddings (B x D). The default is the identity head."""
        return l2_normalize(_to_numpy(features))

    def encode_image(self, pixels) -> np.ndarray:
        return self.project_image(self.image_features(pixels))

    # -- text side ----------------------------------------------------------------------------
    @abc.abstractmethod
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> normalised embeddings (N x D)."""

    def class_embeddings(self, class_names: Sequence[str], templates: Sequence[str] | None = None) -> np.ndarray:
        """Zero-shot classifier weights: the mean normalised embedding of each class over the templates."""
        templates = list(templates) if templates else [self.text_template]
        out = np.zeros((len(class_names), self.embed_dim), dtype=np.float32)
        for t in templates:
            out += self.encode_text([t.format(c) if "{}" in t else t.replace("{c}", c) for c in class_names])
        return l2_normalize(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.id!r})"


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)
