"""Validated selection options shared by the Python API, the CLI and the service.

:class:`SelectionConfig` is the one place where the numeric ranges and choices of selection are checked
(``k`` models per class, ``alpha`` of Eq. 7, ``k_nodes`` graph nodes per class, the Eq. 5 metric, the
ensemble weighting, ...). Building one with a bad value raises a :class:`~vlmhub.errors.SelectionError`
that states the valid range; :meth:`SelectionConfig.check_against` refuses a ``k`` larger than the number
of candidate models and a ``k_nodes`` larger than the graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SelectionError

__all__ = ["SelectionConfig", "MAX_K", "MAX_NODES", "WEIGHTINGS", "METRICS", "check_int"]

#: hard upper bounds, independent of any hub (a hub's own size bounds them further, see check_against)
MAX_K = 10_000
MAX_NODES = 100_000
WEIGHTINGS = ("inverse_entropy", "entropy", "uniform")
METRICS = ("precision", "f1")


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]``, or a :class:`SelectionError` stating the range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise SelectionError(f"{name} must be a whole number from {lo} to {hi} (got {value!r}).")
    if not lo <= value <= hi:
        raise SelectionError(f"{name} must be from {lo} to {hi} (got {value}).")
    return value


@dataclass(frozen=True)
class SelectionConfig:
    """Options of one selection request, validated on construction (``None`` = the selector's default)."""

    k: int = 3
    alpha: float | None = None
    k_nodes: int | None = None
    metric: str | None = None
    weighting: str | None = None

    def __post_init__(self) -> None:
        check_int("k", self.k, 1, MAX_K)
        if self.k_nodes is not None:
            check_int("nodes", self.k_nodes, 1, MAX_NODES)
        if self.alpha is not None:
            a = self.alpha
            if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= float(a) <= 1.0:
                raise SelectionError(f"alpha must lie in [0, 1] (got {a!r}).")
            object.__setattr__(self, "alpha", float(a))
        if self.metric is not None and self.metric not in METRICS:
            raise SelectionError(f"metric must be one of {', '.join(METRICS)} (got {self.metric!r}).")
        if self.weighting is not None and self.weighting not in WEIGHTINGS:
            raise SelectionError(f"weighting must be one of {', '.join(WEIGHTINGS)} (got {self.weighting!r}).")

    def check_against(self, n_models: int, n_nodes: int | None = None, *, k_nodes: int | None = None) -> None:
        """Refuse a ``k`` above the number of candidate models (and ``k_nodes`` above the graph's size)."""
        if self.k > n_models:
            raise SelectionError(f"k must be from 1 to {n_models}, the number of labeled models (got {self.k}).")
        kn = self.k_nodes if k_nodes is None else k_nodes
        if n_nodes is not None and kn is not None and kn > n_nodes:
            raise SelectionError(f"nodes must be from 1 to {n_nodes}, the size of the semantic graph (got {kn}).")

    def overrides(self) -> dict:
        """The MLLConfig overrides this config sets (alpha, k_nodes, metric)."""
        return {k: v for k, v in (("alpha", self.alpha), ("k_nodes", self.k_nodes), ("metric", self.metric)) if v is not None}
