"""Engine, sessions and schema upgrades of one hub database (:class:`HubDB`).

>>> from vlmhub.hubdb import HubDB
>>> with HubDB(settings) as db:            # creates / upgrades the schema on first use of a new home
...     with db.write() as s:              # one short write transaction (BEGIN IMMEDIATE on SQLite)
...         db.audit(s, "alice", "model.approve", "my-clip")

Backends: the URL is ``settings.db_url`` — ``VLMHUB_DATABASE_URL`` or the SQLite file ``<home>/hub.db``.
SQLite connections get WAL mode, foreign keys, ``synchronous=NORMAL`` and a 30 s busy timeout on connect;
transactions are explicit (``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for :meth:`HubDB.write`), so a writer takes
the database's write lock up front instead of failing on lock upgrade. ``postgresql://`` URLs use psycopg 3.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from . import _deps  # noqa: F401
from .tokencache import VerifiedTokens

from sqlalchemy import create_engine, event, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import DatabaseError, missing_extra
from ..settings import Settings, get_settings
from .schema import AuditRow, MetaRow, utcnow

__all__ = ["HubDB", "UpgradeReport", "upgrade", "redacted_url", "database_exists", "open_existing"]

_SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=30000",
                   "PRAGMA synchronous=NORMAL")


def redacted_url(url: str) -> str:
    """``url`` with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _normalise_url(url: str):
    try:
        u = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"the hub database URL {url!r} is not a SQLAlchemy URL. Set VLMHUB_DATABASE_URL to e.g. "
            "sqlite:////path/hub.db or postgresql+psycopg://user@host/dbname."
        ) from None
    backend = u.get_backend_name()
    if backend == "postgresql":
        if u.drivername == "postgresql":
            u = u.set(drivername="postgresql+psycopg")
        try:
            import psycopg  # noqa: F401
        except ModuleNotFoundError:
            raise missing_extra("psycopg", "postgres", "a PostgreSQL hub database") from None
    elif backend != "sqlite":
        raise DatabaseError(f"the hub database {redacted_url(url)} uses {backend!r}; vlmhub supports sqlite and postgresql. "
                            "Set VLMHUB_DATABASE_URL to a sqlite:/// or postgresql+psycopg:// URL.")
    return u


@dataclass(frozen=True)
class UpgradeReport:
    """What :meth:`HubDB.upgrade` did: the schema revisions before and after, and the JSON-home import (if it ran)."""

    url: str
    from_revision: str | None
    to_revision: str
    imported: Any | None = None  # an importer.ImportReport when this upgrade imported the JSON home

    def to_dict(self) -> dict:
        return {"url": self.url, "from_revision": self.from_revision, "to_revision": self.to_revision,
                "imported": self.imported.to_dict() if self.imported is not None else None}


