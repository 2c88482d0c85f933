"""``vlmhub benchmark``: the MLL benchmark over target tasks (Table 1, Figure 3, label quality, ablations).

Parses the arguments, runs :func:`vlmhub.evaluation.benchmark.run_mll_benchmark` and renders its result
with :mod:`vlmhub.evaluation.benchmark_report`: ``report.md``, CSV tables, PNG plots and
``summary.json`` in ``--out`` (default ``<home>/reports/benchmark``); the report (or, with ``--json``,
the summary) on stdout.
"""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "cmd_benchmark"]


def cmd_benchmark(args) -> int:
    from pathlib import Path

    from ..evaluation.benchmark import BenchmarkConfig, run_mll_benchmark
    from ..evaluation.benchmark_report import report_markdown, write_benchmark_report
    from ..hub import Hub
    from .main import _task

    config = BenchmarkConfig(limit_per_class=args.limit_per_class, orders=args.orders, weighting=args.weighting,
                             ablations=not args.no_ablations)
    hub = Hub(args.settings, model_ids=[m for m in args.models.split(",") if m] if args.models else None)
    tasks = [_task(t, hub.settings) for t in args.targets.split(",") if t]
    result = run_mll_benchmark(hub, tasks, config, progress=not args.quiet)
    out = Path(args.out) if args.out else hub.settings.home / "reports" / "benchmark"
    summary = write_benchmark_report(result, out)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(report_markdown(result))
        print(f"\nwritten to {out}")
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    from ..evaluation.benchmark import DEFAULT_TARGETS

    sp = subparsers.add_parser("benchmark", help="the MLL benchmark: methods x targets, hub growth, label quality, ablations")
    sp.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                    help="target task folders or shared target names, comma-separated")
    sp.add_argument("--limit-per-class", type=int, default=50, help="seeded images per class (default 50)")
    sp.add_argument("--orders", type=int, default=30, help="random hub orders for the growth curve (default 30)")
    sp.add_argument("--weighting", choices=["entropy", "inverse_entropy", "uniform"], default="inverse_entropy")
    sp.add_argument("--no-ablations", action="store_true")
    sp.add_argument("--models", help="comma-separated model ids (default: the whole hub)")
    sp.add_argument("--out", help="output folder (default <home>/reports/benchmark)")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("-q", "--quiet", action="store_true")
    sp.set_defaults(func=cmd_benchmark)
    return sp
