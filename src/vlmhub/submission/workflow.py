"""The submission stage end to end, on the hub database: submit → check (sandbox) → label (leased jobs) → ready.

::

    sub = submit(db, settings, principal, package_bytes)          # state submitted (a submitter token)
    process(db, settings, "worker-1")                             # what `vlmhub worker` runs, any number at once

A worker step (:func:`work_once`) does the first of:

1. **check** a ``submitted`` model: move it to ``checking`` (a row lock makes one worker win), run the admission
   checks in a sandbox (:func:`~vlmhub.submission.sandbox.check_in_sandbox`); passed → its measured spec is stored
   and one label job per shard of the current graph's nodes is enqueued (``queued``); failed → ``rejected`` with
   the checker's reasons. A worker killed while checking leaves the model in ``checking``; after
   ``2 x`` the check time limit any worker puts it back to ``submitted``. A graph growth pending at that time
   (below) gets the model's growth jobs too.
2. **label** one shard: claim a job (a lease, renewed by heartbeats), embed the shard's sample images and
   captions with the model, store the array as a content-addressed artifact; the last shard makes the model
   ``ready`` (:func:`vlmhub.hubdb.jobs.finish`). With Ray configured (``WorkflowConfig.ray``) a step claims up to
   two shards per Ray actor and the actors embed them (:mod:`vlmhub.submission.ray_worker`); the worker keeps
   the leases and stores the same artifacts.
3. **publish** a ``ready`` model not yet in the home's catalog: its shard artifacts are appended, in shard order,
   to the label store (only rows still missing), the label is marked complete, then the model is entered into
   ``models.json`` — so a :class:`~vlmhub.hub.Hub` sees the model only once its label is whole. Publishing is
   idempotent, so a kill at any point is repaired by the next worker.
4. **promote** a grown graph (:func:`vlmhub.submission.growth.grow_graph` records it, grown from the current
   one, and enqueues jobs for its new and changed nodes only, whose shards embed only the images and captions
   the base graph lacks): once every ready model is labeled on it, it becomes the home's current graph.

Shard arrays are deterministic (fixed order, fixed batches), so labels from a run with killed workers are
byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal

from ..errors import ConflictError, LeaseLostError, NotLabeledError, PackageError, StateError
from ..settings import Settings
from .package import PackageLimits, unpack_package
from .shards import compute_shard, embed_shard, graph_and_base, load_labeling_model, shard_inputs, shard_refs
from .sandbox import SandboxLimits, check_in_sandbox

if TYPE_CHECKING:
    import threading

    from ..hubdb.auth import Principal
    from ..hubdb.catalog import SubmissionRecord
    from ..hubdb.engine import HubDB
    from ..hubdb.jobs import Lease
    from ..labeling.ray_backend import RayOptions
    from .ray_worker import RayShardPool

__all__ = ["WorkflowConfig", "StepResult", "submit", "work_once", "process", "shard_refs", "shard_inputs",
           "embed_shard", "compute_shard", "load_labeling_model", "publish_model", "changed_nodes"]

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass(frozen=True)
class WorkflowConfig:
    """Limits and sizes of the submission stage (defaults are safe for a shared hub)."""

    package: PackageLimits = PackageLimits()
    sandbox: SandboxLimits = SandboxLimits()
    zero_shot_check: bool = True
    nodes_per_shard: int = 64
    lease_s: float = 120.0
    batch_size: int = 16
    #: label shards on Ray actors (:mod:`vlmhub.submission.ray_worker`) instead of in the worker's process
    ray: "RayOptions | None" = None


@dataclass(frozen=True)
class StepResult:
    """What one worker step did: ``kind`` and the model it acted on (``idle`` when nothing was to do)."""

    kind: Literal["checked", "rejected", "labeled", "published", "promoted", "lost", "idle"]
    model_id: str | None = None
    detail: str = ""


# -- submit ---------------------------------------------------------------------------------------------------------
def submit(db: "HubDB", settings: Settings, principal: "Principal", upload: bytes, *, model_id: str | None = None,
           config: WorkflowConfig | None = None) -> "SubmissionRecord":
    """Validate and store an uploaded model package for ``principal`` (role submitter or admin).

    The package is unpacked into ``<home>/packages/<sha256>/`` (refused packages leave nothing); a package already
    submitted, or a model id already taken, is a :class:`ConflictError`."""
    from ..hubdb.catalog import create_submission
    from ..models.registry import builtin_entries

    from ..hubdb.auth import require_role

    require_role(principal, "submitter")
    config = config or WorkflowConfig()
    if not isinstance(upload, (bytes, bytearray)) or not upload:
        raise PackageError("the upload is empty; send the model package archive (.zip or .tar.gz).")
    if len(upload) > config.package.max_bytes:
        raise PackageError(f"the upload is {len(upload)} bytes, over the hub's limit of {config.package.max_bytes}.")
    sha = hashlib.sha256(upload).hexdigest()
    dest = settings.home / "packages" / sha
    if dest.exists():
        raise ConflictError(f"this package (sha256 {sha[:12]}...) was submitted before; change the package or "
                            "withdraw the earlier submission.")
    pkg = unpack_package(bytes(upload), dest, limits=config.package)
    try:
        meta = pkg.meta_dict()
        mid = model_id or meta.get("id") or f"sub-{sha[:12]}"
        if not isinstance(mid, str) or not _ID_RE.match(mid):
            raise PackageError(f"invalid model id {mid!r}: use 1-100 letters, digits, '.', '_' or '-'.")
        if mid in builtin_entries():
            raise ConflictError(f"model id {mid!r} is a built-in model of the hub; choose another id.")
        return create_submission(db, model_id=mid, source=pkg.source, spec={}, submitter=principal.user,
                                 package_sha256=sha, package_bytes=len(upload), package_path=str(dest),
                                 details={"kind": pkg.kind, "files": list(pkg.files), "meta": meta},
                                 architecture=meta.get("architecture"), licence=meta.get("licence"))
    except BaseException:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)
        raise


# -- check ----------------------------------------------------------------------------------------------------------
def _reset_stale_checks(db: "HubDB", config: WorkflowConfig) -> None:
    from ..hubdb.catalog import list_models, set_model_state
    from ..hubdb.schema import utcnow

    limit = timedelta(seconds=2 * config.sandbox.seconds)
    for m in list_models(db, state="checking"):
        updated = m.updated_at if m.updated_at.tzinfo else m.updated_at.replace(tzinfo=utcnow().tzinfo)
        if utcnow() - updated > limit:
            try:
                set_model_state(db, m.id, "submitted", reasons=["the check was interrupted; checking again"],
                                actor="worker", expect="checking")
            except StateError:
                pass


def _check_one(db: "HubDB", settings: Settings, worker_id: str, config: WorkflowConfig) -> StepResult | None:
    from ..concepts.graph import current_graph
    from ..hubdb.catalog import list_models, set_model_state, update_model_spec
    from ..hubdb.jobs import enqueue_label_jobs, shard_nodes

    _reset_stale_checks(db, config)
    for m in list_models(db, state="submitted"):
        try:
            set_model_state(db, m.id, "checking", actor=worker_id, expect="submitted")
        except StateError:
            continue  # another worker took it (read the same submitted row, moved it first)
        out = check_in_sandbox(m.source, model_id=m.id, home=settings.home, limits=config.sandbox,
                               zero_shot=config.zero_shot_check,
                               env={"VLMHUB_WORDNET": str(settings.wordnet_dir)})
        if not out.passed:
            set_model_state(db, m.id, "rejected", reasons=list(out.reasons) or [out.verdict], actor=worker_id)
            return StepResult("rejected", m.id, "; ".join(out.reasons))
        spec = out.spec or {}
        update_model_spec(db, m.id, spec, params_m=spec.get("params_m"), gflops=spec.get("gflops"), actor=worker_id)
        graph = current_graph(settings)
        shards = shard_nodes([n.id for n in graph.nodes], config.nodes_per_shard)
        enqueue_label_jobs(db, m.id, shards, graph_version=graph.version, actor=worker_id)
        n = len(shards) + enqueue_growth_jobs(db, settings, m.id, graph, config=config, actor=worker_id)
        return StepResult("checked", m.id, f"{n} label jobs")
    return None


def changed_nodes(base, graph) -> list[str]:
    """Ids of ``graph``'s nodes that ``base`` lacks or holds with other sample images or another caption
    (graph order). Pure."""
    old = {n.id: (n.images, n.caption) for n in base.nodes}
    return [n.id for n in graph.nodes if old.get(n.id) != (n.images, n.caption)]


def enqueue_growth_jobs(db: "HubDB", settings: Settings, model_id: str, current, *, config: WorkflowConfig,
                        actor: str | None = None) -> int:
    """Enqueue ``model_id``'s jobs on every graph grown from ``current`` (changed nodes only); the jobs added."""
    from ..concepts.graph import load_graph
    from ..hubdb.graphs import pending_graphs
    from ..hubdb.jobs import enqueue_label_jobs, shard_nodes

    added = 0
    for version in pending_graphs(db, current.version):
        changed = changed_nodes(current, load_graph(version, settings))
        if changed:
            added += len(enqueue_label_jobs(db, model_id, shard_nodes(changed, config.nodes_per_shard),
                                            graph_version=version, actor=actor))
    return added


