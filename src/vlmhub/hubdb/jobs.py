"""Label jobs with leases: one model x one shard of graph nodes, claimed by any number of worker processes.

Life of a job::

    queued --claim--> leased --finish--> done
      ^                 |  \\--fail (attempts left)--> queued
      |                 |   \\-fail (no attempts left)--> failed
      \\---lease expired (worker killed or hung): claimable again; after max_attempts claims -> failed

:func:`claim` picks the oldest claimable job in one short write transaction — ``SELECT ... FOR UPDATE SKIP
LOCKED`` on PostgreSQL (concurrent claimers skip each other's rows instead of waiting), ``BEGIN IMMEDIATE`` on
SQLite (claims are serialised by the write lock) — and returns a :class:`Lease` naming the holder and the
attempt number. :func:`heartbeat`, :func:`finish` and :func:`fail` act only while that exact lease still holds
(else :class:`~vlmhub.errors.LeaseLostError`): a worker whose lease expired and was taken over cannot overwrite
the new holder's result. :func:`finish` writes the result file first (content-addressed, atomic,
:func:`.artifacts.store_array`) and only then, in one transaction, adds the artifact row and marks the job done,
so a kill at any point leaves either no row or a row whose file is complete. Results are deterministic per shard,
so a job recomputed after a kill yields the same bytes at the same path.

On PostgreSQL the lease clock is the server's (one clock for every machine); on SQLite it is the host's.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from . import _deps  # noqa: F401

from sqlalchemy import and_, case, func, or_, select, update

from ..errors import ConfigError, LeaseLostError, UnknownModelError, VlmhubError
from .artifacts import ArtifactRecord, store_array
from .catalog import _move
from .progress import ActiveWorker, JobProgress, ModelProgress, StatusCounts
from .schema import JobStatus, LabelArtifactRow, LabelJobRow, ModelRow, ModelState

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["Lease", "JobRecord", "WorkerStats", "DEFAULT_LABEL_SET", "shard_nodes", "enqueue_label_jobs", "claim",
           "heartbeat", "finish", "fail", "list_jobs", "job_counts", "node_coverage", "done_graph_versions", "run_worker",
           "StatusCounts", "ModelProgress", "ActiveWorker", "JobProgress", "job_progress"]

#: the label-set version of jobs that do not name one (the on-disk label format of vlmhub.labeling.labels)
DEFAULT_LABEL_SET = "vlmhub.label/1"


@dataclass(frozen=True)
class Lease:
    """A claimed job: what to compute (model, graph and label-set version, the shard's nodes) and who holds it until
    when. ``attempt`` is the claim number; only this attempt may heartbeat, finish or fail the job."""

    job_id: int
    worker_id: str
    attempt: int
    model_id: str
    graph_version: str
    label_set_version: str
    shard: int
    nodes: tuple[str, ...]
    expires_at: datetime


@dataclass(frozen=True)
class JobRecord:
    id: int
    model_id: str
    graph_version: str
    label_set_version: str
    shard: int
    nodes: tuple[str, ...]
    status: JobStatus
    lease_holder: str | None
    lease_expires_at: datetime | None
    attempts: int
    max_attempts: int
    error: str | None
    artifact_id: int | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, r: LabelJobRow) -> "JobRecord":
        return cls(r.id, r.model_id, r.graph_version, r.label_set_version, r.shard, tuple(r.nodes), r.status,
                   r.lease_holder, r.lease_expires_at, r.attempts, r.max_attempts, r.error, r.artifact_id, r.finished_at)


@dataclass(frozen=True)
class WorkerStats:
    """What :func:`run_worker` did: jobs claimed, finished, failed, and lost (lease taken over meanwhile)."""

    claimed: int = 0
    finished: int = 0
    failed: int = 0
    lost: int = 0


def shard_nodes(nodes: Sequence[str], size: int) -> list[list[str]]:
    """``nodes`` cut into consecutive shards of at most ``size`` nodes (the last one may be shorter)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ConfigError(f"shard size must be a positive whole number (got {size!r}).")
    nodes = list(nodes)
    return [nodes[i:i + size] for i in range(0, len(nodes), size)]


def _shard_key(nodes: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(nodes), ensure_ascii=False).encode("utf-8")).hexdigest()


