"""Model reuse (MLL Section 4.4, Eq. 8-10): the per-class, entropy-weighted ensemble."""

from .ensemble import DEFAULT_WEIGHTING, Weighting, zero_shot_probs, entropy, ensemble_scores, MLLEnsemble

__all__ = ["DEFAULT_WEIGHTING", "Weighting", "zero_shot_probs", "entropy", "ensemble_scores", "MLLEnsemble"]
