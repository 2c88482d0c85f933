"""The published shapes a results table may come in, detected from its header (pure: no file I/O).

================= =================================================================================
shape             header
================= =================================================================================
``openclip-wide`` open_clip's ``docs/openclip_results.csv``: ``name``, ``pretrained``, optional
                  ``params (M)``, ``FLOPs (B)``, ``Average perf. ...``, then one column per dataset
``lovm-long``     LOVM's ``eval_table.csv`` (or any project reusing it): one row per (model, dataset)
                  with ``dataset``, ``model_fullname`` or ``model`` (+ ``pretrained``), ``acc1``;
                  other columns optional and in any order
``clip-benchmark`` CLIP_benchmark's ``benchmark.csv``: the long format with a ``task`` column and the
                  metric columns of several tasks (retrieval recalls, mAP); only zero-shot
                  classification rows with an ``acc1`` count
``generic``       vlmhub's own ``model, dataset, accuracy`` (see :mod:`vlmhub.tables.io`)
================= =================================================================================

:func:`detect_table_shape` maps a header to a :class:`TableShape` or raises :class:`TableError` listing
the accepted shapes and the columns it found. :func:`long_format_cells` turns the rows of a long table
(LOVM or CLIP_benchmark) into typed cells. Model identity is ``model/pretrained`` wherever both exist.
"""

from __future__ import annotations

from types import MappingProxyType

import math
from dataclasses import dataclass
from enum import Enum
from typing import Mapping, Sequence

from ..errors import TableError

__all__ = [
    "TableShape",
    "SHAPE_HEADERS",
    "CLASSIFICATION_TASKS",
    "OPENCLIP_SKIP_COLUMNS",
    "OPENCLIP_RETRIEVAL_COLUMNS",
    "LongCell",
    "detect_table_shape",
    "model_identity",
    "long_format_cells",
]


class TableShape(str, Enum):
    """A published results-table shape that :func:`vlmhub.tables.load_table` reads by path."""

    OPENCLIP_WIDE = "openclip-wide"
    LOVM_LONG = "lovm-long"
    CLIP_BENCHMARK = "clip-benchmark"
    GENERIC = "generic"


#: the header each shape needs, as shown in error messages
SHAPE_HEADERS: Mapping[TableShape, str] = MappingProxyType({
    TableShape.OPENCLIP_WIDE: "open_clip wide results: name, pretrained, <one column per dataset>",
    TableShape.LOVM_LONG: "LOVM long evaluation table: dataset, model_fullname or model (+ pretrained), acc1",
    TableShape.CLIP_BENCHMARK: "CLIP_benchmark results: dataset, model, pretrained, task, acc1, <other tasks' metrics>",
    TableShape.GENERIC: "generic: model, dataset, accuracy",
})

#: values of a ``task`` column whose rows are read (others: retrieval, linear probe, ... are skipped)
CLASSIFICATION_TASKS = ("zeroshot_classification", "")
#: open_clip columns that are not datasets
OPENCLIP_SKIP_COLUMNS = ("name", "pretrained", "params (M)", "FLOPs (B)")
#: open_clip's retrieval columns (recall, not classification accuracy): not read as datasets
OPENCLIP_RETRIEVAL_COLUMNS = ("Flickr", "MSCOCO", "WinoGAViL")
_OTHER_TASK_MARKERS = ("retrieval", "recall@", "mean_average_precision")
_REQUIRED: Mapping[TableShape, tuple[str, ...]] = MappingProxyType({
    TableShape.GENERIC: ("model", "dataset", "accuracy"),
    TableShape.LOVM_LONG: ("dataset", "model", "acc1"),
    TableShape.CLIP_BENCHMARK: ("dataset", "model", "pretrained", "task", "acc1"),
    TableShape.OPENCLIP_WIDE: ("name", "pretrained"),
})


def _norm(columns: Sequence[str]) -> dict[str, str]:
    """``{lower-case stripped name: name as written}`` (the first spelling wins)."""
    out: dict[str, str] = {}
    for c in columns:
        if c is None:
            continue
        out.setdefault(str(c).strip().lower(), str(c))
    return out


def detect_table_shape(columns: Sequence[str]) -> TableShape:
    """The shape of a table with this header (column names compared case-insensitively).

    >>> detect_table_shape(["model", "dataset", "accuracy"])
    <TableShape.GENERIC: 'generic'>
    >>> detect_table_shape(["", "task", "dataset", "model_fullname", "model", "pretrained", "acc1"])
    <TableShape.LOVM_LONG: 'lovm-long'>
    """
    cols = _norm(columns)
    has = cols.__contains__
    if has("model") and has("dataset") and has("accuracy"):
        return TableShape.GENERIC
    if has("dataset") and has("acc1") and (has("model_fullname") or has("model")):
        other_tasks = any(m in c for c in cols for m in _OTHER_TASK_MARKERS)
        if has("task") and other_tasks:
            return TableShape.CLIP_BENCHMARK
        return TableShape.LOVM_LONG
    if has("name") and has("pretrained") and not has("dataset"):
        skip = {c.lower() for c in OPENCLIP_SKIP_COLUMNS}
        if any(c not in skip and c and not c.startswith("average") for c in cols):
            return TableShape.OPENCLIP_WIDE
    accepted = "; ".join(f"{s.value} ({h})" for s, h in SHAPE_HEADERS.items())
    found = ", ".join(repr(str(c)) for c in columns) or "none"
    missing = {s: [c for c in need if not has(c)] for s, need in _REQUIRED.items()}
    lacks = "; ".join(f"{s.value} lacks {', '.join(m)}" for s, m in sorted(missing.items(), key=lambda kv: len(kv[1])) if m)
    raise TableError(
        f"the table's header is in none of the accepted shapes: {accepted}. Columns found: {found} "
        f"({lacks}). "
        "Rename the columns to one of these shapes (see docs/tables.md)"
    )


