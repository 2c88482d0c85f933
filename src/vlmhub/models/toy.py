"""Tiny deterministic test models (tag ``"test"``): colour VLMs that run in microseconds.

Each ``toy-*`` model perceives an image as its mean RGB colour and embeds it as soft similarities to six
colour prototypes (red, orange, yellow, green, blue, purple); a text embeds as the colour words it mentions
(a WordNet gloss such as "red, which is the quality or state of the chromatic color..." mentions its colour
first and is weighted most). Every model is blind to one pair of colours — the two prototypes merge — so
models differ per class, which is exactly what MLL must discover. They make the registry its own test matrix:
the whole label -> select -> reuse pipeline runs on them in seconds, with no weights.
"""

from __future__ import annotations

from types import MappingProxyType

import re
from typing import Sequence

import numpy as np

from ..settings import Settings
from .base import ModelEntry, ModelSpec, ZeroShotModel, l2_normalize

__all__ = ["COLORS", "COLOR_RGB", "ToyColorModel", "TOY_MODELS", "builtin_models"]

COLORS = ("red", "orange", "yellow", "green", "blue", "purple")
COLOR_RGB = MappingProxyType({
    "red": (220, 30, 30),
    "orange": (240, 140, 20),
    "yellow": (235, 225, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "purple": (140, 50, 170),
})


class ToyColorModel(ZeroShotModel):
    """A colour VLM blind to one pair of colours (see module docstring)."""

    def __init__(self, spec: ModelSpec, settings: Settings | None = None):
        self.spec = spec
        self.logit_scale = float(spec.cfg("logit_scale", 10.0))
        self.text_template = "a photo of the color {}."
        blind = spec.cfg("blind", ())
        protos = np.array([COLOR_RGB[c] for c in COLORS], dtype=np.float32) / 255.0
        if blind:
            i, j = COLORS.index(blind[0]), COLORS.index(blind[1])
            protos[i] = protos[j] = (protos[i] + protos[j]) / 2
        self.protos = protos
        self.sigma = float(spec.cfg("sigma", 0.25))

    def preprocess(self, image):
        import torch

        arr = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())

    def image_features(self, pixels):
        return pixels.mean(dim=(2, 3))  # B x 3 mean colour

    def project_image(self, features) -> np.ndarray:
        rgb = np.asarray(features, dtype=np.float32)
        d2 = ((rgb[:, None, :] - self.protos[None]) ** 2).sum(-1)
        return l2_normalize(np.exp(-d2 / (2 * self.sigma**2)) + 1e-3)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        out = np.full((len(texts), len(COLORS)), 1e-3, dtype=np.float32)
        for r, t in enumerate(texts):
            words = re.findall(r"[a-z]+", t.lower())
            for pos, w in enumerate(words):
                if w in COLORS:
                    out[r, COLORS.index(w)] += 1.0 / (1 + pos)
        return l2_normalize(out)


def _toy(name: str, blind: tuple[str, str], top1: float) -> ModelSpec:
    return ModelSpec(
        id=name, family="toy-color", backbone="mean-rgb", embed_dim=len(COLORS),
        description=f"test colour VLM blind to {blind[0]}/{blind[1]}", params_m=0.0, gflops=0.0,
        imagenet_top1=top1, image_size=8, tags=("test",), config=(("blind", blind), ("sigma", 0.25)),
    )


#: three colour VLMs, each blind to two colours (the tiny registered test models)
TOY_MODELS: tuple[ModelSpec, ...] = (
    _toy("toy-a", ("blue", "purple"), 0.70),
    _toy("toy-b", ("red", "orange"), 0.75),
    _toy("toy-c", ("green", "yellow"), 0.65),
)


def _factory(spec: ModelSpec, settings: Settings) -> ZeroShotModel:
    return ToyColorModel(spec, settings)


def builtin_models() -> tuple[ModelEntry, ...]:
    """The toy models as catalog entries."""
    return tuple(ModelEntry(spec, _factory, "builtin") for spec in TOY_MODELS)
