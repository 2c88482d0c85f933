"""Zero-shot VLMs: the model interface, the built-in model table, per-home catalogs and the offline default hub."""

from .base import ModelEntry, ModelSpec, ZeroShotModel, l2_normalize
from .catalog import Catalog, create_model, get_spec, list_models
from .registry import builtin_entries, builtin_specs
from .text import CachedTextEmbedder, HashingEmbedder, SentenceTransformerEmbedder, TextEmbedder, get_text_embedder

__all__ = [
    "ModelSpec",
    "ModelEntry",
    "ZeroShotModel",
    "l2_normalize",
    "Catalog",
    "builtin_entries",
    "builtin_specs",
    "create_model",
    "get_spec",
    "list_models",
    "TextEmbedder",
    "SentenceTransformerEmbedder",
    "HashingEmbedder",
    "CachedTextEmbedder",
    "get_text_embedder",
]
