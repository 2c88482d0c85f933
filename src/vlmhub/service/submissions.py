"""HTTP routes of the submission stage (on the hub database; tokens as ``Authorization: Bearer <token>``).

====== ================================= ==========================================================================
POST   ``/v1/submissions``               multipart ``package`` (zip / tar.gz) [+ ``model_id``] → 201 submission (submitter)
GET    ``/v1/submissions``               the caller's submissions (an admin's: all)
GET    ``/v1/submissions/{id}``          one submission with its model's state, reasons and labeling progress
DELETE ``/v1/submissions/{id}``          withdraw (its submitter or an admin)
GET    ``/v1/hub/models``                the catalog: every model with state, source, size, licence, label coverage
                                         (:func:`vlmhub.hub.catalog_entries`; ``?q= source= state= origin=
                                         min_params= max_params= sort=`` as :class:`vlmhub.hub.CatalogQuery`;
                                         anonymous read allowed; the web catalog ``/`` shows the same entries)
GET    ``/v1/jobs``                      label-job progress: per model x graph version the jobs per status, the
                                         workers holding leases now, the hub's totals
                                         (:func:`vlmhub.hubdb.jobs.job_progress`; anonymous read allowed; never
                                         creates the database: without one, empty progress; the web catalog ``/``
                                         shows the same numbers in its "labeling now" box)
GET    ``/v1/whoami``                    the token's user and role
====== ================================= ==========================================================================

Every handler is a thin call into :mod:`vlmhub.submission.workflow` / :mod:`vlmhub.hubdb`; errors are the library's
(401 missing or bad token, 403 wrong role or not the owner, 404 unknown id, 409 duplicate, 413/422 bad package).
"""

# no `from __future__ import annotations`: FastAPI must see the parameter types (UploadFile, Header, ...)

import threading
from typing import Any, Callable, Optional

from ..settings import Settings

__all__ = ["add_submission_routes", "HubDBHandle"]


