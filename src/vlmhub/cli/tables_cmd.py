"""``vlmhub benchmark-tables`` and ``vlmhub rank-models``: model selection from published result tables.

::

    vlmhub benchmark-tables TABLE... [--selectors a,b] [--out DIR] [--json] [--embedder minilm]
    vlmhub rank-models TABLE --task TASK_JSON [--selector NAME] [--top N] [--json] [--embedder minilm]
    vlmhub compare-tables TABLE... [--json] [--embedder minilm]

TABLE is ``openclip``, ``lovm`` (the shared tables) or a CSV in the generic long format (docs/tables.md).
Bad input raises :class:`~vlmhub.errors.TableError` / :class:`~vlmhub.errors.TaskError`; ``cli/main.py``
turns them into a one-line message and exit code 2. The computation is :func:`vlmhub.tables.benchmark_tables`
and :func:`vlmhub.tables.rank_table_models`; this module parses arguments and renders their results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["register", "cmd_benchmark_tables", "cmd_rank_models", "cmd_compare_tables"]


def _data_dir(args: argparse.Namespace, spec: str):
    """The data root to read table ``spec`` from (:func:`vlmhub.assets.table_root`): ``VLMHUB_DATA`` ->
    user data dir -> mirror -> the tables packaged in vlmhub; a missing one names `vlmhub data fetch ...`."""
    from ..assets import table_root

    return table_root(spec, getattr(args, "settings", None))


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def cmd_benchmark_tables(args: argparse.Namespace) -> int:
    """Leave-one-dataset-out benchmark of the chosen selectors on each table (:func:`vlmhub.tables.benchmark_tables`)."""
    from ..tables import benchmark_tables

    quiet = bool(getattr(args, "json", False) or getattr(args, "quiet", False))
    progress = None if quiet else (lambda summary: print(f"# {summary}", file=sys.stderr))
    from ..tables import load_table

    tables = [load_table(spec, data_dir=_data_dir(args, spec)) for spec in args.tables]
    result = benchmark_tables(tables, _names(args.selectors), embedder=args.embedder, progress=progress)
    if args.out:
        result.write(Path(args.out))
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(result.markdown())
        if args.out:
            print(f"wrote tables_benchmark.md/.csv/.png and tables_summary.json to {args.out}")
    return 0


def cmd_compare_tables(args: argparse.Namespace) -> int:
    """INB, best-mean and the default selector side by side under leave-one-dataset-out, one row per table."""
    from ..tables import load_table
    from ..tables.compare import compare_with_baselines, side_by_side_json, side_by_side_markdown

    comparisons = []
    for spec in args.tables:
        table = load_table(spec, data_dir=_data_dir(args, spec))
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
    """Rank a table's models for a new task described only by a task JSON file (:func:`vlmhub.tables.rank_table_models`)."""
    from ..errors import TableError
    from ..tables import check_selector_names, load_table, load_task_json, rank_table_models

    if args.top is not None and args.top < 1:
        raise TableError(f"--top must be a whole number >= 1 (got {args.top}); omit it to list every model.")
    if args.selector:
        check_selector_names([args.selector])
    task = load_task_json(args.task)
    table = load_table(args.table, data_dir=_data_dir(args, args.table))
    ranking = rank_table_models(table, task, args.selector, top=args.top, embedder=args.embedder)
    if args.json:
        json.dump(ranking.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(ranking.format())
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
