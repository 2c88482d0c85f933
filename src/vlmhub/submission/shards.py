"""Label shards: what one label job (a model x a shard of graph nodes) reads, and the code that embeds it.

Pure of the database apart from :func:`graph_and_base`; shared by the local worker (:mod:`.workflow`) and the
Ray one (:mod:`.ray_worker`), so both compute a shard with the very same code and store the same bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import StateError
from ..settings import Settings

if TYPE_CHECKING:
    from ..hubdb.engine import HubDB

__all__ = ["shard_refs", "shard_inputs", "embed_shard", "compute_shard", "load_labeling_model", "graph_and_base"]


def shard_refs(graph, nodes: tuple[str, ...] | list[str], base=None) -> tuple[list[str], list[str]]:
    """The image ids (sorted, unique) and captions (in node order) a shard of node ids covers; with ``base``
    (the graph this one grew from) only those ``base`` lacks, since every model labeled on it has them."""
    by_id = {n.id: n for n in graph.nodes}
    missing = [v for v in nodes if v not in by_id]
    if missing:
        raise StateError(f"label job names nodes {missing[:3]} that the graph {graph.version} lacks.")
    images = sorted({x for v in nodes for x in by_id[v].images})
    captions = list(dict.fromkeys(by_id[v].caption for v in nodes))
    if base is not None:
        have_images, have_captions = set(base.image_ids()), set(base.captions())
        images = [x for x in images if x not in have_images]
        captions = [c for c in captions if c not in have_captions]
    return images, captions


def shard_inputs(graph, nodes: tuple[str, ...] | list[str], base=None) -> tuple[list[tuple], list[str]]:
    """What a shard's computation reads: ``(image id, path, rendition)`` refs of its images (sorted image ids)
    and its captions (node order), as :func:`shard_refs` selects them. Small and picklable: this is what a
    shard task on Ray receives (the images themselves are read from the home's shared storage)."""
    images, captions = shard_refs(graph, nodes, base)
    return [(x, graph.image_paths[x], "original") for x in images], captions


def embed_shard(model, image_refs, captions, *, batch_size: int = 16) -> np.ndarray:
    """The label rows of one shard from its inputs (:func:`shard_inputs`): image embeddings stacked over caption
    embeddings, float32. Deterministic: fixed order and fixed batch composition, in this process or on Ray."""
    from ..models.runner import _prep_batch

    rows = []
    for i in range(0, len(image_refs), batch_size):
        pixels = _prep_batch(model, list(image_refs[i : i + batch_size]))
        rows.append(np.asarray(model.encode_image(pixels), np.float32))
    if captions:
        rows.append(np.asarray(model.encode_text(list(captions)), np.float32))
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, model.embed_dim), np.float32)


def compute_shard(model, graph, nodes, *, batch_size: int = 16, base=None) -> np.ndarray:
    """The label rows of one shard: image embeddings (sorted image ids) stacked over caption embeddings
    (node order), float32; with ``base``, only the rows ``base`` lacks (:func:`shard_refs`). Deterministic:
    fixed order and fixed batch composition."""
    refs, captions = shard_inputs(graph, nodes, base)
    return embed_shard(model, refs, captions, batch_size=batch_size)


def load_labeling_model(settings: Settings, model_id: str, source: str):
    """Load the model a label job names (weights load here): a submitted model from its source, a built-in one
    (imported from the JSON home, ``builtin:<id>``) from the home's catalog. Top level and picklable: a Ray
    shard actor calls it once."""
    if source.startswith("builtin:"):
        from ..models.catalog import Catalog

        return Catalog(settings).create(model_id)
    from ..models.user_hub import build_from_source

    return build_from_source(source, model_id=model_id, settings=settings)


def graph_and_base(db: "HubDB", settings: Settings, version: str):
    """The graph ``version`` and the graph it grew from (None for a graph built from scratch)."""
    from ..concepts.graph import load_graph
    from ..hubdb.graphs import graph_base

    base = graph_base(db, version)
    return load_graph(version, settings), (load_graph(base, settings) if base else None)
