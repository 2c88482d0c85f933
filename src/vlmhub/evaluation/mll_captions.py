"""Attach the MLL authors' released GPT captions (``<data>/mll/captions/<dataset>.json``) to a task.

The released files name classes their own way ("100kph Speed limit", "0 - zero"); each task class is matched
to the released class with the highest token overlap (numbers count, "kph"/"km-h" are unified); classes with
no overlap get no captions. Used by the benchmark's ``captions=user`` ablation (the paper's setting).
"""

from __future__ import annotations

from types import MappingProxyType

import re
from dataclasses import replace
from pathlib import Path

from ..storage.atomic import read_json
from ..tasks import Task

__all__ = ["MLL_DATASETS", "attach_mll_captions"]

#: shared target -> file stem in mll/captions
MLL_DATASETS = MappingProxyType({"mnist-test": "MNIST", "gtsrb-test": "GTSRB", "fer2013-test": "FER2013", "dtd10": "DTD", "flowers5": "Flowers102"})


def _tokens(name: str) -> set[str]:
    s = name.lower().replace("km-h", "kph").replace("km/h", "kph")
    s = re.sub(r"(\d+)kph", r"\1 kph", s)
    return set(re.findall(r"[a-z]+|\d+(?:\.\d+)?", s)) - {"of", "the", "a", "for", "and", "-"}


def attach_mll_captions(task: Task, data_dir: Path, dataset: str | None = None) -> Task:
    """A copy of ``task`` with the released captions of its classes (unchanged if none are released)."""
    stem = MLL_DATASETS.get(dataset or task.name)
    path = Path(data_dir) / "mll" / "captions" / f"{stem}.json" if stem else None
    if path is None or not path.is_file():
        return task
    released: dict[str, list[str]] = read_json(path, "released MLL captions")
    rtoks = {k: _tokens(k) for k in released}
    caps = {}
    for c in task.classes:
        ct = _tokens(c)
        best, score = None, 0.0
        for k, kt in rtoks.items():
            inter = len(ct & kt)
            if not inter:
                continue
            j = inter / len(ct | kt)
            if j > score:
                best, score = k, j
        if best is not None and score >= 0.34:
            caps[c] = tuple(x.strip() for x in released[best] if x.strip())
    return replace(task, captions=caps) if caps else task
