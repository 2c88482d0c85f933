"""The default selector side by side with the two simple baselines, INB and best-mean, per table.

:func:`compare_with_baselines` runs (or reuses) the leave-one-dataset-out results of ``inb``,
``best-mean`` and the default on one table and reports which candidates the default used;
:func:`side_by_side_markdown` / :func:`side_by_side_json` render a list of them (``vlmhub
benchmark-tables`` prints both). The default is *safe* on a table when its
:meth:`~vlmhub.tables.protocol.SelectorResult.utility` (``tau - regret / 100``) is at least the better
baseline's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .protocol import SelectorResult, leave_one_dataset_out
from .records import PerformanceTable
from .selectors import DEFAULT_SELECTOR, get_selector

__all__ = ["BaselineRow", "BaselineComparison", "compare_with_baselines", "side_by_side_markdown", "side_by_side_json"]

BASELINES = ("inb", "best-mean")


@dataclass(frozen=True)
class BaselineRow:
    """One selector's means over a table's targets."""

    selector: str
    regret: float
    tau: float
    utility: float


@dataclass(frozen=True)
class BaselineComparison:
    """INB, best-mean and the default on one table; ``choice`` is what the default uses when fitted on
    the whole table (what ``rank-models`` would use), ``fold_choices`` what it used per held-out target."""

    table: str
    n_targets: int
    default: str
    rows: tuple[BaselineRow, ...]
    choice: str = ""
    fold_choices: Mapping[str, int] = field(default_factory=dict)

    def row(self, selector: str) -> BaselineRow | None:
        return next((r for r in self.rows if r.selector == selector), None)

    @property
    def best_baseline(self) -> BaselineRow:
        """The better of INB and best-mean by utility (INB where they tie)."""
        base = [r for r in self.rows if r.selector in BASELINES]
        return max(base, key=lambda r: (r.utility, r.selector == "inb"))

    @property
    def safe(self) -> bool:
        """The default's utility is at least the better baseline's (1e-9 slack for float round-off)."""
        d = self.row(self.default)
        return d is not None and d.utility >= self.best_baseline.utility - 1e-9


def _row(r: SelectorResult) -> BaselineRow:
    return BaselineRow(r.selector, r.mean("regret"), r.mean("tau"), r.utility())


def compare_with_baselines(
    table: PerformanceTable,
    results: Sequence[SelectorResult] = (),
    *,
    default: str = DEFAULT_SELECTOR,
    embedder="minilm",
) -> BaselineComparison:
    """INB (where the table has an ImageNet-1k column), best-mean and ``default`` on ``table``; results
    already computed for this table (same selector names) are reused, the others are run."""
    have = {r.selector: r for r in results if r.table == table.name}
    rows, default_result = [], None
    for name in (*BASELINES, default):
        if name == "inb" and table.reference is None:
            continue
        res = have.get(name) or leave_one_dataset_out(table, get_selector(name, embedder=embedder))
        rows.append(_row(res))
        if name == default:
            default_result = res
    full = get_selector(default, embedder=embedder).fit(table)
    return BaselineComparison(
        table=table.name,
        n_targets=len(default_result.targets) if default_result else 0,
        default=default,
        rows=tuple(rows),
        choice=str(getattr(full, "choice_", "")),
        fold_choices=default_result.choices() if default_result else {},
    )


def _fmt(x: float, nd: int) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def side_by_side_markdown(comparisons: Sequence[BaselineComparison]) -> str:
    """One row per table: regret / tau of INB, best-mean and the default, whether it is safe, what it used."""
    lines = [
        "## Default vs. INB and best-mean (leave-one-dataset-out)",
        "",
        "| table | targets | INB regret / tau | best-mean regret / tau | default regret / tau | default >= better baseline | default uses (whole table) | per held-out target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        cells = []
        for name in (*BASELINES, c.default):
            r = c.row(name)
            cells.append("-" if r is None else f"{_fmt(r.regret, 2)} / {_fmt(r.tau, 3)}")
        folds = ", ".join(f"{k} x{v}" for k, v in sorted(c.fold_choices.items(), key=lambda kv: -kv[1]))
        lines.append(
            f"| {c.table} | {c.n_targets} | {' | '.join(cells)} | {'yes' if c.safe else 'NO'} | {c.choice or '-'} | {folds or '-'} |"
        )
    lines.append("")
    lines.append("utility = tau - regret / 100; 'default >= better baseline' compares utilities.")
    return "\n".join(lines) + "\n"


def side_by_side_json(comparisons: Sequence[BaselineComparison]) -> list[dict]:
    """``[{table, n_targets, default, safe, choice, fold_choices, selectors: {name: {regret, tau, utility}}}]``."""
    return [
        {
            "table": c.table,
            "n_targets": c.n_targets,
            "default": c.default,
            "safe": c.safe,
            "choice": c.choice,
            "fold_choices": dict(c.fold_choices),
            "selectors": {r.selector: {"regret": r.regret, "tau": r.tau, "utility": r.utility} for r in c.rows},
        }
        for c in comparisons
    ]
