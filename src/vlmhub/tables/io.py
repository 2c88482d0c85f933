"""Reading and writing performance tables (the only module of :mod:`vlmhub.tables` that touches files).

Sources:

* the open_clip results table (wide: one row per model, one column per dataset, plus ``params (M)`` and
  ``FLOPs (B)``) -> :func:`load_openclip_table`;
* the LOVM table (long: one row per (model, dataset), ``acc1``) with ModelGPT's seven text-derived
  features -> :func:`load_lovm_table`;
* the **generic long format** users bring themselves -> :func:`load_generic_table` /
  :func:`save_generic_table`. A CSV with the columns ``model,dataset,accuracy`` (accuracy a fraction in
  [0, 1]; a missing pair is simply absent) and optionally per-model metadata columns ``params_m``,
  ``gflops``, ``family``, ``pretraining_data``, ``arch``, ``pretrained`` and per-pair feature columns
  ``feature:<name>``; plus a descriptions JSON ``{dataset: {"domain", "task", "classes": [...]}}``
  (default: the CSV's path with ``.json`` instead of ``.csv``).

:func:`load_table` maps the short names ``openclip`` and ``lovm`` to the shared tables; a path is read in
any published shape, detected from its header (:func:`vlmhub.tables.shapes.detect_table_shape`): open_clip's
wide CSV, LOVM's long evaluation table, CLIP_benchmark's results CSV (:func:`load_long_table`) or the
generic format.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import TableError, TaskError
from ..storage.atomic import read_json
from .shapes import (
    OPENCLIP_RETRIEVAL_COLUMNS,
    OPENCLIP_SKIP_COLUMNS,
    TableShape,
    detect_table_shape,
    long_format_cells,
)
from .records import (
    ModelInfo,
    PerformanceTable,
    TaskDescription,
    canonical_dataset_key,
    detect_reference,
    parse_model_name,
    pretraining_source,
    task_from_dict,
)

__all__ = [
    "SHARED_TABLES",
    "MODELGPT_FEATURES",
    "GENERIC_COLUMNS",
    "load_table",
    "load_openclip_table",
    "load_lovm_table",
    "load_generic_table",
    "load_long_table",
    "read_table_header",
    "save_generic_table",
    "generic_csv_text",
    "descriptions_json_text",
    "load_task_json",
    "table_dataset_descriptions",
    "read_class_names",
]

SHARED_TABLES = ("openclip", "lovm")
MODELGPT_FEATURES = (
    "IN-score",
    "text-f1",
    "text-acc1",
    "intraclass_sim",
    "inter_close",
    "intra_close",
    "superclass_metric",
)
GENERIC_COLUMNS = ("model", "dataset", "accuracy")
_META_COLUMNS = ("arch", "pretrained", "family", "pretraining_data", "params_m", "gflops")


def _data_dir(data_dir: str | Path | None) -> Path:
    if data_dir is not None:
        return Path(data_dir)
    from ..settings import get_settings

    return get_settings().require_data_dir()


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise TableError(f"table file {path} does not exist; check the path (or set VLMHUB_DATA for the shared tables)")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            return list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"cannot read {path} as a UTF-8 CSV ({exc}); save it as comma-separated UTF-8 text") from None


def _float(text: str | None) -> float:
    if text is None or str(text).strip() in ("", "nan", "NaN", "NA", "-"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _lenient_json(text: str) -> dict:
    """``json.loads``, falling back to ``"key": "value"`` pairs (the LOVM domain file misses a comma)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return dict(re.findall(r'"([^"]+)"\s*:\s*"([^"]*)"', text))


def read_class_names(path: Path) -> tuple[str, ...]:
    """Class names from a ``.txt`` file (one per line) or a ``dataset.json`` (its ``classes``)."""
    if not path.is_file():
        return ()
    if path.suffix == ".json":
        obj = read_json(path, "class-name file", TableError)
        return tuple(str(c) for c in obj.get("classes", ()))
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def table_dataset_descriptions() -> dict:
    """The package's ``data/table_datasets.json``: descriptions of the open_clip benchmark columns."""
    text = resources.files("vlmhub").joinpath("data/table_datasets.json").read_text(encoding="utf-8")
    return json.loads(text)