def model_identity(model: str, pretrained: str = "", fullname: str = "") -> tuple[str, str]:
    """``(architecture, pretrained tag)`` of a long-format row: ``model`` + ``pretrained`` where both
    exist, else ``model_fullname`` split at its first space (``"ViT-B-32 openai"``), else ``model`` alone."""
    model, pretrained, fullname = (model or "").strip(), (pretrained or "").strip(), (fullname or "").strip()
    if model and pretrained:
        return model, pretrained
    if fullname:
        arch, _, tag = fullname.partition(" ")
        return arch.strip(), tag.strip()
    return model, ""


@dataclass(frozen=True)
class LongCell:
    """One read row of a long table: the model, the dataset, its ``acc1`` and the CSV line it came from."""

    arch: str
    pretrained: str
    dataset: str
    acc: float
    line: int

    @property
    def model_id(self) -> str:
        return f"{self.arch}/{self.pretrained}" if self.pretrained else self.arch


def _number(text: str | None) -> float:
    t = (text or "").strip()
    if t in ("", "nan", "NaN", "NA", "-"):
        return math.nan
    return float(t)


def long_format_cells(rows: Sequence[Mapping[str, str]], shape: TableShape, source: str) -> list[LongCell]:
    """The zero-shot classification cells of a LOVM / CLIP_benchmark table (``rows`` as ``csv.DictReader``
    gives them; line numbers count the header as line 1).

    Rows of other tasks (a ``task`` column other than ``zeroshot_classification``) and rows without an
    ``acc1`` (e.g. CLIP_benchmark's multi-label VOC, which reports mAP) are skipped; a non-numeric or
    percentage ``acc1`` and conflicting duplicate rows are errors. A ``language`` column other than
    ``en`` makes a separate dataset ``"<dataset> (<language>)"``.
    """
    if shape not in (TableShape.LOVM_LONG, TableShape.CLIP_BENCHMARK):
        raise TableError(f"{source}: long_format_cells reads lovm-long or clip-benchmark tables, not {shape.value}")
    if not rows:
        raise TableError(f"{source} has no rows; a {shape.value} table needs one row per evaluated (model, dataset)")
    cols = _norm(list(rows[0].keys()))
    get = {k: cols.get(k) for k in ("dataset", "acc1", "model", "pretrained", "model_fullname", "task", "language")}
    cells: dict[tuple[str, str], LongCell] = {}
    skipped_tasks: set[str] = set()
    for line, r in enumerate(rows, start=2):
        if get["task"] is not None:
            task = (r.get(get["task"]) or "").strip().lower()
            if task not in CLASSIFICATION_TASKS:
                skipped_tasks.add(task)
                continue
        raw = r.get(get["acc1"])
        try:
            acc = _number(raw)
        except ValueError:
            raise TableError(f"{source}:{line}: acc1 {raw!r} is not a number; fix the cell or leave it empty") from None
        if math.isnan(acc):
            continue
        if not 0.0 <= acc <= 1.0:
            raise TableError(f"{source}:{line}: acc1 {acc} is outside [0, 1]; write fractions (divide percentages by 100)")
        arch, tag = model_identity(
            r.get(get["model"] or "", "") if get["model"] else "",
            r.get(get["pretrained"] or "", "") if get["pretrained"] else "",
            r.get(get["model_fullname"] or "", "") if get["model_fullname"] else "",
        )
        dataset = (r.get(get["dataset"]) or "").strip()
        if not arch or not dataset:
            raise TableError(f"{source}:{line}: empty model or dataset name; fill both (or drop the row)")
        lang = (r.get(get["language"]) or "").strip() if get["language"] else ""
        if lang and lang.lower() != "en":
            dataset = f"{dataset} ({lang})"
        cell = LongCell(arch, tag, dataset, acc, line)
        key = (cell.model_id, dataset)
        if key in cells and cells[key].acc != acc:
            raise TableError(
                f"{source}:{line}: model {cell.model_id!r} on dataset {dataset!r} has acc1 {acc} here and "
                f"{cells[key].acc} on line {cells[key].line}; keep one of the two rows"
            )
        cells.setdefault(key, cell)
    if not cells:
        other = f" (rows of other tasks skipped: {', '.join(sorted(skipped_tasks))})" if skipped_tasks else ""
        raise TableError(
            f"{source} has no zero-shot classification row with an acc1 value{other}; "
            "vlmhub ranks models from classification accuracies"
        )
    return list(cells.values())
