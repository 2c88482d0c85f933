"""Ranking metrics: how well a score vector ranks items (models) against their true quality.

This is the one implementation of the metrics every report of vlmhub uses (the table benchmark
:mod:`vlmhub.tables`, the MLL benchmark :mod:`vlmhub.evaluation.benchmark` and the score study
:mod:`vlmhub.evaluation.score_study`). It sits in the lowest layer of the package (NumPy only, no
other vlmhub module but :mod:`vlmhub.errors`), so every layer may import it.

Arguments are ``scores`` (what a selector says, higher = better) and ``truth`` (the measured quality,
e.g. accuracies, higher = better), two 1-D arrays of the same length; a shape mismatch raises
:class:`~vlmhub.errors.DataError`.

Conventions (stated once here; docs/tables.md and docs/score_study.md refer to them):

* **Missing values.** Any non-finite score or truth makes every metric NaN. Callers decide what a
  missing value means *before* calling: the table benchmark drops models without a true accuracy
  and ranks a model its selector cannot score last (:func:`nan_last`); the score study reports a row
  whose score failed for some model as failed (NaN).
* **Constant inputs** (also: fewer than two items). If the *truth* is constant there is nothing to
  rank and the correlations are NaN (means leave them out). If only the *scores* are constant the
  selector ranks nothing and the correlations are ``0.0`` (means count them, so a selector is not
  excused for giving up).
* **Ties at the top** are broken uniformly at random and metrics report the expectation:
  :func:`pick_value` is the mean truth of the items tied at the top score, :func:`regret` is
  ``max(truth) - pick_value`` (in the units of ``truth``; the table reports multiply by 100 to get
  accuracy points), and :func:`top_k_overlap` is the expected ``|top_k(scores) & top_k(truth)| / k``.
  The results never depend on the order of the items.
* :func:`kendall_tau` is Kendall's tau-b (equals ``scipy.stats.kendalltau``, exactly);
  :func:`weighted_tau` is Vigna's weighted tau with hyperbolic weights ``1 / (rank + 1)``, additive
  pair weights and the average of the rankings by ``scores`` and by ``truth`` (equals
  ``scipy.stats.weightedtau(truth, scores)``, the variant Model Spider reports; it is symmetric);
  :func:`spearman_rho` is the Pearson correlation of average ranks (``scipy.stats.spearmanr``);
  :func:`pearson_r` is ``scipy.stats.pearsonr``. Kendall, Spearman and Pearson agree with SciPy to
  the last bit, weighted tau to ~1e-15 (its pair weights are summed in another order);
  ``tests/test_ranking.py`` checks all four against SciPy on random inputs with ties.

The pairwise metrics cost O(n^2) time and O(n * 2048) memory: fine for ranking the models of a hub
or a results table (hundreds), not for millions of items.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import DataError

__all__ = [
    "RankingMetrics",
    "ranking_metrics",
    "kendall_tau",
    "weighted_tau",
    "spearman_rho",
    "pearson_r",
    "pick_index",
    "pick_value",
    "regret",
    "top_k_overlap",
    "nan_last",
    "average_ranks",
]

_BLOCK = 2048  # rows of the pair matrix handled at once


@dataclass(frozen=True)
class RankingMetrics:
    """Every metric of one score vector against one truth vector (see the module conventions)."""

    pick: int  # index of the first item with the top score (-1 if a value is missing)
    pick_value: float  # mean truth of the items tied at the top score
    best_value: float  # max(truth)
    regret: float  # best_value - pick_value, in the units of truth
    tau: float  # Kendall tau-b
    tau_w: float  # weighted tau
    rho: float  # Spearman
    pearson: float
    top5: float  # expected top-5 overlap

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _pair(scores: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if s.ndim != 1 or s.shape != t.shape:
        raise DataError(f"scores and truth must be 1-D arrays of equal length, got shapes {s.shape} and {t.shape}; "
                        "pass one score and one true value per item")
    return s, t


def _undefined(s: np.ndarray, t: np.ndarray) -> float | None:
    """The value of a correlation that the data do not define, or None if it is defined."""
    if not (np.isfinite(s).all() and np.isfinite(t).all()) or s.size < 2 or np.ptp(t) == 0:
        return math.nan
    if np.ptp(s) == 0:
        return 0.0
    return None


def _pair_sums(x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> tuple[float, float, float]:
    """Over pairs i < j: sum of ``w_ij sign(dx) sign(dy)``, of ``w_ij [dx != 0]`` and of ``w_ij [dy != 0]``,
    with ``w_ij = w_i + w_j`` (or 1 when ``w`` is None: exact integer counts)."""
    n = x.size
    num = nx = ny = 0
    for a in range(0, n - 1, _BLOCK):
        b = min(a + _BLOCK, n - 1)
        i = np.arange(a, b)[:, None]
        j = np.arange(n)[None, :]
        upper = j > i  # pairs (i, j) with i in this block and j after it
        sx = np.sign(x[a:b, None] - x[None, :]).astype(np.int8)
        sy = np.sign(y[a:b, None] - y[None, :]).astype(np.int8)
        sx[~upper] = 0
        sy[~upper] = 0
        if w is None:
            num += int(np.sum(sx * sy, dtype=np.int64))
            nx += int(np.count_nonzero(sx))
            ny += int(np.count_nonzero(sy))
        else:
            wij = w[a:b, None] + w[None, :]
            num += float(np.sum(wij * (sx * sy)))
            nx += float(np.sum(wij * (sx != 0)))
            ny += float(np.sum(wij * (sy != 0)))
    return num, nx, ny


def kendall_tau(scores: Any, truth: Any) -> float:
    """Kendall's tau-b: ``(C - D) / sqrt((P - X)(P - Y))`` over the P item pairs (C concordant, D
    discordant, X tied in scores, Y tied in truth). NaN / 0.0 as the module conventions say."""
    s, t = _pair(scores, truth)
    u = _undefined(s, t)
    if u is not None:
        return u
    num, nx, ny = _pair_sums(s, t, None)
    return float(min(1.0, max(-1.0, num / np.sqrt(nx) / np.sqrt(ny))))


def _weighted_tau_ranked(x: np.ndarray, y: np.ndarray) -> float:
    """Weighted tau with item weights ``1 / (r + 1)``, r = rank by decreasing x (ties: decreasing y)."""
    order = np.lexsort((y, x))[::-1]
    rank = np.empty(x.size, dtype=np.float64)
    rank[order] = np.arange(x.size)
    num, nx, ny = _pair_sums(x, y, 1.0 / (rank + 1.0))
    return float(min(1.0, max(-1.0, num / np.sqrt(nx) / np.sqrt(ny))))


def weighted_tau(scores: Any, truth: Any) -> float:
    """Vigna's weighted tau (hyperbolic weights, additive): a pair weighs ``w_i + w_j`` with
    ``w = 1 / (rank + 1)``, so disagreements among the top-ranked items cost most; the average of the
    values with ranks by ``scores`` and by ``truth``. NaN / 0.0 as the module conventions say."""
    s, t = _pair(scores, truth)
    u = _undefined(s, t)
    if u is not None:
        return u
    return (_weighted_tau_ranked(t, s) + _weighted_tau_ranked(s, t)) / 2


def average_ranks(values: Any) -> np.ndarray:
    """1-based ranks, ties sharing the mean of their ranks (``scipy.stats.rankdata(method="average")``)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    starts = np.r_[True, sv[1:] != sv[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], v.size] - 1
    ranks = np.empty(v.size, dtype=np.float64)
    ranks[order] = (first[group] + last[group]) / 2.0 + 1.0
    return ranks


