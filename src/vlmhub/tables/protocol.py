"""Leave-one-dataset-out protocol.

For every target column of a table (all columns except the ImageNet-1k reference, which INB reads):
hide the column, fit a fresh clone of the selector on the remaining columns (the *history*), score the
table's models for the target's :class:`~vlmhub.tables.TaskDescription` (and, for ModelGPT, the target's
per-model features) and compare with the hidden accuracies (:func:`~vlmhub.tables.metrics.target_metrics`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import TableError
from .metrics import METRIC_NAMES, TargetMetrics, target_metrics
from .records import PerformanceTable
from .records import target_indices  # noqa: F401  (re-exported: part of the protocol's API)
from .selectors import TableSelector, get_selector

__all__ = ["TargetResult", "SelectorResult", "target_indices", "leave_one_dataset_out", "run_benchmark", "SUMMARY_METRICS"]

SUMMARY_METRICS = ("regret", "tau", "tau_w", "pearson", "top5", "selected_acc")


@dataclass(frozen=True)
class TargetResult:
    """One selector on one hidden target column."""

    dataset: str
    selected: str
    best: str
    metrics: TargetMetrics
    #: what a selector that chooses among candidates used on this target (``safe-default``), else ""
    choice: str = ""


@dataclass(frozen=True)
class SelectorResult:
    """One selector over all targets of one table, with mean fit and score wall times (seconds)."""

    selector: str
    table: str
    targets: tuple[TargetResult, ...]
    fit_s: float
    score_s: float

    def mean(self, metric: str) -> float:
        if metric not in METRIC_NAMES:
            raise TableError(f"unknown metric {metric!r}; choose one of {', '.join(METRIC_NAMES)}")
        vals = [getattr(t.metrics, metric) for t in self.targets]
        vals = [v for v in vals if math.isfinite(v)]
        return float(np.mean(vals)) if vals else math.nan

    def summary(self) -> dict[str, float]:
        return {m: self.mean(m) for m in SUMMARY_METRICS}

    def utility(self) -> float:
        """The protocol's single figure of merit: ``mean tau - mean regret / 100`` (one point of regret
        costs as much as 0.01 of Kendall tau); "never worse than INB and best-mean" is read on it."""
        return self.mean("tau") - self.mean("regret") / 100.0

    def choices(self) -> dict[str, int]:
        """How often each :attr:`TargetResult.choice` occurred over the targets (empty for plain selectors)."""
        out: dict[str, int] = {}
        for t in self.targets:
            if t.choice:
                out[t.choice] = out.get(t.choice, 0) + 1
        return out


def leave_one_dataset_out(
    table: PerformanceTable,
    selector: TableSelector | str,
    *,
    targets: Sequence[str] | None = None,
    exclude_reference: bool = True,
    progress: Callable[[str], None] | None = None,
) -> SelectorResult:
    """Run the protocol for one selector (a name or an unfitted instance, cloned per fold)."""
    proto = get_selector(selector) if isinstance(selector, str) else selector
    if proto.requires_features and not table.features:
        raise TableError(f"selector {proto.name!r} needs per-(model, dataset) features, which table {table.name!r} lacks")
    idx = [table.dataset_index(t) for t in targets] if targets is not None else target_indices(table, exclude_reference)
    if table.n_datasets < 2 or not idx:
        raise TableError(f"table {table.name!r} needs at least two datasets for leave-one-dataset-out ({table.summary()})")
    results, fit_t, score_t = [], [], []
    ids = table.model_ids
    for j in idx:
        history = table.without_dataset(j)
        sel = proto.clone()
        t0 = time.perf_counter()
        sel.fit(history)
        t1 = time.perf_counter()
        scores = sel.score(table.datasets[j], features=table.target_features(j))
        t2 = time.perf_counter()
        fit_t.append(t1 - t0)
        score_t.append(t2 - t1)
        m = target_metrics(scores, table.acc[:, j])
        key = np.where(np.isfinite(table.acc[:, j]), np.where(np.isfinite(scores), scores, -np.inf), -np.inf)
        sel_i = int(np.argmax(key)) if np.isfinite(key).any() else int(np.nanargmax(table.acc[:, j]))
        best_i = int(np.nanargmax(table.acc[:, j]))
        results.append(TargetResult(table.datasets[j].name, ids[sel_i], ids[best_i], m, str(getattr(sel, "choice_", ""))))
        if progress is not None:
            progress(f"{proto.name} {table.datasets[j].name}: regret {m.regret:.2f} tau {m.tau:.3f}")
    return SelectorResult(proto.name, table.name, tuple(results), float(np.mean(fit_t)), float(np.mean(score_t)))


def run_benchmark(
    table: PerformanceTable,
    selectors: Sequence[TableSelector | str],
    *,
    progress: Callable[[str], None] | None = None,
    skip_unsupported: bool = True,
) -> list[SelectorResult]:
    """Every selector through :func:`leave_one_dataset_out`; selectors a table cannot serve are skipped."""
    out = []
    for s in selectors:
        proto = get_selector(s) if isinstance(s, str) else s
        if proto.requires_features and not table.features:
            if skip_unsupported:
                continue
        if proto.name == "inb" and table.reference is None:
            if skip_unsupported:
                continue
        out.append(leave_one_dataset_out(table, proto, progress=progress))
    return out
