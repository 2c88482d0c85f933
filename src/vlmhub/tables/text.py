"""Text representations of task descriptions and their similarities (what the text-based selectors read).

A task is embedded twice: its one-sentence description (:meth:`TaskDescription.describe`) and one
caption per class (``"a <domain> of <class>."``, evenly subsampled to ``class_limit`` classes). The
embeddings are memoised per process and embedder, so a leave-one-out benchmark embeds each text once.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from .records import TaskDescription

__all__ = [
    "resolve_embedder",
    "embed_texts",
    "TaskText",
    "embed_task",
    "task_vector",
    "dataset_similarity",
    "class_overlap",
    "field_similarity",
]

_MEMO_LIMIT = 200_000
_MEMO_ATTR = "_vlmhub_text_memo"


def resolve_embedder(embedder):
    """A :class:`~vlmhub.models.text.TextEmbedder` from a name (``"minilm"``, ``"hashing256"``) or an instance."""
    if isinstance(embedder, str):
        from ..models.text import get_text_embedder

        return get_text_embedder(embedder)
    return embedder


def embed_texts(embedder, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised float32 embeddings of ``texts``, memoised per text on the embedder object itself (so the
    memo lives exactly as long as the embedder, and two embedders never share one)."""
    emb = resolve_embedder(embedder)
    memo = getattr(emb, _MEMO_ATTR, None)
    if memo is None:
        memo = {}
        try:
            object.__setattr__(emb, _MEMO_ATTR, memo)
        except (AttributeError, TypeError):  # an embedder with __slots__: no memo
            pass
    todo = list(dict.fromkeys(t for t in texts if t not in memo))
    if todo:
        vecs = np.asarray(emb.encode(todo), dtype=np.float32)
        if len(memo) + len(todo) > _MEMO_LIMIT:
            memo.clear()
        for t, v in zip(todo, vecs):
            memo[t] = v
    if not texts:
        return np.zeros((0, int(getattr(emb, "dim", 0) or 0)), dtype=np.float32)
    return np.stack([memo[t] for t in texts])


@dataclass(frozen=True, eq=False)
class TaskText:
    """Embeddings of one task: ``desc`` (dim,) and ``classes`` (n_captions, dim; may be empty)."""

    desc: np.ndarray
    classes: np.ndarray


def embed_task(embedder, task: TaskDescription, class_limit: int = 64) -> TaskText:
    desc = embed_texts(embedder, [task.describe()])[0]
    caps = task.class_captions(class_limit)
    cls = embed_texts(embedder, caps) if caps else np.zeros((0, desc.shape[0]), dtype=np.float32)
    return TaskText(desc=desc, classes=cls)


def task_vector(t: TaskText, desc_weight: float = 0.5) -> np.ndarray:
    """One L2-normalised vector per task: a mix of the description and the mean class caption."""
    if len(t.classes) == 0:
        v = t.desc.astype(np.float64)
    else:
        c = t.classes.mean(0)
        c = c / (np.linalg.norm(c) + 1e-12)
        v = desc_weight * t.desc + (1.0 - desc_weight) * c
    return v / (np.linalg.norm(v) + 1e-12)


def dataset_similarity(target: TaskText, history: Sequence[TaskText], desc_weight: float = 0.5) -> np.ndarray:
    """Similarity of a target task to each history task, in [-1, 1].

    ``desc_weight * cos(descriptions) + (1 - desc_weight) * class match``, where the class match is the
    mean over target class captions of the best-matching caption of the history task (the dataset-level
    analogue of MLL's caption matching). Without class names on either side only descriptions count.
    """
    out = np.empty(len(history))
    for j, h in enumerate(history):
        d = float(target.desc @ h.desc)
        if len(target.classes) and len(h.classes):
            c = float((target.classes @ h.classes.T).max(1).mean())
            out[j] = desc_weight * d + (1.0 - desc_weight) * c
        else:
            out[j] = d
    return out


@lru_cache(maxsize=4096)
def _class_set(task: TaskDescription) -> frozenset[str]:
    return frozenset(" ".join(c.replace("_", " ").lower().split()) for c in task.classes)


def class_overlap(a: TaskDescription, b: TaskDescription) -> float:
    """Share of the smaller label set also in the other, ``|A & B| / min(|A|, |B|)`` (0 when either has none).

    Exact (case- and underscore-insensitive) class-name overlap: 1.0 between ImageNet variants that reuse
    the 1000 ImageNet names, 0.9 between CIFAR-10 and STL-10 (9 of 10 shared), 0 for unrelated label sets.
    """
    sa, sb = _class_set(a), _class_set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / min(len(sa), len(sb))


def field_similarity(embedder, targets: Sequence[TaskDescription], history: Sequence[TaskDescription], field: str) -> np.ndarray:
    """Cosine similarity of one text field (``"domain"`` or ``"task"``) between task lists, ``(len(targets), len(history))``."""
    ta = embed_texts(embedder, [getattr(t, field) or "image" for t in targets])
    hb = embed_texts(embedder, [getattr(t, field) or "image" for t in history])
    return (ta @ hb.T).astype(np.float64)