def spearman_rho(scores: Any, truth: Any) -> float:
    """Spearman's rho: the Pearson correlation of average ranks. NaN / 0.0 as the module conventions say."""
    s, t = _pair(scores, truth)
    u = _undefined(s, t)
    if u is not None:
        return u
    return float(np.corrcoef(np.vstack([average_ranks(s), average_ranks(t)]))[1, 0])


def pearson_r(scores: Any, truth: Any) -> float:
    """Pearson's r (computed as ``scipy.stats.pearsonr`` does). NaN / 0.0 as the module conventions say."""
    s, t = _pair(scores, truth)
    u = _undefined(s, t)
    if u is not None:
        return u
    if s.size == 2:
        return float(np.sign(s[1] - s[0]) * np.sign(t[1] - t[0]))
    sm, tm = s - s.mean(), t - t.mean()
    smax, tmax = np.abs(sm).max(), np.abs(tm).max()
    ns = smax * np.sqrt(np.sum((sm / smax) ** 2))  # scaled norms, summed in SciPy's order
    nt = tmax * np.sqrt(np.sum((tm / tmax) ** 2))
    a, b = sm / ns, tm / nt
    r = np.vecdot(a, b) if hasattr(np, "vecdot") else np.sum(a * b)  # NumPy < 2 has no vecdot
    return float(np.clip(r, -1.0, 1.0))


