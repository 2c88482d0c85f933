"""Import of an existing JSON home into the hub database (run once, by the first ``vlmhub db upgrade``).

What a home made by the JSON-only releases holds, and the rows it becomes (the files stay where they are)::

    models.json                    one ``models`` row per user model (source, spec, parameters, FLOPs)
    labels/<id>/manifest.json      a ``models`` row for a labeled model not in models.json (a built-in model,
                                   source ``builtin:<id>``, spec from the manifest)
    labels/<id>/{images,captions}/shard-*.npz
                                   one ``label_artifacts`` row per shard (kind ``label-table-shard``: its path,
                                   sha256, shape and dtype of ``vectors``, label-set version ``vlmhub.label/1``)
    graphs/<version>.json          one ``graph_versions`` row (``current`` from graphs/current.json)

A model is ``ready`` when its label is complete for the current graph, else ``queued`` (checked, waiting for
``vlmhub label``), or ``submitted`` when models.json says it was added without checks. Every file is read
before the single write transaction that adds the rows, the import is recorded in ``hub_meta`` (key
``json_import``) in that same transaction, and an upgrade that finds that key imports nothing again. Entries that
cannot be imported (a malformed file, an id already in the catalog) are listed in ``skipped`` with the reason;
their files are left untouched.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _deps  # noqa: F401

from sqlalchemy import select, text

from .schema import GraphVersionRow, LabelArtifactRow, ModelRow, ModelState, utcnow

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["ImportReport", "import_json_home", "IMPORT_KEY"]

#: the hub_meta key recording that (and what) the JSON home import did
IMPORT_KEY = "json_import"
_MODELS_FORMAT = "vlmhub-user-models"
_LABEL_FORMAT = "vlmhub.label/1"
_GRAPH_FORMAT = "vlmhub.graph/1"
_PG_IMPORT_LOCK = 0x766C6D69


@dataclass(frozen=True)
class ImportReport:
    """What the import added: catalog rows, graph versions and label-shard artifacts; what it skipped and why."""

    models: int = 0
    graphs: int = 0
    label_artifacts: int = 0
    model_ids: tuple[str, ...] = ()
    skipped: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model_ids"], d["skipped"] = list(self.model_ids), list(self.skipped)
        return d


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json(path: Path, skipped: list[str], what: str) -> Any | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        skipped.append(f"{what} {path.name}: unreadable ({type(exc).__name__}: {exc}); left as it is")
        return None


def _user_models(home: Path, skipped: list[str]) -> list[dict]:
    path = home / "models.json"
    if not path.is_file():
        return []
    doc = _json(path, skipped, "model list")
    if not isinstance(doc, dict) or doc.get("format") != _MODELS_FORMAT or not isinstance(doc.get("models"), list):
        if doc is not None:
            skipped.append(f"model list {path.name}: not a {_MODELS_FORMAT} file; left as it is")
        return []
    out = []
    for i, e in enumerate(doc["models"]):
        spec = e.get("spec") if isinstance(e, dict) else None
        mid = (e.get("id") or (spec or {}).get("id")) if isinstance(e, dict) else None
        if not isinstance(spec, dict) or not isinstance(mid, str) or not isinstance(e.get("source"), str):
            skipped.append(f"models.json entry {i}: malformed (needs id, source and spec); left as it is")
            continue
        out.append({"id": mid, "source": e["source"], "spec": spec, "checked": bool(e.get("checked", False)),
                    "added": str(e.get("added", "")), "adapter": str(e.get("adapter", ""))})
    return out


def _label_manifests(home: Path, skipped: list[str]) -> dict[str, dict]:
    root = home / "labels"
    out: dict[str, dict] = {}
    if not root.is_dir():
        return out
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        mpath = d / "manifest.json"
        if not mpath.is_file():
            continue
        m = _json(mpath, skipped, f"label manifest of {d.name}:")
        if isinstance(m, dict) and m.get("format") == _LABEL_FORMAT:
            out[d.name] = m
        elif m is not None:
            skipped.append(f"label manifest of {d.name}: not a {_LABEL_FORMAT} label; left as it is")
    return out


def _label_shards(home: Path, model_id: str, skipped: list[str]) -> list[dict]:
    out = []
    for table in ("images", "captions"):
        tdir = home / "labels" / model_id / table
        if not (tdir / "index.json").is_file():
            continue
        idx = _json(tdir / "index.json", skipped, f"embedding index of {model_id}/{table}:")
        shards = idx.get("shards") if isinstance(idx, dict) else None
        for sh in shards if isinstance(shards, list) else []:
            name = sh.get("file") if isinstance(sh, dict) else None
            path = tdir / name if isinstance(name, str) and "/" not in name and "\\" not in name else None
            if path is None or not path.is_file():
                skipped.append(f"label shard {model_id}/{table}/{name}: named by its index but missing")
                continue
            try:
                with np.load(path, allow_pickle=False) as z:
                    vec = z["vectors"]
                    shape, dtype = [int(n) for n in vec.shape], vec.dtype.str
            except Exception as exc:  # noqa: BLE001 - any unreadable shard is reported, never fatal
                skipped.append(f"label shard {model_id}/{table}/{name}: unreadable ({type(exc).__name__}); left as it is")
                continue
            out.append({"path": path.relative_to(home).as_posix(), "sha256": _sha256(path), "shape": shape,
                        "dtype": dtype, "size_bytes": path.stat().st_size})
    return out


def _graphs(home: Path, skipped: list[str]) -> tuple[list[dict], str | None]:
    gdir = home / "graphs"
    if not gdir.is_dir():
        return [], None
    cur = None
    if (gdir / "current.json").is_file():
        ptr = _json(gdir / "current.json", skipped, "graph pointer")
        cur = ptr.get("version") if isinstance(ptr, dict) and isinstance(ptr.get("version"), str) else None
    out = []
    for path in sorted(gdir.glob("*.json")):
        if path.name == "current.json" or path.name.startswith("."):
            continue
        d = _json(path, skipped, "graph")
        if not isinstance(d, dict) or d.get("format") != _GRAPH_FORMAT or not isinstance(d.get("nodes"), list):
            if d is not None:
                skipped.append(f"graph {path.name}: not a {_GRAPH_FORMAT} graph; left as it is")
            continue
        version = str(d.get("version") or path.stem)[:64]
        out.append({"version": version, "path": path.relative_to(home).as_posix(), "sha256": _sha256(path),
                    "nodes": len(d["nodes"]), "images": len(d.get("image_paths") or {}), "current": version == cur})
    return out, cur


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def import_json_home(db: "HubDB") -> ImportReport:
    """Add the JSON home's models, graph versions and label shards as rows, once (see the module docstring)."""
    from .catalog import MODEL_ID_RE

    home = Path(db.settings.home)
    skipped: list[str] = []
    users = _user_models(home, skipped)
    manifests = _label_manifests(home, skipped)
    graphs, cur = _graphs(home, skipped)
    wanted: list[dict] = []
    seen: set[str] = set()
    for e in users:
        if e["id"] in seen:
            skipped.append(f"models.json: model {e['id']!r} listed twice; imported once")
            continue
        seen.add(e["id"])
        wanted.append(e)
    for mid, m in manifests.items():
        if mid not in seen:
            seen.add(mid)
            spec = m.get("spec") if isinstance(m.get("spec"), dict) else {"id": mid}
            wanted.append({"id": mid, "source": f"builtin:{mid}", "spec": spec, "checked": True})
    rows = []
    for e in wanted:
        if not MODEL_ID_RE.match(e["id"]):
            skipped.append(f"model {e['id']!r}: not a valid model id; left out")
            continue
        graphs_done = (manifests.get(e["id"]) or {}).get("graphs") or {}
        labeled = cur is not None and bool((graphs_done.get(cur) or {}).get("complete"))
        if labeled:
            state, reasons = ModelState.READY, []
        elif e["checked"]:
            state, reasons = ModelState.QUEUED, [f"imported unlabeled for graph {cur or '(none yet)'}; run `vlmhub label`"]
        else:
            state, reasons = ModelState.SUBMITTED, ["imported from models.json, added without checks"]
        rows.append((e, state, reasons, _label_shards(home, e["id"], skipped) if e["id"] in manifests else []))

    now = utcnow()
    n_models = n_graphs = n_arts = 0
    ids: list[str] = []
    with db.write() as s:
        if db.dialect == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_IMPORT_LOCK})
        if db.get_meta(s, IMPORT_KEY) is not None:
            return ImportReport(skipped=("the JSON home was imported before; nothing imported again",))
        have = set(s.scalars(select(ModelRow.id)))
        for e, state, reasons, shards in rows:
            if e["id"] in have:
                skipped.append(f"model {e['id']!r}: already in the catalog; kept the catalog row")
                continue
            spec = e["spec"]
            s.add(ModelRow(id=e["id"], source=e["source"][:2000], spec=spec,
                           architecture=str(spec.get("backbone") or spec.get("family") or "")[:200] or None,
                           params_m=_num(spec.get("params_m")), gflops=_num(spec.get("gflops")),
                           licence=None, owner_id=None, state=state, reasons=reasons, created_at=now, updated_at=now))
            s.flush()  # the model row first: the artifact rows' foreign key names it
            n_models += 1
            ids.append(e["id"])
            for a in shards:
                s.add(LabelArtifactRow(model_id=e["id"], kind="label-table-shard", path=a["path"], sha256=a["sha256"],
                                       shape=a["shape"], dtype=a["dtype"], size_bytes=a["size_bytes"],
                                       graph_version=None, label_set_version=_LABEL_FORMAT, created_at=now))
                n_arts += 1
        known = set(s.scalars(select(GraphVersionRow.version)))
        for g in graphs:
            if g["version"] in known:
                continue
            known.add(g["version"])
            s.add(GraphVersionRow(created_at=now, **g))
            n_graphs += 1
        report = ImportReport(n_models, n_graphs, n_arts, tuple(ids), tuple(skipped))
        db.set_meta(s, IMPORT_KEY, {"at": now.isoformat(), **report.to_dict()})
        if n_models or n_graphs or n_arts or skipped:  # a new, empty home has nothing to record
            db.audit(s, None, "home.import", str(home)[-200:], models=n_models, graphs=n_graphs, label_artifacts=n_arts,
                     skipped=len(skipped))
    return report
