"""transformers CLIP and SigLIP models behind :class:`~vlmhub.models.base.ZeroShotModel`.

``hf:openai/clip-vit-base-patch32`` (a hub id, read from the local Hugging Face cache) or ``hf:/path/dir``
(a folder written by ``model.save_pretrained(dir)`` together with the tokenizer's and the image processor's
``save_pretrained(dir)``) is loaded the way transformers does it::

    config = AutoConfig.from_pretrained(src)           # model_type "clip" or "siglip"
    model = CLIPModel.from_pretrained(src)             # or SiglipModel
    tokenizer = AutoTokenizer.from_pretrained(src)
    image_processor = AutoImageProcessor.from_pretrained(src)

Images go through the model's own image processor; the trunk is ``model.get_image_features`` (projected,
unnormalised) and the head L2-normalises. Texts go through the model's tokenizer:

* CLIP: ``padding=True, truncation=True`` up to ``text_config.max_position_embeddings``, with the attention
  mask; the text embedding is read at the end-of-text token.
* SigLIP: ``padding="max_length"`` (SigLIP was trained on texts padded to the full 64 tokens and pools the last
  position, so shorter padding changes its embeddings), input ids only, as SigLIP's own tokenizer returns.

Logit scale and bias
    ``logit_scale`` is ``model.logit_scale.exp()`` for both. SigLIP also has ``logit_bias`` and was trained
    with a *sigmoid* loss: ``P(text j matches image i) = sigmoid(logit_scale * cos_ij + logit_bias)``, each pair
    on its own, so its probabilities over classes need not sum to one. Eq. 1 of MLL takes a softmax over the
    classes of ``logit_scale * cos``; the bias is the same for every class and cancels in that softmax, so
    vlmhub uses ``logit_scale`` alone there and keeps :attr:`HFClipModel.logit_bias` for callers that want
    SigLIP's calibrated per-pair scores.

Offline: unless ``VLMHUB_ALLOW_DOWNLOADS=1``, ``HF_HUB_OFFLINE=1`` is set (if unset) and every
``from_pretrained`` gets ``local_files_only=True``; a model missing from disk gives a :class:`ConfigError`
naming the id or folder and the fix. transformers is imported inside the constructor, never at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Sequence, get_args

import numpy as np

from ...errors import ConfigError, missing_extra
from ..base import ModelSpec, ZeroShotModel
from ._common import apply_offline_env, count_params_m, make_spec, to_embeddings
from .sources import HFSource, parse_source

__all__ = ["HFClipModel", "HFFamily", "HF_FAMILIES", "import_transformers"]

HFFamily = Literal["clip", "siglip"]
HF_FAMILIES: tuple[str, ...] = get_args(HFFamily)


def import_transformers():
    """Import transformers lazily, or raise :class:`MissingExtraError` naming ``pip install 'vlmhub[hf]'``."""
    apply_offline_env()
    try:
        import transformers  # noqa: PLC0415
    except ImportError:
        raise missing_extra("transformers", "hf", "the Hugging Face (transformers) adapter") from None
    return transformers


def _not_found(src: HFSource, exc: Exception) -> ConfigError:
    if src.is_local:
        fix = (
            "The folder must hold what model.save_pretrained(DIR), tokenizer.save_pretrained(DIR) and "
            "image_processor.save_pretrained(DIR) write (config.json, weights, tokenizer and preprocessor files)."
        )
    else:
        fix = (
            f"{src.location!r} is not in the local Hugging Face cache (HF_HOME) and vlmhub does not download by "
            f"default. Download it where there is network (huggingface-cli download {src.location}) and copy the "
            "cache, or save it with save_pretrained and add hf:/path/to/dir, or set VLMHUB_ALLOW_DOWNLOADS=1."
        )
    first = str(exc).strip().splitlines()[0].rstrip('. ') if str(exc).strip() else type(exc).__name__
    return ConfigError(f"cannot load transformers model {src.source!r}: {first}. {fix}")


def _pooled(out: Any) -> Any:
    """transformers 5 returns a model output whose ``pooler_output`` is the projected embedding; 4.x a tensor."""
    if hasattr(out, "pooler_output"):
        return out.pooler_output
    if isinstance(out, (tuple, list)):
        return out[1] if len(out) > 1 else out[0]
    return out


class HFClipModel(ZeroShotModel):
    """A transformers ``CLIPModel`` or ``SiglipModel`` (weights load in the constructor)."""

    #: SigLIP's learned bias (``None`` for CLIP); see the module docstring for its sigmoid semantics
    logit_bias: float | None = None
    family: HFFamily

    def __init__(
        self,
        source: str | HFSource,
        *,
        spec: ModelSpec | None = None,
        model_id: str | None = None,
        device: str = "cpu",
    ):
        src = parse_source(source) if isinstance(source, str) else source
        if not isinstance(src, HFSource):
            raise ConfigError(f"{src.source!r} is not a transformers (hf:) source")
        self.source = src
        self.device = device
        if src.is_local:
            folder = Path(src.location)
            if not folder.is_dir():
                raise ConfigError(
                    f"model folder {folder} does not exist. Check the path in hf:{src.location}, or write the model "
                    "there with save_pretrained."
                )
            if not (folder / "config.json").is_file():
                raise _not_found(src, FileNotFoundError(f"{folder / 'config.json'} is missing"))
        offline = apply_offline_env()
        transformers = import_transformers()
        import torch  # noqa: PLC0415

        kw: dict = {"local_files_only": True} if (offline or src.is_local) else {}
        kw["trust_remote_code"] = False  # never run code shipped with a model (submissions are untrusted)
        try:
            config = transformers.AutoConfig.from_pretrained(src.location, **kw)
        except (OSError, ValueError) as exc:
            raise _not_found(src, exc) from None
        model_type = getattr(config, "model_type", None)
        if model_type not in HF_FAMILIES:
            raise ConfigError(
                f"transformers model {src.source!r} has model_type {model_type!r}; the hf adapter supports "
                f"{', '.join(HF_FAMILIES)} (CLIPModel, SiglipModel). Convert it or use the open_clip adapter."
            )
        self.family = model_type  # type: ignore[assignment]
        model_cls = transformers.CLIPModel if model_type == "clip" else transformers.SiglipModel
        try:
            # weights as safetensors where the folder has them (transformers' default; stated, not assumed)
            safe = src.is_local and any(Path(src.location).glob("*.safetensors"))
            model = model_cls.from_pretrained(src.location, **kw, **({"use_safetensors": True} if safe else {}))
            tokenizer = transformers.AutoTokenizer.from_pretrained(src.location, **kw)
            image_processor = transformers.AutoImageProcessor.from_pretrained(src.location, **kw)
        except (OSError, ValueError) as exc:
            raise _not_found(src, exc) from None
        model.eval()
        model.to(device)
        self._torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        text_cfg = config.text_config
        max_len = int(getattr(text_cfg, "max_position_embeddings", 77) or 77)
        if model_type == "siglip":
            self._text_kwargs = {"padding": "max_length", "truncation": True, "max_length": max_len}
            self._text_inputs: tuple[str, ...] = ("input_ids",)
            embed_dim = int(getattr(text_cfg, "projection_size", None) or text_cfg.hidden_size)
        else:
            self._text_kwargs = {"padding": True, "truncation": True, "max_length": max_len}
            self._text_inputs = ("input_ids", "attention_mask")
            embed_dim = int(config.projection_dim)
        with torch.no_grad():
            self.logit_scale = float(model.logit_scale.exp().item())
            bias = getattr(model, "logit_bias", None)
            self.logit_bias = float(bias.item()) if bias is not None else None
        size = getattr(config.vision_config, "image_size", None)
        image_size = int(size if isinstance(size, int) else size[0]) if size else None
        if spec is None:
            vc = config.vision_config
            backbone = f"ViT-{getattr(vc, 'num_hidden_layers', '?')}L-{getattr(vc, 'hidden_size', '?')}d-p{getattr(vc, 'patch_size', '?')}"
            spec = make_spec(
                model_id or src.default_id(),
                family=model_type,
                backbone=backbone,
                embed_dim=embed_dim,
                source=src.source,
                adapter="hf",
                description=f"transformers {model_cls.__name__} {src.location}",
                pretrained=src.location,
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
        """The model's own image processor (resize, crop, rescale, normalise) -> tensor (C, H, W)."""
        if getattr(image, "mode", "RGB") != "RGB":
            image = image.convert("RGB")
        return self.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]

    def image_features(self, pixels) -> Any:
        torch = self._torch
        with torch.no_grad():
            return _pooled(self.model.get_image_features(pixel_values=pixels.to(self.device))).float()

    def tokenize(self, texts: Sequence[str]) -> dict:
        """The model's tokenizer with the family's padding convention; only the inputs the text tower takes."""
        enc = self.tokenizer(list(texts), return_tensors="pt", **self._text_kwargs)
        return {k: enc[k].to(self.device) for k in self._text_inputs if k in enc}

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        torch = self._torch
        with torch.no_grad():
            return to_embeddings(_pooled(self.model.get_text_features(**self.tokenize(texts))))
