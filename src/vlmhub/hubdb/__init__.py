"""The hub database: catalog, submissions, label jobs with leases, artifacts, accounts and the audit log.

SQLAlchemy 2 + Alembic (``pip install 'vlmhub[db]'``; PostgreSQL also needs ``vlmhub[postgres]``). Importing this
package is cheap: the submodules, and SQLAlchemy with them, load on first attribute access. See docs/hub.md.
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any

__all__ = [
    "HubDB", "UpgradeReport", "upgrade",
    "ModelState", "JobStatus", "Role", "SubmissionStatus",
]

_LAZY = MappingProxyType({
    "HubDB": "engine", "UpgradeReport": "engine", "upgrade": "engine",
    "ModelState": "schema", "JobStatus": "schema", "Role": "schema", "SubmissionStatus": "schema",
})


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'vlmhub.hubdb' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
