"""The score registry: one immutable mapping ``name -> ScoreFn`` over every score family, and lookup.

:data:`SCORES` is a read-only :class:`types.MappingProxyType` built once at import from the
declarative tuple below; adding a score means adding one ``ScoreFn`` line here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from vlmhub.errors import DataError, VlmhubError

from .base import ProbeSet
from .bayesian import logme
from .feature_based import gbc, h_score, sfda, shrinkage_h_score
from .geometry import parc, transrate
from .label_based import leep, nce
from .mixture import nleep

__all__ = ["ScoreFn", "SCORES", "UnknownScoreError", "score_names", "get_score", "compute_score", "rank_models"]


class UnknownScoreError(VlmhubError, KeyError):
    """A transferability score name is not in :data:`SCORES`."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreFn:
    """A registered transferability score: ``score(probe) -> float`` (higher = more transferable)."""

    name: str
    func: Callable[..., float]
    needs_source_probs: bool
    paper: str
    summary: str

    def __call__(self, probe: ProbeSet, **options: Any) -> float:
        if not isinstance(probe, ProbeSet):
            raise DataError(
                f"score '{self.name}' needs a ProbeSet, got {type(probe).__name__}; "
                f"wrap your arrays with ProbeSet(features=..., labels=..., source_probs=...)"
            )
        if self.needs_source_probs and probe.source_probs is None:
            raise DataError(
                f"score '{self.name}' needs the model's own class probabilities but the probe set has "
                f"source_probs=None; pass source_probs (e.g. the zero-shot softmax) or use a "
                f"feature-only score: {', '.join(n for n, s in SCORES.items() if not s.needs_source_probs)}"
            )
        if self.needs_source_probs:
            value = self.func(probe.source_probs, probe.labels, **options)
        else:
            value = self.func(probe.features, probe.labels, **options)
        value = float(value)
        if not math.isfinite(value):  # pragma: no cover - a bug, not a user error
            raise FloatingPointError(f"score '{self.name}' produced a non-finite value {value}")
        return value


SCORES: Mapping[str, ScoreFn] = MappingProxyType({
    s.name: s
    for s in (
        ScoreFn("logme", logme, False, "You et al., ICML 2021", "log marginal evidence of Bayesian linear regression"),
        ScoreFn("leep", leep, True, "Nguyen et al., ICML 2020", "log expected empirical prediction"),
        ScoreFn("nce", nce, True, "Tran et al., ICCV 2019", "negative conditional entropy -H(Y|Z)"),
        ScoreFn("hscore", h_score, False, "Bao et al., ICIP 2019", "tr(cov(f)^+ cov(E[f|y]))"),
        ScoreFn(
            "hscore_shrinkage",
            shrinkage_h_score,
            False,
            "Ibrahim et al. 2022 (arXiv:2110.06893)",
            "H-score with Ledoit-Wolf shrinkage covariance",
        ),
        ScoreFn("nleep", nleep, False, "Li et al., CVPR 2021", "LEEP on GMM posteriors of PCA features"),
        ScoreFn("parc", parc, False, "Bolya et al., NeurIPS 2021", "Spearman of pairwise-correlation dissimilarities"),
        ScoreFn("sfda", sfda, False, "Shao et al., ECCV 2022", "self-challenging Fisher discriminant analysis"),
        ScoreFn("transrate", transrate, False, "Huang et al., ICML 2022", "coding rate R(Z) - R(Z|Y)"),
        ScoreFn("gbc", gbc, False, "Pándy et al., CVPR 2022", "minus Bhattacharyya class overlap"),
    )
})
"""Every registered score, by canonical name, in registry order (read-only)."""

_ALIASES: Mapping[str, str] = MappingProxyType({
    "hscorer": "hscore_shrinkage",
    "regularizedhscore": "hscore_shrinkage",
    "shrinkagehscore": "hscore_shrinkage",
    "hscorealpha": "hscore_shrinkage",
})


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def score_names() -> list[str]:
    """Names of the registered scores, in registry order."""
    return list(SCORES)


def get_score(name: str) -> ScoreFn:
    """Look a score up by name (case-, ``-``/``_``-insensitive: ``"H-Score"``, ``"N-LEEP"`` work)."""
    if isinstance(name, str):
        key = _norm(name)
        key = _norm(_ALIASES.get(key, key))
        for canonical, fn in SCORES.items():
            if _norm(canonical) == key:
                return fn
    raise UnknownScoreError(
        f"unknown transferability score {name!r}; known scores: {', '.join(score_names())}. "
        f"Pass one of these names"
    )


def compute_score(name: str, probe: ProbeSet, **options: Any) -> float:
    """Compute score ``name`` on ``probe`` (higher = more transferable). ``options`` go to the score."""
    return get_score(name)(probe, **options)


def rank_models(
    probes: Mapping[Hashable, ProbeSet], score: str, **options: Any
) -> list[tuple[Hashable, float]]:
    """Score every model's probe set and return ``[(model_id, score), ...]`` best first.

    Ties keep the mapping's order. A bad probe set raises :class:`DataError` naming the model.
    """
    fn = get_score(score)
    results: list[tuple[Hashable, float]] = []
    for model_id, probe in probes.items():
        try:
            value = fn(probe, **options)
        except DataError as exc:
            raise DataError(f"model {model_id!r}: {exc}") from exc
        results.append((model_id, value))
    order = sorted(range(len(results)), key=lambda i: -results[i][1])  # sorted() is stable
    return [results[i] for i in order]
