"""Ceilings of table-based model selection on the shared tables: oracles that see the hidden column.

    python benchmarks/table_oracles.py [openclip lovm ...] [--plot docs/img/table_ceilings.png]
    python benchmarks/table_oracles.py --smoke      # a synthetic 12 x 7 table, no data (a test runs it)

Prints, per table, the mean regret (points) and Kendall tau of every oracle in
:mod:`vlmhub.tables.oracles` under the leave-one-dataset-out protocol. These are the numbers behind the
"why the goal is out of reach" section of docs/tables.md. With ``--plot`` it also runs ``inb``, ``mll`` and
``vlmhub`` through the protocol (MiniLM; about 2 minutes) and draws them against the principal-component
ceilings and the issue's goals. Needs the shared data folder (VLMHUB_DATA), except with ``--smoke``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import synthetic_table  # noqa: E402

from vlmhub.storage.atomic import atomic_write_bytes  # noqa: E402
from vlmhub.tables import leave_one_dataset_out, load_table  # noqa: E402
from vlmhub.tables.oracles import ceiling_plot_png, ceiling_table  # noqa: E402

GOALS = {"openclip": (1.5, 0.75)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tables", nargs="*", default=["openclip", "lovm"])
    ap.add_argument("--plot", help="write a PNG of the ceilings with measured selectors")
    ap.add_argument("--selectors", default="inb,mll,vlmhub", help="selectors drawn with --plot")
    ap.add_argument("--smoke", action="store_true", help="a synthetic table instead of the shared ones, no plot")
    args = ap.parse_args(argv)
    if args.smoke:
        args.tables, args.plot = ["synthetic"], None
    ceilings, measured = {}, {}
    for name in args.tables:
        table = synthetic_table() if args.smoke else load_table(name)
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
