"""Alembic migrations shipped inside the package, run programmatically (no alembic.ini, no dependence on the cwd).

The scripts live in ``vlmhub/hubdb/migrations/versions``; :func:`alembic_config` points Alembic there and
hands it an open connection. :func:`run_upgrade` holds the database's write lock (``BEGIN IMMEDIATE`` on SQLite,
a transaction-scoped advisory lock on PostgreSQL) for the whole upgrade, so processes that open a new home at
the same time migrate it once.

To add a revision, write ``versions/NNNN_<what>.py`` (see ``script.py.mako``) with ``down_revision`` set to the
previous head, and change :mod:`vlmhub.hubdb.schema` to match: ``tests/test_hubdb.py`` compares the migrated
database with the ORM classes on both backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import _deps  # noqa: F401

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["MIGRATIONS_DIR", "alembic_config", "head_revision", "current_revision", "run_upgrade"]

#: the Alembic script location inside the installed package
MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
_PG_LOCK_KEY = 0x766C6D68  # "vlmh": the advisory lock that serialises concurrent upgrades


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic :class:`Config` for the packaged migrations, bound to ``connection`` when given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest revision shipped with this vlmhub."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the packaged migrations have no head revision"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, ``None`` for an empty (new) database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def run_upgrade(db: "HubDB", revision: str = "head") -> tuple[str | None, str]:
    """Upgrade ``db`` to ``revision`` under its write lock; return the revisions before and after."""
    with db._immediate.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        before = MigrationContext.configure(conn).get_current_revision()
        command.upgrade(alembic_config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
    assert after is not None
    return before, after
