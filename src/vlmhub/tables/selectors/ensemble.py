"""``vlmhub-ensemble``: the rank average of several table selectors (new in vlmhub)."""

from __future__ import annotations

import inspect

import numpy as np
from scipy import stats

from ...errors import TableError
from ..records import PerformanceTable, TaskDescription
from . import baselines, fennec, learned, mll, vlmhub_selector
from .base import TableSelector, is_registered, register_selector

__all__ = ["RankEnsembleSelector"]

#: the modules whose selectors can be ensemble members
_MEMBER_MODULES = (baselines, fennec, learned, mll, vlmhub_selector)


@register_selector
class RankEnsembleSelector(TableSelector):
    """Equal-weight average of the members' within-task ranks (normalised to [0, 1]).

    Default members: ``vlmhub`` (INB anchor + calibrated kernel), ``mll`` (caption matching) and
    ``guided-fm`` (feature factorization machine) -- three different signals. Members that cannot serve a
    table (no features / no ImageNet column) are skipped.
    """

    name = "vlmhub-ensemble"
    paper = "new in vlmhub (this project)"
    summary = "rank average of vlmhub, mll and guided-fm"

    def __init__(self, embedder="minilm", members: tuple[str, ...] = ("vlmhub", "mll", "guided-fm")) -> None:
        self.embedder = embedder
        self.members = tuple(members)

    def _fit(self, history: PerformanceTable) -> None:
        known = {c.name: c for mod in _MEMBER_MODULES for c in vars(mod).values() if is_registered(c)}
        self.members_ = []
        for m in self.members:
            if m not in known:
                raise TableError(f"unknown ensemble member {m!r}; choose among: {', '.join(known)}")
            cls = known[m]
            sel = cls(embedder=self.embedder) if "embedder" in inspect.signature(cls.__init__).parameters else cls()
            if sel.requires_features and not history.features:
                continue
            self.members_.append(sel.fit(history))

    def _score(self, task: TaskDescription, features) -> np.ndarray:
        total = np.zeros(self.history_.n_models)
        for sel in self.members_:
            s = sel.score(task, features=features)
            s = np.where(np.isfinite(s), s, -np.inf)
            total += stats.rankdata(s) / len(s)
        return total / max(len(self.members_), 1)
