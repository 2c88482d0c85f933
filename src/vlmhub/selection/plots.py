"""A picture of a selection: models x classes, coloured by Eq. 7's reuse score, top-k per class marked."""

from __future__ import annotations

import io

import numpy as np

__all__ = ["selection_heatmap_png", "selection_vs_truth_png"]


def selection_heatmap_png(selection, *, max_classes: int = 60) -> bytes:
    """PNG bytes of a heatmap of ``selection.r`` (models x classes); each class's chosen models are boxed.

    Classes beyond ``max_classes`` are left out (the title says how many), so large tasks stay readable.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    r = np.asarray(selection.r, dtype=np.float64)
    models = list(selection.model_ids)
    classes = [c.name for c in selection.classes]
    C = min(len(classes), max_classes)
    r = r[:, :C]
    fig = Figure(figsize=(min(max(7.0, 2.5 + 0.32 * C), 24), 2.0 + 0.32 * len(models)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(r, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="r (Eq. 7)")
    index = {m: i for i, m in enumerate(models)}
    for c in range(C):
        for m in selection.members(c):
            ax.add_patch(Rectangle((c - 0.5, index[m] - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.6))
    ax.set_xticks(range(C))
    ax.set_xticklabels([n[:18] for n in classes[:C]], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models, fontsize=7)
    shown = f"first {C} of {len(classes)} classes" if C < len(classes) else f"{C} classes"
    ax.set_title(f"{selection.task.name}: estimated reuse score r per model and class ({shown})\n"
                 f"boxed in red: the top-{selection.k} models chosen for each class (no model ran)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def selection_vs_truth_png(selection, recall: dict[str, list[float]], *, max_classes: int = 40) -> bytes:
    """Two heatmaps over models x classes: MLL's estimate ``r`` (left) and the true per-class recall on the
    target's images (right). The models MLL chose are boxed in red on both; each class's truly best model
    is marked with a white dot on the right. Where boxes sit on dots, selection found the right model.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    models = list(selection.model_ids)
    classes = [c.name for c in selection.classes]
    C = min(len(classes), max_classes)
    r = np.asarray(selection.r, dtype=np.float64)[:, :C]
    truth = np.array([recall[m][:C] for m in models], dtype=np.float64)
    index = {m: i for i, m in enumerate(models)}
    width = min(max(10.0, 3.0 + 0.55 * C), 26)
    fig = Figure(figsize=(width, 2.2 + 0.32 * len(models)))
    for col, (mat, label, cmap) in enumerate(((r, "MLL estimate r (Eq. 7), no model ran", "viridis"),
                                               (truth, "true per-class recall on the target", "magma"))):
        ax = fig.add_subplot(1, 2, col + 1)
        im = ax.imshow(mat, aspect="auto", cmap=cmap)
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01)
        for c in range(C):
            for m in selection.members(c):
                ax.add_patch(Rectangle((c - 0.5, index[m] - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
            if col == 1:
                best = np.flatnonzero(truth[:, c] == truth[:, c].max())
                ax.plot([c] * len(best), best, "o", color="white", ms=3.5, mec="black", mew=0.5)
        ax.set_xticks(range(C))
        ax.set_xticklabels([n[:14] for n in classes[:C]], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(models)))
        ax.set_yticklabels(models if col == 0 else [], fontsize=7)
        ax.set_title(label, fontsize=9)
    hits = sum(any(truth[index[m], c] == truth[:, c].max() for m in selection.members(c)) for c in range(C))
    fig.suptitle(f"{selection.task.name}: red boxes = MLL's top-{selection.k} per class; white dots = truly best "
                 f"model per class; a chosen model is truly best on {hits} of {C} classes", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
