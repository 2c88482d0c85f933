"""The semantic graph of MLL (Section 4.2): WordNet noun synsets, hypernym edges, captions and sample images.

* Nodes are the synsets that own sample images plus all their hypernyms (``hypernym_paths``, which include
  instance hypernyms), each with the caption ``"{name}, which is {definition}"``.
* A node with its own samples keeps up to ``max_images`` of them; an ancestor draws up to ``max_images`` from
  the samples of its descendants, deterministically: candidates are ranked by ``sha1(node id + image id)``.
  Adding images or concepts later changes which images a node draws, never an image's embedding, so existing
  labels stay valid (labels are stored per image and per caption; see :mod:`vlmhub.labeling`).
* ``version`` is a content hash of nodes, captions and image assignments.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError, DataError, LabelError, NotLabeledError
from ..settings import Settings, get_settings
from ..storage.atomic import atomic_write_json, atomic_write_text, read_json
from ..storage.schema import check_graph, check_graph_pointer
from .samples import ConceptSampleSet

__all__ = ["Node", "SemanticGraph", "build_graph", "save_graph", "load_graph", "current_graph", "current_graph_version"]

FORMAT = "vlmhub.graph/1"


@dataclass(frozen=True)
class Node:
    id: str  # wnid
    name: str
    caption: str
    parents: tuple[str, ...]
    images: tuple[str, ...]  # image ids
    own: bool  # has its own samples (a concept-sample class), not only drawn from descendants


@dataclass(frozen=True)
class SemanticGraph:
    nodes: tuple[Node, ...]
    image_paths: dict[str, str] = field(repr=False)  # image id -> path (absolute, as scanned)
    sample_sets: tuple[str, ...] = ()
    max_images: int = 75

    @property
    def version(self) -> str:
        h = hashlib.sha1()
        for n in self.nodes:
            h.update(f"{n.id}\t{n.caption}\t{','.join(n.images)}\n".encode())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def index(self) -> dict[str, int]:
        return {n.id: i for i, n in enumerate(self.nodes)}

    def image_ids(self) -> list[str]:
        """All distinct sample image ids (sorted)."""
        return sorted({i for n in self.nodes for i in n.images})

    def captions(self) -> list[str]:
        return [n.caption for n in self.nodes]

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": self.version,
            "sample_sets": list(self.sample_sets),
            "max_images": self.max_images,
            "nodes": [
                {"id": n.id, "name": n.name, "caption": n.caption, "parents": list(n.parents), "images": list(n.images), "own": n.own}
                for n in self.nodes
            ],
            "image_paths": self.image_paths,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SemanticGraph":
        if d.get("format") != FORMAT:
            raise LabelError(f"not a vlmhub graph (format {d.get('format')!r}); rebuild it with `vlmhub label`.")
        nodes = tuple(
            Node(n["id"], n["name"], n["caption"], tuple(n["parents"]), tuple(n["images"]), bool(n["own"])) for n in d["nodes"]
        )
        return cls(nodes, dict(d["image_paths"]), tuple(d.get("sample_sets", ())), int(d.get("max_images", 75)))


def _rank(node_id: str, image_id: str) -> str:
    return hashlib.sha1(f"{node_id}|{image_id}".encode()).hexdigest()


def build_graph(sample_sets: Sequence[ConceptSampleSet], settings: Settings | None = None, *, max_images: int = 75) -> SemanticGraph:
    """Build the graph over the concepts of ``sample_sets`` (see module docstring)."""
    from .wordnet import get_wordnet, synset_from_wnid, synset_caption, synset_name, wnid_of

    if not sample_sets:
        raise DataError("no concept-sample sets given. Name at least one folder of <wnid>/<image> files.")
    if isinstance(max_images, bool) or not isinstance(max_images, int) or not 1 <= max_images <= 1_000_000:
        raise DataError(f"max_images (images per graph node) must be a whole number from 1 to 1000000 (got {max_images!r}).")
    wn = get_wordnet(settings or get_settings())
    own: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    for s in sample_sets:
        for wnid, refs in s.images.items():
            own.setdefault(wnid, []).extend(r[0] for r in refs)
            for rid, p in refs:
                paths[rid] = str(p)
    synsets = {}
    parents: dict[str, set[str]] = {}
    pool: dict[str, set[str]] = {}
    for wnid, imgs in own.items():
        try:
            import warnings

            with warnings.catch_warnings():  # "No WordNet synset found ...": reported below as one line
                warnings.simplefilter("ignore", UserWarning)
                s = synset_from_wnid(wn, wnid)
        except Exception:  # noqa: BLE001 - nltk raises various errors on unknown offsets
            s = None
        if s is None:  # nltk returns None for some unknown offsets instead of raising
            raise DataError(f"{wnid} is not a WordNet 3.0 noun synset; rename or remove that concept folder.")
        for path in s.hypernym_paths():
            for a in path:
                synsets.setdefault(wnid_of(a), a)
                pool.setdefault(wnid_of(a), set()).update(imgs)
            for parent, child in zip(path, path[1:]):
                parents.setdefault(wnid_of(child), set()).add(wnid_of(parent))
    nodes = []
    for wnid in sorted(synsets):
        s = synsets[wnid]
        if wnid in own:
            cand = own[wnid]
        else:
            cand = pool[wnid]
        chosen = sorted(cand, key=lambda i: _rank(wnid, i))[:max_images]
        try:
            name, caption = synset_name(s), synset_caption(s)
        except (AttributeError, IndexError, ValueError, KeyError) as exc:  # a damaged data.noun
            raise ConfigError(f"the WordNet copy at {getattr(wn, 'root', '?')} is damaged ({type(exc).__name__} reading "
                              f"synset {wnid}). Delete that folder; vlmhub rebuilds it on the next run.") from None
        nodes.append(Node(wnid, name, caption, tuple(sorted(parents.get(wnid, ()))), tuple(sorted(chosen)), wnid in own))
    if not paths or not any(n.images for n in nodes):
        raise DataError("the concept-sample sets contain no images, so the semantic graph would be empty. "
                        "Put images in the <wnid> folders.")
    return SemanticGraph(tuple(nodes), paths, tuple(s.name for s in sample_sets), max_images)


def save_graph(graph: SemanticGraph, settings: Settings | None = None, *, make_current: bool = True) -> Path:
    """Store the graph as ``graphs/<version>.json`` (atomic) and, by default, point ``graphs/current.json`` at it."""
    settings = settings or get_settings()
    if make_current and not any(n.images for n in graph.nodes):
        raise DataError("refusing to make an empty semantic graph (no sample images) the hub's current graph.")
    path = settings.graphs_dir / f"{graph.version}.json"
    text = json.dumps(graph.to_dict(), indent=1, sort_keys=False, ensure_ascii=False) + "\n"
    try:
        same = path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        same = False
    if not same:  # new, or damaged (the version is a content hash, so a good file is byte-identical)
        atomic_write_text(path, text)
    if make_current:
        atomic_write_json(settings.graphs_dir / "current.json", {"version": graph.version})
    return path


def load_graph(version: str, settings: Settings | None = None) -> SemanticGraph:
    settings = settings or get_settings()
    path = settings.graphs_dir / f"{version}.json"
    if not path.exists():
        raise LabelError(f"graph {version} not found in {settings.graphs_dir}. Run `vlmhub label` to build it.")
    d = check_graph(read_json(path, "graph", error=LabelError, fix="Run `vlmhub label` to rebuild it."), path, fix="Run `vlmhub label` to rebuild it.")
    if d["format"] != FORMAT:
        raise LabelError(f"{path} is not a vlmhub graph (format {d['format']!r}). Run `vlmhub label` to rebuild it.")
    return SemanticGraph.from_dict(d)


def current_graph_version(settings: Settings | None = None) -> str:
    """The version of the hub's current graph, read from ``graphs/current.json`` alone (a few bytes: cheap enough
    for every health check), or a :class:`NotLabeledError` saying to run ``vlmhub label``."""
    settings = settings or get_settings()
    ptr = settings.graphs_dir / "current.json"
    if not ptr.exists():
        raise NotLabeledError(f"the hub at {settings.home} has no semantic graph yet. Run `vlmhub label` first.")
    fix = "Run `vlmhub label` to rebuild it."
    return check_graph_pointer(read_json(ptr, "graph pointer", error=LabelError, fix=fix), ptr, fix=fix)["version"]


def current_graph(settings: Settings | None = None) -> SemanticGraph:
    """The hub's current graph (the one last labeled), or a :class:`LabelError` saying to run ``vlmhub label``."""
    settings = settings or get_settings()
    return load_graph(current_graph_version(settings), settings)
