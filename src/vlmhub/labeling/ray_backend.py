"""Labeling on Ray: the image and caption embeddings of a labeling job computed by Ray Data batch inference.

:func:`label_models_ray` is :func:`~vlmhub.labeling.labeler.label_models` with both of its model stages on a
Ray cluster (``address``: ``"auto"`` after ``ray start --head``, ``"ray://head:10001"``; default
``Settings.ray_address`` = ``VLMHUB_RAY_ADDRESS``, else a local Ray started for the call), so the driver runs
no model at all: it plans the chunks, stores what comes back and draws the progress bars. Per group of models
sharing a trunk:

* captions: the group's chunks of :data:`~vlmhub.labeling.labeler.CAPTION_CHUNK` missing captions of one
  model become a Ray dataset of chunk numbers that ``Dataset.map_batches`` runs through
  :class:`CaptionEncoder` (:class:`RayTextBackend`): one ``encode_text`` call per chunk, as the local labeler
  makes it;
* images: the job's chunks of ``batch_size`` sample images (the graph shards) run likewise through
  :class:`ChunkEmbedder` (:class:`RayImageBackend`): decode, trunk once, every model's projection
  (:func:`~vlmhub.labeling.labeler.embed_chunk`, the local labeler's code).

Each stage's ``concurrency`` actors hold the group's loaded models, receive them and the chunk list once
(object store, ``ray.put``) and process many chunks. An actor whose worker process dies is restarted and its
chunk retried (``max_restarts`` / ``max_task_retries`` = ``max_retries``). Every chunk holds the same inputs
in the same batch as locally and runs the same code, so labels are byte for byte the local ones, whoever
computed them and however often. The driver stores each chunk as it arrives (the same label files as today),
so an interrupted run resumes at chunk granularity.

Ray is an optional extra: ``pip install "vlmhub[ray]"``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from ..concepts.graph import SemanticGraph
from ..errors import ConfigError, LabelError, missing_extra
from ..models.base import ZeroShotModel
from ..settings import Settings, get_settings
from .labeler import LabelReport, embed_chunk, label_models

__all__ = ["CaptionEncoder", "ChunkEmbedder", "RayImageBackend", "RayOptions", "RayTextBackend", "label_models_ray",
           "import_ray", "ray_session", "deref"]


def import_ray(purpose: str = "labeling on Ray") -> Any:
    """``import ray`` (with Ray Data), or a :class:`~vlmhub.errors.MissingExtraError` naming the pip install."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise missing_extra("ray[data]", "ray", purpose) from None
    return ray


def _check_count(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be a whole number >= {low} (got {value!r}).")


@dataclass(frozen=True)
class RayOptions:
    """How a job runs on Ray: the cluster, actors per stage, CPUs per actor, retries after a worker dies.

    ``address=None`` means ``Settings.ray_address`` (``VLMHUB_RAY_ADDRESS``), and when that is unset too, a
    local Ray started for the job and stopped after it (:func:`ray_session`).
    """

    address: str | None = None
    workers: int = 1
    num_cpus: float = 1.0
    max_retries: int = 3

    def __post_init__(self) -> None:
        _check_count("Ray workers (--ray-workers)", self.workers, 1)
        _check_count("Ray max_retries", self.max_retries, 0)
        if isinstance(self.num_cpus, bool) or not isinstance(self.num_cpus, (int, float)) or not self.num_cpus > 0:
            raise ConfigError(f"CPUs per Ray worker must be a number > 0 (got {self.num_cpus!r}).")

    def resolved_address(self, settings: Settings | None = None) -> str | None:
        """The address to connect to: this one, else ``VLMHUB_RAY_ADDRESS`` of ``settings``, else ``None``
        (a local Ray)."""
        if self.address:
            return self.address
        return (settings or get_settings()).ray_address


@contextlib.contextmanager
def ray_session(address: str | None = None, *, purpose: str = "labeling on Ray") -> Iterator[Any]:
    """Ray for one job: connect to ``address`` (``None``: start a local Ray) unless this process already has
    Ray initialised (then that one is used and left running); shut down on exit what was started here.
    Ray Data's own progress bars are off inside (vlmhub shows its own: caption chunks, then shards)."""
    ray = import_ray(purpose)
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {address!r} ({exc}). Start it with "
                              "`ray start --head`, fix --ray / VLMHUB_RAY_ADDRESS, or omit the address for a local Ray.") from None
        started = True
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    try:
        yield ray
    finally:
        ctx.enable_progress_bars = bars
        if started:
            ray.shutdown()


