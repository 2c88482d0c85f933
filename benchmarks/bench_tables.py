"""Fit and rank wall time of every table selector, and the default side by side with INB and best-mean.

    python benchmarks/bench_tables.py [--embedder minilm] [--repeats 3] [--compare] [--smoke]

One fit on the full table (all datasets as history) and one ranking of a held-out-style task per selector;
prints a Markdown table. ``--compare`` also prints INB / best-mean / default under leave-one-dataset-out
(:func:`vlmhub.tables.compare.compare_with_baselines`, as ``vlmhub compare-tables``). ``--smoke`` runs one
repeat with the hashing embedder on LOVM's small ImageNet-variants table only. Needs the shared data
folder (VLMHUB_DATA).
"""

from __future__ import annotations

import argparse
import time

from vlmhub.settings import get_settings
from vlmhub.tables import get_selector, list_selectors, load_table
from vlmhub.tables.compare import compare_with_baselines, side_by_side_markdown


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compare", action="store_true", help="also print INB / best-mean / default per table")
    ap.add_argument("--smoke", action="store_true", help="one repeat, hashing embedder, the small LOVM ImageNet table")
    args = ap.parse_args()
    if args.smoke:
        args.embedder, args.repeats = "hashing256", 1
        specs = [str(get_settings().require_data_dir() / "tables" / "lovm_eval_table_imagenets.csv")]
    else:
        specs = ["openclip", "lovm"]
    tables = [load_table(s) for s in specs]
    print("| table | selector | fit s | rank s |\n|---|---|---|---|")
    for table in tables:
        task = table.datasets[1]
        for sel_name in list_selectors():
            sel = get_selector(sel_name, embedder=args.embedder)
            if sel.requires_features:
                continue
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
            print(f"| {table.name} | {sel_name} | {min(fits):.3f} | {min(ranks):.4f} |", flush=True)
    if args.compare or args.smoke:
        t0 = time.perf_counter()
        comps = [compare_with_baselines(t, embedder=args.embedder) for t in tables]
        print()
        print(side_by_side_markdown(comps))
        print(f"comparison: {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
