"""Ceilings of table-based model selection on the shared tables: oracles that see the hidden column.

    python benchmarks/table_oracles.py [openclip lovm ...]

Prints, per table, the mean regret (points) and Kendall tau of every oracle in
:mod:`vlmhub.tables.oracles` under the leave-one-dataset-out protocol. These are the numbers behind the
"why the goal is out of reach" section of docs/tables.md. Needs the shared data folder (VLMHUB_DATA).
"""

from __future__ import annotations

import argparse
import math

from vlmhub.tables import load_table
from vlmhub.tables.oracles import ceiling_table


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tables", nargs="*", default=["openclip", "lovm"])
    args = ap.parse_args()
    for name in args.tables:
        table = load_table(name)
        rows = ceiling_table(table)
        print(f"\n## {name} ({rows[0].n_targets} targets)\n")
        print("| oracle | regret (points) | Kendall tau | what it may look at |\n|---|---|---|---|")
        for r in rows:
            tau = f"{r.tau:.3f}" if math.isfinite(r.tau) else "-"
            print(f"| {r.name} | {r.regret:.2f} | {tau} | {r.description} |")


if __name__ == "__main__":
    main()
