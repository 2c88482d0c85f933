"""open_clip models behind :class:`~vlmhub.models.base.ZeroShotModel`.

Loading follows open_clip's own conventions::

    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=tag_or_checkpoint)
    tokenizer = open_clip.get_tokenizer(arch)

* ``open_clip:ViT-B-32/laion2b_s34b_b79k`` — a built-in architecture and a pretrained tag
  (``open_clip.list_pretrained()``); the weights come from open_clip's cache (downloaded only when
  ``VLMHUB_ALLOW_DOWNLOADS=1``).
* ``open_clip:hf-hub:timm/ViT-B-16-SigLIP`` — config, weights and tokenizer from a Hugging Face hub repo
  (read from the local HF cache when offline).
* ``open_clip:local-dir:/dir`` — a folder holding ``open_clip_config.json`` and the weights.
* ``open_clip:ViT-B-32@/path/ckpt.pt`` — an architecture and a local checkpoint: a state dict saved with
  ``torch.save(model.state_dict(), path)`` (or ``{"state_dict": ...}``, or ``.safetensors``). The architecture
  may also be a path to a model-config JSON (keys ``embed_dim``, ``vision_cfg``, ``text_cfg``) for custom
  architectures; it is registered with ``open_clip.add_model_config`` before the model is built.

The image side uses the model's own eval transform (resize, centre crop, the model's mean/std); the trunk is
``model.encode_image`` (projected, unnormalised) and the head L2-normalises. ``logit_scale`` is
``model.logit_scale.exp()``.

SigLIP-type open_clip models (``ViT-B-16-SigLIP`` and friends) also carry ``model.logit_bias``, exposed as
:attr:`OpenClipModel.logit_bias`. They were trained with a sigmoid loss: the probability that text ``j``
matches image ``i`` is ``sigmoid(logit_scale * cos_ij + logit_bias)``, independently for every pair. The
softmax of Eq. 1 (MLL) uses ``logit_scale * cos`` only; the bias is constant over classes, so it does not
change softmax probabilities or the argmax, but it matters if you want SigLIP's calibrated per-pair scores.

open_clip needs torchvision, and torchvision must be built for the installed torch; see docs/models.md and
``scripts/setup_openclip_env.sh``. Nothing here is imported at module import time.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ...errors import ConfigError, missing_extra
from ..base import ModelSpec, ZeroShotModel
from ._common import apply_offline_env, count_params_m, make_spec, to_embeddings
from .sources import OpenClipSource, parse_source

__all__ = ["OpenClipModel", "import_open_clip"]

_LOCK = threading.Lock()

_TORCHVISION_FIX = (
    "open_clip needs a torchvision built for the installed torch, and PyPI's torchvision is a CUDA build "
    "whose compiled ops do not load beside a CPU-only torch ('operator torchvision::nms does not exist'). "
    "Use the separate environment made by scripts/setup_openclip_env.sh (torch and torchvision from the same "
    "release), or install a torchvision built for your torch; docs/models.md explains."
)


def import_open_clip():
    """Import open_clip lazily: :class:`MissingExtraError` when absent, :class:`ConfigError` when torchvision is broken."""
    apply_offline_env()
    try:
        import open_clip  # noqa: PLC0415
    except ImportError as exc:
        if getattr(exc, "name", None) in ("open_clip", None) or "open_clip" in str(exc):
            raise missing_extra("open_clip_torch", "openclip", "the open_clip adapter") from None
        if "torchvision" in str(exc):
            raise missing_extra("torchvision", "openclip", "the open_clip adapter") from None
        raise ConfigError(f"importing open_clip failed: {exc}. {_TORCHVISION_FIX}") from None
    except Exception as exc:  # noqa: BLE001 - a broken torchvision raises RuntimeError at import
        raise ConfigError(f"importing open_clip failed ({type(exc).__name__}: {exc}). {_TORCHVISION_FIX}") from None
    return open_clip


def _register_arch_json(open_clip, path: str) -> str:
    """Register a custom model-config JSON with open_clip and return its name.

    open_clip's config registry is process-wide and keyed by file stem; the file is (re-)added on every load,
    so of two configs with one stem the one being loaded is the one used (adding is a cheap JSON read)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"open_clip model config {p} does not exist. Check the path in the model source.")
    with _LOCK:
        open_clip.add_model_config(p)
    if p.stem not in open_clip.list_models():
        raise ConfigError(
            f"{p} is not an open_clip model config (it needs the keys 'embed_dim', 'vision_cfg' and 'text_cfg')."
        )
    return p.stem


def _load_error(src: OpenClipSource, exc: Exception) -> ConfigError:
    msg = str(exc)
    if src.kind == "tag" and ("download" in msg.lower() or "offline" in msg.lower() or "connect" in msg.lower()):
        fix = (
            "The weights are not in the local cache and vlmhub does not download by default. Either set "
            "VLMHUB_ALLOW_DOWNLOADS=1 on a machine with network, or download the checkpoint elsewhere and add "
            f"it as open_clip:{src.arch}@/path/to/checkpoint."
        )
    elif src.kind == "tag":
        fix = "Check the architecture and tag against open_clip.list_pretrained()."
    elif src.kind == "hf-hub":
        fix = (
            f"The repo {src.location!r} is not in the local Hugging Face cache (HF_HOME). Download it on a machine "
            "with network (huggingface-cli download " + str(src.location) + ") and copy the cache, or set "
            "VLMHUB_ALLOW_DOWNLOADS=1 where downloads work."
        )
    elif isinstance(exc, AssertionError) or any(k in msg for k in ("state_dict", "size mismatch", "Missing key", "Unexpected key")):
        fix = f"The checkpoint does not match the architecture {src.arch!r}; name the architecture it was trained with."
    else:
        fix = "Check the architecture name (open_clip.list_models()) and the weights."
    return ConfigError(f"cannot load open_clip model {src.source!r}: {type(exc).__name__}: {msg.splitlines()[0].rstrip('. ') if msg else ''}. {fix}")


