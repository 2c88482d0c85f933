"""The selector interface (the registry of built-in selectors is :mod:`vlmhub.tables.selectors.registry`).

A selector follows scikit-learn's conventions: the constructor only stores hyper-parameters,
:meth:`TableSelector.fit` learns from a *history* :class:`~vlmhub.tables.PerformanceTable` (every dataset
except the target) and returns ``self``, and :meth:`TableSelector.score` returns one score per history
model for a new task (higher = better; NaN = cannot score). ``get_params``/``clone`` make fresh copies
for each fold of the leave-one-dataset-out protocol.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, ClassVar, Mapping

import numpy as np

from ...errors import TableError
from ..records import ModelInfo, PerformanceTable, TaskDescription

__all__ = [
    "TableSelector",
    "register_selector",
    "fill_missing",
    "zscore_columns",
    "model_meta_features",
]

class TableSelector:
    """Base class of every table selector (see the module docstring)."""

    name: ClassVar[str] = "base"
    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: needs per-(model, dataset) features (ModelGPT): only usable on tables that carry them
    requires_features: ClassVar[bool] = False

    history_: PerformanceTable

    def get_params(self) -> dict:
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def set_params(self, **params) -> "TableSelector":
        for k, v in params.items():
            if k not in self.get_params():
                raise TableError(f"{self.name} has no hyper-parameter {k!r}; valid: {sorted(self.get_params())}")
            setattr(self, k, v)
        return self

    def clone(self) -> "TableSelector":
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if not hasattr(v, "encode"))
        return f"{type(self).__name__}({args})"

    # -- API ---------------------------------------------------------------------------------------
    def fit(self, history: PerformanceTable, y=None) -> "TableSelector":
        """Learn from the history table; ``y`` is ignored (scikit-learn signature)."""
        if not isinstance(history, PerformanceTable):
            raise TableError(f"fit needs a PerformanceTable, got {type(history).__name__}")
        if history.n_datasets < 1 or history.n_models < 2:
            raise TableError(f"{self.name}: the history needs at least one dataset and two models ({history.summary()})")
        if self.requires_features and not history.features:
            raise TableError(
                f"selector {self.name!r} needs per-(model, dataset) features such as ModelGPT's; "
                "use the 'lovm' table or add feature:<name> columns to your CSV"
            )
        self.history_ = history
        self._fit(history)
        return self

    def _fit(self, history: PerformanceTable) -> None:  # pragma: no cover - overridden
        pass

    def score(self, task: TaskDescription, *, features: np.ndarray | None = None) -> np.ndarray:
        """One score per history model for ``task`` (``features``: the task's per-model features, if any)."""
        if not hasattr(self, "history_"):
            raise TableError(f"selector {self.name!r} is not fitted; call fit(history) first")
        if not isinstance(task, TaskDescription):
            raise TableError(f"score needs a TaskDescription, got {type(task).__name__}")
        out = np.asarray(self._score(task, features), dtype=np.float64)
        if out.shape != (self.history_.n_models,):
            raise RuntimeError(f"{self.name} returned {out.shape} scores for {self.history_.n_models} models")
        return out

    def _score(self, task: TaskDescription, features: np.ndarray | None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def rank(self, task: TaskDescription, *, features: np.ndarray | None = None) -> list[tuple[str, float]]:
        """``(model id, score)`` best first (NaN scores last, ties in table order)."""
        s = self.score(task, features=features)
        key = np.where(np.isfinite(s), s, -np.inf)
        order = np.argsort(-key, kind="stable")
        ids = self.history_.model_ids
        return [(ids[i], float(s[i])) for i in order]


_MARK = "_vlmhub_builtin_selector"


def register_selector(cls: type[TableSelector]) -> type[TableSelector]:
    """Class decorator marking a built-in selector; :mod:`~vlmhub.tables.selectors.registry` collects the marked
    classes of the selector modules by ``cls.name`` (nothing is mutated at import)."""
    if not (isinstance(cls, type) and issubclass(cls, TableSelector)):
        raise TypeError(f"register_selector decorates TableSelector subclasses, not {cls!r}")
    setattr(cls, _MARK, cls.name)
    return cls


def is_registered(cls: object) -> bool:
    """Whether ``cls`` itself (not merely a base class) was decorated with :func:`register_selector`."""
    if not isinstance(cls, type):
        return False
    mark = cls.__dict__.get(_MARK)
    return mark is not None and mark == getattr(cls, "name", None)


# -- shared helpers (pure) ------------------------------------------------------------------------------
def fill_missing(acc: np.ndarray) -> np.ndarray:
    """NaN cells filled with ``column mean + model offset`` (the model's mean deviation from column means)."""
    a = np.array(acc, dtype=np.float64)
    if not np.isnan(a).any():
        return a
    col = np.nanmean(np.where(np.isnan(a).all(0, keepdims=True), 0.0, a), axis=0)
    col = np.where(np.isfinite(col), col, 0.0)
    dev = np.nanmean(a - col, axis=1)
    dev = np.where(np.isfinite(dev), dev, 0.0)
    fill = col[None, :] + dev[:, None]
    return np.clip(np.where(np.isnan(a), fill, a), 0.0, 1.0)


def zscore_columns(acc: np.ndarray) -> np.ndarray:
    """Each column standardised over models (missing cells filled first; constant columns -> 0)."""
    a = fill_missing(acc)
    sd = a.std(0)
    return (a - a.mean(0)) / np.where(sd > 1e-12, sd, 1.0)


def _safe_log(x: float) -> float:
    return math.log(x) if x and x > 0 and math.isfinite(x) else math.nan


def model_meta_features(
    models: tuple[ModelInfo, ...], extra: Mapping[str, np.ndarray] | None = None
) -> tuple[np.ndarray, list[str]]:
    """Standardised model meta features: log params, log FLOPs, family and pretraining-data one-hots.

    Missing numbers are imputed by the mean. ``extra`` adds numeric columns (e.g. ImageNet accuracy).
    """
    cols: list[np.ndarray] = []
    names: list[str] = []
    for nm, vals in (
        ("log_params", [_safe_log(m.params_m) for m in models]),
        ("log_gflops", [_safe_log(m.gflops) for m in models]),
        *(((k, list(v)) for k, v in (extra or {}).items())),
    ):
        v = np.asarray(vals, dtype=np.float64)
        if np.isfinite(v).sum() == 0:
            continue
        v = np.where(np.isfinite(v), v, np.nanmean(v))
        sd = v.std()
        cols.append((v - v.mean()) / (sd if sd > 1e-12 else 1.0))
        names.append(nm)
    for attr in ("family", "pretraining_data"):
        values = sorted({getattr(m, attr) for m in models})
        if len(values) < 2:
            continue
        for val in values:
            cols.append(np.array([1.0 if getattr(m, attr) == val else 0.0 for m in models]))
            names.append(f"{attr}={val}")
    if not cols:
        return np.zeros((len(models), 0)), []
    return np.stack(cols, axis=1), names


def ridge_fit(X: np.ndarray, Y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression with an unpenalised intercept: returns ``(W, b)`` with ``Y ~ X @ W + b``."""
    xm, ym = X.mean(0), Y.mean(0)
    Xc, Yc = X - xm, Y - ym
    n, d = Xc.shape
    if d <= n:
        W = np.linalg.solve(Xc.T @ Xc + lam * np.eye(d), Xc.T @ Yc)
    else:  # dual form
        W = Xc.T @ np.linalg.solve(Xc @ Xc.T + lam * np.eye(n), Yc)
    return W, ym - xm @ W


ScoreFn = Callable[[TaskDescription, "np.ndarray | None"], np.ndarray]
