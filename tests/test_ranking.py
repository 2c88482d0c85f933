"""vlmhub.ranking: the one implementation of ranking metrics, checked against SciPy and by hand."""

from __future__ import annotations

import math
import warnings
from itertools import permutations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from vlmhub.errors import DataError
from vlmhub.ranking import (
    average_ranks,
    kendall_tau,
    nan_last,
    pearson_r,
    pick_index,
    pick_value,
    ranking_metrics,
    regret,
    spearman_rho,
    top_k_overlap,
    weighted_tau,
)


def _scipy(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(*args).statistic)


# few distinct values -> many ties; n from 2 to 60
_vectors = st.integers(2, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 6), min_size=n, max_size=n),
        st.one_of(st.lists(st.integers(0, 6), min_size=n, max_size=n),
                  st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=n, max_size=n)),
    )
)


def _constant(v) -> bool:
    return np.ptp(np.asarray(v, float)) == 0


@settings(max_examples=300, deadline=None)
@given(_vectors)
def test_matches_scipy_on_random_inputs_with_ties(xy):
    s, t = (np.asarray(v, dtype=np.float64) for v in xy)
    if _constant(t):  # nothing to rank: NaN, where SciPy also says NaN
        for fn in (kendall_tau, weighted_tau, spearman_rho, pearson_r):
            assert math.isnan(fn(s, t))
        return
    if _constant(s):  # the scores rank nothing: 0 (SciPy: NaN, undefined)
        for fn in (kendall_tau, weighted_tau, spearman_rho, pearson_r):
            assert fn(s, t) == 0.0
        return
    assert kendall_tau(s, t) == _scipy(stats.kendalltau, s, t)  # exact: integer pair counts
    assert weighted_tau(s, t) == pytest.approx(_scipy(stats.weightedtau, t, s), abs=1e-12)
    assert weighted_tau(s, t) == pytest.approx(_scipy(stats.weightedtau, s, t), abs=1e-12)
    assert spearman_rho(s, t) == _scipy(stats.spearmanr, s, t)  # exact: same ranks, same arithmetic
    assert pearson_r(s, t) == _scipy(stats.pearsonr, s, t)
    np.testing.assert_array_equal(average_ranks(s), stats.rankdata(s))


