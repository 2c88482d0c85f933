"""The hub database schema: SQLAlchemy 2 typed ORM classes (one per table) and the state enums.

Tables::

    models           the catalog: one row per model (source, spec, metadata, owner, state, reasons)
    submissions      uploaded model packages (who, when, package checksum, withdrawn?)
    label_jobs       one model x one shard of graph nodes under a graph / label-set version, leased by workers
    label_artifacts  arrays a job produced: a file inside the home, its sha256, shape, dtype and label-set version
    graph_versions   semantic graph snapshots known to the hub (``graphs/<version>.json``)
    users, tokens    accounts and their API tokens (a salted hash only, never the token)
    audit_log        append-only record of who did what, when (UPDATE and DELETE are refused by triggers)
    hub_meta         small key/value facts about the home (e.g. when the JSON home was imported)

The schema itself is created and evolved by the Alembic migrations in ``migrations/versions``;
``tests/test_hubdb.py`` checks that the migrations and these classes agree on both backends.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Mapping

from . import _deps  # noqa: F401  (MissingExtraError naming vlmhub[db] when SQLAlchemy is absent)

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "ModelState",
    "JobStatus",
    "Role",
    "SubmissionStatus",
    "ModelRow",
    "SubmissionRow",
    "LabelJobRow",
    "LabelArtifactRow",
    "GraphVersionRow",
    "UserRow",
    "TokenRow",
    "AuditRow",
    "MetaRow",
    "MODEL_TRANSITIONS",
    "utcnow",
]


class ModelState(str, enum.Enum):
    """Where a model is in the submission stage (seed 000, section 3.2)."""

    SUBMITTED = "submitted"  # package stored, nothing run yet
    CHECKING = "checking"  # the admission checker runs in a worker
    QUEUED = "queued"  # checks passed, label jobs enqueued
    LABELING = "labeling"  # a worker holds at least one of its label jobs
    READY = "ready"  # every label job done: selectable
    REJECTED = "rejected"  # failed a check (reasons say which) or withdrawn


#: allowed state changes; anything else raises :class:`~vlmhub.errors.StateError`
MODEL_TRANSITIONS: Mapping[ModelState, frozenset[ModelState]] = MappingProxyType({
    ModelState.SUBMITTED: frozenset({ModelState.CHECKING, ModelState.REJECTED}),
    ModelState.CHECKING: frozenset({ModelState.QUEUED, ModelState.REJECTED, ModelState.SUBMITTED}),
    ModelState.QUEUED: frozenset({ModelState.LABELING, ModelState.READY, ModelState.REJECTED}),
    ModelState.LABELING: frozenset({ModelState.READY, ModelState.QUEUED, ModelState.REJECTED}),
    # a ready model is re-labeled (new graph nodes, admin re-label) through queued again
    ModelState.READY: frozenset({ModelState.QUEUED, ModelState.LABELING, ModelState.REJECTED}),
    ModelState.REJECTED: frozenset({ModelState.SUBMITTED}),
})


class JobStatus(str, enum.Enum):
    """A label job's life: queued -> leased -> done, or back to queued on failure / lease expiry, failed after
    ``max_attempts``."""

    QUEUED = "queued"
    LEASED = "leased"
    DONE = "done"
    FAILED = "failed"


class Role(str, enum.Enum):
    """Token roles, each including the ones before it: reader < submitter < admin."""

    READER = "reader"
    SUBMITTER = "submitter"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def allows(self, needed: "Role") -> bool:
        """Whether a principal with this role may do what ``needed`` may do."""
        return self.rank >= Role(needed).rank


_ROLE_RANK: Mapping[Role, int] = MappingProxyType({Role.READER: 0, Role.SUBMITTER: 1, Role.ADMIN: 2})


class SubmissionStatus(str, enum.Enum):
    OPEN = "open"
    WITHDRAWN = "withdrawn"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps naive UTC text, PostgreSQL timestamptz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the hub database; pass a timezone-aware UTC time")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A portable enum column: a VARCHAR with a CHECK constraint holding the enum *values*."""
    return Enum(cls, name=name, native_enum=False, create_constraint=True, length=16,
                values_callable=lambda e: [m.value for m in e], validate_strings=True)


class Base(DeclarativeBase):
    """Declarative base of every hub table."""

    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class TokenRow(Base):
    """An API token: ``token_id`` is the public lookup prefix; only ``salt`` and ``hash`` of the secret are kept."""

    __tablename__ = "tokens"

    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    scheme: Mapped[str] = mapped_column(String(64))  # e.g. "scrypt:n=16384,r=8,p=1"
    salt: Mapped[str] = mapped_column(String(64))  # hex
    hash: Mapped[str] = mapped_column(String(128))  # hex
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(String(200), default="")


class ModelRow(Base):
    """A model in the catalog. ``params_m`` (millions) and ``gflops`` count both towers where known."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    source: Mapped[str] = mapped_column(String(2000))
    spec: Mapped[dict[str, Any]]
    architecture: Mapped[str | None] = mapped_column(String(200))
    params_m: Mapped[float | None] = mapped_column(Float)
    gflops: Mapped[float | None] = mapped_column(Float)
    licence: Mapped[str | None] = mapped_column(String(200))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    state: Mapped[ModelState] = mapped_column(_enum(ModelState, "model_state"), index=True)
    reasons: Mapped[list[Any]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SubmissionRow(Base):
    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    submitter_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    package_sha256: Mapped[str] = mapped_column(String(64), index=True)
    package_path: Mapped[str | None] = mapped_column(String(1000))  # inside the home
    package_bytes: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]]  # submitted metadata (architecture, licence, description, ...)
    status: Mapped[SubmissionStatus] = mapped_column(_enum(SubmissionStatus, "submission_status"))
    created_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]


class LabelArtifactRow(Base):
    """An array file inside the home; the row exists only once the file is complete (see ``jobs.finish``)."""

    __tablename__ = "label_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # "label-shard" (a job's output) or "label-table-shard" (imported)
    path: Mapped[str] = mapped_column(String(1000), index=True)  # relative to the home, POSIX separators
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    shape: Mapped[list[Any]]
    dtype: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    graph_version: Mapped[str | None] = mapped_column(String(64))
    label_set_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]


class LabelJobRow(Base):
    __tablename__ = "label_jobs"
    __table_args__ = (
        UniqueConstraint("model_id", "graph_version", "label_set_version", "shard_key", name="uq_label_jobs_shard"),
        Index("ix_label_jobs_claim", "status", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    graph_version: Mapped[str] = mapped_column(String(64))
    label_set_version: Mapped[str] = mapped_column(String(64))
    shard: Mapped[int]
    shard_key: Mapped[str] = mapped_column(String(64))  # sha256 of the shard's node ids
    nodes: Mapped[list[Any]]
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus, "job_status"))
    lease_holder: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    error: Mapped[str | None] = mapped_column(Text)
    artifact_id: Mapped[int | None] = mapped_column(ForeignKey("label_artifacts.id", ondelete="SET NULL"))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class GraphVersionRow(Base):
    __tablename__ = "graph_versions"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    nodes: Mapped[int]
    images: Mapped[int]
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    #: the version this one grew from (its label jobs embed only what the base lacks); None for a built graph
    base_version: Mapped[str | None] = mapped_column(String(64), default=None)


class AuditRow(Base):
    """Append-only: the migration installs triggers that refuse UPDATE and DELETE on this table."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str | None] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]]


class MetaRow(Base):
    __tablename__ = "hub_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[dict[str, Any]]
