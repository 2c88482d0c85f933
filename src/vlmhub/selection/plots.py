"""Pictures of a selection: models x classes, coloured by Eq. 7's reuse score, top-k per class marked."""

from __future__ import annotations

import numpy as np

from ..plotting import new_figure, png_bytes

__all__ = ["selection_heatmap_png", "selection_vs_truth_png"]


def _grid(fig, ax, mat: np.ndarray, selection, C: int, *, cmap: str, colorbar: str | None, model_labels: bool,
          class_len: int) -> None:
    """Heatmap of ``mat`` (models x first ``C`` classes) with each class's chosen models boxed in red."""
    from matplotlib.patches import Rectangle

    models = list(selection.model_ids)
    index = {m: i for i, m in enumerate(models)}
    im = ax.imshow(mat, aspect="auto", cmap=cmap)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.01, **({"label": colorbar} if colorbar else {}))
    for c in range(C):
        for m in selection.members(c):
            ax.add_patch(Rectangle((c - 0.5, index[m] - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.5))
    ax.set_xticks(range(C))
    ax.set_xticklabels([c.name[:class_len] for c in selection.classes[:C]], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models if model_labels else [], fontsize=7)


def selection_heatmap_png(selection, *, max_classes: int = 60) -> bytes:
    """PNG bytes of a heatmap of ``selection.r`` (models x classes); each class's chosen models are boxed.

    Classes beyond ``max_classes`` are left out (the title says how many), so large tasks stay readable.
    """
    n = len(selection.classes)
    C = min(n, max_classes)
    fig = new_figure((min(max(7.0, 2.5 + 0.32 * C), 24), 2.0 + 0.32 * len(selection.model_ids)))
    ax = fig.add_subplot(1, 1, 1)
    _grid(fig, ax, np.asarray(selection.r, dtype=np.float64)[:, :C], selection, C, cmap="viridis",
          colorbar="r (Eq. 7)", model_labels=True, class_len=18)
    shown = f"first {C} of {n} classes" if C < n else f"{C} classes"
    ax.set_title(f"{selection.task.name}: estimated reuse score r per model and class ({shown})\n"
                 f"boxed in red: the top-{selection.k} models chosen for each class (no model ran)", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)


def selection_vs_truth_png(selection, recall: dict[str, list[float]], *, max_classes: int = 40) -> bytes:
    """Two heatmaps over models x classes: MLL's estimate ``r`` (left) and the true per-class recall on the
    target's images (right). The models MLL chose are boxed in red on both; each class's truly best model
    is marked with a white dot on the right. Where boxes sit on dots, selection found the right model.
    """
    models = list(selection.model_ids)
    C = min(len(selection.classes), max_classes)
    r = np.asarray(selection.r, dtype=np.float64)[:, :C]
    truth = np.array([recall[m][:C] for m in models], dtype=np.float64)
    fig = new_figure((min(max(10.0, 3.0 + 0.55 * C), 26), 2.2 + 0.32 * len(models)))
    for col, (mat, label, cmap) in enumerate(((r, "MLL estimate r (Eq. 7), no model ran", "viridis"),
                                               (truth, "true per-class recall on the target", "magma"))):
        ax = fig.add_subplot(1, 2, col + 1)
        _grid(fig, ax, mat, selection, C, cmap=cmap, colorbar=None, model_labels=col == 0, class_len=14)
        if col == 1:
            for c in range(C):
                best = np.flatnonzero(truth[:, c] == truth[:, c].max())
                ax.plot([c] * len(best), best, "o", color="white", ms=3.5, mec="black", mew=0.5)
        ax.set_title(label, fontsize=9)
    index = {m: i for i, m in enumerate(models)}
    hits = sum(any(truth[index[m], c] == truth[:, c].max() for m in selection.members(c)) for c in range(C))
    fig.suptitle(f"{selection.task.name}: red boxes = MLL's top-{selection.k} per class; white dots = truly best "
                 f"model per class; a chosen model is truly best on {hits} of {C} classes", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)
