"""Rendering benchmark results: Markdown, CSV, JSON summary and a PNG plot (pure: returns text/bytes)."""

from __future__ import annotations

import csv
import io
from typing import Sequence

from .metrics import METRIC_NAMES
from .protocol import SelectorResult

__all__ = ["summary_json", "markdown_report", "csv_report", "plot_png"]


def summary_json(results: Sequence[SelectorResult], default: str) -> dict:
    """``{"default": name, "selectors": {name: {regret, tau, tau_w, top5, pearson, fit_s, score_s}}}``.

    With several tables, selectors are keyed ``"<table>/<selector>"`` and also listed per table.
    """
    tables = sorted({r.table for r in results})
    out: dict = {"default": default, "selectors": {}}
    for r in results:
        key = r.selector if len(tables) == 1 else f"{r.table}/{r.selector}"
        out["selectors"][key] = {
            "regret": r.mean("regret"),
            "tau": r.mean("tau"),
            "tau_w": r.mean("tau_w"),
            "top5": r.mean("top5"),
            "pearson": r.mean("pearson"),
            "fit_s": r.fit_s,
            "score_s": r.score_s,
        }
    if len(tables) > 1:
        out["tables"] = {t: [r.selector for r in results if r.table == t] for t in tables}
    return out


def _fmt(x: float, nd: int = 3) -> str:
    return "nan" if x != x else f"{x:.{nd}f}"


def markdown_report(results: Sequence[SelectorResult], default: str) -> str:
    lines = ["# Table benchmark (leave-one-dataset-out)", ""]
    for table in dict.fromkeys(r.table for r in results):
        rs = [r for r in results if r.table == table]
        n = len(rs[0].targets) if rs else 0
        lines += [
            f"## {table} ({n} targets)",
            "",
            "| selector | regret (points) | Kendall tau | tau_w | Pearson | top-5 overlap | selected acc | fit s | rank s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rs:
            mark = " (default)" if r.selector == default else ""
            lines.append(
                f"| {r.selector}{mark} | {_fmt(r.mean('regret'), 2)} | {_fmt(r.mean('tau'))} | {_fmt(r.mean('tau_w'))} | "
                f"{_fmt(r.mean('pearson'))} | {_fmt(r.mean('top5'))} | {_fmt(r.mean('selected_acc'))} | {r.fit_s:.3f} | {r.score_s:.4f} |"
            )
        lines += ["", f"### {table}: regret per target (points)", ""]
        lines.append("| dataset | " + " | ".join(r.selector for r in rs) + " |")
        lines.append("|---" * (len(rs) + 1) + "|")
        if rs:
            for k, tr in enumerate(rs[0].targets):
                lines.append(f"| {tr.dataset} | " + " | ".join(_fmt(r.targets[k].metrics.regret, 2) for r in rs) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def csv_report(results: Sequence[SelectorResult]) -> str:
    """One row per (table, selector, target) with every metric and the selected/best model."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "selector", "dataset", "selected", "best", *METRIC_NAMES])
    for r in results:
        for t in r.targets:
            w.writerow([r.table, r.selector, t.dataset, t.selected, t.best, *(repr(float(getattr(t.metrics, m))) for m in METRIC_NAMES)])
    return buf.getvalue()


def plot_png(results: Sequence[SelectorResult]) -> bytes:
    """Bar chart of mean regret and Kendall tau per selector (one panel row per table), as PNG bytes."""
    from ..plotting import new_figure, png_bytes

    tables = list(dict.fromkeys(r.table for r in results))
    fig = new_figure((10, 3.2 * max(1, len(tables))))
    for row, table in enumerate(tables):
        rs = [r for r in results if r.table == table]
        names = [r.selector for r in rs]
        for col, (metric, label) in enumerate((("regret", "mean regret (points, lower is better)"), ("tau", "mean Kendall tau (higher is better)"))):
            ax = fig.add_subplot(len(tables), 2, row * 2 + col + 1)
            ax.bar(range(len(rs)), [r.mean(metric) for r in rs], color="#4477aa" if col == 0 else "#228833")
            ax.set_xticks(range(len(rs)))
            ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
            ax.set_title(f"{table}: {label}", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)
