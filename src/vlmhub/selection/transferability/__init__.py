"""Classic forward-feature transferability scores, implemented from their papers.

Every score takes a small *labelled probe set* of target images already encoded by one candidate
model (:class:`ProbeSet`) and returns one float where **higher means more transferable** for every
score (papers whose quantity is lower-is-better are sign-flipped; see each docstring). They are the
supervised baselines that Model Label Learning (label-free VLM selection) is compared against.

Scores (registry name: paper; "*" = needs ``source_probs``):

* ``logme``: You et al., ICML 2021, "LogME: practical assessment of pre-trained models"
* ``leep`` *: Nguyen et al., ICML 2020, "LEEP: a new measure to evaluate transferability"
* ``nce`` *: Tran, Nguyen & Hassner, ICCV 2019, "Transferability and hardness of supervised
  classification tasks"
* ``hscore``: Bao et al., ICIP 2019, "An information-theoretic approach to transferability"
* ``hscore_shrinkage``: Ibrahim, Ponomareva & Mazumder 2022 (arXiv:2110.06893), "Newer is not
  always better: rethinking transferability metrics"
* ``nleep``: Li et al., CVPR 2021, "Ranking neural checkpoints"
* ``parc``: Bolya, Mittapalli & Hoffman, NeurIPS 2021, "Scalable diverse model selection"
* ``sfda``: Shao et al., ECCV 2022, "Not all models are equal: predicting model transferability
  in a self-challenging Fisher space"
* ``transrate``: Huang et al., ICML 2022, "Frustratingly easy transferability estimation"
* ``gbc``: Pándy et al., CVPR 2022, "Transferability estimation using Bhattacharyya class
  separability"

Each score is also available as a plain function on arrays (``logme(features, labels)``,
``leep(source_probs, labels)``, ...) that exposes its hyper-parameters.

Conventions shared by all scores:

* arithmetic is float64 throughout; inputs of any real dtype are copied to float64;
* labels are re-indexed to the classes that actually occur (absent class ids are ignored);
* rank-deficient inputs (``D > N``, constant columns, duplicate rows) are valid and never produce
  NaN: inverses are pseudo-inverses on the numerical range and log-determinants are computed from
  singular values with ``log1p``;
* the only randomness (the GMM initialisation of N-LEEP) is seeded, so every score is
  deterministic.

Scores of different kinds live on different scales; compare models with *one* score at a time
(:func:`rank_models`).

Layout: one module per score family, one registry over all of them.

* :mod:`.base`: input validation, :class:`ProbeSet`, shared linear algebra (:func:`pca_reduce`);
* :mod:`.bayesian`: LogME;
* :mod:`.label_based`: LEEP, NCE (need ``source_probs``);
* :mod:`.feature_based`: H-score, shrinkage H-score, SFDA, GBC;
* :mod:`.mixture`: N-LEEP and its Gaussian mixture;
* :mod:`.geometry`: PARC, TransRate;
* :mod:`.registry`: :data:`SCORES` (read-only name -> :class:`ScoreFn`), lookup and ranking.

A new score goes into the module of its family (or a new one) and gets one ``ScoreFn`` line in
:mod:`.registry`; the contract tests (``tests/test_contracts.py``) then cover it automatically.
"""

from __future__ import annotations

from .base import ProbeSet, pca_reduce
from .bayesian import logme, logme_evidence
from .feature_based import gbc, h_score, ledoit_wolf_shrinkage, sfda, shrinkage_h_score
from .geometry import parc, transrate
from .label_based import leep, nce
from .mixture import gaussian_mixture_posteriors, nleep
from .registry import SCORES, ScoreFn, UnknownScoreError, compute_score, get_score, rank_models, score_names

__all__ = [
    "ProbeSet",
    "ScoreFn",
    "SCORES",
    "UnknownScoreError",
    "score_names",
    "get_score",
    "compute_score",
    "rank_models",
    # array-level scores
    "logme",
    "leep",
    "nce",
    "h_score",
    "shrinkage_h_score",
    "nleep",
    "parc",
    "sfda",
    "transrate",
    "gbc",
    # building blocks that are useful on their own / in tests
    "logme_evidence",
    "ledoit_wolf_shrinkage",
    "gaussian_mixture_posteriors",
    "pca_reduce",
]
