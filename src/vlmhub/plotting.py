"""Figure helpers shared by every plot: a headless matplotlib ``Figure`` and its PNG bytes.

``matplotlib.figure.Figure`` renders with the Agg canvas without touching pyplot's global backend, so a
library call never changes the plotting state of the user's process.
"""

from __future__ import annotations

import io

__all__ = ["new_figure", "png_bytes"]


def new_figure(figsize: tuple[float, float], **kwargs):
    """A pyplot-free ``matplotlib.figure.Figure`` (matplotlib is imported here, on first use)."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, **kwargs)


def png_bytes(fig, *, dpi: int | None = 100, tight: bool = False) -> bytes:
    """The figure as PNG bytes (``tight`` crops to the drawn area)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **({"bbox_inches": "tight"} if tight else {}))
    return buf.getvalue()
