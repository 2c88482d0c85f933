"""Table selectors behind one scikit-learn-style interface, and their registry.

=================== ==============================================================================
name                method
=================== ==============================================================================
``inb``             ImageNet-1k accuracy (ImageNet baseline)
``best-mean``       mean accuracy over the history datasets
``modelgpt``        LOVM's ModelGPT: linear model on 7 text-derived features (tables with features)
``mll``             MLL at dataset granularity: caption matching + Eq. 7 alpha-mix
``fennec``          Fennec: NMF + text->task-vector regressor + meta features, alpha merge
``guided-fm``       guided recommendation: factorization machine over model/dataset features
``model-spider``    Model Spider: model tokens + 1-layer transformer, listwise ranking loss
``vlmhub``          vlmhub's selector (see :mod:`vlmhub.tables.selectors.vlmhub_selector`)
``vlmhub-overlap``  ``vlmhub`` + class-name overlap, domain and task-type cosines in the kernel
``safe-default``    the default: top-1 and order chosen among inb, best-mean, vlmhub, mll (+ rank
                    averages) by leave-one-out on the history only (:mod:`.safe`)
=================== ==============================================================================
"""

from __future__ import annotations

from .base import (
    TableSelector,
    fill_missing,
    get_selector,
    list_selectors,
    model_meta_features,
    register_selector,
    selector_info,
    zscore_columns,
)

__all__ = [
    "TableSelector",
    "register_selector",
    "get_selector",
    "list_selectors",
    "selector_info",
    "fill_missing",
    "zscore_columns",
    "model_meta_features",
    "DEFAULT_SELECTOR",
]

DEFAULT_SELECTOR = "safe-default"


def _load_all() -> None:
    """Import the selector modules (registration by decorator; cheap, torch is imported lazily)."""
    from . import baselines, fennec, learned, mll, safe  # noqa: F401
    try:
        from . import vlmhub_selector  # noqa: F401
    except ImportError:  # pragma: no cover - during development
        pass