# -- open_clip ---------------------------------------------------------------------------------------
def load_openclip_table(path: str | Path | None = None, *, data_dir: str | Path | None = None) -> PerformanceTable:
    """The open_clip zero-shot table: 121 models x 35 datasets, with params, FLOPs and descriptions."""
    root = _data_dir(data_dir) if path is None or data_dir is not None else None
    path = Path(path) if path is not None else root / "tables" / "openclip_classification_results.csv"
    rows = _read_csv(path)
    if not rows or "name" not in rows[0] or "pretrained" not in rows[0]:
        raise TableError(f"{path} is not an open_clip results table (needs columns name, pretrained, <datasets>...)")
    skip = {*OPENCLIP_SKIP_COLUMNS, *OPENCLIP_RETRIEVAL_COLUMNS}
    columns = [c for c in rows[0] if c not in skip and not c.lower().startswith("average")]
    desc = table_dataset_descriptions()["openclip"]
    if root is None:
        try:
            root = _data_dir(None)
        except Exception:  # noqa: BLE001 - class names are optional
            root = None
    datasets = []
    for col in columns:
        info = desc.get(col, {})
        classes: tuple[str, ...] = ()
        if root is not None and info.get("classes_file"):
            classes = read_class_names(root / info["classes_file"])
        datasets.append(
            TaskDescription(
                name=col,
                domain=info.get("domain", ""),
                task=info.get("task", "image classification"),
                classes=tuple(info.get("classes", ())) or classes,
                key=info.get("key", ""),
            )
        )
    models, acc = [], []
    for r in rows:
        models.append(ModelInfo.from_open_clip(r["name"], r["pretrained"], _float(r.get("params (M)")), _float(r.get("FLOPs (B)"))))
        acc.append([_float(r[c]) for c in columns])
    return PerformanceTable(
        name="openclip",
        models=tuple(models),
        datasets=tuple(datasets),
        acc=np.asarray(acc, dtype=np.float64),
        reference=detect_reference(datasets),
    )


# -- LOVM --------------------------------------------------------------------------------------------
def load_lovm_table(*, data_dir: str | Path | None = None, with_features: bool = True) -> PerformanceTable:
    """LOVM's 35 models x 23 datasets (``acc1``) with ModelGPT's seven features per (model, dataset).

    Model parameters and FLOPs are joined from the open_clip table where the model appears there.
    """
    root = _data_dir(data_dir)
    rows = _read_csv(root / "tables" / "lovm_eval_table.csv")
    need = {"dataset", "model", "pretrained", "acc1"}
    if not rows or not need <= set(rows[0]):
        raise TableError(f"the LOVM table lacks columns {sorted(need)}")
    model_ids: dict[str, tuple[str, str]] = {}
    ds_names: list[str] = []
    for r in rows:
        model_ids.setdefault(f"{r['model']}/{r['pretrained']}", (r["model"], r["pretrained"]))
        if r["dataset"] not in ds_names:
            ds_names.append(r["dataset"])
    ids = list(model_ids)
    mi, di = {m: i for i, m in enumerate(ids)}, {d: j for j, d in enumerate(ds_names)}
    acc = np.full((len(ids), len(ds_names)), np.nan)
    for r in rows:
        acc[mi[f"{r['model']}/{r['pretrained']}"], di[r["dataset"]]] = _float(r["acc1"])
    features: dict[str, np.ndarray] = {}
    if with_features:
        frows = _read_csv(root / "tables" / "lovm_modelgpt_features.csv")
        for name in MODELGPT_FEATURES:
            features[name] = np.full_like(acc, np.nan)
        for r in frows:
            key = f"{r['model']}/{r['pretrained']}"
            if key in mi and r["dataset"] in di:
                for name in MODELGPT_FEATURES:
                    features[name][mi[key], di[r["dataset"]]] = _float(r.get(name))
    meta: dict[str, tuple[float, float]] = {}
    oc = root / "tables" / "openclip_classification_results.csv"
    if oc.is_file():
        for r in _read_csv(oc):
            meta[f"{r['name']}/{r['pretrained']}"] = (_float(r.get("params (M)")), _float(r.get("FLOPs (B)")))
    models = tuple(ModelInfo.from_open_clip(a, p, *meta.get(f"{a}/{p}", (math.nan, math.nan))) for a, p in model_ids.values())
    domains = _lenient_json((root / "tables" / "lovm_dataset_domains.json").read_text(encoding="utf-8"))
    tasks = _lenient_json((root / "tables" / "lovm_dataset_tasks.json").read_text(encoding="utf-8"))
    datasets = tuple(
        TaskDescription(
            name=d,
            domain=domains.get(d, ""),
            task=tasks.get(d, "image classification"),
            classes=read_class_names(root / "lovm_classnames" / f"{d}.txt"),
            key=d,
        )
        for d in ds_names
    )
    return PerformanceTable(
        name="lovm", models=models, datasets=datasets, acc=acc, features=features, reference=detect_reference(datasets)
    )


