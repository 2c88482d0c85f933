"""Model reuse (MLL Section 4.4, Eq. 8-10): the per-class, entropy-weighted ensemble.

* :class:`MLLEnsemble` -- Eq. 8-10 over a selection;
* :class:`BatchPredictor` -- select once, classify batches (Ray Data's callable-class shape);
* :func:`predict_to_csv` -- a resumable prediction job over many files.
"""

from .batch import BatchPredictor
from .ensemble import DEFAULT_WEIGHTING, MLLEnsemble, Weighting, ensemble_scores, entropy, zero_shot_probs
from .job import PredictReport, predict_to_csv

__all__ = ["DEFAULT_WEIGHTING", "Weighting", "zero_shot_probs", "entropy", "ensemble_scores", "MLLEnsemble",
           "BatchPredictor", "PredictReport", "predict_to_csv"]
