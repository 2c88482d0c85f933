"""Batch inference with the MLL ensemble, in Ray Data's callable-class shape.

:class:`BatchPredictor` does the expensive work once in its constructor (select from labels, load the
selected models, embed the class names) and then maps *batches* -- dicts of columns, as Ray Data,
Hugging Face ``datasets`` and pandas hand them out -- to predictions::

    predictor = BatchPredictor({"name": "pets", "classes": ["beagle", "persian cat"]}, hub=Hub(), k=3)
    predictor({"path": ["a.jpg", "b.jpg"]})
    # {"image": array(["a.jpg", "b.jpg"]), "class": array([...]), "confidence": array([...]), "scores": (2, C)}

    # the same class scales out with Ray Data (not a dependency of vlmhub):
    ds = ray.data.read_binary_files(folder, include_paths=True)
    make_hub = functools.partial(Hub, Settings(home="/srv/hub"))      # picklable: each actor builds its own
    ds.map_batches(BatchPredictor, fn_constructor_kwargs={"task": task_dict, "hub": make_hub},
                   batch_size=64, concurrency=2)

A batch carries images in a ``"path"`` column (file paths) or a ``"bytes"`` column (encoded image bytes,
as ``ray.data.read_binary_files(paths, include_paths=True)`` yields; its ``"path"`` then names the rows),
optionally with an ``"id"`` column naming the rows. For long runs over files see
:func:`vlmhub.reuse.job.predict_to_csv`, which is resumable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError, TaskError
from .ensemble import DEFAULT_WEIGHTING, Weighting

__all__ = ["BatchPredictor", "predicted_classes"]


def predicted_classes(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 10 on Eq. 8's (N x C) scores: the class index per image and its share of the image's scores
    (the ``confidence`` column of every prediction output)."""
    scores = np.asarray(scores)
    pred = scores.argmax(1)
    total = np.maximum(scores.sum(1), 1e-12)
    return pred, scores[np.arange(len(pred)), pred] / total


class BatchPredictor:
    """Select once, then classify batches of images (see module doc).

    ``task`` is a :class:`~vlmhub.tasks.Task` or its dict; ``hub`` a :class:`~vlmhub.hub.Hub`, or a
    zero-argument callable returning one (e.g. ``functools.partial(Hub, settings)``, which pickles, for Ray
    actors); ``selection`` options are those of :meth:`Hub.select` (``alpha``, ``k_nodes``, ``metric``,
    ``caption_sources``, ``rendition``, ``normalize_z``). This module never imports :mod:`vlmhub.hub`: reuse
    sits below the hub in the layers (docs/architecture.md).
    """

    def __init__(self, task: Any, *, hub: Any, k: int = 3,
                 weighting: Weighting = DEFAULT_WEIGHTING, selection: Mapping[str, Any] | None = None) -> None:
        from ..tasks import Task

        self.task = task if isinstance(task, Task) else Task.from_dict(task)
        if weighting not in ("entropy", "inverse_entropy", "uniform"):
            raise TaskError(f"unknown weighting {weighting!r}; use inverse_entropy (default), entropy or uniform.")
        if hub is None:
            raise TaskError("BatchPredictor needs hub=Hub(settings) (or a callable returning one, for Ray actors).")
        if not hasattr(hub, "select") and callable(hub):
            hub = hub()
        self.hub = hub
        self.k = k
        self.weighting = weighting
        self.selection_options = dict(selection or {})
        self.selection = hub.select(self.task, k=k, **self.selection_options)
        self.ensemble = hub.ensemble(self.selection, weighting)

    def fingerprint(self) -> dict:
        """What the predictions depend on (task, models chosen per class, weighting, graph version)."""
        return {
            "task": self.task.to_dict(),
            "k": self.k,
            "weighting": self.weighting,
            "selection": {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(self.selection_options.items())},
            "graph_version": self.selection.graph_version,
            "members": [self.selection.members(c) for c in range(len(self.selection.classes))],
        }

    @staticmethod
    def refs(batch: Mapping[str, Sequence]) -> list[tuple[str, Any]]:
        """``(id, image)`` refs of a batch with a ``path`` or ``bytes`` column (and an optional ``id`` column)."""
        from ..imaging import InMemoryImage

        if not isinstance(batch, Mapping):
            raise DataError("a batch must be a dict of columns with a \"path\" or \"bytes\" column.")
        if "bytes" in batch:  # e.g. ray.data.read_binary_files(..., include_paths=True): "bytes" + "path"
            raw = list(batch["bytes"])
            names = batch["id"] if "id" in batch else batch["path"] if "path" in batch else [f"row-{i}" for i in range(len(raw))]
            ids = [str(i) for i in names]
            images: list[Any] = [InMemoryImage(n, bytes(b)) for n, b in zip(ids, raw)]
        elif "path" in batch:
            items = [str(p) for p in batch["path"]]
            ids = [str(i) for i in batch["id"]] if "id" in batch else items
            images = [Path(p) for p in items]
        else:
            raise DataError(f"the batch has columns {sorted(batch)}; it needs a \"path\" (file paths) or \"bytes\" "
                            "(encoded images) column.")
        if len(ids) != len(images):
            raise DataError(f"the batch's \"id\" column has {len(ids)} rows but its image column {len(images)}.")
        return list(zip(ids, images))

    def predict_refs(self, refs: Sequence[tuple[str, Any]]) -> dict[str, np.ndarray]:
        if not refs:
            C = len(self.task.classes)
            return {"image": np.array([], dtype=str), "class": np.array([], dtype=str),
                    "confidence": np.zeros(0), "scores": np.zeros((0, C))}
        scores = self.ensemble.scores(list(refs))
        pred, confidence = predicted_classes(scores)
        return {
            "image": np.array([r[0] for r in refs], dtype=str),
            "class": np.array([self.task.classes[int(c)] for c in pred], dtype=str),
            "confidence": confidence,
            "scores": scores,
        }

    def __call__(self, batch: Mapping[str, Sequence]) -> dict[str, np.ndarray]:
        """Predictions for one batch: ``image`` ids, ``class`` names, ``confidence`` and Eq. 8's ``scores``."""
        return self.predict_refs(self.refs(batch))