def enqueue_label_jobs(db: "HubDB", model_id: str, shards: Sequence[Sequence[str]], *, graph_version: str,
                       label_set_version: str = DEFAULT_LABEL_SET, max_attempts: int = 5,
                       actor: str | None = None) -> list[JobRecord]:
    """Add one queued job per shard of node ids for ``model_id``; return the new jobs.

    A shard already enqueued for this model, graph and label-set version is skipped (enqueueing is idempotent),
    so growing the graph enqueues only the shards of new nodes. When a job is added the model moves to
    ``queued`` (from ``checking``, or from ``ready``/``labeling`` for new nodes); a model in any other state is a
    :class:`~vlmhub.errors.StateError` and nothing is written.
    """
    clean: list[list[str]] = []
    for i, shard in enumerate(shards):
        nodes = [shard] if isinstance(shard, str) else list(shard)
        if not nodes or not all(isinstance(n, str) and n for n in nodes):
            raise ConfigError(f"shard {i} must be a non-empty list of node ids (strings); got {shard!r}.")
        clean.append(nodes)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError(f"max_attempts must be a positive whole number (got {max_attempts!r}).")
    with db.write() as s:
        model = s.get(ModelRow, model_id, with_for_update=True)
        if model is None:
            raise UnknownModelError(f"no model {model_id!r} in the hub database; add or submit it first.")
        same = (LabelJobRow.model_id == model_id, LabelJobRow.graph_version == graph_version,
                LabelJobRow.label_set_version == label_set_version)
        have = set(s.scalars(select(LabelJobRow.shard_key).where(*same)))
        last = s.scalar(select(func.max(LabelJobRow.shard)).where(*same))
        next_shard = 0 if last is None else last + 1
        now = db.now(s)
        new: list[LabelJobRow] = []
        for nodes in clean:
            key = _shard_key(nodes)
            if key in have:
                continue
            have.add(key)
            row = LabelJobRow(model_id=model_id, graph_version=graph_version, label_set_version=label_set_version,
                              shard=next_shard, shard_key=key, nodes=nodes, status=JobStatus.QUEUED, lease_holder=None,
                              lease_expires_at=None, attempts=0, max_attempts=max_attempts, error=None, artifact_id=None,
                              created_at=now, updated_at=now, finished_at=None)
            next_shard += 1
            s.add(row)
            new.append(row)
        if new:
            if model.state != ModelState.QUEUED:
                _move(db, s, model, ModelState.QUEUED, None, actor)
            s.flush()
            db.audit(s, actor, "jobs.enqueue", model_id, graph_version=graph_version,
                     label_set_version=label_set_version, jobs=len(new))
        return [JobRecord.from_row(r) for r in new]


