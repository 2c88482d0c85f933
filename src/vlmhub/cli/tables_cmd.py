"""``vlmhub benchmark-tables`` and ``vlmhub rank-models``: model selection from published result tables.

::

    vlmhub benchmark-tables TABLE... [--selectors a,b] [--out DIR] [--json] [--embedder minilm]
    vlmhub rank-models TABLE --task TASK_JSON [--selector NAME] [--top N] [--json] [--embedder minilm]
    vlmhub compare-tables TABLE... [--json] [--embedder minilm]

TABLE is ``openclip``, ``lovm`` (the shared tables) or a CSV in the generic long format (docs/tables.md).
Bad input raises :class:`~vlmhub.errors.TableError` / :class:`~vlmhub.errors.TaskError`; ``cli/main.py``
turns them into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "cmd_benchmark_tables", "cmd_rank_models", "cmd_compare_tables"]


def _data_dir(args: argparse.Namespace):
    settings = getattr(args, "settings", None)
    if settings is not None and getattr(settings, "data_dir", None) is not None:
        return settings.data_dir
    return getattr(args, "data_dir", None)


def _selector_names(text: str | None, default: list[str]) -> list[str]:
    from ..errors import TableError
    from ..tables import list_selectors

    if not text:
        return default
    names = [s.strip() for s in text.split(",") if s.strip()]
    known = list_selectors()
    bad = [n for n in names if n not in known]
    if bad:
        raise TableError(f"unknown selector(s) {', '.join(bad)}; choose from: {', '.join(known)}")
    return names


def cmd_benchmark_tables(args: argparse.Namespace) -> int:
    """Leave-one-dataset-out benchmark of the chosen selectors on each table; reports and optional files."""
    from ..errors import TableError
    from ..storage.atomic import atomic_write_bytes, atomic_write_text
    from ..tables import DEFAULT_SELECTOR, get_selector, list_selectors, load_table, run_benchmark
    from ..tables.compare import compare_with_baselines, side_by_side_json, side_by_side_markdown
    from ..tables.report import csv_report, markdown_report, plot_png, summary_json

    names = _selector_names(args.selectors, list_selectors())
    quiet = bool(getattr(args, "json", False) or getattr(args, "quiet", False))
    results, comparisons = [], []
    for spec in args.tables:
        table = load_table(spec, data_dir=_data_dir(args))
        if not quiet:
            print(f"# {table.summary()}", file=sys.stderr)
        sels = [get_selector(n, embedder=args.embedder) for n in names]
        res = run_benchmark(table, sels, progress=None)
        if not res:
            raise TableError(f"none of the selectors {', '.join(names)} can run on table {table.name!r}")
        results.extend(res)
        comparisons.append(compare_with_baselines(table, res, embedder=args.embedder))
    md = markdown_report(results, DEFAULT_SELECTOR) + "\n" + side_by_side_markdown(comparisons)
    summary = {**summary_json(results, DEFAULT_SELECTOR), "side_by_side": side_by_side_json(comparisons)}
    if args.out:
        out = Path(args.out)
        atomic_write_text(out / "tables_benchmark.md", md)
        atomic_write_text(out / "tables_benchmark.csv", csv_report(results))
        atomic_write_text(out / "tables_summary.json", json.dumps(summary, indent=1) + "\n")
        atomic_write_bytes(out / "tables_benchmark.png", plot_png(results))
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(md)
        if args.out:
            print(f"wrote tables_benchmark.md/.csv/.png and tables_summary.json to {args.out}")
    return 0


def cmd_compare_tables(args: argparse.Namespace) -> int:
    """INB, best-mean and the default selector side by side under leave-one-dataset-out, one row per table."""
    from ..tables import load_table
    from ..tables.compare import compare_with_baselines, side_by_side_json, side_by_side_markdown

    comparisons = []
    for spec in args.tables:
        table = load_table(spec, data_dir=_data_dir(args))
        if not args.json:
            print(f"# {table.summary()}", file=sys.stderr)
        comparisons.append(compare_with_baselines(table, embedder=args.embedder))
    if args.json:
        json.dump(side_by_side_json(comparisons), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(side_by_side_markdown(comparisons))
    return 0


def cmd_rank_models(args: argparse.Namespace) -> int:
    """Rank a table's models for a new task described only by a task JSON file."""
    from ..tables import DEFAULT_SELECTOR, get_selector, load_table, load_task_json

    from ..errors import TableError

    if args.top is not None and args.top < 1:
        raise TableError(f"--top must be a whole number >= 1 (got {args.top}); omit it to list every model.")
    task = load_task_json(args.task)
    table = load_table(args.table, data_dir=_data_dir(args))
    name = args.selector or DEFAULT_SELECTOR
    _selector_names(name, [])
    # the selectors refuse what they cannot do (INB without an ImageNet column, ModelGPT without the
    # task's per-model features) with a TableError that names the fix
    ranked = get_selector(name, embedder=args.embedder).fit(table).rank(task)
    if args.top is not None:
        ranked = ranked[: args.top]
    if args.json:
        json.dump({"task": task.name, "table": table.name, "selector": name, "models": [{"id": i, "score": s} for i, s in ranked]}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"{name} ranking of {table.n_models} models from {table.name} for {task.name!r}:")
        for k, (i, s) in enumerate(ranked, 1):
            print(f"{k:4d}  {s:+.4f}  {i}")
    return 0


def register(subparsers) -> None:
    """Add ``benchmark-tables``, ``compare-tables`` and ``rank-models`` to an argparse sub-parser collection."""
    sp = subparsers.add_parser("benchmark-tables", help="leave-one-dataset-out benchmark of selectors on result tables")
    sp.add_argument("tables", nargs="+", metavar="TABLE", help="openclip, lovm, or a generic-format CSV path")
    sp.add_argument("--selectors", help="comma-separated selector names (default: all)")
    sp.add_argument("--out", help="folder for Markdown, CSV, JSON summary and PNG plot")
    sp.add_argument("--embedder", default="minilm", help="text embedder: minilm (default), hashing256, or a path")
    sp.add_argument(
        "--json", action="store_true", help="print {default, selectors: {name: {regret, tau, tau_w, top5}}, side_by_side: [...]}"
    )
    sp.set_defaults(func=cmd_benchmark_tables)

    sp = subparsers.add_parser(
        "compare-tables", help="INB, best-mean and the default selector side by side (leave-one-dataset-out) per table"
    )
    sp.add_argument("tables", nargs="+", metavar="TABLE", help="openclip, lovm, or a table CSV in a published shape")
    sp.add_argument("--embedder", default="minilm", help="text embedder: minilm (default), hashing256, or a path")
    sp.add_argument(
        "--json", action="store_true", help="print [{table, n_targets, default, safe, choice, fold_choices, selectors}]"
    )
    sp.set_defaults(func=cmd_compare_tables)

    sp = subparsers.add_parser("rank-models", help="rank a table's models for a new task described by a task JSON")
    sp.add_argument("table", metavar="TABLE", help="openclip, lovm, or a generic-format CSV path")
    sp.add_argument("--task", required=True, help='task JSON {"name","domain","task","classes":[...]}')
    sp.add_argument("--selector", help="selector name (default: safe-default)")
    sp.add_argument("--top", type=int, help="print only the best N models")
    sp.add_argument("--embedder", default="minilm", help="text embedder: minilm (default), hashing256, or a path")
    sp.add_argument("--json", action="store_true", help='print {"models": [{"id", "score"}, ...]} best first')
    sp.set_defaults(func=cmd_rank_models)