def pick_index(scores: Any) -> int:
    """Index of the first item with the top score; -1 if a score is missing (not finite) or there is none."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or not np.isfinite(s).all():
        return -1
    return int(np.argmax(s))


def pick_value(scores: Any, truth: Any) -> float:
    """Expected truth of the top pick when ties are broken at random: the mean truth of the items tied
    at the top score (NaN if a value is missing or there are no items)."""
    s, t = _pair(scores, truth)
    if s.size == 0 or not (np.isfinite(s).all() and np.isfinite(t).all()):
        return math.nan
    return float(t[s == s.max()].mean())


def regret(scores: Any, truth: Any) -> float:
    """``max(truth) - pick_value(scores, truth)``: what picking by ``scores`` loses (>= 0, units of truth)."""
    v = pick_value(scores, truth)
    return float(np.max(truth) - v) if math.isfinite(v) else math.nan


def _top_k_probability(v: np.ndarray, k: int) -> np.ndarray:
    """Probability of each item to be among the k largest when ties are broken uniformly at random."""
    kth = np.sort(v)[::-1][k - 1]
    above = v > kth
    at = v == kth
    p = above.astype(np.float64)
    p[at] = (k - above.sum()) / at.sum()
    return p


def top_k_overlap(scores: Any, truth: Any, k: int = 5) -> float:
    """Expected ``|top_k(scores) & top_k(truth)| / k`` with ties broken at random (LOVM's top-5 overlap
    for ``k = 5``); ``k`` is capped at the number of items. NaN if a value is missing or there are no items."""
    s, t = _pair(scores, truth)
    if k < 1:
        raise DataError(f"top-k overlap needs k >= 1, got {k}")
    k = min(int(k), s.size)
    if k == 0 or not (np.isfinite(s).all() and np.isfinite(t).all()):
        return math.nan
    return float(np.dot(_top_k_probability(s, k), _top_k_probability(t, k)) / k)


def nan_last(scores: Any) -> np.ndarray:
    """``scores`` with every non-finite value replaced by a value below all finite ones (ranked last,
    tied with each other); all non-finite gives all zeros (a constant score)."""
    s = np.asarray(scores, dtype=np.float64)
    fin = np.isfinite(s)
    if fin.all():
        return s.copy()
    fill = (np.min(s[fin]) - 1.0) if fin.any() else 0.0
    return np.where(fin, s, fill)


def ranking_metrics(scores: Any, truth: Any, *, k: int = 5) -> RankingMetrics:
    """Every metric of this module at once (``top5`` holds the top-``k`` overlap)."""
    s, t = _pair(scores, truth)
    ok = bool(np.isfinite(s).all() and np.isfinite(t).all() and s.size)
    pv = pick_value(s, t)
    best = float(t.max()) if ok else math.nan
    return RankingMetrics(
        pick=pick_index(s) if ok else -1,
        pick_value=pv,
        best_value=best,
        regret=best - pv if ok else math.nan,
        tau=kendall_tau(s, t),
        tau_w=weighted_tau(s, t),
        rho=spearman_rho(s, t),
        pearson=pearson_r(s, t),
        top5=top_k_overlap(s, t, k) if s.size else math.nan,
    )
