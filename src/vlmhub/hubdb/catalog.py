"""The catalog in the database: model rows with their state machine, and submissions (who uploaded what).

States (``schema.MODEL_TRANSITIONS``)::

    submitted -> checking -> queued -> labeling -> ready
         \\__________\\_________\\_________\\________\\-> rejected (failed checks, withdrawn, or an admin)

:func:`set_model_state` refuses any other move with a :class:`~vlmhub.errors.StateError`. The label-job
functions (:mod:`.jobs`) move ``queued -> labeling`` on the first claim and ``-> ready`` when the last job is done.
Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from . import _deps  # noqa: F401

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import ConfigError, ConflictError, NotFoundError, PermissionDenied, StateError, UnknownModelError
from .auth import Principal, ensure_user
from .schema import MODEL_TRANSITIONS, ModelRow, ModelState, Role, SubmissionRow, SubmissionStatus, UserRow, utcnow

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["ModelRecord", "SubmissionRecord", "add_model", "get_model", "list_models", "set_model_state", "update_model_spec",
           "delete_model", "create_submission", "get_submission", "list_submissions", "withdraw_submission",
           "MODEL_ID_RE"]

MODEL_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")  # the same rule as `vlmhub models add --id`


@dataclass(frozen=True)
class ModelRecord:
    """A catalog row. ``owner`` is the submitting user's name (``None`` for built-in and imported models)."""

    id: str
    source: str
    spec: dict
    architecture: str | None
    params_m: float | None
    gflops: float | None
    licence: str | None
    owner: str | None
    state: ModelState
    reasons: tuple[str, ...]
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict:
        return {"id": self.id, "source": self.source, "spec": self.spec, "architecture": self.architecture,
                "params_m": self.params_m, "gflops": self.gflops, "licence": self.licence, "owner": self.owner,
                "state": self.state.value, "reasons": list(self.reasons), "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class SubmissionRecord:
    id: int
    model_id: str
    submitter: str | None
    package_sha256: str
    package_path: str | None
    package_bytes: int
    details: dict
    status: SubmissionStatus
    created_at: datetime
    withdrawn_at: datetime | None

    def to_dict(self) -> dict:
        return {"id": self.id, "model_id": self.model_id, "submitter": self.submitter,
                "package_sha256": self.package_sha256, "package_bytes": self.package_bytes, "details": self.details,
                "status": self.status.value, "created_at": self.created_at.isoformat(),
                "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None}


def _user_name(session: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    u = session.get(UserRow, user_id)
    return u.name if u is not None else None


def _model(session: Session, row: ModelRow) -> ModelRecord:
    return ModelRecord(row.id, row.source, dict(row.spec), row.architecture, row.params_m, row.gflops, row.licence,
                       _user_name(session, row.owner_id), row.state, tuple(row.reasons or ()), row.created_at,
                       row.updated_at)


def _submission(session: Session, row: SubmissionRow) -> SubmissionRecord:
    return SubmissionRecord(row.id, row.model_id, _user_name(session, row.submitter_id), row.package_sha256,
                            row.package_path, row.package_bytes, dict(row.details), row.status, row.created_at,
                            row.withdrawn_at)


def _check_id(model_id: str) -> None:
    if not isinstance(model_id, str) or not MODEL_ID_RE.match(model_id):
        raise ConfigError(f"invalid model id {model_id!r}: use 1-100 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit.")


def _insert_model(session: Session, model_id: str, source: str, spec: dict, *, architecture: str | None,
                  params_m: float | None, gflops: float | None, licence: str | None, owner_id: int | None,
                  state: ModelState, reasons: Sequence[str] = ()) -> ModelRow:
    _check_id(model_id)
    if session.get(ModelRow, model_id) is not None:
        raise ConflictError(f"a model with id {model_id!r} is already in the catalog. Pick another id.")
    now = utcnow()
    row = ModelRow(id=model_id, source=str(source), spec=dict(spec), architecture=architecture, params_m=params_m,
                   gflops=gflops, licence=licence, owner_id=owner_id, state=ModelState(state),
                   reasons=[str(r) for r in reasons], created_at=now, updated_at=now)
    session.add(row)
    session.flush()
    return row


def add_model(db: "HubDB", model_id: str, source: str, spec: dict, *, architecture: str | None = None,
              params_m: float | None = None, gflops: float | None = None, licence: str | None = None,
              owner: str | None = None, state: ModelState | str = ModelState.SUBMITTED,
              actor: str | None = None) -> ModelRecord:
    """Insert a model row (a :class:`ConflictError` if the id exists); ``owner`` is a user name, created if new."""
    with db.write() as s:
        owner_id = ensure_user(s, owner).id if owner is not None else None
        row = _insert_model(s, model_id, source, spec, architecture=architecture, params_m=params_m, gflops=gflops,
                            licence=licence, owner_id=owner_id, state=ModelState(state))
        db.audit(s, actor, "model.add", model_id, source=str(source), state=row.state.value)
        return _model(s, row)


def get_model(db: "HubDB", model_id: str) -> ModelRecord:
    with db.session() as s:
        row = s.get(ModelRow, model_id)
        if row is None:
            raise UnknownModelError(f"no model {model_id!r} in the hub database. Run `vlmhub models list`.")
        return _model(s, row)


def list_models(db: "HubDB", *, state: ModelState | str | None = None, owner: str | None = None) -> list[ModelRecord]:
    """Catalog rows by id, optionally only those in ``state`` or owned by ``owner``."""
    with db.session() as s:
        q = select(ModelRow).order_by(ModelRow.id)
        if state is not None:
            q = q.where(ModelRow.state == ModelState(state))
        if owner is not None:
            q = q.join(UserRow, ModelRow.owner_id == UserRow.id).where(UserRow.name == owner)
        return [_model(s, r) for r in s.scalars(q)]


def _move(db: "HubDB", s: Session, row: ModelRow, state: ModelState, reasons: Sequence[str] | None, actor: str | None) -> None:
    if state != row.state and state not in MODEL_TRANSITIONS[row.state]:
        allowed = ", ".join(sorted(t.value for t in MODEL_TRANSITIONS[row.state]))
        raise StateError(f"model {row.id!r} is {row.state.value} and cannot become {state.value} (from "
                         f"{row.state.value} it can become: {allowed}).")
    before = row.state
    row.state = state
    if reasons is not None:
        row.reasons = [str(r) for r in reasons]
    row.updated_at = utcnow()
    db.audit(s, actor, "model.state", row.id, before=before.value, after=state.value, reasons=list(row.reasons))


def set_model_state(db: "HubDB", model_id: str, state: ModelState | str, *, reasons: Sequence[str] | None = None,
                    actor: str | None = None, expect: ModelState | str | None = None) -> ModelRecord:
    """Move a model to ``state`` (checked against ``MODEL_TRANSITIONS``), replacing its reasons when given.

    ``expect`` makes the move a compare-and-set: it happens only if the model is in state ``expect`` when its row
    is locked, else :class:`StateError` and nothing is written. Workers claim a submission this way
    (``submitted -> checking``), so of two workers reading the same ``submitted`` row exactly one checks it."""
    state = ModelState(state)
    expect = ModelState(expect) if expect is not None else None
    with db.write() as s:
        row = s.get(ModelRow, model_id, with_for_update=True)
        if row is None:
            raise UnknownModelError(f"no model {model_id!r} in the hub database. Run `vlmhub models list`.")
        if expect is not None and row.state != expect:
            raise StateError(f"model {model_id!r} is {row.state.value}, not {expect.value}: another worker or an "
                             "admin moved it first; read its state again.")
        _move(db, s, row, state, reasons, actor)
        return _model(s, row)


def update_model_spec(db: "HubDB", model_id: str, spec: dict, *, params_m: float | None = None,
                      gflops: float | None = None, architecture: str | None = None, actor: str | None = None) -> ModelRecord:
    """Replace a model's spec (and the figures derived from it) once the checker has measured the model."""
    with db.write() as s:
        row = s.get(ModelRow, model_id, with_for_update=True)
        if row is None:
            raise UnknownModelError(f"no model {model_id!r} in the hub database. Run `vlmhub models list`.")
        row.spec = dict(spec)
        if params_m is not None:
            row.params_m = float(params_m)
        if gflops is not None:
            row.gflops = float(gflops)
        if architecture is not None:
            row.architecture = architecture
        row.updated_at = utcnow()
        db.audit(s, actor, "model.spec", model_id)
        return _model(s, row)


def delete_model(db: "HubDB", model_id: str, *, actor: str | None = None) -> None:
    """Delete a model row with its submissions, jobs and artifact rows (files stay; `vlmhub db check` lists them)."""
    with db.write() as s:
        row = s.get(ModelRow, model_id)
        if row is None:
            raise UnknownModelError(f"no model {model_id!r} in the hub database. Run `vlmhub models list`.")
        s.delete(row)
        db.audit(s, actor, "model.delete", model_id)


def create_submission(db: "HubDB", *, model_id: str, source: str, spec: dict, submitter: str, package_sha256: str,
                      package_bytes: int, package_path: str | None = None, details: dict[str, Any] | None = None,
                      architecture: str | None = None, params_m: float | None = None, gflops: float | None = None,
                      licence: str | None = None) -> SubmissionRecord:
    """Record an uploaded package: a new model row (state ``submitted``, owned by ``submitter``) and its submission.

    A model id already in the catalog, or a package whose sha256 an open submission already has, is a
    :class:`ConflictError`; nothing is written then.
    """
    if not re.fullmatch(r"[0-9a-f]{64}", str(package_sha256)):
        raise ConfigError(f"package_sha256 must be 64 lowercase hex digits (got {package_sha256!r}).")
    with db.write() as s:
        dup = s.scalars(select(SubmissionRow).where(SubmissionRow.package_sha256 == package_sha256,
                                                    SubmissionRow.status == SubmissionStatus.OPEN)).first()
        if dup is not None:
            raise ConflictError(f"this package (sha256 {package_sha256[:12]}...) is already submitted as model "
                                f"{dup.model_id!r} (submission {dup.id}). Withdraw that one first, or change the package.")
        user = ensure_user(s, submitter)
        _insert_model(s, model_id, source, spec, architecture=architecture, params_m=params_m, gflops=gflops,
                      licence=licence, owner_id=user.id, state=ModelState.SUBMITTED)
        row = SubmissionRow(model_id=model_id, submitter_id=user.id, package_sha256=package_sha256,
                            package_path=package_path, package_bytes=int(package_bytes), details=dict(details or {}),
                            status=SubmissionStatus.OPEN, created_at=utcnow(), withdrawn_at=None)
        s.add(row)
        s.flush()
        db.audit(s, submitter, "submission.create", model_id, submission=row.id, package_sha256=package_sha256,
                 package_bytes=int(package_bytes))
        return _submission(s, row)


def get_submission(db: "HubDB", submission_id: int) -> SubmissionRecord:
    with db.session() as s:
        row = s.get(SubmissionRow, submission_id)
        if row is None:
            raise NotFoundError(f"no submission {submission_id!r}. List yours with GET /v1/submissions.")
        return _submission(s, row)


def list_submissions(db: "HubDB", *, submitter: str | None = None) -> list[SubmissionRecord]:
    """Submissions, newest first (only ``submitter``'s when given)."""
    with db.session() as s:
        q = select(SubmissionRow).order_by(SubmissionRow.id.desc())
        if submitter is not None:
            q = q.join(UserRow, SubmissionRow.submitter_id == UserRow.id).where(UserRow.name == submitter)
        return [_submission(s, r) for r in s.scalars(q)]


def withdraw_submission(db: "HubDB", submission_id: int, principal: Principal) -> SubmissionRecord:
    """Withdraw a submission: its submitter or an admin only (else :class:`PermissionDenied`, nothing written).
    The model becomes ``rejected`` with the reason ``withdrawn by <user>``; withdrawing twice is a no-op."""
    with db.write() as s:
        row = s.get(SubmissionRow, submission_id, with_for_update=True)
        if row is None:
            raise NotFoundError(f"no submission {submission_id!r}. List yours with GET /v1/submissions.")
        owner = _user_name(s, row.submitter_id)
        if principal.role != Role.ADMIN and principal.user != owner:
            raise PermissionDenied(f"submission {submission_id} belongs to another user; only its submitter or an admin "
                                   "can withdraw it.")
        if row.status == SubmissionStatus.OPEN:
            row.status = SubmissionStatus.WITHDRAWN
            row.withdrawn_at = utcnow()
            model = s.get(ModelRow, row.model_id, with_for_update=True)
            if model is not None and model.state != ModelState.REJECTED:
                _move(db, s, model, ModelState.REJECTED, [f"withdrawn by {principal.user}"], principal.user)
            db.audit(s, principal.user, "submission.withdraw", row.model_id, submission=row.id)
        return _submission(s, row)
