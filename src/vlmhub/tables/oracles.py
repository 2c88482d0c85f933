"""Ceilings of table-based selection: oracles that *see the hidden target column* (pure numpy/scipy).

A selector for a new task knows the task's description and the history columns. These oracles are allowed
to look at the target's true accuracies and so bound what any selector of a given form can reach under
the leave-one-dataset-out protocol:

* ``fixed-best`` -- the one model with the lowest mean regret over all targets, used on every target
  (the best *task-independent* choice in hindsight; top-1 only);
* ``column-corr`` / ``column-tau`` / ``column-regret`` -- rank the models by the single history column
  that is truly most correlated with the target / has the highest true Kendall tau / picks the model with
  the lowest true regret (the best any "pick one neighbour dataset" selector, such as text kNN, can do);
* ``anchor-top5`` -- the best model among the anchor's (INB's) top 5 (top-1 only): the ceiling of
  re-ranking a shortlist;
* ``columns-nonneg`` -- non-negative least squares of the target on the z-scored history columns, fitted to
  the target: the mixture of history columns closest to the target, i.e. what a selector that scores
  models as a *non-negative mixture of history columns* (MLL's Eq. 6-7 at dataset level, text kNN,
  vlmhub's anchored kernel) would output if it knew the weights. It is the squared-error optimum, not the
  tau optimum, so it approximates that family's ceiling rather than bounding it;
* ``pcs-k`` -- least squares of the target column on ``[1, U_1..U_k]``, the top-k principal components of
  the z-scored history, fitted *to the target* (k + 1 free parameters chosen with the answer in hand);
  ``k = n_history`` is the in-sample regression on every history column. Any selector that predicts a
  target column as a low-dimensional function of the history (MLL's Eq. 7 at dataset level, Fennec's
  NMF, kernel kNN, vlmhub's anchored kernel) is bounded by the matching ``pcs-k`` row only if its k
  numbers were also perfect -- in practice it must predict them from text, so it lands well below.

``ceiling_table(table)`` returns one :class:`OracleResult` per oracle; ``benchmarks/table_oracles.py``
prints them for the shared tables (docs/tables.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.optimize import nnls

from ..ranking import nan_last
from .metrics import target_metrics
from .protocol import target_indices
from .records import PerformanceTable
from .selectors.base import zscore_columns

__all__ = ["OracleResult", "ceiling_table", "ceiling_plot_png", "DEFAULT_PC_COUNTS"]

DEFAULT_PC_COUNTS: tuple[int, ...] = (1, 3, 5, 8, 12, 20)


@dataclass(frozen=True)
class OracleResult:
    """Mean regret (points) and Kendall tau of one oracle over a table's targets (tau NaN: top-1 only)."""

    name: str
    description: str
    regret: float
    tau: float
    n_targets: int
    #: ``(dataset, regret, tau)`` per target, in table order
    per_target: tuple[tuple[str, float, float], ...] = ()


