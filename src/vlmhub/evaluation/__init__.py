"""Evaluation of selection and reuse on labelled target tasks."""

from .evaluate import EvalResult, evaluate_task, per_class_recall, model_probabilities

__all__ = ["EvalResult", "evaluate_task", "per_class_recall", "model_probabilities"]
