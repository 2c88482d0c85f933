"""Hand-written SVG charts for the web pages: a spider (radar) chart and a heatmap.

Pure functions of their numbers returning SVG markup (a string safe to embed in HTML): every chart carries a
``<title>`` and ``role="img"`` with an ``aria-label``, every axis and cell its own ``<title>`` (hover text),
and scales with its container (``viewBox``, no fixed pixel size). No script, no external font.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

__all__ = ["radar_chart", "heatmap", "SERIES_CLASSES"]

#: CSS classes of the overlaid series (colours live in web.css)
SERIES_CLASSES = ("s0", "s1", "s2", "s3", "s4", "s5")


def _f(x: float) -> str:
    return f"{x:.1f}"


def radar_chart(axes: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *, title: str,
                reference: tuple[str, Sequence[float]] | None = None, size: int = 420, scale: float = 1.0) -> str:
    """A spider chart of values in [0, ``scale``], one axis per name in ``axes`` (clockwise from the top).

    ``series`` are ``(name, values)`` drawn as filled polygons (classes ``s0``, ``s1``, ...); ``reference``
    (e.g. the hub median) is drawn dashed. Each axis is a ``<g class="axis" data-axis=NAME>``.
    """
    n = len(axes)
    for name, vals in [*series, *([reference] if reference else [])]:
        if len(vals) != n:
            raise ValueError(f"series {name!r} has {len(vals)} values for {n} axes")
    if not scale > 0:
        raise ValueError(f"scale must be > 0 (got {scale})")
    cx = cy = size / 2
    R = size / 2 - 75
    label = f"{title}: " + "; ".join(f"{name}: " + ", ".join(f"{a} {v:.2f}" for a, v in zip(axes, vals))
                                     for name, vals in [*series, *([reference] if reference else [])])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart radar" viewBox="0 0 {size} {size}" role="img" '
           f'aria-label="{escape(label)}"><title>{escape(title)}</title>']

    def point(i: int, r: float) -> tuple[float, float]:
        ang = -math.pi / 2 + 2 * math.pi * i / max(n, 1)
        return cx + r * math.cos(ang), cy + r * math.sin(ang)

    for ring in (0.25, 0.5, 0.75, 1.0):  # grid
        pts = " ".join(f"{_f(x)},{_f(y)}" for x, y in (point(i, R * ring) for i in range(n)))
        if n >= 3:
            out.append(f'<polygon class="grid" points="{pts}"/>')
        else:
            out.append(f'<circle class="grid" cx="{_f(cx)}" cy="{_f(cy)}" r="{_f(R * ring)}"/>')
        out.append(f'<text class="tick" x="{_f(cx + 3)}" y="{_f(cy - R * ring + 11)}">{ring * scale:.2f}</text>')
    for i, a in enumerate(axes):
        x, y = point(i, R)
        lx, ly = point(i, R + 14)
        anchor = "middle" if abs(lx - cx) < 1 else ("start" if lx > cx else "end")
        short = a.split(".", 1)[-1] if a.startswith(("noun.", "verb.", "adj.", "adv.")) else a[:18]
        out.append(f'<g class="axis" data-axis="{escape(a)}"><title>{escape(a)}</title>'
                   f'<line x1="{_f(cx)}" y1="{_f(cy)}" x2="{_f(x)}" y2="{_f(y)}"/>'
                   f'<text x="{_f(lx)}" y="{_f(ly + 4)}" text-anchor="{anchor}">{escape(short)}</text></g>')

    def poly(name: str, vals: Sequence[float], cls: str) -> str:
        pts = [point(i, R * min(max(float(v) / scale, 0.0), 1.0)) for i, v in enumerate(vals)]
        s = " ".join(f"{_f(x)},{_f(y)}" for x, y in pts)
        dots = "".join(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="3"><title>{escape(name)} · {escape(axes[i])}: '
                       f'{float(vals[i]):.3f}</title></circle>' for i, (x, y) in enumerate(pts))
        return (f'<g class="series {cls}" data-series="{escape(name)}"><title>{escape(name)}</title>'
                f'<polygon points="{s}"/>{dots}</g>')

    if reference is not None:
        out.append(poly(reference[0], reference[1], "ref"))
    for j, (name, vals) in enumerate(series):
        out.append(poly(name, vals, SERIES_CLASSES[j % len(SERIES_CLASSES)]))
    out.append("</svg>")
    return "".join(out)


def heatmap(rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float]], *, title: str,
            marked: Sequence[Sequence[bool]] | None = None, cell: int = 44) -> str:
    """A ``rows x cols`` heatmap (darker = larger, scaled to the matrix's range); ``marked`` cells are outlined
    (e.g. the top-k models of each class). Each cell is a ``<rect class="cell">`` with a ``<title>``."""
    if len(values) != len(rows) or any(len(r) != len(cols) for r in values):
        raise ValueError(f"values must be {len(rows)} x {len(cols)}")
    flat = [float(v) for r in values for v in r]
    lo, hi = (min(flat), max(flat)) if flat else (0.0, 1.0)
    span = hi - lo or 1.0
    left = 12 + 7 * max((len(r) for r in rows), default=4)
    top = 12 + 6 * min(max((len(c) for c in cols), default=4), 24)
    w, h = left + cell * len(cols) + 10, top + cell * len(rows) + 10
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart heatmap" viewBox="0 0 {w} {h}" role="img" '
           f'aria-label="{escape(title)}: {len(rows)} models by {len(cols)} classes"><title>{escape(title)}</title>']
    for j, c in enumerate(cols):
        x = left + cell * j + cell / 2
        out.append(f'<text class="col" transform="translate({_f(x)},{top - 6}) rotate(-50)">{escape(c[:24])}</text>')
    for i, r in enumerate(rows):
        y = top + cell * i
        out.append(f'<text class="row" x="{left - 6}" y="{_f(y + cell / 2 + 4)}" text-anchor="end">{escape(r)}</text>')
        for j, c in enumerate(cols):
            v = float(values[i][j])
            level = (v - lo) / span
            mark = bool(marked[i][j]) if marked is not None else False
            light = 95 - 60 * level
            out.append(f'<g><rect class="cell{" top" if mark else ""}" x="{left + cell * j}" y="{y}" width="{cell - 2}" '
                       f'height="{cell - 2}" style="fill:hsl(210,60%,{light:.0f}%)"><title>{escape(r)} · {escape(c)}: '
                       f'{v:.3f}{" (selected)" if mark else ""}</title></rect>'
                       f'<text class="val{" dark" if light < 55 else ""}" x="{_f(left + cell * j + cell / 2 - 1)}" '
                       f'y="{_f(y + cell / 2 + 3)}" text-anchor="middle">{v:.2f}</text></g>')
    out.append("</svg>")
    return "".join(out)
