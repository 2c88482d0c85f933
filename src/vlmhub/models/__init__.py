"""Zero-shot VLMs: the model interface, the registry and the offline default hub."""

from .base import ModelSpec, ZeroShotModel, l2_normalize
from .registry import create_model, get_spec, list_models, register_model, register_spec, unregister_model
from .text import CachedTextEmbedder, HashingEmbedder, SentenceTransformerEmbedder, TextEmbedder, get_text_embedder

__all__ = [
    "ModelSpec",
    "ZeroShotModel",
    "l2_normalize",
    "create_model",
    "get_spec",
    "list_models",
    "register_model",
    "register_spec",
    "unregister_model",
    "TextEmbedder",
    "SentenceTransformerEmbedder",
    "HashingEmbedder",
    "CachedTextEmbedder",
    "get_text_embedder",
]
