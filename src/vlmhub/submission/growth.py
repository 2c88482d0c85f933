"""Growing the semantic graph of a hub with a database (the paper: "concepts ... can be continually added").

::

    report = grow_graph(db, settings, ["color-samples", "/data/new-concepts"])   # what `vlmhub db grow` runs
    process(db, settings, "worker-1")                                             # label, publish, promote

:func:`grow_graph` builds the graph of the given concept-sample sets (the current graph's sets and the new
ones), checks that it only adds (every node of the current graph is still there), stores it beside the
current one without making it current, records it in the database as grown from the current version, and
enqueues, for every ready model, label jobs over the **changed** nodes only: new nodes and nodes whose sample
images changed (an ancestor's images are drawn from its descendants). Those jobs embed only the images and
captions the current graph lacks (:func:`~vlmhub.submission.workflow.shard_refs` with a base), so nothing
already labeled is computed again. Workers then label, publish and, once every ready model is labeled on the
grown graph, make it the home's current graph; until then selection keeps using the current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import ConfigError
from ..settings import Settings
from .workflow import WorkflowConfig, changed_nodes

if TYPE_CHECKING:
    from ..hubdb.engine import HubDB

__all__ = ["GrowthReport", "grow_graph"]


@dataclass(frozen=True)
class GrowthReport:
    """What :func:`grow_graph` did: the versions, how many nodes are new or changed, the jobs it added."""

    base_version: str
    version: str
    nodes: int
    new_nodes: tuple[str, ...]
    changed_nodes: tuple[str, ...]
    new_images: int
    models: tuple[str, ...]
    jobs: int

    def to_dict(self) -> dict:
        return {"base_version": self.base_version, "version": self.version, "nodes": self.nodes,
                "new_nodes": list(self.new_nodes), "changed_nodes": list(self.changed_nodes),
                "new_images": self.new_images, "models": list(self.models), "jobs": self.jobs}


def grow_graph(db: "HubDB", settings: Settings, sample_sets: Sequence[str | Path], *, max_images: int | None = None,
               config: WorkflowConfig | None = None, actor: str | None = None) -> GrowthReport:
    """Grow the current graph to the graph of ``sample_sets`` and enqueue the labels it needs (module docstring).

    ``sample_sets`` must include the current graph's own sets (growth only adds); ``max_images`` defaults to the
    current graph's. Nothing is written when the sets drop a node of the current graph. Growing to the current
    graph itself is a no-op report (``jobs == 0``)."""
    from ..concepts.graph import build_graph, current_graph, save_graph
    from ..concepts.samples import resolve_sample_set, scan_sample_set
    from ..hubdb.catalog import list_models
    from ..hubdb.graphs import register_graph
    from ..hubdb.jobs import enqueue_label_jobs, shard_nodes

    config = config or WorkflowConfig()
    if isinstance(sample_sets, (str, Path)) or not sample_sets:
        raise ConfigError("give the concept-sample sets of the grown graph as a list: the current graph's sets and "
                          "the new ones (e.g. --sample-set OLD --sample-set NEW).")
    base = current_graph(settings)
    graph = build_graph([scan_sample_set(resolve_sample_set(s, settings)) for s in sample_sets], settings,
                        max_images=base.max_images if max_images is None else max_images)
    dropped = sorted({n.id for n in base.nodes} - {n.id for n in graph.nodes})
    if dropped:
        raise ConfigError(f"the grown graph would drop {len(dropped)} node(s) of the current graph (e.g. {dropped[:3]}): "
                          f"growth only adds. Pass the current graph's sets too ({', '.join(base.sample_sets)}).")
    changed = changed_nodes(base, graph)
    old_ids = {n.id for n in base.nodes}
    new_ids = tuple(v for v in changed if v not in old_ids)
    new_images = len(set(graph.image_ids()) - set(base.image_ids()))
    if graph.version == base.version or not changed:
        return GrowthReport(base.version, base.version, len(base.nodes), (), (), 0, (), 0)
    path = save_graph(graph, settings, make_current=False)
    register_graph(db, graph.version, path, nodes=len(graph.nodes), images=len(graph.image_ids()), base=base.version,
                   actor=actor)
    shards = shard_nodes(changed, config.nodes_per_shard)
    models, jobs = [], 0
    for state in ("ready", "queued", "labeling"):  # models being labeled on the base get the growth jobs too
        for m in list_models(db, state=state):
            added = enqueue_label_jobs(db, m.id, shards, graph_version=graph.version, actor=actor)
            if added:
                models.append(m.id)
                jobs += len(added)
    return GrowthReport(base.version, graph.version, len(graph.nodes), new_ids, tuple(changed), new_images,
                        tuple(models), jobs)
