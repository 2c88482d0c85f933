"""Adapters that bring real CLIP-family models into vlmhub behind :class:`~vlmhub.models.base.ZeroShotModel`.

* :class:`~vlmhub.models.adapters.open_clip.OpenClipModel` — open_clip checkpoints (``open_clip:...``).
* :class:`~vlmhub.models.adapters.hf.HFClipModel` — transformers CLIP / SigLIP (``hf:...``).

:func:`build_model` turns a source string (see :mod:`vlmhub.models.adapters.sources`) into a loaded model.
Importing this package imports neither open_clip nor transformers and loads nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base import ModelSpec, ZeroShotModel
from .sources import ADAPTER_NAMES, AdapterName, HFSource, ModelSource, OpenClipSource, parse_source

if TYPE_CHECKING:  # pragma: no cover
    from .hf import HFClipModel
    from .open_clip import OpenClipModel

__all__ = [
    "AdapterName",
    "ADAPTER_NAMES",
    "ModelSource",
    "OpenClipSource",
    "HFSource",
    "parse_source",
    "build_model",
    "OpenClipModel",
    "HFClipModel",
]


def build_model(
    source: str | ModelSource,
    *,
    spec: ModelSpec | None = None,
    model_id: str | None = None,
    device: str = "cpu",
) -> ZeroShotModel:
    """Load the model a source string names (weights load here). ``spec`` fixes the registered spec."""
    src = parse_source(source) if isinstance(source, str) else source
    if isinstance(src, OpenClipSource):
        from .open_clip import OpenClipModel

        return OpenClipModel(src, spec=spec, model_id=model_id, device=device)
    from .hf import HFClipModel

    return HFClipModel(src, spec=spec, model_id=model_id, device=device)


def __getattr__(name: str):  # lazy access to the adapter classes (PEP 562)
    if name == "OpenClipModel":
        from .open_clip import OpenClipModel

        return OpenClipModel
    if name == "HFClipModel":
        from .hf import HFClipModel

        return HFClipModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