class HubDB:
    """One hub database: an engine, read and write sessions, schema upgrades. Close it (or use ``with``).

    ``auto_upgrade`` (default) brings the schema to the newest revision on open, which creates it in a new home
    and imports an existing JSON home (models.json, labels/, graphs/) the first time.
    """

    def __init__(self, settings: Settings | None = None, *, url: str | None = None, auto_upgrade: bool = True,
                 echo: bool = False):
        self.settings = settings or get_settings()
        u = _normalise_url(url or self.settings.db_url)
        self.url = u.render_as_string(hide_password=False)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite" and u.database and u.database != ":memory:":
            Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kw: dict[str, Any] = {"echo": echo, "future": True}
        if self.dialect == "sqlite":
            kw["connect_args"] = {"timeout": 30}
        else:
            kw["pool_pre_ping"] = True
        self.engine: Engine = create_engine(u, **kw)
        if self.dialect == "sqlite":
            _install_sqlite_events(self.engine)
        self._immediate = self.engine.execution_options(vlmhub_immediate=True)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(self._immediate, expire_on_commit=False)
        #: secrets this process has verified, by token id (an HMAC under a per-process key, never the secret):
        #: a repeated request skips the scrypt check; the row is still read each time (revocation, expiry)
        self.verified_tokens = VerifiedTokens()
        if auto_upgrade:
            try:
                from .migrate import current_revision, head_revision

                with self._guard():
                    stale = current_revision(self.engine) != head_revision()
                if stale:
                    self.upgrade()
            except BaseException:
                self.engine.dispose()
                raise

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> "HubDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HubDB({redacted_url(self.url)})"

    # -- sessions --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session for reads (and small writes); committed when the block ends, rolled back on an error."""
        with self._guard(), self._sessions() as s, s.begin():
            yield s

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A short write transaction: ``BEGIN IMMEDIATE`` on SQLite (the write lock is taken at the start, waiting up
        to the busy timeout), a plain transaction on PostgreSQL (use ``FOR UPDATE`` for row locks)."""
        with self._guard(), self._write_sessions() as s, s.begin():
            yield s

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise DatabaseError(
                f"the hub database {redacted_url(self.url)} failed: {str(exc.orig or exc).strip().splitlines()[0]}. "
                "Check that it is reachable and writable (VLMHUB_DATABASE_URL), then retry."
            ) from exc

    def now(self, session: Session) -> datetime:
        """The current UTC time: PostgreSQL's clock on a shared hub (one clock for every worker), else this host's."""
        if self.dialect == "postgresql":
            return session.execute(select(func.now())).scalar_one().astimezone(utcnow().tzinfo)
        return utcnow()

    # -- helpers ---------------------------------------------------------------------------------
    @staticmethod
    def audit(session: Session, actor: str | None, action: str, target: str, **detail: Any) -> None:
        """Append an audit-log entry (in the caller's transaction, so it commits with the change it records)."""
        session.add(AuditRow(at=utcnow(), actor=actor, action=action, target=str(target)[:200], detail=detail))

    @staticmethod
    def get_meta(session: Session, key: str) -> dict | None:
        row = session.get(MetaRow, key)
        return None if row is None else dict(row.value)

    @staticmethod
    def set_meta(session: Session, key: str, value: dict) -> None:
        row = session.get(MetaRow, key)
        if row is None:
            session.add(MetaRow(key=key, value=value))
        else:
            row.value = value

    def upgrade(self, revision: str = "head") -> UpgradeReport:
        """Migrate the schema to ``revision`` (default the newest) under a lock, then import the JSON home once."""
        from .migrate import run_upgrade

        with self._guard():
            before, after = run_upgrade(self, revision)
        imported = None
        from .importer import import_json_home

        with self.write() as s:
            done = self.get_meta(s, "json_import") is not None
        if not done:
            imported = import_json_home(self)
        return UpgradeReport(redacted_url(self.url), before, after, imported)


def _install_sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # transactions are begun explicitly below
        cur = dbapi_conn.cursor()
        for pragma in _SQLITE_PRAGMAS:
            cur.execute(pragma)
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("vlmhub_immediate") else "BEGIN")


def upgrade(settings: Settings | None = None, *, url: str | None = None, revision: str = "head") -> UpgradeReport:
    """Bring the hub database of ``settings`` to ``revision`` (``vlmhub db upgrade``); imports a JSON home once."""
    with HubDB(settings, url=url, auto_upgrade=False) as db:
        return db.upgrade(revision)


def database_exists(settings: Settings) -> bool:
    """Whether the hub database of ``settings`` exists already: a PostgreSQL URL (the server holds it), or a SQLite
    file that is there (``<home>/hub.db`` by default). Read-only pages and commands check this instead of creating
    a database by opening it."""
    u = _normalise_url(settings.db_url)
    if u.get_backend_name() != "sqlite":
        return True
    return not u.database or u.database == ":memory:" or Path(u.database).expanduser().is_file()


def open_existing(settings: Settings) -> HubDB:
    """The hub database of ``settings`` when it exists (:func:`database_exists`), else a
    :class:`~vlmhub.errors.DatabaseError` that says to create it with ``vlmhub db upgrade``."""
    if not database_exists(settings):
        raise DatabaseError(f"the hub home {settings.home} has no hub database ({redacted_url(settings.db_url)}). "
                            "Create it with `vlmhub db upgrade` (it imports the home's models and labels), or point "
                            "VLMHUB_DATABASE_URL / --home at the hub that has one.")
    return HubDB(settings)
