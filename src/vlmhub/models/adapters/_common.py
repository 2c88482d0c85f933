"""Helpers shared by the adapters: offline policy, device handling, spec building, batching."""

from __future__ import annotations

import os
import re
from typing import Any, Sequence

import numpy as np

from ..base import ModelSpec, l2_normalize

__all__ = ["downloads_allowed", "apply_offline_env", "slugify", "count_params_m", "to_embeddings", "make_spec"]

#: set to ``1`` to let the adapters download missing weights (the default is offline: local files and caches only)
ALLOW_DOWNLOADS_ENV = "VLMHUB_ALLOW_DOWNLOADS"


def downloads_allowed() -> bool:
    """Whether the adapters may reach a model hub (``VLMHUB_ALLOW_DOWNLOADS=1``); offline by default."""
    return os.environ.get(ALLOW_DOWNLOADS_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def apply_offline_env() -> bool:
    """Set ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` (unless the user set them) when downloads are off.

    huggingface_hub reads these variables when it is first imported, so this runs before the adapters import
    open_clip or transformers; the adapters also pass ``local_files_only=True`` so the policy holds even when
    huggingface_hub was imported earlier. Returns True when offline.
    """
    if downloads_allowed():
        return False
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return True


def slugify(text: str) -> str:
    """A model-id-safe lower-case slug of ``text``."""
    s = re.sub(r"[^a-z0-9_.]+", "-", text.lower()).strip("-.")
    return re.sub(r"-{2,}", "-", s) or "model"


def count_params_m(module: Any) -> float:
    """Parameters of a torch module, in millions (rounded to 0.01)."""
    return round(sum(p.numel() for p in module.parameters()) / 1e6, 2)


def to_embeddings(x: Any) -> np.ndarray:
    """A torch tensor (or array) -> float32 numpy, L2-normalised rows."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return l2_normalize(np.asarray(x, dtype=np.float32))


def make_spec(
    model_id: str,
    *,
    family: str,
    backbone: str,
    embed_dim: int,
    source: str,
    adapter: str,
    description: str,
    pretrained: str | None,
    params_m: float | None,
    image_size: int | None,
    extra: Sequence[tuple[str, Any]] = (),
) -> ModelSpec:
    """The :class:`ModelSpec` of an adapter model; ``config`` records ``source`` and ``adapter`` for rebuilding."""
    return ModelSpec(
        id=model_id,
        family=family,
        backbone=backbone,
        embed_dim=int(embed_dim),
        description=description,
        pretrained=pretrained,
        params_m=params_m,
        image_size=image_size,
        tags=("user", adapter),
        config=(("source", source), ("adapter", adapter), *tuple(extra)),
    )
