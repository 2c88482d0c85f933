"""Graph versions in the hub database: which version grew from which, and which is current.

The graph files themselves stay in the home (``graphs/<version>.json``, written atomically by
:func:`vlmhub.concepts.graph.save_graph`; ``graphs/current.json`` is the pointer every reader follows). A row
here records a version after its file is in place, with its checksum and, for a grown graph, the version it
grew from (``base_version``). A grown version is *pending* while its base is current; the worker makes it
current once every ready model is labeled on it (:func:`vlmhub.submission.workflow.work_once`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from .schema import GraphVersionRow

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["register_graph", "graph_base", "pending_graphs", "mark_current"]


def register_graph(db: "HubDB", version: str, path: Path, *, nodes: int, images: int, base: str | None = None,
                   actor: str | None = None) -> bool:
    """Record the graph version whose file is ``path`` (already written); False if it was recorded before."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    with db.write() as s:
        if s.get(GraphVersionRow, version) is not None:
            return False
        s.add(GraphVersionRow(version=version, path=str(path)[:1000], sha256=digest, nodes=int(nodes), images=int(images),
                              current=False, created_at=db.now(s), base_version=base))
        db.audit(s, actor, "graph.add", version, base=base, nodes=int(nodes), images=int(images))
    return True


def graph_base(db: "HubDB", version: str) -> str | None:
    """The version ``version`` grew from (None for a graph built from scratch, or one not recorded)."""
    with db.session() as s:
        row = s.get(GraphVersionRow, version)
        return row.base_version if row is not None else None


def pending_graphs(db: "HubDB", current: str) -> list[str]:
    """Recorded versions grown from ``current`` and not current themselves (oldest first)."""
    with db.session() as s:
        q = (select(GraphVersionRow.version).where(GraphVersionRow.base_version == current, GraphVersionRow.version != current)
             .order_by(GraphVersionRow.created_at, GraphVersionRow.version))
        return list(s.scalars(q))


def mark_current(db: "HubDB", version: str, *, actor: str | None = None) -> None:
    """Flag ``version`` as the current graph (and no other); the home's pointer file is the caller's to write."""
    with db.write() as s:
        s.execute(update(GraphVersionRow).where(GraphVersionRow.version != version).values(current=False))
        s.execute(update(GraphVersionRow).where(GraphVersionRow.version == version).values(current=True))
        db.audit(s, actor, "graph.current", version)