class HubDBHandle:
    """The service's hub database, opened on first use (migrating a new home) and shared by requests."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._db = None
        self._lock = threading.Lock()

    def get(self):
        with self._lock:
            if self._db is None:
                from ..hubdb import HubDB

                self._db = HubDB(self.settings)
            return self._db

    def existing(self):
        """The database if it exists already (open, or :func:`vlmhub.hubdb.engine.database_exists`), else
        ``None``: read-only pages never create one. Without the database extra there is none."""
        with self._lock:
            there = self._db is not None
        if not there:
            try:
                from ..hubdb.engine import database_exists
            except ImportError:  # SQLAlchemy is not installed (vlmhub[db]): no hub database can exist here
                return None
            there = database_exists(self.settings)
        return self.get() if there else None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _principal(db, authorization: str | None):
    from ..errors import AuthenticationError
    from ..hubdb.auth import authenticate

    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be 'Bearer <token>' (create one with "
                                  "`vlmhub token create --user NAME --role submitter`).")
    return authenticate(db, token.strip())


def _submission_view(db, sub) -> dict[str, Any]:
    from ..hubdb.catalog import get_model
    from ..hubdb.jobs import job_counts

    out = sub.to_dict()
    m = get_model(db, sub.model_id)
    counts = job_counts(db, model_id=sub.model_id)
    total = sum(counts.values())
    out["model"] = {"id": m.id, "state": m.state.value, "reasons": list(m.reasons), "params_m": m.params_m,
                    "gflops": m.gflops, "licence": m.licence}
    out["labeling"] = {"jobs": counts, "done": counts.get("done", 0), "total": total,
                       "fraction": (counts.get("done", 0) / total) if total else 0.0}
    return out


def add_submission_routes(app, settings_of: Callable[[], Settings], *, max_package_bytes: int | None = None,
                          hub_of: Callable[[], Any] | None = None) -> dict:
    """Add the submission routes to the FastAPI ``app``; returns the database handle they share. ``hub_of()``
    returns the service's :class:`~vlmhub.hub.Hub` (the catalog's models; default a hub of ``settings_of()``)."""
    from fastapi import File, Form, Header, UploadFile

    from ..errors import PackageError, PermissionDenied

    def require_role(principal, role: str):  # hubdb (SQLAlchemy) is imported on the first request, not here
        from ..hubdb.auth import require_role as _require

        return _require(principal, role)

    handle_box: dict[str, HubDBHandle] = {}

    def db():
        if "h" not in handle_box:
            handle_box["h"] = HubDBHandle(settings_of())
        return handle_box["h"].get()

    def db_if_any():
        if "h" not in handle_box:
            handle_box["h"] = HubDBHandle(settings_of())
        return handle_box["h"].existing()

    def hub():
        if hub_of is not None:
            return hub_of()
        from ..hub import Hub

        return Hub(settings_of())

    def catalog(params) -> list:
        """The catalog entries a query selects (the JSON route's and the web catalog page's one call)."""
        from ..hub import CatalogQuery, catalog_entries

        entries = catalog_entries(hub(), db_if_any())
        return CatalogQuery.from_params(params, entries).apply(entries)

    def jobs():
        """Label-job progress (the JSON route's and the web catalog's one call); empty without a database."""
        from ..hubdb.progress import JobProgress  # no SQLAlchemy needed while there is no database

        found = db_if_any()
        if found is None:
            return JobProgress()
        from ..hubdb.jobs import job_progress

        return job_progress(found)

    app.state.hub_db = db  # the web pages (service/web/submit.py) share this database handle
    app.state.hub_db_if_any = db_if_any
    app.state.hub_catalog = catalog
    app.state.hub_jobs = jobs
    app.state.max_package_bytes = max_package_bytes
    app.state.hub_settings = settings_of

    def limit() -> int:
        from .. import submission

        return max_package_bytes or submission.PackageLimits().max_bytes

    @app.post("/v1/submissions", status_code=201)
    def create_submission(package: UploadFile = File(..., description="the model package: .zip or .tar.gz"),
                          model_id: Optional[str] = Form(None, max_length=100),
                          authorization: Optional[str] = Header(None)) -> dict:
        from ..submission.workflow import WorkflowConfig, submit
        from ..submission import PackageLimits

        principal = require_role(_principal(db(), authorization), "submitter")
        cap = limit()
        data = package.file.read(cap + 1)
        if len(data) > cap:
            raise PackageError(f"the package is over the hub's upload limit of {cap} bytes.")
        sub = submit(db(), settings_of(), principal, data, model_id=model_id,
                     config=WorkflowConfig(package=PackageLimits(max_bytes=cap)))
        return _submission_view(db(), sub)

    @app.get("/v1/submissions")
    def list_submissions(authorization: Optional[str] = Header(None)) -> dict:
        from ..hubdb.catalog import list_submissions as _list

        principal = require_role(_principal(db(), authorization), "submitter")
        subs = _list(db(), submitter=None if principal.allows("admin") else principal.user)
        return {"submissions": [_submission_view(db(), s) for s in subs]}

    def _own(sub_id: int, principal):
        from ..hubdb.catalog import get_submission

        sub = get_submission(db(), sub_id)
        if not principal.allows("admin") and sub.submitter != principal.user:
            raise PermissionDenied(f"submission {sub_id} belongs to another user.")
        return sub

    @app.get("/v1/submissions/{sub_id}")
    def get_submission(sub_id: int, authorization: Optional[str] = Header(None)) -> dict:
        principal = require_role(_principal(db(), authorization), "submitter")
        return _submission_view(db(), _own(sub_id, principal))

    @app.delete("/v1/submissions/{sub_id}")
    def withdraw(sub_id: int, authorization: Optional[str] = Header(None)) -> dict:
        from ..hubdb.catalog import withdraw_submission

        principal = require_role(_principal(db(), authorization), "submitter")
        return _submission_view(db(), withdraw_submission(db(), sub_id, principal))

    @app.get("/v1/hub/models")
    def hub_models(q: Optional[str] = None, source: Optional[str] = None, state: Optional[str] = None,
                   origin: Optional[str] = None, min_params: Optional[str] = None, max_params: Optional[str] = None,
                   sort: Optional[str] = None) -> dict:
        params = {"q": q, "source": source, "state": state, "origin": origin, "min_params": min_params,
                  "max_params": max_params, "sort": sort}
        return {"models": [e.to_dict() for e in catalog(params)]}

    @app.get("/v1/jobs")
    def label_jobs() -> dict:
        return jobs().to_dict()

    @app.get("/v1/whoami")
    def whoami(authorization: Optional[str] = Header(None)) -> dict:
        p = _principal(db(), authorization)
        return {"user": p.user, "role": p.role.value} if p else {"user": None, "role": "anonymous"}

    return handle_box
