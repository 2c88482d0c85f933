"""Durable storage: atomic writes, JSON documents, file-keyed memos and sharded embedding tables (no pickle anywhere)."""

from .atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, file_lock
from .embeddings import EmbeddingTable
from .memo import FileMemo, file_key

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json",
    "file_lock",
    "EmbeddingTable",
    "FileMemo",
    "file_key",
]