# -- generic long format -----------------------------------------------------------------------------
def _descriptions_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".json")


def load_generic_table(
    path: str | Path, descriptions: str | Path | Mapping | None = None, *, name: str | None = None
) -> PerformanceTable:
    """A table in the generic long format (see the module docstring)."""
    path = Path(path)
    rows = _read_csv(path)
    if not rows:
        raise TableError(f"{path} has no rows; it needs a header model,dataset,accuracy and one row per evaluated pair")
    missing = [c for c in GENERIC_COLUMNS if c not in rows[0]]
    if missing:
        raise TableError(
            f"{path} lacks the column(s) {', '.join(missing)}; the generic format needs a header with "
            "model,dataset,accuracy (plus optional params_m,gflops,family,pretraining_data,feature:<name>)"
        )
    desc = _read_descriptions(path, descriptions)
    feat_cols = [c for c in rows[0] if c.startswith("feature:")]
    model_order: list[str] = []
    ds_order: list[str] = []
    meta: dict[str, dict[str, str]] = {}
    cells: dict[tuple[str, str], tuple[float, list[float]]] = {}
    for lineno, r in enumerate(rows, start=2):
        m, d = (r.get("model") or "").strip(), (r.get("dataset") or "").strip()
        if not m or not d:
            raise TableError(f"{path}:{lineno}: empty model or dataset name; fill both columns")
        tag = (r.get("pretrained") or "").strip()
        if tag and "/" not in m:  # model identity is model + pretrained where both exist
            m = f"{m}/{tag}"
        a = _float(r.get("accuracy"))
        if math.isnan(a):
            raise TableError(f"{path}:{lineno}: accuracy {r.get('accuracy')!r} is not a number; leave the row out if unknown")
        if not 0.0 <= a <= 1.0:
            raise TableError(f"{path}:{lineno}: accuracy {a} is outside [0, 1]; write fractions (divide percentages by 100)")
        if (m, d) in cells:
            raise TableError(f"{path}:{lineno}: duplicate row for model {m!r} on dataset {d!r}; keep one")
        if m not in meta:
            model_order.append(m)
            meta[m] = {}
        for c in _META_COLUMNS:
            if r.get(c) not in (None, ""):
                meta[m].setdefault(c, r[c])
        if d not in ds_order:
            ds_order.append(d)
        cells[(m, d)] = (a, [_float(r.get(c)) for c in feat_cols])
    acc = np.full((len(model_order), len(ds_order)), np.nan)
    feats = {c.split(":", 1)[1]: np.full_like(acc, np.nan) for c in feat_cols}
    mi, di = {m: i for i, m in enumerate(model_order)}, {d: j for j, d in enumerate(ds_order)}
    for (m, d), (a, fv) in cells.items():
        acc[mi[m], di[d]] = a
        for c, v in zip(feat_cols, fv):
            feats[c.split(":", 1)[1]][mi[m], di[d]] = v
    models = []
    for m in model_order:
        md = meta[m]
        arch = md.get("arch", m.split("/")[0])
        pretrained = md.get("pretrained", m.split("/", 1)[1] if "/" in m else "")
        fam = md.get("family") or parse_model_name(arch)[0].value
        models.append(
            ModelInfo(
                id=m,
                arch=arch,
                pretrained=pretrained,
                family=fam,
                size=parse_model_name(arch)[1],
                pretraining_data=md.get("pretraining_data") or (pretraining_source(pretrained) if pretrained else "unknown"),
                params_m=_float(md.get("params_m")),
                gflops=_float(md.get("gflops")),
            )
        )
    datasets = []
    for d in ds_order:
        info = desc.get(d, {})
        try:
            datasets.append(task_from_dict({"name": d, **dict(info)}, source=f"description of dataset {d!r}"))
        except (TypeError, ValueError):
            raise TableError(f"description of dataset {d!r} must be an object with domain, task, classes") from None
        except TaskError as exc:
            raise TableError(str(exc)) from None
    return PerformanceTable(
        name=name or path.stem,
        models=tuple(models),
        datasets=tuple(datasets),
        acc=acc,
        features=feats,
        reference=detect_reference(datasets),
    )


