"""What ``vlmhub benchmark-tables`` and ``vlmhub rank-models`` (and the service's ``/v1/tables/{table}/rank``)
compute, as library calls returning frozen results.

* :func:`benchmark_tables`: the leave-one-dataset-out benchmark (:func:`~vlmhub.tables.run_benchmark`) of
  the chosen selectors on one or more tables -> :class:`TablesBenchmark` (JSON summary, Markdown, CSV,
  plot, files; rendered by :mod:`vlmhub.tables.report`);
* :func:`rank_table_models`: a table's models ranked by one selector for a task described by text ->
  :class:`ModelRanking`.

Bad input raises :class:`~vlmhub.errors.TableError` naming the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import TableError
from .protocol import SelectorResult, run_benchmark
from .records import PerformanceTable, TaskDescription
from .selectors import DEFAULT_SELECTOR, TableSelector, get_selector, list_selectors

__all__ = ["TablesBenchmark", "ModelRanking", "check_selector_names", "benchmark_tables", "rank_table_models"]


def check_selector_names(names: Sequence[str]) -> list[str]:
    """``names`` as a list if every one is a registered table selector, else a :class:`TableError` listing them."""
    known = list_selectors()
    bad = [n for n in names if n not in known]
    if bad:
        raise TableError(f"unknown selector(s) {', '.join(bad)}; choose from: {', '.join(known)}")
    return list(names)


@dataclass(frozen=True)
class TablesBenchmark:
    """Selector results over one or more tables (in table order, then selector order)."""

    results: tuple[SelectorResult, ...]
    default: str = DEFAULT_SELECTOR
    #: per table, INB / best-mean / the default side by side (:func:`vlmhub.tables.compare.compare_with_baselines`)
    comparisons: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{"default", "selectors": {name: {regret, tau, tau_w, top5, pearson, fit_s, score_s}}, "side_by_side"}``
        (several tables: keys ``"<table>/<selector>"`` and a ``"tables"`` listing); what ``--json`` prints."""
        from .compare import side_by_side_json
        from .report import summary_json

        out = summary_json(self.results, self.default)
        if self.comparisons:
            out["side_by_side"] = side_by_side_json(self.comparisons)
        return out

    def markdown(self) -> str:
        from .compare import side_by_side_markdown
        from .report import markdown_report

        md = markdown_report(self.results, self.default)
        return md + ("\n" + side_by_side_markdown(self.comparisons) if self.comparisons else "")

    def csv(self) -> str:
        from .report import csv_report

        return csv_report(self.results)

    def plot_png(self) -> bytes:
        from .report import plot_png

        return plot_png(self.results)

    def write(self, out: str | Path) -> list[Path]:
        """``tables_benchmark.md``, ``.csv``, ``.png`` and ``tables_summary.json`` into ``out``, atomically."""
        from ..storage.atomic import atomic_write_bytes, atomic_write_text

        out = Path(out)
        return [atomic_write_text(out / "tables_benchmark.md", self.markdown()),
                atomic_write_text(out / "tables_benchmark.csv", self.csv()),
                atomic_write_text(out / "tables_summary.json", json.dumps(self.to_dict(), indent=1) + "\n"),
                atomic_write_bytes(out / "tables_benchmark.png", self.plot_png())]


def benchmark_tables(tables: Sequence[str | Path | PerformanceTable], selectors: Sequence[str] | None = None, *,
                     embedder: str = "minilm", data_dir: Path | None = None,
                     progress: Callable[[str], None] | None = None) -> TablesBenchmark:
    """Leave-one-dataset-out benchmark of ``selectors`` (names; default: all) on every table (``"openclip"``,
    ``"lovm"``, a generic-format CSV path, or a loaded table). Selectors a table cannot serve are skipped;
    a table no selector can serve raises :class:`TableError`. ``progress`` gets each table's summary line."""
    from .io import load_table

    names = check_selector_names(selectors) if selectors else list_selectors()
    if not tables:
        raise TableError("no table given; pass openclip, lovm or the path of a generic-format CSV")
    from .compare import compare_with_baselines

    results: list[SelectorResult] = []
    comparisons = []
    for spec in tables:
        table = spec if isinstance(spec, PerformanceTable) else load_table(spec, data_dir=data_dir)
        if progress is not None:
            progress(table.summary())
        res = run_benchmark(table, [get_selector(n, embedder=embedder) for n in names], progress=None)
        if not res:
            raise TableError(f"none of the selectors {', '.join(names)} can run on table {table.name!r}")
        results.extend(res)
        comparisons.append(compare_with_baselines(table, res, embedder=embedder))
    return TablesBenchmark(tuple(results), DEFAULT_SELECTOR, tuple(comparisons))


@dataclass(frozen=True)
class ModelRanking:
    """A table's models for one task, best first (NaN scores last, ties in table order)."""

    task: str
    table: str
    selector: str
    n_models: int  # models in the table (``models`` may be cut to the top N)
    models: tuple[tuple[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """``{"task", "table", "selector", "models": [{"id", "score"}]}``: ``rank-models --json`` and the service."""
        return {"task": self.task, "table": self.table, "selector": self.selector,
                "models": [{"id": i, "score": s} for i, s in self.models]}

    def format(self) -> str:
        """The text ``vlmhub rank-models`` prints."""
        lines = [f"{self.selector} ranking of {self.n_models} models from {self.table} for {self.task!r}:"]
        lines += [f"{k:4d}  {s:+.4f}  {i}" for k, (i, s) in enumerate(self.models, 1)]
        return "\n".join(lines)


def rank_table_models(table: PerformanceTable, task: TaskDescription, selector: str | TableSelector | None = None, *,
                      top: int | None = None, embedder: str = "minilm") -> ModelRanking:
    """Rank ``table``'s models for ``task`` with ``selector`` (a name, default :data:`DEFAULT_SELECTOR`, fitted
    on the whole table here; or an already fitted instance, e.g. one a server keeps). ``top`` keeps the best N.

    Selectors refuse what they cannot do (INB without an ImageNet column, ModelGPT without the task's
    per-model features) with a :class:`TableError` that names the fix.
    """
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise TableError(f"top must be a whole number >= 1 (got {top!r}); omit it to list every model.")
    if isinstance(selector, TableSelector):
        fitted, name = selector, selector.name
    else:
        name = selector or DEFAULT_SELECTOR
        check_selector_names([name])
        fitted = get_selector(name, embedder=embedder).fit(table)
    ranked = fitted.rank(task)
    if top is not None:
        ranked = ranked[:top]
    return ModelRanking(task.name, table.name, name, table.n_models,
                        tuple((i, float(s)) for i, s in ranked))
