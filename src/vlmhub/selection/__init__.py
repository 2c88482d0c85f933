"""Model selection: MLL (label-only, Eq. 5-7) and the forward-feature transferability scores."""

from .mll import (
    ClassSelection,
    MLLConfig,
    MLLSelector,
    Selection,
    class_estimates,
    node_precision,
    reuse_scores,
    top_k_models,
    transfer_matrix,
)

__all__ = ["ClassSelection", "MLLConfig", "MLLSelector", "Selection", "class_estimates", "node_precision",
           "reuse_scores", "top_k_models", "transfer_matrix"]