# -- published long formats: LOVM's eval table, CLIP_benchmark's results ------------------------------
def _optional_data_dir() -> Path | None:
    try:
        return _data_dir(None)
    except Exception:  # noqa: BLE001 - class names are optional
        return None


def _known_descriptions(root: Path | None) -> dict[str, TaskDescription]:
    """Known dataset descriptions by canonical key: LOVM's (domain and task files, class names) where the
    data folder is available, then the package's descriptions of the open_clip columns (by column name
    and benchmark id)."""
    out: dict[str, TaskDescription] = {}
    if root is not None and (root / "tables" / "lovm_dataset_domains.json").is_file():
        # LOVM's own descriptions of its dataset ids (the same as load_lovm_table uses)
        domains = _lenient_json((root / "tables" / "lovm_dataset_domains.json").read_text(encoding="utf-8"))
        tasks_path = root / "tables" / "lovm_dataset_tasks.json"
        tasks = _lenient_json(tasks_path.read_text(encoding="utf-8")) if tasks_path.is_file() else {}
        for d, dom in domains.items():
            classes = read_class_names(root / "lovm_classnames" / f"{d}.txt")
            out[canonical_dataset_key(d)] = TaskDescription(d, dom, tasks.get(d, "image classification"), classes)
    for col, info in table_dataset_descriptions()["openclip"].items():
        classes: tuple[str, ...] = tuple(info.get("classes", ()))
        if not classes and root is not None and info.get("classes_file"):
            classes = read_class_names(root / info["classes_file"])
        td = TaskDescription(name=col, domain=info.get("domain", ""), task=info.get("task", "image classification"), classes=classes)
        for k in (col, info.get("key", "")):
            if k:
                out.setdefault(canonical_dataset_key(k), td)
    return out


def _describe(names: list[str], desc: Mapping, source: Path) -> list[TaskDescription]:
    """Descriptions of ``names``: from ``desc`` (the JSON beside the CSV) where given, else the package's
    descriptions of the open_clip / LOVM / CLIP_benchmark dataset with the same id, else the name alone."""
    known: dict[str, TaskDescription] | None = None
    out = []
    for d in names:
        if d in desc:
            try:
                out.append(task_from_dict({"name": d, **dict(desc[d])}, source=f"description of dataset {d!r} in {source}"))
            except (TypeError, ValueError):
                raise TableError(f"description of dataset {d!r} must be an object with domain, task, classes") from None
            except TaskError as exc:
                raise TableError(str(exc)) from None
            continue
        if known is None:
            known = _known_descriptions(_optional_data_dir())
        base = d.split(" (")[0].rstrip("/").split("/")[-1]  # "wds/vtab/cifar100" -> "cifar100"
        hit = known.get(canonical_dataset_key(base))
        out.append(TaskDescription(d, hit.domain, hit.task, hit.classes, key=canonical_dataset_key(base)) if hit else TaskDescription(d))
    return out


def _read_descriptions(path: Path, descriptions: str | Path | Mapping | None) -> Mapping:
    if descriptions is None:
        dpath = _descriptions_path(path)
        desc: Mapping = read_json(dpath, "descriptions file", TableError) if dpath.is_file() else {}
    elif isinstance(descriptions, Mapping):
        desc = descriptions
    else:
        dpath = Path(descriptions)
        if not dpath.is_file():
            raise TableError(f"descriptions file {dpath} does not exist; pass a JSON {{dataset: {{domain, task, classes}}}}")
        desc = read_json(dpath, "descriptions file", TableError)
    if not isinstance(desc, Mapping):
        raise TableError("the descriptions JSON must be an object mapping dataset names to {domain, task, classes}")
    return desc


