"""Alembic environment of the hub database: runs on the connection :func:`vlmhub.hubdb.migrate.alembic_config`
hands over (inside the caller's transaction); offline SQL generation is not supported."""

from __future__ import annotations

from alembic import context

from vlmhub.hubdb.schema import Base

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError("vlmhub migrations run only through vlmhub.hubdb (e.g. `vlmhub db upgrade`), with a connection")

context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
