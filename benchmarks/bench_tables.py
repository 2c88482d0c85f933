"""Fit and rank wall time of every table selector, and the default side by side with INB and best-mean.

    python benchmarks/bench_tables.py [--embedder minilm] [--repeats 3] [--compare]
    python benchmarks/bench_tables.py --smoke      # synthetic 12 x 7 table, hashing embedder (a test runs it)

One fit on the full table (all datasets as history) and one ranking of a held-out-style task per selector;
prints a Markdown table. ``--compare`` (and ``--smoke``) also print INB / best-mean / the default under
leave-one-dataset-out (:func:`vlmhub.tables.compare.compare_with_baselines`, as ``vlmhub compare-tables``).
Needs the shared data folder (VLMHUB_DATA), except with ``--smoke``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import synthetic_table  # noqa: E402

from vlmhub.tables import get_selector, list_selectors, load_table  # noqa: E402
from vlmhub.tables.compare import compare_with_baselines, side_by_side_markdown  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", action="store_true", help="also print INB / best-mean / default per table")
    ap.add_argument("--smoke", action="store_true", help="a synthetic table, hashing embedder, one repeat")
    args = ap.parse_args(argv)
    tables = {name: (lambda n=name: load_table(n)) for name in ("openclip", "lovm")}
    if args.smoke:
        tables, args.embedder, args.repeats = {"synthetic": synthetic_table}, "hashing256", 1
    print("| table | selector | fit s | rank s |\n|---|---|---|---|")
    loaded = []
    for name, load in tables.items():
        table = load()
        loaded.append(table)
        task = table.datasets[1]
        for sel_name in list_selectors():
            sel = get_selector(sel_name, embedder=args.embedder)
            if sel.requires_features and not table.features:
                print(f"| {name} | {sel_name} | - | - (needs per-model features the table does not have) |")
                continue
            if sel.requires_features:
                continue  # the task to rank carries no features
            if not args.smoke:
                sel.fit(table)  # warm the text-embedding memo
            fits, ranks = [], []
            for _ in range(args.repeats):
                s = sel.clone()
                t0 = time.perf_counter()
                s.fit(table)
                t1 = time.perf_counter()
                s.score(task)  # not .rank(): guided-fm has a "rank" hyper-parameter
                fits.append(t1 - t0)
                ranks.append(time.perf_counter() - t1)
            print(f"| {name} | {sel_name} | {min(fits):.3f} | {min(ranks):.4f} |", flush=True)
    if args.compare or args.smoke:
        t0 = time.perf_counter()
        comps = [compare_with_baselines(t, embedder=args.embedder) for t in loaded]
        print()
        print(side_by_side_markdown(comps))
        print(f"comparison: {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