def load_long_table(
    path: str | Path,
    descriptions: str | Path | Mapping | None = None,
    *,
    name: str | None = None,
    shape: TableShape | None = None,
) -> PerformanceTable:
    """A LOVM-style long evaluation table or a CLIP_benchmark results CSV (one row per model and dataset,
    ``acc1`` read; see :mod:`vlmhub.tables.shapes`). Model ids are ``<model>/<pretrained>``. Dataset
    descriptions come from a JSON beside the CSV (as in the generic format) or, for the benchmark datasets
    vlmhub knows (``cars``, ``vtab/cifar100``, ``imagenet1k``, ...), from the package's descriptions."""
    path = Path(path)
    rows = _read_csv(path)
    if shape is None:
        shape = detect_table_shape(list(rows[0].keys()) if rows else read_table_header(path))
    cells = long_format_cells(rows, shape, str(path))
    model_keys: dict[str, tuple[str, str]] = {}
    ds_names: list[str] = []
    for c in cells:
        model_keys.setdefault(c.model_id, (c.arch, c.pretrained))
        if c.dataset not in ds_names:
            ds_names.append(c.dataset)
    mi = {m: i for i, m in enumerate(model_keys)}
    di = {d: j for j, d in enumerate(ds_names)}
    acc = np.full((len(mi), len(di)), np.nan)
    for c in cells:
        acc[mi[c.model_id], di[c.dataset]] = c.acc
    models = tuple(
        ModelInfo.from_open_clip(a, p) if p else replace(ModelInfo.from_open_clip(a, ""), id=a) for a, p in model_keys.values()
    )
    datasets = _describe(ds_names, _read_descriptions(path, descriptions), path)
    return PerformanceTable(
        name=name or path.stem, models=models, datasets=tuple(datasets), acc=acc, reference=detect_reference(datasets)
    )


def generic_csv_text(table: PerformanceTable) -> str:
    """The table in the generic long CSV format (pure; see :func:`save_generic_table`)."""
    buf = io.StringIO()
    fnames = sorted(table.features)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*GENERIC_COLUMNS, *_META_COLUMNS, *(f"feature:{f}" for f in fnames)])
    for i, m in enumerate(table.models):
        for j, d in enumerate(table.datasets):
            a = table.acc[i, j]
            if math.isnan(a):
                continue
            w.writerow(
                [
                    m.id,
                    d.name,
                    repr(float(a)),
                    m.arch,
                    m.pretrained,
                    m.family,
                    m.pretraining_data,
                    "" if math.isnan(m.params_m) else repr(m.params_m),
                    "" if math.isnan(m.gflops) else repr(m.gflops),
                    *(repr(float(table.features[f][i, j])) for f in fnames),
                ]
            )
    return buf.getvalue()


def descriptions_json_text(table: PerformanceTable) -> str:
    """The descriptions JSON of the generic format (pure)."""
    obj = {d.name: {"domain": d.domain, "task": d.task, "classes": list(d.classes)} for d in table.datasets}
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def save_generic_table(table: PerformanceTable, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (CSV) and its descriptions JSON beside it, atomically; returns both paths."""
    from ..storage.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, generic_csv_text(table))
    dpath = _descriptions_path(path)
    atomic_write_text(dpath, descriptions_json_text(table))
    return path, dpath


# -- entry points ------------------------------------------------------------------------------------
def read_table_header(path: str | Path) -> list[str]:
    """The column names of a CSV file (its first row)."""
    p = Path(path)
    if not p.is_file():
        raise TableError(f"table file {p} does not exist; check the path")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            return next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise TableError(f"cannot read {p} as a UTF-8 CSV ({exc}); save it as comma-separated UTF-8 text") from None


def load_table(spec: str | Path, *, data_dir: str | Path | None = None, descriptions: str | Path | None = None) -> PerformanceTable:
    """``"openclip"``, ``"lovm"`` (shared tables) or a path to a CSV in any published shape (detected from
    its header: open_clip wide, LOVM long, CLIP_benchmark, generic; see :mod:`vlmhub.tables.shapes`)."""
    s = str(spec)
    if s.lower() in ("openclip", "open_clip", "open-clip"):
        return load_openclip_table(data_dir=data_dir)
    if s.lower() == "lovm":
        return load_lovm_table(data_dir=data_dir)
    p = Path(s).expanduser()
    if not p.exists():
        raise TableError(f"table {s!r} is neither 'openclip', 'lovm' nor an existing CSV file; check the name or path")
    if p.is_dir() or p.suffix.lower() != ".csv":
        raise TableError(
            f"table {s!r} must be a .csv file (open_clip wide results, LOVM's eval table, CLIP_benchmark's "
            "results or the generic model,dataset,accuracy format)"
        )
    shape = detect_table_shape(read_table_header(p))
    if shape is TableShape.OPENCLIP_WIDE:
        return load_openclip_table(p).with_name(p.stem)
    if shape is TableShape.GENERIC:
        return load_generic_table(p, descriptions)
    return load_long_table(p, descriptions, shape=shape)


def load_task_json(path: str | Path) -> TaskDescription:
    """A task file ``{"name", "domain", "task", "classes": [...]}`` (the ``dataset.json`` format), read and
    validated by :func:`vlmhub.tasks.load_task` (one task format for the whole project)."""
    from ..tasks import load_task

    return TaskDescription.from_task(load_task(path))