class OpenClipModel(ZeroShotModel):
    """An open_clip CLIP/SigLIP model (weights load in the constructor).

    ``source`` is a source string or an :class:`OpenClipSource`; ``spec`` is the registered spec (built from
    the model when omitted, with ``model_id`` or the source's default id).
    """

    #: SigLIP's learned bias (``None`` for softmax-trained CLIP models); see the module docstring
    logit_bias: float | None = None

    def __init__(
        self,
        source: str | OpenClipSource,
        *,
        spec: ModelSpec | None = None,
        model_id: str | None = None,
        device: str = "cpu",
    ):
        src = parse_source(source) if isinstance(source, str) else source
        if not isinstance(src, OpenClipSource):
            raise ConfigError(f"{src.source!r} is not an open_clip source")
        self.source = src
        self.device = device
        # cheap path checks first, so a wrong path is reported even where open_clip is not installed
        if src.kind == "checkpoint":
            if src.arch and src.arch.endswith(".json") and not Path(src.arch).is_file():
                raise ConfigError(f"open_clip model config {src.arch} does not exist. Check the path in the model source.")
            if not Path(str(src.pretrained)).is_file():
                raise ConfigError(
                    f"open_clip checkpoint {src.pretrained} does not exist. Check the path, or save the weights with "
                    "torch.save(model.state_dict(), PATH) and add open_clip:ARCH@PATH."
                )
        elif src.kind == "local-dir" and not Path(str(src.location)).is_dir():
            raise ConfigError(
                f"open_clip folder {src.location} does not exist. It must hold open_clip_config.json and the weights."
            )
        open_clip = import_open_clip()
        import torch  # noqa: PLC0415

        name = src.model_name
        pretrained: str | None = src.pretrained if src.kind in ("tag", "checkpoint") else None
        if src.kind == "checkpoint" and src.arch and src.arch.endswith(".json"):
            name = _register_arch_json(open_clip, src.arch)
        if src.kind in ("tag", "checkpoint") and name not in open_clip.list_models():
            raise ConfigError(
                f"unknown open_clip architecture {name!r}. Pick one of open_clip.list_models() (e.g. ViT-B-32), "
                "or give a model-config JSON path as the architecture (open_clip:/path/Arch.json@/path/ckpt.pt)."
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=device, cache_dir=None, require_pretrained=True
            )
            tokenizer = open_clip.get_tokenizer(name)
        except ImportError as exc:  # e.g. SigLIP / HF-text models tokenize with transformers
            raise missing_extra(
                getattr(exc, "name", None) or "transformers", "hf", f"the tokenizer or text tower of open_clip model {src.source!r}"
            ) from None
        except (RuntimeError, ValueError, OSError, KeyError, AssertionError) as exc:
            raise _load_error(src, exc) from None
        model.eval()
        self._torch = torch
        self.model = model
        self._preprocess = preprocess
        self.tokenizer = tokenizer
        with torch.no_grad():
            self.logit_scale = float(model.logit_scale.exp().item())
            bias = getattr(model, "logit_bias", None)
            self.logit_bias = float(bias.item()) if bias is not None else None
        try:
            cfg = open_clip.get_model_config(name) or {}
        except Exception:  # noqa: BLE001 - metadata only; fall back to measuring the model
            cfg = {}
        embed_dim = int(cfg.get("embed_dim") or _probe_dim(model, tokenizer, torch))
        vision = cfg.get("vision_cfg", {})
        size = vision.get("image_size")
        image_size = int(size if isinstance(size, int) else size[0]) if size else None
        if spec is None:
            backbone = src.arch if src.kind in ("tag", "checkpoint") else src.location
            if backbone and backbone.endswith(".json"):
                backbone = Path(backbone).stem
            spec = make_spec(
                model_id or src.default_id(),
                family="siglip" if self.logit_bias is not None else "clip",
                backbone=str(backbone),
                embed_dim=embed_dim,
                source=src.source,
                adapter="open_clip",
                description=f"open_clip model {src.source[len('open_clip:'):]}",
                pretrained=src.pretrained or src.location,
                params_m=count_params_m(model),
                image_size=image_size,
                extra=(("logit_scale", round(self.logit_scale, 4)), ("logit_bias", self.logit_bias)),
            )
        self.spec = spec

    @property
    def trunk_key(self) -> str:
        """Models loaded from the same source share image features."""
        return self.source.source

    def preprocess(self, image) -> Any:
        """The model's own eval transform (resize, centre crop, to tensor, normalise)."""
        return self._preprocess(image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image)

    def image_features(self, pixels) -> Any:
        torch = self._torch
        with torch.no_grad():
            return self.model.encode_image(pixels.to(self.device)).float()

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        torch = self._torch
        with torch.no_grad():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return to_embeddings(self.model.encode_text(tokens))


def _probe_dim(model, tokenizer, torch) -> int:
    """The text embedding width, measured (only when the config does not declare ``embed_dim``)."""
    with torch.no_grad():
        return int(model.encode_text(tokenizer(["a"])).shape[-1])
