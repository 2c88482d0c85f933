"""Fit and rank wall time of every table selector on the open_clip and LOVM tables.

    python benchmarks/bench_tables.py [--embedder minilm] [--repeats 3]

One fit on the full table (all datasets as history) and one ranking of a held-out-style task per selector;
prints a Markdown table. Needs the shared data folder (VLMHUB_DATA).
"""

from __future__ import annotations

import argparse
import time

from vlmhub.tables import get_selector, list_selectors, load_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print("| table | selector | fit s | rank s |\n|---|---|---|---|")
    for name in ("openclip", "lovm"):
        table = load_table(name)
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
                s.rank(task)
                fits.append(t1 - t0)
                ranks.append(time.perf_counter() - t1)
            print(f"| {name} | {sel_name} | {min(fits):.3f} | {min(ranks):.4f} |")


if __name__ == "__main__":
    main()
