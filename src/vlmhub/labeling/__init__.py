"""Model labeling (MLL Eq. 2-4): pre-test every model on the semantic graph once, store the result."""

from .labels import LABEL_FORMAT, ModelLabel, LabelStore
from .labeler import label_models, LabelReport

__all__ = ["LABEL_FORMAT", "ModelLabel", "LabelStore", "label_models", "LabelReport"]
