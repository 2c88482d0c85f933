"""Ceilings of table-based model selection on the shared tables: oracles that see the hidden column.

    python benchmarks/table_oracles.py [openclip lovm ...] [--plot docs/img/table_ceilings.png]

Prints, per table, the mean regret (points) and Kendall tau of every oracle in
:mod:`vlmhub.tables.oracles` under the leave-one-dataset-out protocol. These are the numbers behind the
"why the goal is out of reach" section of docs/tables.md. With ``--plot`` it also runs ``inb``, ``mll`` and
``vlmhub`` through the protocol (MiniLM; about 2 minutes) and draws them against the principal-component
ceilings and the issue's goals. Needs the shared data folder (VLMHUB_DATA).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from vlmhub.storage.atomic import atomic_write_bytes
from vlmhub.tables import leave_one_dataset_out, load_table
from vlmhub.tables.oracles import ceiling_plot_png, ceiling_table

GOALS = {"openclip": (1.5, 0.75)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("tables", nargs="*", default=["openclip", "lovm"])
    ap.add_argument("--plot", help="write a PNG of the ceilings with measured selectors")
    ap.add_argument("--selectors", default="inb,mll,vlmhub", help="selectors drawn with --plot")
    args = ap.parse_args()
    ceilings, measured = {}, {}
    for name in args.tables:
        table = load_table(name)
        rows = ceiling_table(table)
        ceilings[name] = rows
        print(f"\n## {name} ({rows[0].n_targets} targets)\n")
        print("| oracle | regret (points) | Kendall tau | what it may look at |\n|---|---|---|---|")
        for r in rows:
            tau = f"{r.tau:.3f}" if math.isfinite(r.tau) else "-"
            print(f"| {r.name} | {r.regret:.2f} | {tau} | {r.description} |")
        if args.plot:
            measured[name] = {}
            for sel in [s for s in args.selectors.split(",") if s]:
                res = leave_one_dataset_out(table, sel)
                measured[name][sel] = (res.mean("regret"), res.mean("tau"))
                print(f"measured {sel}: regret {res.mean('regret'):.2f}, tau {res.mean('tau'):.3f}")
    if args.plot:
        atomic_write_bytes(Path(args.plot), ceiling_plot_png(ceilings, measured, GOALS))
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