def claim(db: "HubDB", worker_id: str, lease_s: float = 60.0, *, model_id: str | None = None) -> Lease | None:
    """Lease the oldest claimable job (queued, or leased with an expired lease and attempts left) to ``worker_id`` for
    ``lease_s`` seconds; ``None`` when there is none. Expired leases without attempts left become ``failed``."""
    if not worker_id or len(worker_id) > 200:
        raise ConfigError("worker_id must be a non-empty name of at most 200 characters (e.g. host:pid).")
    if not lease_s > 0:
        raise ConfigError(f"lease_s must be positive (got {lease_s!r}).")
    with db.write() as s:
        now = db.now(s)
        expired = and_(LabelJobRow.status == JobStatus.LEASED, LabelJobRow.lease_expires_at < now)
        spent = s.scalars(select(LabelJobRow).where(expired, LabelJobRow.attempts >= LabelJobRow.max_attempts)
                          .with_for_update(skip_locked=True)).all()
        for job in spent:
            job.status, job.lease_holder, job.lease_expires_at, job.updated_at = JobStatus.FAILED, None, None, now
            job.error = f"lease expired on all {job.attempts} attempts (worker killed or hung); last error: {job.error}"
        q = select(LabelJobRow).where(or_(LabelJobRow.status == JobStatus.QUEUED, expired),
                                      LabelJobRow.attempts < LabelJobRow.max_attempts)
        if model_id is not None:
            q = q.where(LabelJobRow.model_id == model_id)
        job = s.scalars(q.order_by(LabelJobRow.id).limit(1).with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        job.status, job.lease_holder = JobStatus.LEASED, worker_id
        job.lease_expires_at = now + timedelta(seconds=lease_s)
        job.attempts += 1
        job.updated_at = now
        model = s.get(ModelRow, job.model_id, with_for_update=True)
        if model is not None and model.state == ModelState.QUEUED:
            _move(db, s, model, ModelState.LABELING, None, worker_id)
        return Lease(job.id, worker_id, job.attempts, job.model_id, job.graph_version, job.label_set_version, job.shard,
                     tuple(job.nodes), job.lease_expires_at)


def _held(s, lease: Lease) -> LabelJobRow:
    job = s.get(LabelJobRow, lease.job_id, with_for_update=True)
    if job is None or job.status != JobStatus.LEASED or job.lease_holder != lease.worker_id or job.attempts != lease.attempt:
        now = "deleted" if job is None else f"{job.status.value}, attempt {job.attempts}, held by {job.lease_holder}"
        raise LeaseLostError(f"label job {lease.job_id} is no longer leased to {lease.worker_id!r} (attempt "
                             f"{lease.attempt}; the job is now {now}): its lease expired and another worker took it "
                             "over. Drop this result and claim another job; heartbeat more often than the lease lasts.")
    return job


def heartbeat(db: "HubDB", lease: Lease, lease_s: float = 60.0) -> Lease:
    """Extend ``lease`` to ``lease_s`` seconds from now; :class:`LeaseLostError` when it is no longer held."""
    with db.write() as s:
        job = _held(s, lease)
        now = db.now(s)
        job.lease_expires_at = now + timedelta(seconds=lease_s)
        job.updated_at = now
        return replace(lease, expires_at=job.lease_expires_at)


def finish(db: "HubDB", lease: Lease, array: np.ndarray, *, kind: str = "label-shard") -> ArtifactRecord:
    """Store the job's result ``array`` (file first, atomically, content-addressed), then record the artifact row and
    mark the job done in one transaction; the model becomes ``ready`` when this was its last open job.

    :class:`LeaseLostError` when the lease is no longer held: no row is written (the file may exist already; it
    is content-addressed, so the new holder's identical result reuses it)."""
    stored = store_array(db.settings, array)
    with db.write() as s:
        job = _held(s, lease)
        # lock the model row before the artifact insert: the insert's foreign-key check takes a share lock on it,
        # and two finishers upgrading share locks to FOR UPDATE would deadlock (PostgreSQL)
        model = s.get(ModelRow, job.model_id, with_for_update=True)
        now = db.now(s)
        art = LabelArtifactRow(model_id=job.model_id, kind=kind, path=stored.path, sha256=stored.sha256,
                               shape=list(stored.shape), dtype=stored.dtype, size_bytes=stored.size_bytes,
                               graph_version=job.graph_version, label_set_version=job.label_set_version, created_at=now)
        s.add(art)
        s.flush()
        job.status, job.artifact_id, job.lease_holder, job.lease_expires_at = JobStatus.DONE, art.id, None, None
        job.finished_at = job.updated_at = now
        job.error = None
        s.flush()
        open_jobs = s.scalar(select(func.count()).select_from(LabelJobRow).where(
            LabelJobRow.model_id == job.model_id, LabelJobRow.status != JobStatus.DONE))
        if model is not None and open_jobs == 0 and model.state in (ModelState.QUEUED, ModelState.LABELING):
            _move(db, s, model, ModelState.READY, [], lease.worker_id)
        return ArtifactRecord.from_row(art)


def fail(db: "HubDB", lease: Lease, error: str, *, retry: bool = True) -> JobRecord:
    """Give the job back with ``error`` recorded: queued again while attempts are left (and ``retry``), else failed."""
    with db.write() as s:
        job = _held(s, lease)
        now = db.now(s)
        job.error = str(error)[:4000]
        job.status = JobStatus.QUEUED if retry and job.attempts < job.max_attempts else JobStatus.FAILED
        job.lease_holder, job.lease_expires_at, job.updated_at = None, None, now
        if job.status == JobStatus.FAILED:
            db.audit(s, lease.worker_id, "job.failed", job.model_id, job=job.id, attempts=job.attempts, error=job.error)
        s.flush()
        return JobRecord.from_row(job)


def list_jobs(db: "HubDB", *, model_id: str | None = None, status: JobStatus | str | None = None) -> list[JobRecord]:
    with db.session() as s:
        q = select(LabelJobRow).order_by(LabelJobRow.id)
        if model_id is not None:
            q = q.where(LabelJobRow.model_id == model_id)
        if status is not None:
            q = q.where(LabelJobRow.status == JobStatus(status))
        return [JobRecord.from_row(r) for r in s.scalars(q)]


def node_coverage(db: "HubDB", graph_version: str, *, model_ids: Sequence[str] | None = None
                  ) -> dict[str, tuple[int, int]]:
    """Per model with jobs on ``graph_version``: (nodes in done jobs, nodes in all its jobs), in one grouped query
    (``json_array_length`` of the jobs' node lists, on SQLite and PostgreSQL alike); ``model_ids`` narrows it."""
    from sqlalchemy import case

    n = func.json_array_length(LabelJobRow.nodes)
    with db.session() as s:
        q = (select(LabelJobRow.model_id, func.sum(case((LabelJobRow.status == JobStatus.DONE, n), else_=0)),
                    func.sum(n))
             .where(LabelJobRow.graph_version == graph_version).group_by(LabelJobRow.model_id))
        if model_ids is not None:
            q = q.where(LabelJobRow.model_id.in_(list(model_ids)))
        return {mid: (int(done or 0), int(total or 0)) for mid, done, total in s.execute(q)}


def done_graph_versions(db: "HubDB") -> dict[str, set[str]]:
    """Per model, the graph versions it has finished label jobs on (one grouped query)."""
    with db.session() as s:
        q = (select(LabelJobRow.model_id, LabelJobRow.graph_version).where(LabelJobRow.status == JobStatus.DONE)
             .group_by(LabelJobRow.model_id, LabelJobRow.graph_version))
        out: dict[str, set[str]] = {}
        for mid, version in s.execute(q):
            out.setdefault(mid, set()).add(version)
        return out


def job_counts(db: "HubDB", *, model_id: str | None = None, graph_version: str | None = None) -> dict[str, int]:
    """Number of jobs per status (every status present, zeros included), of one model and/or graph version."""
    with db.session() as s:
        q = select(LabelJobRow.status, func.count()).group_by(LabelJobRow.status)
        if model_id is not None:
            q = q.where(LabelJobRow.model_id == model_id)
        if graph_version is not None:
            q = q.where(LabelJobRow.graph_version == graph_version)
        got = {JobStatus(st).value: n for st, n in s.execute(q)}
    return {st.value: got.get(st.value, 0) for st in JobStatus}


def job_progress(db: "HubDB") -> JobProgress:
    """Label-job progress (a pure read, two grouped queries): per model x graph version the jobs per status, per
    worker holding an unexpired lease its jobs, models, latest heartbeat and lease expiry, and the hub's totals.

    ``vlmhub db jobs``, ``GET /v1/jobs`` and the "labeling now" box of the web catalog show this."""
    status = LabelJobRow.status
    with db.session() as s:
        now = db.now(s)
        live = LabelJobRow.lease_expires_at >= now
        n = lambda cond: func.coalesce(func.sum(case((cond, 1), else_=0)), 0)  # noqa: E731
        per_model = (select(LabelJobRow.model_id, LabelJobRow.graph_version, n(status == JobStatus.QUEUED),
                            n(status == JobStatus.LEASED), n(status == JobStatus.DONE), n(status == JobStatus.FAILED),
                            n(and_(status == JobStatus.LEASED, LabelJobRow.lease_expires_at < now)))
                     .group_by(LabelJobRow.model_id, LabelJobRow.graph_version)
                     .order_by(LabelJobRow.model_id, LabelJobRow.graph_version))
        models = tuple(ModelProgress(mid, gv, StatusCounts(*(int(v) for v in counts)))
                       for mid, gv, *counts in s.execute(per_model))
        per_holder = (select(LabelJobRow.lease_holder, LabelJobRow.model_id, func.count(),
                             func.max(LabelJobRow.updated_at), func.max(LabelJobRow.lease_expires_at))
                      .where(status == JobStatus.LEASED, LabelJobRow.lease_holder.is_not(None), live)
                      .group_by(LabelJobRow.lease_holder, LabelJobRow.model_id)
                      .order_by(LabelJobRow.lease_holder, LabelJobRow.model_id))
        held: dict[str, list] = {}
        for holder, mid, jobs, beat, expires in s.execute(per_holder):
            w = held.setdefault(holder, [0, [], beat, expires])
            w[0] += int(jobs)
            w[1].append(mid)
            w[2], w[3] = max(w[2], beat), max(w[3], expires)
    workers = tuple(ActiveWorker(h, jobs, tuple(mids), beat, expires) for h, (jobs, mids, beat, expires) in held.items())
    total = sum((m.counts for m in models), StatusCounts())
    return JobProgress(models, workers, total)


def run_worker(db: "HubDB", worker_id: str, compute: Callable[[Lease], np.ndarray], *, lease_s: float = 60.0,
               heartbeat_s: float | None = None, poll_s: float = 1.0, idle_exit: bool = True,
               max_jobs: int | None = None, stop: threading.Event | None = None) -> WorkerStats:
    """Claim, compute and finish jobs until none is left (``idle_exit``), ``max_jobs`` are done or ``stop`` is set.

    ``compute(lease)`` returns the shard's array; while it runs a thread renews the lease every ``heartbeat_s``
    seconds (default a third of ``lease_s``). An exception from ``compute`` fails the job with its message (retried
    while attempts are left); a lost lease drops the result. The body of ``vlmhub worker``.
    """
    stop = stop or threading.Event()
    beat = heartbeat_s if heartbeat_s is not None else lease_s / 3
    claimed = finished = failed = lost = 0
    while not stop.is_set() and (max_jobs is None or claimed < max_jobs):
        lease = claim(db, worker_id, lease_s)
        if lease is None:
            if idle_exit:
                break
            stop.wait(poll_s)
            continue
        claimed += 1
        done = threading.Event()
        holder = {"lease": lease, "lost": False}

        def _beat() -> None:
            while not done.wait(beat):
                try:
                    holder["lease"] = heartbeat(db, holder["lease"], lease_s)
                except LeaseLostError:
                    holder["lost"] = True
                    return
                except VlmhubError:  # database briefly unreachable: try again at the next beat
                    continue

        t = threading.Thread(target=_beat, name=f"heartbeat-{lease.job_id}", daemon=True)
        t.start()
        try:
            try:
                result = compute(lease)
            finally:
                done.set()
                t.join()
            finish(db, holder["lease"], result)
            finished += 1
        except LeaseLostError:
            lost += 1
        except Exception as exc:  # noqa: BLE001 - any failure of the model code fails the job, not the worker
            try:
                fail(db, holder["lease"], f"{type(exc).__name__}: {exc}")
                failed += 1
            except LeaseLostError:
                lost += 1
    return WorkerStats(claimed, finished, failed, lost)
