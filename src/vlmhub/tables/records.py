"""Typed records of the table benchmark: models, task descriptions and the performance table.

Everything here is pure (no file I/O). A :class:`PerformanceTable` is a models x datasets accuracy matrix
(fractions in [0, 1], NaN where a model was not evaluated) together with the metadata every selector may
use: per-model :class:`ModelInfo` (architecture family, size, parameters, FLOPs, pretraining data) and
per-dataset :class:`TaskDescription` (name, domain, task type, class names where known).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Mapping, Sequence

import numpy as np

from ..errors import TableError, TaskError

__all__ = [
    "ArchFamily",
    "ModelInfo",
    "TaskDescription",
    "PerformanceTable",
    "parse_model_name",
    "pretraining_source",
    "canonical_dataset_key",
    "task_from_dict",
    "detect_reference",
]


class ArchFamily(str, Enum):
    """Image-tower architecture family of a CLIP-style model, parsed from its name."""

    VIT = "ViT"
    RESNET = "RN"
    CONVNEXT = "ConvNext"
    EVA = "EVA"
    COCA = "CoCa"
    OTHER = "other"


_SIZE_ORDER = ("S", "M", "B", "L", "H", "g", "G", "bigG", "E", "SO400M")


def parse_model_name(name: str) -> tuple[ArchFamily, str, int | None]:
    """``(family, size, patch)`` of an open_clip architecture name.

    >>> parse_model_name("ViT-L-14-336")
    (<ArchFamily.VIT: 'ViT'>, 'L', 14)
    >>> parse_model_name("convnext_base_w")[:2]
    (<ArchFamily.CONVNEXT: 'ConvNext'>, 'base')
    """
    low = name.lower()
    patch: int | None = None
    size = ""
    if low.startswith("coca"):
        family = ArchFamily.COCA
    elif low.startswith("eva"):
        family = ArchFamily.EVA
    elif low.startswith("convnext"):
        family = ArchFamily.CONVNEXT
        m = re.match(r"convnext_([a-z]+)", low)
        size = m.group(1) if m else ""
        return family, size, None
    elif re.match(r"^rn\d", low):
        family = ArchFamily.RESNET
        m = re.match(r"rn(\d+)(x\d+)?", low)
        size = (m.group(1) + (m.group(2) or "")) if m else ""
        return family, size, None
    elif "vit" in low or "siglip" in low or "clip" in low:
        family = ArchFamily.VIT
    else:
        family = ArchFamily.OTHER
    m = re.search(r"vit-(bigG|SO400M|[A-Za-z]+)-(\d+)", name, flags=re.IGNORECASE)
    if m:
        size, patch = m.group(1), int(m.group(2))
        size = size if size in ("bigG", "SO400M", "g") else size.upper()
    else:
        m = re.search(r"(?:eva0\d|eva)-([A-Za-z]+)-(\d+)", low)
        if m:
            size, patch = m.group(1).upper() if m.group(1) != "g" else "g", int(m.group(2))
        elif "nllb-clip-large" in low:
            size = "L"
        elif "nllb-clip-base" in low:
            size = "B"
    return family, size, patch


_PRETRAIN_PATTERNS: tuple[tuple[str, str], ...] = (
    ("openai", "openai"),
    ("dfn", "dfn"),
    ("metaclip", "metaclip"),
    ("datacomp", "datacomp"),
    ("commonpool", "commonpool"),
    ("webli", "webli"),
    ("laion_aesthetic", "laion-aesthetic"),
    ("mscoco_finetuned", "laion2b+mscoco"),
    ("laion5b", "laion5b"),
    ("laion2b", "laion2b"),
    ("laion400m", "laion400m"),
    ("merged2b", "merged2b"),
    ("cc12m", "cc12m"),
    ("yfcc15m", "yfcc15m"),
    ("v1", "nllb-laion"),
)


def pretraining_source(pretrained: str) -> str:
    """Coarse pretraining data of an open_clip ``pretrained`` tag (``laion2b_s34b_b79k`` -> ``laion2b``)."""
    low = pretrained.lower()
    for pat, src in _PRETRAIN_PATTERNS:
        if pat in low:
            return src
    return low or "unknown"


@dataclass(frozen=True)
class ModelInfo:
    """One model (row) of a performance table.

    ``id`` is unique in its table (``"<arch>/<pretrained>"`` for open_clip models). ``params_m`` and
    ``gflops`` are NaN where unknown.
    """

    id: str
    arch: str = ""
    pretrained: str = ""
    family: str = ArchFamily.OTHER.value
    size: str = ""
    pretraining_data: str = "unknown"
    params_m: float = math.nan
    gflops: float = math.nan

    @classmethod
    def from_open_clip(cls, arch: str, pretrained: str, params_m: float = math.nan, gflops: float = math.nan) -> "ModelInfo":
        """Metadata parsed from an open_clip ``(architecture, pretrained tag)`` pair."""
        family, size, _ = parse_model_name(arch)
        return cls(
            id=f"{arch}/{pretrained}",
            arch=arch,
            pretrained=pretrained,
            family=family.value,
            size=size,
            pretraining_data=pretraining_source(pretrained),
            params_m=float(params_m),
            gflops=float(gflops),
        )


@dataclass(frozen=True)
class TaskDescription:
    """What a user knows about a task before running any model: the same fields as ``dataset.json``."""

    name: str
    domain: str = ""
    task: str = "image classification"
    classes: tuple[str, ...] = ()
    key: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise TaskError("a task needs a non-empty 'name'; add one to the task description")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.key:
            object.__setattr__(self, "key", canonical_dataset_key(self.name))

    @classmethod
    def from_task(cls, task) -> "TaskDescription":
        """The table-side view of a validated :class:`vlmhub.tasks.Task` (captions are not used here)."""
        return cls(name=task.name.strip(), domain=task.domain, task=task.task, classes=task.classes)

    def describe(self) -> str:
        """One sentence naming the task, its domain and task type (what the text embedder reads)."""
        dom = f" of {self.domain}" if self.domain else ""
        return f"{self.name}: a dataset{dom} for {self.task or 'image classification'}."

    def class_captions(self, limit: int | None = None) -> list[str]:
        """``"a photo of a {class}"`` captions, evenly subsampled to at most ``limit`` classes."""
        names = list(self.classes)
        if limit is not None and len(names) > limit:
            idx = np.linspace(0, len(names) - 1, limit).round().astype(int)
            names = [names[i] for i in idx]
        dom = self.domain or "image"
        return [f"a {dom} of {c.replace('_', ' ')}." for c in names]


def task_from_dict(obj: Mapping[str, object], *, source: str = "task description") -> TaskDescription:
    """Validate a ``{"name", "domain", "task", "classes"}`` mapping (the ``dataset.json`` format)."""
    if not isinstance(obj, Mapping):
        raise TaskError(f"{source} must be a JSON object with keys name, domain, task, classes; got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        raise TaskError(f"{source} has no 'name'; add a non-empty string field 'name'")
    classes = obj.get("classes", [])
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise TaskError(f"{source}: 'classes' must be a list of class-name strings")
    if len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if list(classes).count(c) > 1})
        raise TaskError(f"{source}: duplicate class names {dup[:5]}; make every class name unique")
    for k in ("domain", "task"):
        if k in obj and not isinstance(obj[k], str):
            raise TaskError(f"{source}: '{k}' must be a string")
    return TaskDescription(
        name=name.strip(),
        domain=str(obj.get("domain", "") or ""),
        task=str(obj.get("task", "") or "image classification"),
        classes=tuple(classes),
    )


_IMAGENET_KEYS = frozenset({"imagenet1k", "imagenet", "imagenet_1k", "ilsvrc2012"})


def canonical_dataset_key(name: str) -> str:
    """Lower-case alphanumeric key of a dataset name (``"ImageNet 1k"`` -> ``"imagenet1k"``)."""
    return re.sub(r"[^a-z0-9]+", "", name.lower())


@dataclass(frozen=True, eq=False)
class PerformanceTable:
    """Models x datasets accuracy matrix (fractions, NaN = missing) with model and dataset metadata.

    ``features`` optionally holds per-(model, dataset) feature matrices, e.g. ModelGPT's seven
    text-derived scores, as ``{name: array of shape (n_models, n_datasets)}``. ``reference`` names the
    ImageNet-1k column (read by INB, excluded from benchmark targets), or is ``None``.
    """

    name: str
    models: tuple[ModelInfo, ...]
    datasets: tuple[TaskDescription, ...]
    acc: np.ndarray
    features: Mapping[str, np.ndarray] = field(default_factory=dict)
    reference: str | None = None

    def __post_init__(self) -> None:
        acc = np.array(self.acc, dtype=np.float64, copy=True)
        if acc.ndim != 2 or acc.shape != (len(self.models), len(self.datasets)):
            raise TableError(
                f"table {self.name!r}: accuracy matrix has shape {acc.shape}, expected "
                f"({len(self.models)} models, {len(self.datasets)} datasets); fix the table file"
            )
        ids = [m.id for m in self.models]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise TableError(f"table {self.name!r}: duplicate model ids {dup[:5]}; every model must appear once")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise TableError(f"table {self.name!r}: duplicate dataset names; every dataset must appear once")
        finite = acc[np.isfinite(acc)]
        if finite.size and (finite.min() < 0.0 or finite.max() > 1.0 + 1e-9):
            raise TableError(
                f"table {self.name!r}: accuracies must be fractions in [0, 1] (found {finite.min():.3g}..{finite.max():.3g}); "
                "divide percentages by 100"
            )
        acc.setflags(write=False)
        object.__setattr__(self, "acc", acc)
        feats = {}
        for k, v in dict(self.features).items():
            arr = np.array(v, dtype=np.float64, copy=True)
            if arr.shape != acc.shape:
                raise TableError(f"table {self.name!r}: feature {k!r} has shape {arr.shape}, expected {acc.shape}")
            arr.setflags(write=False)
            feats[k] = arr
        object.__setattr__(self, "features", feats)
        if self.reference is not None and self.reference not in names:
            raise TableError(f"table {self.name!r}: reference dataset {self.reference!r} is not a column")

    # -- shape and lookup -----------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return len(self.models)

    @property
    def n_datasets(self) -> int:
        return len(self.datasets)

    @property
    def model_ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models)

    @property
    def dataset_names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.datasets)

    def dataset_index(self, name: str) -> int:
        """Column of ``name`` (exact, else by canonical key); :class:`TableError` if absent."""
        names = self.dataset_names
        if name in names:
            return names.index(name)
        key = canonical_dataset_key(name)
        for i, d in enumerate(self.datasets):
            if canonical_dataset_key(d.name) == key or d.key == key:
                return i
        raise TableError(f"dataset {name!r} is not in table {self.name!r}; columns are: {', '.join(names)}")

    def column(self, name: str) -> np.ndarray:
        return self.acc[:, self.dataset_index(name)]

    def reference_index(self) -> int | None:
        """Column index of the ImageNet-1k reference, if the table has one."""
        return None if self.reference is None else self.dataset_names.index(self.reference)

    # -- derived tables ---------------------------------------------------------------------------
    def without_dataset(self, name_or_index: str | int) -> "PerformanceTable":
        """The history of a leave-one-dataset-out split: this table minus one column."""
        j = name_or_index if isinstance(name_or_index, int) else self.dataset_index(name_or_index)
        keep = [i for i in range(self.n_datasets) if i != j]
        return self.select_datasets(keep)

    def select_datasets(self, indices: Sequence[int]) -> "PerformanceTable":
        idx = list(indices)
        ref = self.reference if self.reference in {self.datasets[i].name for i in idx} else None
        return PerformanceTable(
            name=self.name,
            models=self.models,
            datasets=tuple(self.datasets[i] for i in idx),
            acc=self.acc[:, idx],
            features={k: v[:, idx] for k, v in self.features.items()},
            reference=ref,
        )

    def select_models(self, indices: Sequence[int]) -> "PerformanceTable":
        idx = list(indices)
        return PerformanceTable(
            name=self.name,
            models=tuple(self.models[i] for i in idx),
            datasets=self.datasets,
            acc=self.acc[idx],
            features={k: v[idx] for k, v in self.features.items()},
            reference=self.reference,
        )

    def target_features(self, name_or_index: str | int) -> np.ndarray | None:
        """``(n_models, n_features)`` feature matrix of one column (sorted feature names), or ``None``."""
        if not self.features:
            return None
        j = name_or_index if isinstance(name_or_index, int) else self.dataset_index(name_or_index)
        return np.stack([self.features[k][:, j] for k in sorted(self.features)], axis=1)

    def with_name(self, name: str) -> "PerformanceTable":
        return replace(self, name=name)

    def summary(self) -> str:
        miss = int(np.isnan(self.acc).sum())
        return f"{self.name}: {self.n_models} models x {self.n_datasets} datasets ({miss} missing cells)"


def detect_reference(datasets: Sequence[TaskDescription]) -> str | None:
    """Name of the ImageNet-1k column among ``datasets`` (by canonical key), if any."""
    for d in datasets:
        if canonical_dataset_key(d.name) in _IMAGENET_KEYS or d.key in _IMAGENET_KEYS:
            return d.name
    return None


def target_indices(table: "PerformanceTable", exclude_reference: bool = True) -> list[int]:
    """Columns that serve as targets: all but the reference, with at least two evaluated models."""
    ref = table.reference_index() if exclude_reference else None
    return [j for j in range(table.n_datasets) if j != ref and np.isfinite(table.acc[:, j]).sum() >= 2]
