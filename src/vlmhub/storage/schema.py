"""Shape checks of every JSON file the hub reads, in one place.

Each ``check_*`` function takes the parsed JSON, the file it came from and the command (or action) that
rebuilds the file; it returns the document unchanged when it has the expected shape and otherwise raises
``error`` (a :class:`~vlmhub.errors.LabelError` by default) whose one-line message names the file, the
first field that is wrong, and the fix. The checks are structural only (types and required keys); what a
value means is checked where it is used.

File kinds (see docs/storage.md): ``graphs/current.json`` (:func:`check_graph_pointer`),
``graphs/<version>.json`` (:func:`check_graph`), ``labels/<id>/manifest.json`` (:func:`check_label_manifest`)
and an embedding table's ``index.json`` (:func:`check_embedding_index`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import LabelError, VlmhubError

__all__ = [
    "check_graph_pointer",
    "check_graph",
    "check_label_manifest",
    "check_embedding_index",
    "SchemaError",
]


class SchemaError(LabelError, ValueError):
    """A hub file has the wrong shape (wrong JSON type, missing or mistyped field)."""


_INT = (int,)
_STR = (str,)
_NUM = (int, float)


def _typename(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


def _fail(path: Path | str, what: str, problem: str, fix: str, error: type[VlmhubError]) -> None:
    raise error(f"{what} {path} is malformed ({problem}). {fix}")


def _need(obj: Any, types: tuple[type, ...], path, what, where: str, fix: str, error) -> Any:
    ok = isinstance(obj, types) and not (isinstance(obj, bool) and bool not in types)
    if not ok:
        want = " or ".join(sorted({_typename(t()) if t is not type(None) else "null" for t in types}))
        _fail(path, what, f"{where} is {_typename(obj)}, expected {want}", fix, error)
    return obj


def _field(d: dict, key: str, types: tuple[type, ...], path, what, fix, error, *, prefix: str = "",
           required: bool = True) -> Any:
    if key not in d:
        if required:
            _fail(path, what, f"field {prefix}{key!r} is missing", fix, error)
        return None
    return _need(d[key], types, path, what, f"field {prefix}{key!r}", fix, error)


def check_graph_pointer(obj: Any, path: Path | str, *, fix: str = "Run `vlmhub label` to rebuild it.",
                        error: type[VlmhubError] = SchemaError) -> dict:
    """``graphs/current.json``: ``{"version": str}``."""
    what = "graph pointer"
    _need(obj, (dict,), path, what, "the document", fix, error)
    v = _field(obj, "version", _STR, path, what, fix, error)
    if not v or "/" in v or "\\" in v or v.startswith("."):
        _fail(path, what, f"version {v!r} is not a graph version", fix, error)
    return obj


def check_graph(obj: Any, path: Path | str, *, fix: str = "Run `vlmhub label` to rebuild it.",
                error: type[VlmhubError] = SchemaError) -> dict:
    """``graphs/<version>.json`` (format ``vlmhub.graph/1``): nodes, image paths, sample sets."""
    what = "graph"
    _need(obj, (dict,), path, what, "the document", fix, error)
    _field(obj, "format", _STR, path, what, fix, error)
    nodes = _field(obj, "nodes", (list,), path, what, fix, error)
    for i, n in enumerate(nodes):
        _need(n, (dict,), path, what, f"nodes[{i}]", fix, error)
        for key in ("id", "name", "caption"):
            _field(n, key, _STR, path, what, fix, error, prefix=f"nodes[{i}].")
        for key in ("parents", "images"):
            seq = _field(n, key, (list,), path, what, fix, error, prefix=f"nodes[{i}].")
            if not all(isinstance(s, str) for s in seq):
                _fail(path, what, f"field nodes[{i}].{key!r} holds non-strings", fix, error)
        _field(n, "own", (bool,), path, what, fix, error, prefix=f"nodes[{i}].")
    paths = _field(obj, "image_paths", (dict,), path, what, fix, error)
    if not all(isinstance(v, str) for v in paths.values()):
        _fail(path, what, "field 'image_paths' holds non-string paths", fix, error)
    sets = _field(obj, "sample_sets", (list,), path, what, fix, error, required=False)
    if sets is not None and not all(isinstance(s, str) for s in sets):
        _fail(path, what, "field 'sample_sets' holds non-strings", fix, error)
    _field(obj, "max_images", _INT, path, what, fix, error, required=False)
    return obj


def check_label_manifest(obj: Any, path: Path | str, *, fix: str, error: type[VlmhubError] = SchemaError) -> dict:
    """``labels/<id>/manifest.json`` (format ``vlmhub.label/1``): ``graphs: {version: {complete, ...}}``."""
    what = "label manifest"
    _need(obj, (dict,), path, what, "the document", fix, error)
    _field(obj, "format", _STR, path, what, fix, error)
    _field(obj, "spec_fingerprint", _STR, path, what, fix, error, required=False)
    _field(obj, "embed_dim", _INT + (type(None),), path, what, fix, error, required=False)
    _field(obj, "spec", (dict,), path, what, fix, error, required=False)
    graphs = _field(obj, "graphs", (dict,), path, what, fix, error)
    for v, g in graphs.items():
        _need(g, (dict,), path, what, f"graphs[{v!r}]", fix, error)
        _field(g, "complete", (bool,), path, what, fix, error, prefix=f"graphs[{v!r}].", required=False)
        r = _field(g, "renditions", (list,), path, what, fix, error, prefix=f"graphs[{v!r}].", required=False)
        if r is not None and not all(isinstance(s, str) for s in r):
            _fail(path, what, f"field graphs[{v!r}].'renditions' holds non-strings", fix, error)
    return obj


def check_embedding_index(obj: Any, path: Path | str, *, fix: str, error: type[VlmhubError] = SchemaError) -> dict:
    """An embedding table's ``index.json`` (format ``vlmhub.embeddings/1``): dim, dtype, shards, meta."""
    what = "embedding index"
    _need(obj, (dict,), path, what, "the document", fix, error)
    _field(obj, "format", _STR, path, what, fix, error)
    dim = _field(obj, "dim", _INT + (type(None),), path, what, fix, error)
    if dim is not None and dim <= 0:
        _fail(path, what, f"dim {dim} is not positive", fix, error)
    _field(obj, "dtype", _STR, path, what, fix, error, required=False)
    shards = _field(obj, "shards", (list,), path, what, fix, error)
    for i, s in enumerate(shards):
        _need(s, (dict,), path, what, f"shards[{i}]", fix, error)
        f = _field(s, "file", _STR, path, what, fix, error, prefix=f"shards[{i}].")
        if "/" in f or "\\" in f or f.startswith("."):
            _fail(path, what, f"shards[{i}].file {f!r} is not a shard file name", fix, error)
        c = _field(s, "count", _INT, path, what, fix, error, prefix=f"shards[{i}].")
        if c < 0:
            _fail(path, what, f"shards[{i}].count is negative", fix, error)
    _field(obj, "meta", (dict,), path, what, fix, error, required=False)
    return obj
