"""The hub worker's label step on Ray: leased shards embedded by Ray actors, results persisted by the worker.

A ``vlmhub worker`` with Ray configured (``--ray [ADDRESS]``, or ``VLMHUB_RAY_ADDRESS``; see
:class:`~vlmhub.labeling.ray_backend.RayOptions`) keeps the database and the leases in its own process and sends
the compute to the cluster::

    keep 2 x workers shards of one model in flight  ──►  ShardLabeler actors (weights loaded once per model)
          │   heartbeats every lease_s / 3                       │  embed_shard(image refs, captions)
          ◄──────────── ray.wait, one shard at a time ───────────┘
    finish(lease, array), claim the next shard     (the same content-addressed artifact as a local worker's)

* ``RayOptions.workers`` :class:`ShardLabeler` actors per worker, kept for the worker's lifetime: an actor loads
  a model's weights on its first shard of that model (:func:`~vlmhub.submission.shards.load_labeling_model`,
  from the home's shared storage) and keeps them for the shards after it; a step holds shards of one model.
* A task receives only its shard's image refs and captions (:func:`~vlmhub.submission.shards.shard_inputs`),
  and runs the very code a local worker runs (:func:`~vlmhub.submission.shards.embed_shard`), so the
  artifacts are byte for byte a local worker's, with any number of actors and after any number of restarts.
* An actor whose process dies is restarted and its shard retried (``max_restarts`` / ``max_task_retries`` =
  ``RayOptions.max_retries``); a shard that still fails fails its job (retried by the hub while attempts are
  left). A worker killed itself leaves leases that expire and are claimed again, as for a local worker.
* A lease lost meanwhile (expired and taken over) drops that shard's result: the new holder's stands.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import LeaseLostError, VlmhubError
from ..settings import Settings

if TYPE_CHECKING:
    from ..hubdb.engine import HubDB
    from ..labeling.ray_backend import RayOptions
    from .workflow import WorkflowConfig

__all__ = ["ShardLabeler", "RayShardPool", "RayLabelStats", "label_on_ray"]

#: ``load(settings, model_id, source)`` → a loaded model (top level and picklable: it runs inside each actor)
ModelLoader = Callable[[Settings, str, str], Any]


class ShardLabeler:
    """A Ray actor that embeds shards: it holds one model at a time, loaded on the first shard of that model
    (``load(settings, model_id, source)``) and kept for the shards after it. The actor's process (Python,
    torch, the adapter's imports) outlives model switches: only the weights are loaded again."""

    def __init__(self, settings: Settings, load: ModelLoader):
        self.settings, self.load = settings, load
        self.model_id: str | None = None
        self.model: Any = None

    def embed(self, model_id: str, source: str, image_refs: list, captions: list, batch_size: int) -> np.ndarray:
        """One shard's label rows with ``model_id`` (:func:`~vlmhub.submission.shards.embed_shard`)."""
        from .shards import embed_shard

        if model_id != self.model_id:
            self.model, self.model_id = None, None  # free the old weights before loading the new ones
            self.model = self.load(self.settings, model_id, source)
            self.model_id = model_id
        return embed_shard(self.model, image_refs, captions, batch_size=batch_size)

    def pid(self) -> int:
        """The process this actor runs in (for operators, and for tests that kill it)."""
        return os.getpid()


@dataclass(frozen=True)
class RayLabelStats:
    """What one Ray label step did with the shards it claimed (all of one model)."""

    model_id: str
    shards: tuple[int, ...]
    actors: int
    finished: int = 0
    failed: int = 0
    lost: int = 0

    def describe(self) -> str:
        """One line for the worker's log."""
        out = f"shards {','.join(map(str, self.shards))} on Ray ({self.actors} actors): {self.finished} done"
        if self.failed or self.lost:
            out += f", {self.failed} failed, {self.lost} lost"
        return out


class RayShardPool:
    """The worker's ``options.workers`` :class:`ShardLabeler` actors, started on first use and kept until
    :meth:`close` (across models: an actor swaps its model's weights, not its process).

    ``load`` is how an actor loads a model (default :func:`~vlmhub.submission.shards.load_labeling_model`).
    """

    def __init__(self, ray: Any, settings: Settings, options: "RayOptions", *, load: ModelLoader | None = None):
        from .shards import load_labeling_model

        self.ray, self.settings, self.options = ray, settings, options
        self.load = load or load_labeling_model
        self.handles: list[Any] = []

    @property
    def capacity(self) -> int:
        """Shards to hold in flight: two per actor, so an actor never waits for the worker between shards."""
        return 2 * self.options.workers

    def actors(self) -> list[Any]:
        """The actors (started now if there are none)."""
        if not self.handles:
            remote = self.ray.remote(ShardLabeler).options(
                num_cpus=self.options.num_cpus, max_restarts=self.options.max_retries,
                max_task_retries=self.options.max_retries)
            self.handles = [remote.remote(self.settings, self.load) for _ in range(self.options.workers)]
        return self.handles

    def close(self) -> None:
        """End the actors (their weights are freed)."""
        for h in self.handles:
            try:
                self.ray.kill(h)
            except Exception:  # noqa: BLE001 - already dead
                pass
        self.handles = []


