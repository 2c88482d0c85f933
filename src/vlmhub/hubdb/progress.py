"""Label-job progress records (what :func:`vlmhub.hubdb.jobs.job_progress` returns), in a module of their own that
needs no SQLAlchemy: a service without a hub database still answers ``GET /v1/jobs`` with an empty
:class:`JobProgress`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["StatusCounts", "ModelProgress", "ActiveWorker", "JobProgress"]


def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


@dataclass(frozen=True)
class StatusCounts:
    """Label jobs per status; ``expired`` counts the ``leased`` ones whose lease ran out (worker killed or hung:
    claimable again), so ``leased - expired`` jobs are being computed right now."""

    queued: int = 0
    leased: int = 0
    done: int = 0
    failed: int = 0
    expired: int = 0

    @property
    def total(self) -> int:
        return self.queued + self.leased + self.done + self.failed

    @property
    def fraction(self) -> float:
        """``done / total`` (0.0 without jobs)."""
        return self.done / self.total if self.total else 0.0

    @property
    def open(self) -> int:
        """Jobs still to compute: queued or leased."""
        return self.queued + self.leased

    def __add__(self, other: "StatusCounts") -> "StatusCounts":
        return StatusCounts(self.queued + other.queued, self.leased + other.leased, self.done + other.done,
                            self.failed + other.failed, self.expired + other.expired)

    def to_dict(self) -> dict:
        return {"queued": self.queued, "leased": self.leased, "done": self.done, "failed": self.failed,
                "expired": self.expired, "total": self.total, "fraction": self.fraction}


@dataclass(frozen=True)
class ModelProgress:
    """The label jobs of one model on one graph version (all label-set versions together)."""

    model_id: str
    graph_version: str
    counts: StatusCounts

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "graph_version": self.graph_version, **self.counts.to_dict()}


@dataclass(frozen=True)
class ActiveWorker:
    """A lease holder with at least one unexpired lease: how many jobs it holds, of which models, when it last
    claimed or heartbeat one (``last_heartbeat``) and when its latest lease runs out."""

    worker_id: str
    jobs: int
    models: tuple[str, ...]
    last_heartbeat: datetime
    lease_expires_at: datetime

    def to_dict(self) -> dict:
        return {"worker_id": self.worker_id, "jobs": self.jobs, "models": list(self.models),
                "last_heartbeat": _iso(self.last_heartbeat), "lease_expires_at": _iso(self.lease_expires_at)}


@dataclass(frozen=True)
class JobProgress:
    """Label-job progress of the whole hub (:func:`job_progress`): per model x graph version, the active workers,
    and the hub-wide counts."""

    models: tuple[ModelProgress, ...] = ()
    workers: tuple[ActiveWorker, ...] = ()
    total: StatusCounts = field(default_factory=StatusCounts)

    @property
    def active(self) -> bool:
        """Whether any job is queued or leased (a worker has something to do)."""
        return self.total.open > 0

    @property
    def labeling(self) -> tuple[ModelProgress, ...]:
        """The models with queued or leased jobs (being labeled now)."""
        return tuple(m for m in self.models if m.counts.open > 0)

    def to_dict(self) -> dict:
        return {"active": self.active, "total": self.total.to_dict(), "models": [m.to_dict() for m in self.models],
                "workers": [w.to_dict() for w in self.workers]}
