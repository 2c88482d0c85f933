"""Fit and rank wall time of every table selector on the open_clip and LOVM tables.

    python benchmarks/bench_tables.py [--embedder minilm] [--repeats 3]
    python benchmarks/bench_tables.py --smoke      # synthetic 12 x 7 table, hashing embedder (a test runs it)

One fit on the full table (all datasets as history) and one ranking of a held-out-style task per selector;
prints a Markdown table. Needs the shared data folder (VLMHUB_DATA), except with ``--smoke``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import synthetic_table  # noqa: E402

from vlmhub.tables import get_selector, list_selectors, load_table  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="a synthetic table, hashing embedder, one repeat")
    args = ap.parse_args(argv)
    tables = {name: (lambda n=name: load_table(n)) for name in ("openclip", "lovm")}
    if args.smoke:
        tables, args.embedder, args.repeats = {"synthetic": synthetic_table}, "hashing256", 1
    print("| table | selector | fit s | rank s |\n|---|---|---|---|")
    for name, load in tables.items():
        table = load()
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
                s.rank(task)
                fits.append(t1 - t0)
                ranks.append(time.perf_counter() - t1)
            print(f"| {name} | {sel_name} | {min(fits):.3f} | {min(ranks):.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
