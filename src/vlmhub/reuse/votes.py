"""Each ensemble member's own vote on a few images (the explanation beside an MLL prediction).

:func:`member_votes` selects models for a task from labels (Eq. 5-7), runs every selected model once per image
and returns, per image, each member's zero-shot class and probability (Eq. 8's ``p^m(x)`` before weighting)
plus the ensemble's own prediction computed from the same embeddings (Eq. 8-10), so a page can show why the
ensemble chose what it did. ``hub`` is any object with :meth:`~vlmhub.hub.Hub.select` and
:meth:`~vlmhub.hub.Hub.ensemble` (reuse sits below the hub in the layers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DataError

__all__ = ["MemberVote", "ImageVotes", "member_votes"]


@dataclass(frozen=True)
class MemberVote:
    """One model's zero-shot answer for one image."""

    model_id: str
    class_name: str
    probability: float
    #: classes of the task this model is an ensemble member for (Eq. 8 uses its vote only there)
    member_of: tuple[str, ...]


@dataclass(frozen=True)
class ImageVotes:
    image: str
    class_name: str  # the ensemble's prediction (Eq. 10)
    confidence: float  # the predicted class's share of Eq. 8's scores
    votes: tuple[MemberVote, ...]


def member_votes(hub: Any, task: Any, refs: Sequence[tuple[str, Any]], *, k: int = 3,
                 weighting: str = "inverse_entropy", selection: Mapping[str, Any] | None = None) -> list[ImageVotes]:
    """Per image: the ensemble's class and confidence and every selected model's vote (see module doc)."""
    from ..models.runner import embed_images
    from ..tasks import Task

    t = task if isinstance(task, Task) else Task.from_dict(task)
    if not refs:
        raise DataError("no images to classify. Pass at least one image.")
    sel = hub.select(t, k=k, **dict(selection or {}))
    ens = hub.ensemble(sel, weighting)
    emb = embed_images(list(ens.models.values()), list(refs))
    probs = ens.probs_from_embeddings(emb)
    scores = ens.scores_from_embeddings(emb)
    names = list(t.classes)
    member_of = {m: tuple(names[c] for c, ms in enumerate(ens.members) if m in ms) for m in ens.models}
    out = []
    for i, (image_id, _) in enumerate(refs):
        pred = int(np.argmax(scores[i]))
        conf = float(scores[i, pred] / max(float(scores[i].sum()), 1e-12))
        votes = tuple(MemberVote(m, names[int(np.argmax(probs[m][i]))], float(np.max(probs[m][i])), member_of[m])
                      for m in ens.models)
        out.append(ImageVotes(str(image_id), names[pred], conf, votes))
    return out