def test_weighted_tau_against_scipy_on_continuous_scores():
    rng = np.random.default_rng(1)
    for n in (3, 7, 40, 121):
        for _ in range(20):
            s, t = rng.normal(size=n), rng.normal(size=n)
            t[: n // 3] = np.round(t[: n // 3], 1)  # some ties in the truth
            assert weighted_tau(s, t) == pytest.approx(_scipy(stats.weightedtau, t, s), abs=1e-12)
            assert kendall_tau(s, t) == _scipy(stats.kendalltau, s, t)


def test_pair_blocks_agree_with_one_block(monkeypatch):
    import vlmhub.ranking as ranking

    rng = np.random.default_rng(2)
    s, t = rng.integers(0, 9, 70).astype(float), rng.normal(size=70)
    whole = (kendall_tau(s, t), weighted_tau(s, t))
    monkeypatch.setattr(ranking, "_BLOCK", 8)  # 9 row blocks instead of one
    blocked = (kendall_tau(s, t), weighted_tau(s, t))
    assert blocked[0] == whole[0] and blocked[1] == pytest.approx(whole[1], abs=1e-14)


def test_kendall_tau_by_hand():
    # 4 items, pairs: (0,1) c, (0,2) c, (0,3) c, (1,2) d, (1,3) c, (2,3) c -> (5 - 1) / 6
    assert kendall_tau([1, 3, 2, 4], [10, 20, 30, 40]) == pytest.approx(4 / 6)
    # one tie in the scores: (0,1) tied; the 5 other pairs concordant -> 5 / sqrt(5 * 6)
    assert kendall_tau([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30))
    assert kendall_tau([3, 2, 1], [1, 2, 3]) == -1.0


def test_weighted_tau_by_hand():
    # scores (3, 2, 1), truth (1, 3, 2): ranks by scores 0, 1, 2 (weights 1, 1/2, 1/3);
    # pairs (0,1) d w=3/2, (0,2) d w=4/3, (1,2) c w=5/6; all pairs untied -> (5/6 - 3/2 - 4/3) / (11/3)
    by_scores = (5 / 6 - 3 / 2 - 4 / 3) / (11 / 3)
    # ranks by truth: item 1 first, item 2, item 0 -> weights 1/3, 1, 1/2: (0,1) d 4/3, (0,2) d 5/6, (1,2) c 3/2
    by_truth = (3 / 2 - 4 / 3 - 5 / 6) / (11 / 3)
    assert weighted_tau([3, 2, 1], [1, 3, 2]) == pytest.approx((by_scores + by_truth) / 2)
    # a top disagreement costs more than a bottom one
    assert weighted_tau([2, 1, 3, 4, 5], [1, 2, 3, 4, 5]) > weighted_tau([1, 2, 3, 5, 4], [1, 2, 3, 4, 5])


def test_conventions_constant_missing_and_short():
    y = [0.1, 0.5, 0.9]
    for fn in (kendall_tau, weighted_tau, spearman_rho, pearson_r):
        assert fn([2.0, 2.0, 2.0], y) == 0.0  # constant scores rank nothing
        assert math.isnan(fn([1.0, 2.0, 3.0], [0.5, 0.5, 0.5]))  # constant truth: nothing to rank
        assert math.isnan(fn([1.0, np.nan, 3.0], y))
        assert math.isnan(fn([1.0, 2.0, 3.0], [0.1, np.inf, 0.3]))
        assert math.isnan(fn([1.0], [0.3]))
    assert pearson_r([1, 2], [5, 3]) == -1.0
    with pytest.raises(DataError, match="equal length"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(DataError, match="1-D"):
        weighted_tau(np.zeros((2, 2)), np.zeros((2, 2)))


def test_pick_and_regret_expect_over_ties():
    y = np.array([0.4, 0.8, 0.9, 0.6])
    assert pick_index([0.2, 0.9, 0.1, 0.3]) == 1
    assert pick_value([0.2, 0.9, 0.1, 0.3], y) == 0.8
    assert regret([0.2, 0.9, 0.1, 0.3], y) == pytest.approx(0.1)
    # two items tied at the top: the mean of their truths, whatever their order
    assert pick_value([1.0, 1.0, 0.0, 0.0], y) == pytest.approx(0.6)
    assert pick_value([0.0, 1.0, 0.0, 1.0], y) == pytest.approx(0.7)
    assert regret([5, 5, 5, 5], y) == pytest.approx(0.9 - y.mean())  # a constant score picks the average item
    assert regret([0, 0, 1, 0], y) == 0.0
    assert pick_index([1.0, np.nan]) == -1 and math.isnan(pick_value([1.0, np.nan], [0.1, 0.2]))
    assert math.isnan(regret([1.0, 2.0], [np.nan, 0.2]))


def test_top_k_overlap_expectation_matches_enumerating_tie_breaks():
    rng = np.random.default_rng(3)
    for _ in range(25):
        n = int(rng.integers(2, 6))
        s = rng.integers(0, 3, n).astype(float)
        t = rng.integers(0, 3, n).astype(float)
        k = int(rng.integers(1, n + 1))
        # every tie-break order of scores and of truth, equally likely
        vals = []
        for ps in set(permutations(range(n))):
            top_s = set(sorted(range(n), key=lambda i: (-s[i], ps[i]))[:k])
            for pt in set(permutations(range(n))):
                top_t = set(sorted(range(n), key=lambda i: (-t[i], pt[i]))[:k])
                vals.append(len(top_s & top_t) / k)
        assert top_k_overlap(s, t, k) == pytest.approx(np.mean(vals)), (s, t, k)


def test_top_k_overlap_by_hand_and_bounds():
    y = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert top_k_overlap(y, y, 3) == 1.0
    assert top_k_overlap(-y, y, 3) == 0.0
    assert top_k_overlap([9, 0, 0, 0, 0, 0], y, 1) == 0.0
    # a constant score: every item is in its top 2 with probability 1/3 -> expected overlap (2 * 1/3) / 2
    assert top_k_overlap(np.zeros(6), y, 2) == pytest.approx(1 / 3)
    assert top_k_overlap(y, y, 50) == 1.0  # k capped at n
    with pytest.raises(DataError, match="k >= 1"):
        top_k_overlap(y, y, 0)


def test_nan_last_and_ranking_metrics():
    np.testing.assert_array_equal(nan_last([0.5, np.nan, -1.0]), [0.5, -2.0, -1.0])
    np.testing.assert_array_equal(nan_last([np.nan, np.nan]), [0.0, 0.0])
    s, y = np.array([0.3, 0.1, 0.2, 0.9]), np.array([0.6, 0.2, 0.4, 0.5])
    m = ranking_metrics(s, y)
    assert m.pick == 3 and m.pick_value == 0.5 and m.best_value == 0.6 and m.regret == pytest.approx(0.1)
    assert (m.tau, m.tau_w, m.rho, m.pearson) == (kendall_tau(s, y), weighted_tau(s, y), spearman_rho(s, y), pearson_r(s, y))
    assert m.top5 == 1.0 and set(m.to_dict()) == {"pick", "pick_value", "best_value", "regret", "tau", "tau_w", "rho",
                                                  "pearson", "top5"}
    bad = ranking_metrics([0.1, np.nan], [0.2, 0.3])
    assert bad.pick == -1 and all(math.isnan(getattr(bad, f)) for f in ("regret", "tau", "tau_w", "rho", "top5"))
