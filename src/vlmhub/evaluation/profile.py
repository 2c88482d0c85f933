"""Capability profiles: a model's label read back as accuracy per concept and per WordNet category.

A model's label (:mod:`vlmhub.labeling`) holds its embeddings of every sample image and every node caption of
the semantic graph, so its zero-shot accuracy on the graph's own concepts is one dot product away, with no
model run:

* **concept accuracy** of node ``v`` -- Eq. 5 with the selected set ``S`` = every concept-sample node of the
  graph (the nodes with their own images, ``Node.own``): the share of ``v``'s images the model assigns to
  ``v`` among all of them (:func:`~vlmhub.selection.fastpath.exact_node_precision`, canonical ties);
* **category** of a node -- its WordNet lexicographer file (``noun.animal``, ``noun.artifact``, ``noun.food``,
  ``noun.plant``, ...), read from ``data.noun`` (:func:`lexnames_of`);
* **category score** -- the mean concept accuracy over the category's nodes (:func:`aggregate`).

:func:`hub_profiles` profiles every labeled model of a hub; :meth:`HubProfiles.median` is the hub median per
category (the reference drawn beside a model's spider chart), :func:`largest_differences` the concepts where
a few models differ most (the compare page). Web pages and the JSON API show these numbers unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import DataError, LabelError, NotLabeledError, UnknownModelError

__all__ = ["ConceptScore", "CapabilityProfile", "HubProfiles", "aggregate", "lexnames_of", "node_categories",
           "concept_accuracy", "model_profile", "hub_profiles", "largest_differences"]


@dataclass(frozen=True)
class ConceptScore:
    """A model's accuracy on one concept-sample node of the graph."""

    id: str  # wnid
    name: str
    category: str  # lexicographer file, e.g. "noun.animal"
    accuracy: float
    images: int


@dataclass(frozen=True)
class CapabilityProfile:
    """One model's label aggregated over the graph's WordNet categories (see module doc)."""

    model_id: str
    graph_version: str
    categories: tuple[str, ...]  # sorted; the axes of the spider chart
    scores: tuple[float, ...]  # mean concept accuracy per category, same order
    concepts: tuple[ConceptScore, ...]  # graph order

    def score(self, category: str) -> float:
        return self.scores[self.categories.index(category)]

    @property
    def mean(self) -> float:
        """Mean concept accuracy over every concept (not over categories)."""
        return float(np.mean([c.accuracy for c in self.concepts])) if self.concepts else 0.0

    def strongest(self, n: int = 5) -> list[ConceptScore]:
        """The ``n`` concepts with the highest accuracy (ties in graph order)."""
        return sorted(self.concepts, key=lambda c: -c.accuracy)[:n]

    def weakest(self, n: int = 5) -> list[ConceptScore]:
        """The ``n`` concepts with the lowest accuracy (ties in graph order)."""
        return sorted(self.concepts, key=lambda c: c.accuracy)[:n]

    def to_dict(self) -> dict:
        return {"model": self.model_id, "graph_version": self.graph_version,
                "categories": [{"name": c, "score": round(s, 6)} for c, s in zip(self.categories, self.scores)],
                "concepts": [{"id": c.id, "name": c.name, "category": c.category, "accuracy": round(c.accuracy, 6),
                              "images": c.images} for c in self.concepts]}


@dataclass(frozen=True)
class HubProfiles:
    """Profiles of every labeled model of a hub on one graph."""

    graph_version: str
    categories: tuple[str, ...]
    profiles: tuple[CapabilityProfile, ...]

    def get(self, model_id: str) -> CapabilityProfile:
        for p in self.profiles:
            if p.model_id == model_id:
                return p
        raise UnknownModelError(f"model {model_id!r} has no label on graph {self.graph_version}. "
                                f"Labeled models: {', '.join(p.model_id for p in self.profiles)}; run `vlmhub label` for it.")

    def median(self) -> tuple[float, ...]:
        """The hub median of each category score (over models), in :attr:`categories` order."""
        if not self.profiles:
            return tuple(0.0 for _ in self.categories)
        return tuple(float(v) for v in np.median(np.array([p.scores for p in self.profiles]), axis=0))


def aggregate(accuracy: Sequence[float], categories: Sequence[str]) -> dict[str, float]:
    """Mean of ``accuracy`` per category (``accuracy[i]`` belongs to ``categories[i]``), sorted by category."""
    if len(accuracy) != len(categories):
        raise DataError(f"{len(accuracy)} accuracies for {len(categories)} categories; pass one category per value")
    sums: dict[str, list[float]] = {}
    for a, c in zip(accuracy, categories):
        sums.setdefault(c, []).append(float(a))
    return {c: float(np.mean(sums[c])) for c in sorted(sums)}