def deref(value: Any) -> Any:
    """``ray.get(value)`` for a Ray ``ObjectRef`` (how big constructor arguments reach actors: put in the object
    store once by the driver, fetched once per actor), else ``value`` itself."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and isinstance(value, ray.ObjectRef):
        return ray.get(value)
    return value


class ChunkEmbedder:
    """Ray Data callable class: holds one trunk group's models and embeds whole chunks of image refs.

    ``models`` and ``chunks`` may be ``ObjectRef`` s (:func:`deref`). A batch holds chunk numbers
    (``{"chunk": int array}``); the output has one row per image: ``chunk``, ``row`` (position in its chunk)
    and ``emb_<j>`` (model j's embedding).
    """

    def __init__(self, models: Sequence[ZeroShotModel], chunks: Sequence[Sequence[tuple]]):
        self.models = list(deref(models))
        self.chunks = [list(c) for c in deref(chunks)]

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


class _RayStage:
    """A Ray Data stage of the labeling job: ``concurrency`` actors of ``num_cpus`` CPUs, ``max_retries``."""

    def __init__(self, concurrency: int = 1, num_cpus: float = 1.0, max_retries: int = 3):
        RayOptions(workers=concurrency, num_cpus=num_cpus, max_retries=max_retries)  # validates
        self.concurrency, self.num_cpus, self.max_retries = concurrency, num_cpus, max_retries

    def _batches(self, ray: Any, udf: type, models: Sequence[ZeroShotModel], chunks: list) -> Iterator[dict]:
        """The output batches of ``udf`` (a callable class of ``models`` and ``chunks``) over every chunk number:
        the models and the chunk list go into the object store once (held here until the last chunk is in)."""
        ds = ray.data.from_items([{"chunk": i} for i in range(len(chunks))], override_num_blocks=len(chunks))
        models_ref, chunks_ref = ray.put(list(models)), ray.put(chunks)
        out = ds.map_batches(udf, fn_constructor_kwargs={"models": models_ref, "chunks": chunks_ref},
                             batch_size=1, batch_format="numpy",
                             compute=ray.data.ActorPoolStrategy(size=min(self.concurrency, len(chunks))),
                             num_cpus=self.num_cpus,
                             max_restarts=self.max_retries, max_task_retries=self.max_retries)
        yield from out.iter_batches(batch_size=None, batch_format="numpy")  # this frame holds the refs meanwhile


class RayImageBackend(_RayStage):
    """An :data:`~vlmhub.labeling.labeler.ImageBackend` running :class:`ChunkEmbedder` on Ray Data.

    ``concurrency`` actors, ``num_cpus`` each; an actor whose process dies is restarted and its chunk
    retried, up to ``max_retries`` times."""

    def __call__(self, group: Sequence[ZeroShotModel], chunks: Sequence[Sequence[tuple]]
                 ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        ray = import_ray()
        if not chunks:
            return
        pending: dict[int, dict[int, list]] = {}
        for batch in self._batches(ray, ChunkEmbedder, group, [list(c) for c in chunks]):
            for r in range(len(batch["chunk"])):
                ci, row = int(batch["chunk"][r]), int(batch["row"][r])
                pending.setdefault(ci, {})[row] = [batch[f"emb_{j}"][r] for j in range(len(group))]
                if len(pending[ci]) == len(chunks[ci]):  # a whole chunk: hand it over to be stored
                    rows = pending.pop(ci)
                    yield ci, {m.id: np.stack([rows[i][j] for i in range(len(rows))]) for j, m in enumerate(group)}
        if pending:
            raise LabelError(f"Ray returned incomplete chunks {sorted(pending)}; run the labeling again to resume")


class CaptionEncoder:
    """Ray Data callable class: holds one trunk group's models and embeds whole caption chunks.

    ``models`` and ``chunks`` (``(model index, captions)`` pairs) may be ``ObjectRef`` s (:func:`deref`). A
    batch holds chunk numbers (``{"chunk": int array}``); the output has one row per chunk: ``chunk``,
    ``dtype``, ``shape`` (rows, dim) and ``data``, the embeddings' raw bytes (one schema whatever the model's
    dimension; the driver rebuilds the exact array).
    """

    def __init__(self, models: Sequence[ZeroShotModel], chunks: Sequence[tuple[int, Sequence[str]]]):
        self.models = list(deref(models))
        self.chunks = [(int(j), list(c)) for j, c in deref(chunks)]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cols: dict[str, list] = {"chunk": [], "dtype": [], "rows": [], "dim": [], "data": []}
        for ci in np.asarray(batch["chunk"]).tolist():
            j, captions = self.chunks[ci]
            emb = np.ascontiguousarray(self.models[j].encode_text(captions))
            if emb.ndim != 2 or len(emb) != len(captions):
                raise LabelError(f"{self.models[j].id}.encode_text returned shape {emb.shape} for {len(captions)} "
                                 "captions; it must return one embedding row per caption")
            cols["chunk"].append(ci)
            cols["dtype"].append(emb.dtype.str)
            cols["rows"].append(emb.shape[0])
            cols["dim"].append(emb.shape[1])
            cols["data"].append(emb.tobytes())
        return {"chunk": np.asarray(cols["chunk"], np.int64), "dtype": np.asarray(cols["dtype"]),
                "rows": np.asarray(cols["rows"], np.int64), "dim": np.asarray(cols["dim"], np.int64),
                "data": np.asarray(cols["data"], dtype=object)}


class RayTextBackend(_RayStage):
    """A :data:`~vlmhub.labeling.labeler.TextBackend` running :class:`CaptionEncoder` on Ray Data.

    ``concurrency`` actors, ``num_cpus`` each; an actor whose process dies is restarted and its chunk
    retried, up to ``max_retries`` times."""

    def __call__(self, models: Sequence[ZeroShotModel], chunks: Sequence[tuple[int, Sequence[str]]]
                 ) -> Iterator[tuple[int, np.ndarray]]:
        ray = import_ray()
        if not chunks:
            return
        seen: set[int] = set()
        for batch in self._batches(ray, CaptionEncoder, models, [(j, list(c)) for j, c in chunks]):
            for r in range(len(batch["chunk"])):
                ci = int(batch["chunk"][r])
                if ci in seen:
                    continue
                shape = (int(batch["rows"][r]), int(batch["dim"][r]))
                emb = np.frombuffer(batch["data"][r], dtype=np.dtype(str(batch["dtype"][r]))).reshape(shape)
                if shape[0] != len(chunks[ci][1]):
                    raise LabelError(f"Ray returned {shape[0]} caption embeddings for chunk {ci} of "
                                     f"{len(chunks[ci][1])} captions; run the labeling again to resume")
                seen.add(ci)
                yield ci, emb.copy()
        if len(seen) != len(chunks):
            missing = sorted(set(range(len(chunks))) - seen)
            raise LabelError(f"Ray returned no embeddings for caption chunks {missing}; run the labeling again to resume")


def label_models_ray(models: Sequence[ZeroShotModel], graph: SemanticGraph, settings: Settings | None = None, *,
                     address: str | None = None, concurrency: int = 1, num_cpus: float = 1.0, max_retries: int = 3,
                     batch_size: int | None = None, force: bool = False, progress: bool = True,
                     renditions: Sequence[str] = ("original",)) -> LabelReport:
    """:func:`~vlmhub.labeling.labeler.label_models` with its caption and image stages on Ray (module docstring).

    ``address``: a running cluster (``"auto"``, ``"ray://head:10001"``); ``None`` means
    ``settings.ray_address`` (``VLMHUB_RAY_ADDRESS``), else a local Ray started for the call. A Ray this
    process has already initialised is used as it is (and left running).
    """
    settings = settings or get_settings()
    opts = RayOptions(address, concurrency, num_cpus, max_retries)
    with ray_session(opts.resolved_address(settings)):
        return label_models(models, graph, settings, batch_size=batch_size, force=force, progress=progress,
                            renditions=renditions, image_backend=RayImageBackend(concurrency, num_cpus, max_retries),
                            text_backend=RayTextBackend(concurrency, num_cpus, max_retries))
