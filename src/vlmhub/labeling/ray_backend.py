"""Labeling on Ray: the image embeddings of a labeling job computed by Ray Data batch inference.

:func:`label_models_ray` is :func:`~vlmhub.labeling.labeler.label_models` with its image stage on a Ray
cluster (a local one started for the call unless ``address`` is given, e.g. ``"auto"`` after
``ray start --head``). Per group of models sharing a trunk, the job's chunks of ``batch_size`` sample images
(the graph shards) become a Ray dataset of chunk numbers, and ``Dataset.map_batches`` runs them through
:class:`ChunkEmbedder`, a callable class that holds the group's loaded models: each of its ``concurrency``
actors receives the models and the chunk list once (object store) and embeds many chunks. Every chunk is
embedded exactly as the local labeler embeds it (same images in the same batch, same code:
:func:`~vlmhub.labeling.labeler.embed_chunk`), so labels are byte for byte the local ones. The driver stores
each chunk as it arrives (the same label files as today), so an interrupted run resumes at chunk granularity.
Captions (one text forward per node) stay in the driver.

Ray is an optional extra: ``pip install "vlmhub[ray]"``.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from ..concepts.graph import SemanticGraph
from ..errors import ConfigError, LabelError, missing_extra
from ..models.base import ZeroShotModel
from ..settings import Settings
from .labeler import LabelReport, embed_chunk, label_models

__all__ = ["ChunkEmbedder", "RayImageBackend", "label_models_ray", "import_ray"]


def import_ray() -> Any:
    """``import ray`` (with Ray Data), or a :class:`~vlmhub.errors.MissingExtraError` naming the pip install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise missing_extra("ray[data]", "ray", "labeling on Ray") from None
    return ray


class ChunkEmbedder:
    """Ray Data callable class: holds one trunk group's models and embeds whole chunks of image refs.

    A batch holds chunk numbers (``{"chunk": int array}``); the output has one row per image:
    ``chunk``, ``row`` (position in its chunk) and ``emb_<j>`` (model j's embedding).
    """

    def __init__(self, models: Sequence[ZeroShotModel], chunks: Sequence[Sequence[tuple]]):
        self.models = list(models)
        self.chunks = [list(c) for c in chunks]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cols: dict[str, list] = {"chunk": [], "row": []}
        cols.update({f"emb_{j}": [] for j in range(len(self.models))})
        for ci in np.asarray(batch["chunk"]).tolist():
            embs = embed_chunk(self.models, self.chunks[ci])
            n = len(self.chunks[ci])
            cols["chunk"].append(np.full(n, ci, np.int64))
            cols["row"].append(np.arange(n, dtype=np.int64))
            for j, m in enumerate(self.models):
                cols[f"emb_{j}"].append(np.asarray(embs[m.id], np.float32))
        return {k: np.concatenate(v) for k, v in cols.items()}


class RayImageBackend:
    """An :data:`~vlmhub.labeling.labeler.ImageBackend` running :class:`ChunkEmbedder` on Ray Data."""

    def __init__(self, concurrency: int = 1, num_cpus: float = 1.0):
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"concurrency must be a whole number >= 1 (got {concurrency!r})")
        self.concurrency, self.num_cpus = concurrency, num_cpus

    def __call__(self, group: Sequence[ZeroShotModel], chunks: Sequence[Sequence[tuple]]
                 ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        ray = import_ray()
        if not chunks:
            return
        ds = ray.data.from_items([{"chunk": i} for i in range(len(chunks))], override_num_blocks=len(chunks))
        out = ds.map_batches(ChunkEmbedder, fn_constructor_kwargs={"models": list(group), "chunks": list(chunks)},
                             batch_size=1, batch_format="numpy", concurrency=self.concurrency, num_cpus=self.num_cpus)
        pending: dict[int, dict[int, list]] = {}
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            for r in range(len(batch["chunk"])):
                ci, row = int(batch["chunk"][r]), int(batch["row"][r])
                pending.setdefault(ci, {})[row] = [batch[f"emb_{j}"][r] for j in range(len(group))]
                if len(pending[ci]) == len(chunks[ci]):  # a whole chunk: hand it over to be stored
                    rows = pending.pop(ci)
                    yield ci, {m.id: np.stack([rows[i][j] for i in range(len(rows))]) for j, m in enumerate(group)}
        if pending:
            raise LabelError(f"Ray returned incomplete chunks {sorted(pending)}; run the labeling again to resume")


def label_models_ray(models: Sequence[ZeroShotModel], graph: SemanticGraph, settings: Settings | None = None, *,
                     address: str | None = None, concurrency: int = 1, num_cpus: float = 1.0,
                     batch_size: int | None = None, force: bool = False, progress: bool = True,
                     renditions: Sequence[str] = ("original",)) -> LabelReport:
    """:func:`~vlmhub.labeling.labeler.label_models` with the image stage on Ray (module docstring).

    ``address``: a running cluster (``"auto"``, ``"ray://head:10001"``); ``None`` starts a local Ray for the
    call unless one is already initialised in this process (which is then used and left running).
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        return label_models(models, graph, settings, batch_size=batch_size, force=force, progress=progress,
                            renditions=renditions, image_backend=RayImageBackend(concurrency, num_cpus))
    finally:
        if started:
            ray.shutdown()
