"""Scores on the model's own class probabilities: LEEP (Nguyen et al., ICML 2020) and NCE
(Tran, Nguyen & Hassner, ICCV 2019). Both need ``ProbeSet.source_probs``."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import _TINY, _one_hot, _probs_labels

__all__ = ["leep", "nce"]

# LEEP / NCE
# ---------------------------------------------------------------------------------------------


def _leep_from_probs(p: np.ndarray, y: np.ndarray, c: int) -> float:
    n = p.shape[0]
    joint = _one_hot(y, c).T @ p / n  # P^(y, z), C x K
    pz = joint.sum(axis=0)  # P^(z)
    cond = np.divide(joint, pz, out=np.zeros_like(joint), where=pz > 0)  # P^(y | z)
    eep = np.einsum("iz,iz->i", p, cond[y])  # sum_z P^(y_i | z) theta(x_i)_z
    return float(np.mean(np.log(np.maximum(eep, _TINY))))


def leep(source_probs: Any, labels: Any) -> float:
    """LEEP (Nguyen et al., ICML 2020): log expected empirical prediction. Higher is better.

    With theta(x_i) the model's source-label distribution (``source_probs``, N x K):

        P^(y, z) = 1/N sum_{i: y_i = y} theta(x_i)_z,   P^(y | z) = P^(y, z) / sum_y' P^(y', z)
        LEEP = 1/N sum_i log( sum_z P^(y_i | z) theta(x_i)_z ).

    It is a mean log-likelihood, so LEEP <= 0, with 0 for a perfect deterministic mapping.
    """
    p, y, c = _probs_labels(source_probs, labels)
    return _leep_from_probs(p, y, c)


def nce(source_probs: Any, labels: Any) -> float:
    """NCE (Tran et al., ICCV 2019): negative conditional entropy ``-H(Y | Z)``. Higher is better.

    Source labels are hard: ``z_i = argmax_k source_probs[i, k]``. With the empirical joint
    ``P^(y, z) = #{i: y_i = y, z_i = z} / N``:

        NCE = -H(Y | Z) = sum_{y, z} P^(y, z) log( P^(y, z) / P^(z) ).

    The paper's quantity is the conditional entropy (lower = more transferable); we return its
    negative, as the paper's name says, so NCE <= 0 and 0 means Z determines Y.
    """
    p, y, c = _probs_labels(source_probs, labels)
    z = np.argmax(p, axis=1)
    k = p.shape[1]
    joint = np.zeros((c, k))
    np.add.at(joint, (y, z), 1.0)
    joint /= p.shape[0]
    pz = joint.sum(axis=0)
    nz = joint > 0
    cond = joint[nz] / np.broadcast_to(pz, joint.shape)[nz]
    return float(np.sum(joint[nz] * np.log(cond)))