def _regret_tau(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    m = target_metrics(s, y)
    return m.regret, m.tau


def ceiling_table(table: PerformanceTable, pc_counts: Sequence[int] = DEFAULT_PC_COUNTS) -> list[OracleResult]:
    """Every oracle of the module doc on ``table`` (targets: all columns but the ImageNet reference)."""
    A = np.asarray(table.acc, dtype=np.float64)
    idx = target_indices(table)
    ref = table.reference_index()
    rows: dict[str, list[tuple[str, float, float]]] = {}
    names = table.dataset_names
    desc: dict[str, str] = {}

    def add(name: str, text: str, regret: float, tau: float) -> None:
        rows.setdefault(name, []).append((names[j], regret, tau))
        desc[name] = text

    for j in idx:
        y_all = A[:, j]
        H_all = np.delete(A, j, axis=1)
        ok = np.isfinite(y_all)
        y, H = y_all[ok], H_all[ok]
        Z = zscore_columns(H)
        h = Z.shape[1]
        if ref is not None:
            anchor = A[ok, ref]
            m = target_metrics(anchor, y)
            add("anchor", "INB: rank by the ImageNet column (for reference, not an oracle)", m.regret, m.tau)
            top5 = np.argsort(-anchor, kind="stable")[:5]
            add("anchor-top5", "best model among INB's top 5 (top-1 only)", float((y.max() - y[top5].max()) * 100.0), math.nan)
        cols = [Z[:, c] for c in range(h)]
        with np.errstate(all="ignore"):
            corr = np.array([np.nan_to_num(np.corrcoef(c, y)[0, 1], nan=-1.0) for c in cols])
        regs, taus = (np.array(v) for v in zip(*(_regret_tau(c, y) for c in cols)))
        # a constant column ranks nothing (tau 0 by vlmhub.ranking) and a NaN tau means nothing to rank:
        # neither is ever the tau oracle's pick
        taus = np.where([np.ptp(nan_last(c)) == 0 for c in cols], -1.0, np.nan_to_num(taus, nan=-1.0))
        for name, text, pick in (
            ("column-corr", "rank by the history column truly most correlated (Pearson) with the target", int(np.argmax(corr))),
            ("column-tau", "rank by the history column with the highest true Kendall tau", int(np.argmax(taus))),
            ("column-regret", "rank by the history column with the lowest true regret", int(np.argmin(regs))),
        ):
            add(name, text, float(regs[pick]), float(taus[pick]))
        ys = (y - y.mean()) / (y.std() if y.std() > 0 else 1.0)
        w, _ = nnls(Z, ys)
        p = Z @ w
        add("columns-nonneg", "non-negative least squares on the history columns, fitted to the target "
            "(what MLL Eq. 7, kNN or vlmhub would score with perfect weights)", *_regret_tau(p, y))
        U, _, _ = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
        for k in sorted(set(min(int(k), h) for k in pc_counts) | {h}):
            X = np.c_[np.ones(len(y)), U[:, :k]]
            p = X @ np.linalg.lstsq(X, y, rcond=None)[0]
            label = f"pcs-{k}" if k < h else "pcs-all"
            text = (
                f"least squares of the target on the top {k} principal components of the history, fitted to the target"
                if k < h
                else "least squares of the target on every history column, fitted to the target (in-sample)"
            )
            add(label, text, *_regret_tau(p, y))
    # the single model with the lowest mean regret over all targets (models missing a target are excluded)
    R = np.stack([(np.nanmax(A[:, j]) - np.where(np.isfinite(A[:, j]), A[:, j], -np.inf)) * 100.0 for j in idx], axis=1)
    mean_r = R.mean(1)
    if np.isfinite(mean_r).any():
        best_fixed = int(np.argmin(mean_r))
        rows["fixed-best"] = [(names[j], float(r), math.nan) for j, r in zip(idx, R[best_fixed])]
        desc["fixed-best"] = f"the same model on every target, best in hindsight ({table.model_ids[best_fixed]}; top-1 only)"
    out = []
    for name, vals in rows.items():
        reg = float(np.mean([r for _, r, _ in vals]))
        taus_ = [t for _, _, t in vals if math.isfinite(t)]
        tau = float(np.mean(taus_)) if taus_ else math.nan
        out.append(OracleResult(name, desc[name], reg, tau, len(vals), tuple(vals)))
    return out


def ceiling_plot_png(ceilings: dict[str, Sequence[OracleResult]], selectors: dict[str, dict[str, tuple[float, float]]] | None = None,
                     goals: dict[str, tuple[float, float]] | None = None) -> bytes:
    """Regret and tau of the ``pcs-k`` oracles against k (parameters fitted to the hidden target), per table.

    ``selectors[table][name] = (regret, tau)`` draws measured selectors as horizontal lines and
    ``goals[table] = (regret, tau)`` the targets, so one can see how many target-fitted parameters a
    selector would need to reach them. PNG bytes.
    """
    from ..plotting import new_figure, png_bytes

    fig = new_figure((10, 3.4 * len(ceilings)))
    colors = ["#4477aa", "#228833", "#ee6677", "#aa3377", "#66ccee"]
    for row, (table, rows) in enumerate(ceilings.items()):
        pcs = [r for r in rows if r.name.startswith("pcs-")]
        h = max((int(r.name[4:]) for r in pcs if r.name != "pcs-all"), default=1)
        ks = [int(r.name[4:]) if r.name != "pcs-all" else h + 1 + 4 for r in pcs]
        for col, (metric, label) in enumerate((("regret", "mean regret (points, lower is better)"), ("tau", "mean Kendall tau (higher is better)"))):
            ax = fig.add_subplot(len(ceilings), 2, row * 2 + col + 1)
            ax.plot(ks, [getattr(r, metric) for r in pcs], "o-", color="black", label="least squares on top-k PCs, fitted to the target")
            mix = next((r for r in rows if r.name == "columns-nonneg"), None)
            if mix is not None:
                ax.axhline(getattr(mix, metric), color="gray", lw=1.2, ls="-.",
                           label="best non-negative column mixture, fitted to the target")
            for i, (name, vals) in enumerate((selectors or {}).get(table, {}).items()):
                ax.axhline(vals[col], color=colors[i % len(colors)], lw=1.2, ls="--", label=f"{name} (measured)")
            if goals and table in goals:
                ax.axhline(goals[table][col], color="red", lw=1.5, ls=":", label="goal")
            ax.set_xscale("log")
            ax.set_xticks(ks)
            ax.set_xticklabels([r.name[4:] for r in pcs], fontsize=8)
            ax.set_xlabel("k = history components fitted to the hidden target column", fontsize=8)
            ax.set_title(f"{table}: {label}", fontsize=9)
            ax.legend(fontsize=6.5, loc="best")
    fig.tight_layout()
    return png_bytes(fig)
