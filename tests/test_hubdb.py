"""The hub database foundation on SQLite and a real PostgreSQL: schema, migrations, sessions, audit log."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

sa = pytest.importorskip("sqlalchemy")


@pytest.fixture
def db(settings, db_url):
    from vlmhub.hubdb import HubDB

    with HubDB(settings.with_(database_url=db_url)) as hub_db:
        yield hub_db


def test_new_home_gets_the_schema_on_first_use(db, settings):
    from vlmhub.hubdb.migrate import current_revision, head_revision

    names = set(sa.inspect(db.engine).get_table_names())
    assert {"models", "submissions", "label_jobs", "label_artifacts", "users", "tokens", "audit_log",
            "graph_versions", "hub_meta"} <= names
    assert current_revision(db.engine) == head_revision()
    if db.dialect == "sqlite":
        assert (settings.home / "hub.db").is_file()
        with db.session() as s:
            assert s.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
            assert s.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert s.execute(sa.text("PRAGMA busy_timeout")).scalar() == 30000
    else:
        assert db.dialect == "postgresql"
        assert not (settings.home / "hub.db").exists()


def test_migrations_create_exactly_the_orm_schema(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from vlmhub.hubdb.schema import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_upgrade_is_idempotent_and_reports_revisions(settings, db_url):
    from vlmhub.hubdb import upgrade
    from vlmhub.hubdb.migrate import head_revision

    s = settings.with_(database_url=db_url)
    first = upgrade(s)
    assert first.from_revision is None and first.to_revision == head_revision()
    assert first.imported is not None  # the JSON-home import ran once (an empty home here)
    again = upgrade(s)
    assert again.from_revision == again.to_revision == head_revision() and again.imported is None


def test_audit_log_is_append_only(db):
    from vlmhub.hubdb.schema import AuditRow

    with db.write() as s:
        db.audit(s, "alice", "token.create", "bob", role="reader")
    for stmt in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            with db.write() as s:
                s.execute(sa.text(stmt))
    with db.session() as s:
        rows = s.scalars(sa.select(AuditRow)).all()
    assert [(r.actor, r.action, r.target, r.detail) for r in rows] == [("alice", "token.create", "bob", {"role": "reader"})]


def test_timestamps_round_trip_as_utc(db):
    from vlmhub.hubdb.schema import AuditRow, MetaRow

    t = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with db.write() as s:
        s.add(AuditRow(at=t, actor=None, action="x", target="y", detail={}))
        s.add(MetaRow(key="k", value={"a": [1, 2]}))
    with db.session() as s:
        at = s.scalars(sa.select(AuditRow.at)).one()
        assert at == t and at.tzinfo == timezone.utc
        assert db.get_meta(s, "k") == {"a": [1, 2]}
        now = db.now(s)
    assert abs((now - datetime.now(timezone.utc)).total_seconds()) < 60
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        with db.write() as s:
            s.add(AuditRow(at=datetime(2026, 1, 1), actor=None, action="x", target="y", detail={}))


def test_unknown_backend_and_bad_url_are_config_errors(settings):
    from vlmhub.errors import DatabaseError
    from vlmhub.hubdb import HubDB

    with pytest.raises(DatabaseError, match="supports sqlite and postgresql"):
        HubDB(settings.with_(database_url="mysql://u@h/db"))
    with pytest.raises(DatabaseError, match="not a SQLAlchemy URL"):
        HubDB(settings.with_(database_url="not a url"))


def test_unreachable_postgres_is_a_database_error(settings, tmp_path):
    from vlmhub.errors import DatabaseError
    from vlmhub.hubdb import HubDB

    url = f"postgresql+psycopg://postgres:secret@/nodb?host={tmp_path}&connect_timeout=2"
    with pytest.raises(DatabaseError) as info:
        HubDB(settings.with_(database_url=url))
    assert "secret" not in str(info.value) and "VLMHUB_DATABASE_URL" in str(info.value)


def test_missing_sqlalchemy_names_the_pip_install():
    code = ("import sys; sys.modules['sqlalchemy'] = None\n"
            "try:\n import vlmhub.hubdb.engine\nexcept ImportError as e: print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "MissingExtraError" in out and "pip install 'vlmhub[db]'" in out
