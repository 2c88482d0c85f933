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

from .base import TableSelector, fill_missing, model_meta_features, register_selector, zscore_columns
from .registry import get_selector, list_selectors, selector_info, selector_params

__all__ = [
    "TableSelector",
    "register_selector",
    "get_selector",
    "list_selectors",
    "selector_info",
    "selector_params",
    "fill_missing",
    "zscore_columns",
    "model_meta_features",
    "DEFAULT_SELECTOR",
]

DEFAULT_SELECTOR = "safe-default"