def lexnames_of(wnids: Sequence[str], data_noun: Path) -> dict[str, str]:
    """The lexicographer file of each WordNet 3.0 noun id (``n01440764`` -> ``noun.animal``).

    A noun id is ``n`` + the byte offset of its line in ``data.noun``, whose second field is the file's number
    (lexnames(5WN)); one seek per id, no WordNet parse."""
    from ..concepts.wordnet import LEXNAMES

    out: dict[str, str] = {}
    try:
        with open(data_noun, "rb") as f:
            for wnid in wnids:
                if len(wnid) < 2 or wnid[0] != "n" or not wnid[1:].isdigit():
                    raise LabelError(f"{wnid!r} is not a WordNet noun id like 'n01440764'. Rebuild the graph with `vlmhub label`.")
                f.seek(int(wnid[1:]))
                fields = f.readline().split(b" ", 2)
                if len(fields) < 2 or fields[0] != wnid[1:].encode() or not fields[1].isdigit() or int(fields[1]) >= len(LEXNAMES):
                    raise LabelError(f"{wnid} is not a synset of the WordNet copy at {data_noun}. Delete that folder "
                                     "(vlmhub rebuilds it) or rebuild the graph with `vlmhub label`.")
                out[wnid] = LEXNAMES[int(fields[1])]
    except OSError as exc:
        raise LabelError(f"cannot read WordNet's {data_noun} ({exc.strerror}). Delete that folder; vlmhub rebuilds it.") from None
    return out


def node_categories(graph, settings) -> dict[str, str]:
    """The category (lexicographer file) of every concept-sample node of ``graph``."""
    from ..concepts.wordnet import ensure_wordnet

    return lexnames_of([n.id for n in graph.nodes if n.own and n.images], ensure_wordnet(settings) / "data.noun")


def concept_accuracy(image_emb: np.ndarray, caption_emb: np.ndarray, membership: Sequence[tuple[int, int]]) -> np.ndarray:
    """Eq. 5 over all given nodes: per node, the share of its images whose most similar caption is its own."""
    from ..selection.fastpath import exact_node_precision

    return exact_node_precision(image_emb, caption_emb, membership, metric="precision")


def _concept_nodes(graph):
    nodes = [n for n in graph.nodes if n.own and n.images]
    if not nodes:
        raise NotLabeledError(f"graph {graph.version} has no concept-sample nodes with images. Run `vlmhub label`.")
    image_ids = sorted({x for n in nodes for x in n.images})
    row = {x: i for i, x in enumerate(image_ids)}
    membership = [(vi, row[x]) for vi, n in enumerate(nodes) for x in n.images]
    return nodes, image_ids, membership


def model_profile(model_id: str, graph, settings, categories: Mapping[str, str] | None = None) -> CapabilityProfile:
    """The :class:`CapabilityProfile` of one labeled model on ``graph`` (its label must cover the graph)."""
    from ..labeling.labels import LabelStore

    cats = dict(categories) if categories is not None else node_categories(graph, settings)
    nodes, image_ids, membership = _concept_nodes(graph)
    store = LabelStore(settings)
    lab = store.label(model_id)
    if not lab.covers(image_ids, [n.caption for n in nodes]):
        raise NotLabeledError(f"the label of {model_id} does not cover graph {graph.version}. Run `vlmhub label {model_id}`.")
    img, cap = store.load_embeddings(model_id, image_ids, [n.caption for n in nodes])
    acc = concept_accuracy(img, cap, membership)
    concepts = tuple(ConceptScore(n.id, n.name, cats[n.id], float(a), len(n.images)) for n, a in zip(nodes, acc))
    agg = aggregate([c.accuracy for c in concepts], [c.category for c in concepts])
    return CapabilityProfile(model_id, graph.version, tuple(agg), tuple(agg.values()), concepts)


def hub_profiles(hub) -> HubProfiles:
    """Profiles of every labeled model of ``hub`` (a :class:`~vlmhub.hub.Hub`) on its current graph."""
    ids = hub.labeled_model_ids()
    graph = hub.graph()
    cats = node_categories(graph, hub.settings)
    profiles = tuple(model_profile(m, graph, hub.settings, cats) for m in ids)
    return HubProfiles(graph.version, tuple(sorted(set(cats.values()))), profiles)


def largest_differences(profiles: Sequence[CapabilityProfile], n: int = 10) -> list[tuple[ConceptScore, tuple[float, ...], float]]:
    """The ``n`` concepts where ``profiles`` (same graph) differ most: ``(concept, accuracies, max - min)``."""
    if not profiles:
        return []
    versions = {p.graph_version for p in profiles}
    if len(versions) > 1:
        raise LabelError(f"profiles of different graphs ({', '.join(sorted(versions))}) cannot be compared. Relabel on one graph.")
    rows = []
    for i, c in enumerate(profiles[0].concepts):
        accs = tuple(p.concepts[i].accuracy for p in profiles)
        rows.append((c, accs, max(accs) - min(accs)))
    return sorted(rows, key=lambda r: -r[2])[:n]