def label_on_ray(db: "HubDB", settings: Settings, worker_id: str, config: "WorkflowConfig",
                 pool: RayShardPool, *, max_shards: int | None = None) -> RayLabelStats | None:
    """Label shards of one model on the pool's actors: keep ``pool.capacity`` shards in flight (a finished shard's
    place is claimed again at once, and goes to the actor with the fewest shards), persist each result as it
    arrives (:func:`~vlmhub.hubdb.jobs.finish`) while renewing the other leases, until ``max_shards`` (default
    ``4 x pool.capacity``) were claimed or the model has no claimable shard left; then the worker's other steps
    (publish, promote, check) get their turn. ``None`` when no job is claimable. The label step of a worker with
    Ray configured (module docstring)."""
    from ..hubdb.catalog import get_model
    from ..hubdb.jobs import claim, fail, finish, heartbeat
    from .shards import graph_and_base, shard_inputs

    ray = pool.ray
    first = claim(db, worker_id, config.lease_s)
    if first is None:
        return None
    budget = max_shards if max_shards is not None else 4 * pool.capacity
    model_id = first.model_id
    leases = [first]
    pending: dict[Any, tuple[Any, int]] = {}  # ref -> (lease, actor number)
    graphs: dict[str, tuple] = {}
    failed = lost = finished = 0
    stop = False  # a shard failed: claim nothing more this step (the hub retries the failed job later)
    broken = False  # an actor died for good: new actors next step

    def send(lease, actors) -> None:
        nonlocal failed
        try:
            if lease.graph_version not in graphs:
                graphs[lease.graph_version] = graph_and_base(db, settings, lease.graph_version)
            graph, base = graphs[lease.graph_version]
            refs, captions = shard_inputs(graph, lease.nodes, base)
        except VlmhubError as exc:  # e.g. the job names nodes its graph lacks: fail it, keep the others
            fail(db, lease, f"{type(exc).__name__}: {exc}")
            failed += 1
            return
        load = [0] * len(actors)
        for _lease, a in pending.values():
            load[a] += 1
        a = min(range(len(actors)), key=load.__getitem__)
        pending[actors[a].embed.remote(model_id, source, refs, captions, config.batch_size)] = (lease, a)

    try:
        source = get_model(db, model_id).source
        actors = pool.actors()
        send(first, actors)
        beat = config.lease_s / 3
        next_beat = time.monotonic() + beat
        while True:
            while not stop and len(pending) < pool.capacity and len(leases) < budget:
                more = claim(db, worker_id, config.lease_s, model_id=model_id)
                if more is None:
                    break
                leases.append(more)
                send(more, actors)
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, next_beat - time.monotonic()))
            for ref in ready:
                lease, _a = pending.pop(ref)
                try:
                    arr = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the model failed on the shard, or its actor died for good
                    stop = True
                    if isinstance(exc, ray.exceptions.RayActorError):
                        broken = True
                    try:
                        fail(db, lease, f"on Ray: {_first_line(exc)}")
                        failed += 1
                    except LeaseLostError:
                        lost += 1
                    continue
                try:
                    finish(db, lease, arr)
                    finished += 1
                except LeaseLostError:
                    lost += 1
            if pending and time.monotonic() >= next_beat:
                for ref, (lease, a) in list(pending.items()):
                    try:
                        pending[ref] = (heartbeat(db, lease, config.lease_s), a)
                    except LeaseLostError:  # taken over meanwhile: its result will be dropped
                        del pending[ref]
                        lost += 1
                next_beat = time.monotonic() + beat
    except BaseException:
        sent = {lease.job_id for lease, _a in pending.values()}
        for lease in leases:  # give the shards not sent back at once rather than when their leases expire
            if lease.job_id not in sent:
                _release(db, lease)
        raise
    finally:
        if broken:  # an actor died for good: the next step starts new ones
            pool.close()
    return RayLabelStats(model_id, tuple(lease.shard for lease in leases), pool.options.workers,
                         finished, failed, lost)


def _release(db: "HubDB", lease) -> None:
    from ..hubdb.jobs import fail

    try:
        fail(db, lease, "the worker stopped before sending the shard to Ray")
    except (LeaseLostError, VlmhubError):
        pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"[:500]