# -- label ----------------------------------------------------------------------------------------------------------
class _ModelCache:
    """Models a worker has loaded, by id (one worker labels many shards of one model in a row)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._models: dict[str, Any] = {}

    def get(self, model_id: str, source: str):
        if model_id not in self._models:
            self._models.clear()  # keep one model in memory
            self._models[model_id] = load_labeling_model(self.settings, model_id, source)
        return self._models[model_id]


def _label_one(db: "HubDB", settings: Settings, worker_id: str, config: WorkflowConfig, cache: _ModelCache) -> StepResult | None:
    from ..hubdb.catalog import get_model
    from ..hubdb.jobs import claim, fail, finish, heartbeat

    lease = claim(db, worker_id, config.lease_s)
    if lease is None:
        return None
    try:
        model = cache.get(lease.model_id, get_model(db, lease.model_id).source)
        graph, base = graph_and_base(db, settings, lease.graph_version)
        arr = compute_shard(model, graph, lease.nodes, batch_size=config.batch_size, base=base)
        heartbeat(db, lease, config.lease_s)
        finish(db, lease, arr)
    except LeaseLostError:
        return StepResult("lost", lease.model_id, f"shard {lease.shard}")
    except Exception as exc:  # noqa: BLE001 - a model failing on a shard fails the job (retried), not the worker
        fail(db, lease, f"{type(exc).__name__}: {exc}")
        return StepResult("labeled", lease.model_id, f"shard {lease.shard} failed: {exc}")
    return StepResult("labeled", lease.model_id, f"shard {lease.shard}")


def _base_first(versions: set[str], base_of: dict[str, str | None]) -> list[str]:
    """``versions`` ordered so that a grown graph comes after the graph it grew from."""
    out: list[str] = []
    left = set(versions)
    while left:
        ready = sorted(v for v in left if base_of.get(v) not in left)
        if not ready:  # a cycle cannot be recorded (a version's base exists before it); be safe anyway
            ready = sorted(left)
        out.extend(ready)
        left -= set(ready)
    return out


# -- publish --------------------------------------------------------------------------------------------------------
def publish_model(db: "HubDB", settings: Settings, model_id: str) -> bool:
    """Write a ready model's shard artifacts into the label store and enter it into the home's catalog.

    Each graph version the model has finished jobs on is completed in the label store (a grown graph after the
    graph it grew from; its shards hold only what the base lacks). A built-in model (imported from the JSON home)
    is already in the catalog and only gets its label rows. Returns whether anything was done (False: nothing
    left to publish). Idempotent and safe to repeat after a kill."""
    from ..hubdb.artifacts import load_array
    from ..hubdb.graphs import graph_base
    from ..hubdb.catalog import get_model
    from ..hubdb.jobs import list_jobs
    from ..labeling.labels import LabelStore, caption_key
    from ..models.base import ModelSpec
    from ..models.user_hub import _spec_from_dict, read_models_file, models_file, record_model
    from ..storage.atomic import file_lock

    rec = get_model(db, model_id)
    builtin = rec.source.startswith("builtin:")
    known = builtin or any(m.id == model_id for m in read_models_file(models_file(settings)))
    jobs = sorted((j for j in list_jobs(db, model_id=model_id) if j.status.value == "done"),
                  key=lambda j: (j.graph_version, j.shard))
    lab = LabelStore(settings).label(model_id)
    todo = {j.graph_version for j in jobs if not lab.is_complete(j.graph_version)}
    if not todo and (known or not jobs):
        return False
    spec: ModelSpec = _spec_from_dict(rec.spec)
    lab.directory.mkdir(parents=True, exist_ok=True)
    with file_lock(lab.directory / ".publish.lock"):
        # another worker may have published it while this one waited for the lock: look again under it
        known = builtin or any(m.id == model_id for m in read_models_file(models_file(settings)))
        todo = {v for v in todo if not lab.is_complete(v)}
        if not todo and known:
            return False
        for version in _base_first(todo, {v: graph_base(db, v) for v in todo}):
            graph, base = graph_and_base(db, settings, version)
            if base is not None and not lab.is_complete(base.version):
                continue  # its base's rows are not all here yet (that model's base jobs are not done)
            for j in (j for j in jobs if j.graph_version == version):
                arr = load_array(settings, _artifact(db, j.artifact_id))
                images, captions = shard_refs(graph, j.nodes, base)
                img, cap = arr[: len(images)], arr[len(images):]
                keep = set(lab.images.missing(images))
                if keep:
                    rows = [i for i, x in enumerate(images) if x in keep]
                    lab.images.append([images[i] for i in rows], img[rows])
                keys = [caption_key(c) for c in captions]
                keep = set(lab.captions.missing(keys))
                if keep:
                    rows = [i for i, k in enumerate(keys) if k in keep]
                    lab.captions.append([keys[i] for i in rows], cap[rows])
            lab.mark_complete(spec, version, n_images=len(graph.image_ids()), n_nodes=len(graph.nodes),
                              renditions=["original"])
        if not known:
            record_model(spec, rec.source, settings=settings, checked=True)
    return True


def _artifact(db: "HubDB", artifact_id: int | None):
    from ..hubdb.artifacts import ArtifactRecord
    from ..hubdb.schema import LabelArtifactRow

    with db.session() as s:
        row = s.get(LabelArtifactRow, artifact_id)
        if row is None:
            raise StateError(f"label artifact {artifact_id} is missing from the database; run `vlmhub db check`.")
        return ArtifactRecord.from_row(row)


def _publish_one(db: "HubDB", settings: Settings) -> StepResult | None:
    """Publish the first ready model with something to publish. Runs before every worker step, so it asks the
    cheap questions first: one read of models.json, one grouped query of finished versions, the manifests."""
    from ..hubdb.catalog import list_models
    from ..hubdb.jobs import done_graph_versions
    from ..labeling.labels import LabelStore
    from ..models.user_hub import models_file, read_models_file

    known = {m.id for m in read_models_file(models_file(settings))}
    versions = done_graph_versions(db)
    store = LabelStore(settings)
    for m in list_models(db, state="ready"):
        done = versions.get(m.id, set())
        unpublished = m.id not in known and not m.source.startswith("builtin:") and done
        if not unpublished and all(store.label(m.id).is_complete(v) for v in done):
            continue  # nothing to publish: publish_model would say so after several more queries
        if publish_model(db, settings, m.id):
            return StepResult("published", m.id)
    return None


def _promote_one(db: "HubDB", settings: Settings, worker_id: str) -> StepResult | None:
    """Make a grown graph current once no model is still being labeled and every ready model is labeled on it."""
    from ..concepts.graph import current_graph_version, load_graph, save_graph
    from ..hubdb.catalog import list_models
    from ..hubdb.graphs import mark_current, pending_graphs
    from ..hubdb.jobs import job_counts
    from ..labeling.labels import LabelStore

    try:
        current = current_graph_version(settings)
    except NotLabeledError:  # no graph yet: nothing can have grown from it
        return None
    for version in pending_graphs(db, current):
        if any(list_models(db, state=st) for st in ("queued", "labeling")):
            return None  # labels are still being made (on this graph or the current one)
        store = LabelStore(settings)
        if all(store.label(m.id).is_complete(version) for m in list_models(db, state="ready")):
            if job_counts(db, graph_version=version).get("failed"):
                continue  # a failed shard: an admin re-labels that model first
            save_graph(load_graph(version, settings), settings, make_current=True)
            mark_current(db, version, actor=worker_id)
            return StepResult("promoted", None, f"graph {version} (grown from {current}) is current")
    return None


# -- the worker loop --------------------------------------------------------------------------------------------------
def work_once(db: "HubDB", settings: Settings, worker_id: str, *, config: WorkflowConfig | None = None,
              _cache: _ModelCache | None = None, _pool: "RayShardPool | None" = None) -> StepResult:
    """One step of a worker: publish a finished model, else make a fully labeled grown graph current, else label
    one shard (with a Ray pool: up to two shards per actor, :func:`~vlmhub.submission.ray_worker.label_on_ray`),
    else check one submission."""
    config = config or WorkflowConfig()
    cache = _cache or _ModelCache(settings)

    def label() -> StepResult | None:
        if _pool is not None:
            from .ray_worker import label_on_ray

            stats = label_on_ray(db, settings, worker_id, config, _pool)
            return None if stats is None else StepResult("labeled", stats.model_id, stats.describe())
        return _label_one(db, settings, worker_id, config, cache)

    for step in (lambda: _publish_one(db, settings), lambda: _promote_one(db, settings, worker_id), label,
                 lambda: _check_one(db, settings, worker_id, config)):
        out = step()
        if out is not None:
            return out
    return StepResult("idle")


def process(db: "HubDB", settings: Settings, worker_id: str, *, config: WorkflowConfig | None = None,
            idle_exit: bool = True, poll_s: float = 2.0, max_steps: int | None = None,
            on_step: "Callable[[StepResult], None] | None" = None,
            stop: "threading.Event | None" = None) -> list[StepResult]:
    """Run worker steps until idle (``idle_exit``), ``max_steps`` or ``stop`` is set (checked between steps: a
    step in progress finishes first; the CLI sets it on SIGTERM / SIGINT); the body of ``vlmhub worker``.
    ``on_step`` sees each step's result as it happens (the CLI prints it). An idle worker on Ray gives its
    actors back to the cluster until there is work again.

    With ``config.ray`` the label steps run on Ray (:mod:`vlmhub.submission.ray_worker`): the cluster at
    ``config.ray``'s address, else ``VLMHUB_RAY_ADDRESS``, else a local Ray started for this call and stopped
    after it."""
    config = config or WorkflowConfig()
    if config.ray is None:
        return _loop(db, settings, worker_id, config, idle_exit, poll_s, max_steps, None, on_step, stop)
    from ..labeling.ray_backend import ray_session
    from .ray_worker import RayShardPool

    with ray_session(config.ray.resolved_address(settings), purpose="the hub worker on Ray") as ray:
        pool = RayShardPool(ray, settings, config.ray)
        try:
            return _loop(db, settings, worker_id, config, idle_exit, poll_s, max_steps, pool, on_step, stop)
        finally:
            pool.close()


def _loop(db, settings, worker_id, config, idle_exit, poll_s, max_steps, pool, on_step, stop) -> list[StepResult]:
    import threading

    stop = stop or threading.Event()
    cache = _ModelCache(settings)
    done: list[StepResult] = []
    while (max_steps is None or len(done) < max_steps) and not stop.is_set():
        out = work_once(db, settings, worker_id, config=config, _cache=cache, _pool=pool)
        if out.kind == "idle":
            if idle_exit:
                break
            if pool is not None:
                pool.close()  # an idle worker holds no Ray actors (their CPUs/GPUs and weights go back to the cluster)
            stop.wait(poll_s)
            continue
        done.append(out)
        if on_step is not None:
            on_step(out)
    return done
