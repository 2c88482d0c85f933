"""Import guard of the optional database extra: a missing SQLAlchemy or Alembic names the pip install."""

from __future__ import annotations

from ..errors import missing_extra

__all__ = ["require_db_extra"]


def require_db_extra() -> None:
    """Raise :class:`~vlmhub.errors.MissingExtraError` naming ``pip install 'vlmhub[db]'`` when SQLAlchemy or
    Alembic is absent (PostgreSQL additionally needs ``vlmhub[postgres]``, checked when its URL is used)."""
    for package in ("sqlalchemy", "alembic"):
        try:
            __import__(package)
        except ModuleNotFoundError as exc:
            if exc.name != package:
                raise
            raise missing_extra(package, "db", "the hub database") from None


require_db_extra()
