"""Score study: how well do label-free MLL and the label-using transferability scores rank a hub's models?

For one target task and one hub, the study measures the *truth* on held-out evaluation images, then
scores every model with every selector on small labelled probe sets and compares:

* **truth** (evaluation images, a seeded per-class subset disjoint from every probe image):
  each model's zero-shot accuracy, and its *linear-probe* accuracy: an L2-regularised multinomial
  logistic regression on the model's (standardised) image embeddings, cross-fitted with stratified
  k-fold (every evaluation image is predicted by a probe that never saw it; the mean held-out fold
  accuracy is reported).
* **selectors**:

  - every score of :func:`vlmhub.selection.transferability.score_names` on
    ``ProbeSet(features=image embeddings, labels, source_probs=zero-shot softmax over the target
    classes)``;
  - ``probe_zs_acc``: the model's zero-shot accuracy on the probe set (the obvious label-using
    selector);
  - ``mll``: MLL's label-free per-dataset score, ``mean_y r_{m,y}`` of Eq. 7 (no target image);
  - ``inb``: ImageNet top-1 of the model (``ModelSpec.imagenet_top1``, or where that is not set the
    zero-shot top-1 on the graph's ``imagenet-sample`` images read from the labels; no target image).

  Probe sets have ``n`` images per class for each ``n`` in ``shots`` (capped at what the class's
  probe pool holds) and are redrawn for ``repeats`` seeds. For one seed the sets are nested
  (the 5-shot set is inside the 10-shot set), which makes the trend over ``n`` less noisy.
* **metrics** per (selector, target, n, seed): Kendall tau-b and Spearman rho between the scores
  and (a) zero-shot accuracy, (b) linear-probe accuracy; the zero-shot (and linear-probe) accuracy
  of the top-1 pick and its regret to the best model; cost: images forwarded per model and the
  seconds the scores took (image forward time, from the feature cache here, is measured once per
  trunk and reported separately).

Conventions are those of :mod:`vlmhub.ranking` (stated there once): a selector whose scores are all
equal ranks nothing, so its tau and rho are 0; a truth that is constant over the models (every model
equally good on a target) leaves nothing to rank, so tau and rho are NaN and means leave them out; a
score that failed or returned a non-finite value for any model gives NaN metrics for that row (the row
counts as failed and the error is kept in ``note``); ties at the top pick the *mean* truth of the tied
models (a constant score "picks" the average model, not the first one in hub order).

The package is split into

* :mod:`.protocol`: the configuration and the pure computation on arrays (:func:`split_eval_pool`,
  :func:`draw_probe`, :func:`stratified_folds`, :func:`fit_logistic`, :func:`cross_fit_accuracy`,
  :func:`rank_agreement`, :func:`pick_accuracy`; the metrics come from :mod:`vlmhub.ranking`);
* :mod:`.results`: the typed, frozen results (:class:`StudyResult` and its rows), :func:`summarize`,
  :func:`combine_results`, Markdown / CSV / JSON forms;
* :mod:`.runner`: :func:`study_target` (pure) and :func:`run_score_study`, which embeds the images of
  real tasks with a hub;
* :mod:`.report`: the full Markdown report, the plot and :func:`write_outputs` (what
  ``vlmhub score-study --out`` writes).

Nothing happens at import time.
"""

from __future__ import annotations

from .protocol import (
    INB,
    LABEL_FREE,
    MLL,
    PROBE_ZS,
    CrossFitResult,
    LogisticProbe,
    StudyConfig,
    cross_fit_accuracy,
    draw_probe,
    fit_logistic,
    pick_accuracy,
    rank_agreement,
    split_eval_pool,
    stratified_folds,
)
from .report import render_plot, report_markdown, write_outputs
from .results import SelectorRow, StudyResult, SummaryRow, TargetData, TargetStudy, TargetTruth, combine_results, summarize
from .runner import imagenet_top1_scores, measure_forward_seconds, run_score_study, study_target

__all__ = [
    "PROBE_ZS",
    "MLL",
    "INB",
    "LABEL_FREE",
    "StudyConfig",
    "TargetData",
    "TargetTruth",
    "SelectorRow",
    "SummaryRow",
    "TargetStudy",
    "StudyResult",
    "LogisticProbe",
    "CrossFitResult",
    "split_eval_pool",
    "draw_probe",
    "stratified_folds",
    "fit_logistic",
    "cross_fit_accuracy",
    "rank_agreement",
    "pick_accuracy",
    "study_target",
    "summarize",
    "render_plot",
    "report_markdown",
    "write_outputs",
    "combine_results",
    "measure_forward_seconds",
    "imagenet_top1_scores",
    "run_score_study",
]

