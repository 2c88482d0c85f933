"""Synthetic validation of the classic transferability scores (vlmhub.selection.transferability).

Every check uses data where the right answer is known: separable features beat shuffled labels,
scores grow monotonically with class separation / shrinking label noise / a sharper source
classifier, hand-computed LEEP and NCE values, the LogME evidence equals the Gaussian marginal
likelihood at the fixed point, the invariances the papers state, robustness on degenerate input,
and DataError on bad input.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import optimize, special, stats

from vlmhub.errors import DataError, VlmhubError
from vlmhub.selection import transferability as T
from vlmhub.selection.transferability import (
    SCORES,
    ProbeSet,
    UnknownScoreError,
    compute_score,
    get_score,
    rank_models,
    score_names,
)

C, NPER, D, K = 4, 40, 16, 6
FEATURE_SCORES = [n for n in score_names() if not SCORES[n].needs_source_probs]
PROB_SCORES = [n for n in score_names() if SCORES[n].needs_source_probs]


# ------------------------------------------------------------------------------------------------
# synthetic data
# ------------------------------------------------------------------------------------------------


def blobs(sep: float, *, seed: int = 0, n_per: int = NPER, c: int = C, d: int = D):
    """Gaussian classes: x = sep * mu_y + N(0, I), |mu_c| = sqrt(2). Same noise for every sep."""
    r = np.random.default_rng(seed)
    mu = r.standard_normal((c, d))
    mu /= np.linalg.norm(mu, axis=1, keepdims=True) / math.sqrt(2.0)
    y = np.repeat(np.arange(c), n_per)
    return sep * mu[y] + r.standard_normal((y.size, d)), y


def noisy_labels(y: np.ndarray, frac: float, *, seed: int = 1, c: int = C) -> np.ndarray:
    """Replace a fixed-order prefix (fraction ``frac``) of the labels by uniform random classes."""
    r = np.random.default_rng(seed)
    order, repl = r.permutation(y.size), r.integers(0, c, y.size)
    out = y.copy()
    m = order[: int(round(frac * y.size))]
    out[m] = repl[m]
    return out


def source_probs(y: np.ndarray, quality: float, *, seed: int = 2, k: int = K) -> np.ndarray:
    """A source classifier whose logit for source class y_i is boosted by ``quality``."""
    r = np.random.default_rng(seed)
    logits = r.standard_normal((y.size, k))
    logits[np.arange(y.size), y] += quality
    return special.softmax(logits, axis=1)


def probe(sep: float = 1.5, **kw) -> ProbeSet:
    x, y = blobs(sep, **kw)
    return ProbeSet(x, y, source_probs(y, 2.0))


SEPS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.5]
NOISE = [0.75, 0.6, 0.45, 0.3, 0.15, 0.0]  # decreasing label noise
QUALITY = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]


# ------------------------------------------------------------------------------------------------
# registry / API
# ------------------------------------------------------------------------------------------------


def test_registry_contents_and_flags():
    expected = {"logme", "leep", "nce", "hscore", "hscore_shrinkage", "nleep", "parc", "sfda", "transrate", "gbc"}
    assert expected <= set(score_names())
    assert set(PROB_SCORES) == {"leep", "nce"}
    for name, fn in SCORES.items():
        assert fn.name == name and fn.paper and fn.summary
    assert set(T.__all__) >= {"ProbeSet", "SCORES", "score_names", "compute_score", "rank_models"}


@pytest.mark.parametrize("alias,name", [("H-Score", "hscore"), ("N-LEEP", "nleep"), ("LogME", "logme"),
                                        ("TransRate", "transrate"), ("regularized_hscore", "hscore_shrinkage")])
def test_name_normalisation(alias, name):
    assert get_score(alias) is SCORES[name]


def test_unknown_score_lists_known_names():
    with pytest.raises(UnknownScoreError) as info:
        compute_score("no-such-score", probe())
    msg = str(info.value)
    assert "no-such-score" in msg and all(n in msg for n in score_names())
    assert isinstance(info.value, KeyError) and isinstance(info.value, VlmhubError)


@pytest.mark.parametrize("name", score_names())
def test_every_score_is_deterministic_python_float(name):
    p = probe()
    a, b = compute_score(name, p), compute_score(name, p)
    assert isinstance(a, float) and math.isfinite(a) and a == b


@pytest.mark.parametrize("name", PROB_SCORES)
def test_prob_scores_need_source_probs(name):
    x, y = blobs(1.0)
    with pytest.raises(DataError, match="source_probs"):
        compute_score(name, ProbeSet(x, y))


def test_rank_models_orders_best_first_and_keeps_tie_order():
    probes = {f"sep{s}": ProbeSet(*blobs(s)) for s in (0.5, 2.0, 1.0)}
    ranked = rank_models(probes, "logme")
    assert [m for m, _ in ranked] == ["sep2.0", "sep1.0", "sep0.5"]
    assert ranked[0][1] > ranked[1][1] > ranked[2][1]
    same = ProbeSet(*blobs(1.0))
    assert [m for m, _ in rank_models({"b": same, "a": same, "c": same}, "hscore")] == ["b", "a", "c"]
    assert rank_models({}, "logme") == []


def test_rank_models_names_the_bad_model():
    with pytest.raises(DataError, match="'clip-x'.*source_probs"):
        rank_models({"clip-x": ProbeSet(*blobs(1.0))}, "leep")
    with pytest.raises(UnknownScoreError):
        rank_models({"m": probe()}, "nope")


# ------------------------------------------------------------------------------------------------
# ProbeSet validation
# ------------------------------------------------------------------------------------------------


def _good():
    x, y = blobs(1.0, n_per=3)
    return x, y, source_probs(y, 1.0)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda x, y, p: (x[:, 0], y, p), "2-D"),
        (lambda x, y, p: (np.where(np.eye(*x.shape) > 0, np.nan, x), y, p), "NaN"),
        (lambda x, y, p: (np.full(x.shape, np.inf), y, p), "NaN or infinite"),
        (lambda x, y, p: (x.astype(str), y, p), "dtype"),
        (lambda x, y, p: (np.zeros((0, 3)), y[:0], None), "empty"),
        (lambda x, y, p: (x, y.astype(float), p), "integers"),
        (lambda x, y, p: (x, y.astype(bool), p), "integers"),
        (lambda x, y, p: (x, y[:, None], p), "1-D"),
        (lambda x, y, p: (x, y[:-1], p), "one label per probe"),
        (lambda x, y, p: (x, y - 1, p), "negative"),
        (lambda x, y, p: (x, np.zeros_like(y), p), "at least 2 classes"),
        (lambda x, y, p: (x, np.r_[y[:-1], 99], p), "single probe image"),
        (lambda x, y, p: (x, y, p[:-1]), "one probability row"),
        (lambda x, y, p: (x, y, -p), "negative"),
        (lambda x, y, p: (x, y, 2 * p), "sum to 1"),
        (lambda x, y, p: (x, y, np.where(p > 0.5, np.nan, p)), "source_probs contain NaN"),
    ],
)
def test_bad_input_raises_data_error(mutate, match):
    x, y, p = mutate(*_good())
    with pytest.raises(DataError, match=match):
        ProbeSet(x, y, p)


def test_array_functions_validate_too():
    with pytest.raises(DataError):
        T.logme(np.ones((4, 2)), np.array([0, 0, 0, 1]))
    with pytest.raises(DataError):
        T.leep(np.ones((4, 2)), np.array([0, 0, 1, 1]))


def test_probeset_is_frozen_copy_float64():
    x, y, p = _good()
    ps = ProbeSet(x.astype(np.float32), y.astype(np.int32), p)
    assert ps.features.dtype == np.float64 and ps.labels.dtype == np.int64
    x[:] = 0.0
    assert not np.all(ps.features == 0.0)
    with pytest.raises(ValueError):
        ps.features[0, 0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        ps.labels = y  # type: ignore[misc]
    assert (ps.n_samples, ps.dim, ps.n_classes) == (12, D, C)
    assert np.allclose(ps.source_probs.sum(axis=1), 1.0)


def test_probs_are_renormalised_within_tolerance():
    x, y, p = _good()
    a = ProbeSet(x, y, p * 1.005)
    assert np.allclose(a.source_probs, p)


# ------------------------------------------------------------------------------------------------
# Known-answer checks: separable beats shuffled, monotone families
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", score_names())
def test_separable_beats_shuffled_labels(name):
    x, y = blobs(1.5)
    p = source_probs(y, 2.0)
    shuffled = np.random.default_rng(3).permutation(y)
    true = compute_score(name, ProbeSet(x, y, p))
    shuf = compute_score(name, ProbeSet(x, shuffled, p))
    assert true > shuf


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_monotone_in_class_separation(name):
    scores = [compute_score(name, ProbeSet(*blobs(s))) for s in SEPS]
    assert stats.spearmanr(SEPS, scores).statistic >= 0.9, scores
    assert scores[-1] > scores[0]


@pytest.mark.parametrize("name", FEATURE_SCORES)
def test_monotone_in_label_noise(name):
    x, y = blobs(2.0)
    scores = [compute_score(name, ProbeSet(x, noisy_labels(y, f))) for f in NOISE]
    assert stats.spearmanr(range(len(NOISE)), scores).statistic >= 0.9, scores
    assert scores[-1] > scores[0]


@pytest.mark.parametrize("name", PROB_SCORES)
def test_prob_scores_monotone_in_source_quality_and_label_noise(name):
    y = np.repeat(np.arange(C), NPER)
    x = np.zeros((y.size, 2))
    by_quality = [compute_score(name, ProbeSet(x, y, source_probs(y, q))) for q in QUALITY]
    by_noise = [compute_score(name, ProbeSet(x, noisy_labels(y, f), source_probs(y, 3.0))) for f in NOISE]
    assert stats.spearmanr(QUALITY, by_quality).statistic >= 0.9, by_quality
    assert stats.spearmanr(range(len(NOISE)), by_noise).statistic >= 0.9, by_noise


# ------------------------------------------------------------------------------------------------
# LEEP / NCE: hand-computed values
# ------------------------------------------------------------------------------------------------

TINY_Y = np.array([0, 0, 1, 1])
TINY_P = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7]])


def test_leep_hand_computed():
    # P(y,z): y=0 -> [1.3, 0.7]/4, y=1 -> [0.5, 1.5]/4 ; P(z) = [1.8, 2.2]/4
    py0 = [1.3 / 1.8, 0.7 / 2.2]
    py1 = [0.5 / 1.8, 1.5 / 2.2]
    eep = [
        0.9 * py0[0] + 0.1 * py0[1],
        0.4 * py0[0] + 0.6 * py0[1],
        0.2 * py1[0] + 0.8 * py1[1],
        0.3 * py1[0] + 0.7 * py1[1],
    ]
    expected = sum(math.log(e) for e in eep) / 4
    assert T.leep(TINY_P, TINY_Y) == pytest.approx(expected, abs=1e-12)
    assert compute_score("leep", ProbeSet(np.zeros((4, 1)), TINY_Y, TINY_P)) == pytest.approx(expected, abs=1e-12)


def test_nce_hand_computed():
    # hard z = [0, 1, 1, 1]: P(0,0)=1/4, P(0,1)=1/4, P(1,1)=1/2, P(z=1)=3/4
    expected = -(0.25 * math.log(3.0) + 0.5 * math.log(1.5))
    assert T.nce(TINY_P, TINY_Y) == pytest.approx(expected, abs=1e-12)


def test_leep_nce_perfect_and_bounds():
    y = np.repeat(np.arange(3), 5)
    onehot = np.eye(3)[y]
    assert T.leep(onehot, y) == pytest.approx(0.0, abs=1e-12)
    assert T.nce(onehot, y) == pytest.approx(0.0, abs=1e-12)
    r = np.random.default_rng(0)
    for _ in range(20):
        p = r.dirichlet(np.ones(5), size=y.size)
        assert T.leep(p, y) <= 1e-12 and T.nce(p, y) <= 1e-12
        # uninformative constant source: LEEP = sum_y P(y) log P(y)
    const = np.full((y.size, 4), 0.25)
    assert T.leep(const, y) == pytest.approx(math.log(1 / 3), abs=1e-12)


def test_leep_nce_invariant_to_source_permutation_and_relabeling():
    y = np.repeat(np.arange(C), 10)
    p = source_probs(y, 1.0)
    perm = np.random.default_rng(0).permutation(K)
    relabel = np.array([2, 0, 3, 1])[y] + 5  # class ids need not be contiguous
    for fn in (T.leep, T.nce):
        base = fn(p, y)
        assert fn(p[:, perm], y) == pytest.approx(base, abs=1e-12)
        assert fn(p, relabel) == pytest.approx(base, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# LogME: direct evaluation of the evidence at the fixed point
# ------------------------------------------------------------------------------------------------


def _gauss_evidence(f, y, alpha, beta):
    cov = f @ f.T / alpha + np.eye(len(y)) / beta
    return stats.multivariate_normal(np.zeros(len(y)), cov).logpdf(y) / len(y)


@pytest.mark.parametrize("n,d,slack", [(12, 5, 1e-9), (8, 20, 1e-6)])
def test_logme_evidence_matches_direct_marginal_likelihood(n, d, slack):
    # With D > N the data can be interpolated and the supremum lies at beta -> infinity; the
    # fixed point creeps towards it, so its value is within 1e-6 (per sample) of the supremum.
    r = np.random.default_rng(n)
    f = r.standard_normal((n, d))
    y = f @ r.standard_normal(d) * 0.3 + 0.5 * r.standard_normal(n)
    ev, alpha, beta = T.logme_evidence(f, y)
    # (1) the closed form equals log N(y; 0, F F^T / alpha + I / beta) / N at the returned pair
    assert ev == pytest.approx(_gauss_evidence(f, y, alpha, beta), abs=1e-10)
    # (2) the fixed point is a maximum of the evidence over (alpha, beta)
    res = optimize.minimize(
        lambda t: -_gauss_evidence(f, y, *np.exp(t)), np.log([alpha, beta]), method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-13},
    )
    assert -res.fun <= ev + slack
    steps = [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)] if slack < 1e-8 else [(0.05, 0), (-0.05, 0)]
    for da, db in steps:
        assert _gauss_evidence(f, y, alpha * math.exp(da), beta * math.exp(db)) < ev


def test_logme_is_mean_of_per_class_evidence():
    x, y = blobs(1.0, n_per=10)
    per_class = [T.logme_evidence(x, (y == c).astype(float))[0] for c in range(C)]
    assert T.logme(x, y) == pytest.approx(np.mean(per_class), abs=1e-12)


def test_logme_invariances():
    x, y = blobs(1.0)
    base = T.logme(x, y)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((D, D)))
    assert T.logme(x[:, np.random.default_rng(1).permutation(D)], y) == pytest.approx(base, abs=1e-9)
    assert T.logme(x @ q, y) == pytest.approx(base, abs=1e-8)  # isotropic prior => rotation invariant
    assert T.logme(x, np.array([3, 1, 0, 2])[y]) == pytest.approx(base, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# H-score and its shrinkage version
# ------------------------------------------------------------------------------------------------


def test_hscore_invariances_stated_in_paper():
    x, y = blobs(1.0)
    base = T.h_score(x, y)
    r = np.random.default_rng(0)
    perm = r.permutation(D)
    a = r.standard_normal((D, D)) + 3 * np.eye(D)  # invertible linear map
    assert T.h_score(x[:, perm], y) == pytest.approx(base, rel=1e-10)
    assert T.h_score(x @ a + 7.0, y) == pytest.approx(base, rel=1e-8)
    assert T.h_score(x, np.array([2, 3, 1, 0])[y]) == pytest.approx(base, rel=1e-12)
    assert 0.0 <= base <= C - 1


def test_hscore_matches_reference_formula():
    x, y = blobs(1.0)
    xc = x - x.mean(0)
    g = np.zeros_like(x)
    for c in range(C):
        g[y == c] = x[y == c].mean(0)
    cov_f = xc.T @ xc / (len(y) - 1)
    gc = g - g.mean(0)
    cov_g = gc.T @ gc / (len(y) - 1)
    ref = np.trace(np.linalg.pinv(cov_f, rcond=1e-15) @ cov_g)
    assert T.h_score(x, y) == pytest.approx(ref, rel=1e-9)


def test_shrinkage_hscore_invariances_and_reference():
    x, y = blobs(1.5)
    base = T.shrinkage_h_score(x, y)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((D, D)))
    assert T.shrinkage_h_score(x[:, ::-1], y) == pytest.approx(base, rel=1e-10)
    assert T.shrinkage_h_score(3.0 * x @ q - 1.0, y) == pytest.approx(base, rel=1e-8)
    # direct formula with an explicit shrunk covariance
    xc = x - x.mean(0)
    a = T.ledoit_wolf_shrinkage(xc)
    s = xc.T @ xc / len(y)
    s_a = (1 - a) * s + a * np.trace(s) / D * np.eye(D)
    g = np.zeros_like(xc)
    for c in range(C):
        g[y == c] = xc[y == c].mean(0)
    ref = np.trace(np.linalg.solve(s_a, (1 - a) * g.T @ g / len(y)))
    assert base == pytest.approx(ref, rel=1e-9)


def test_ledoit_wolf_matches_sklearn():
    sk = pytest.importorskip("sklearn.covariance")
    r = np.random.default_rng(0)
    for n, d in [(50, 10), (20, 60)]:
        x = r.standard_normal((n, d)) @ r.standard_normal((d, d))
        xc = x - x.mean(0)
        assert T.ledoit_wolf_shrinkage(xc) == pytest.approx(sk.ledoit_wolf_shrinkage(xc), abs=1e-10)


def test_plain_hscore_saturates_when_d_exceeds_n_but_shrinkage_does_not():
    x, y = blobs(1.5, n_per=10, d=100)
    shuffled = np.random.default_rng(3).permutation(y)
    assert T.h_score(x, y) == pytest.approx(C - 1, abs=1e-6)
    assert T.h_score(x, shuffled) == pytest.approx(C - 1, abs=1e-6)
    assert T.shrinkage_h_score(x, y) > T.shrinkage_h_score(x, shuffled)


# ------------------------------------------------------------------------------------------------
# N-LEEP / GMM, PARC, SFDA, TransRate, GBC
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance", ["diag", "full"])
def test_gmm_recovers_well_separated_clusters(covariance):
    x, y = blobs(12.0, n_per=30, d=4)
    post, ll = T.gaussian_mixture_posteriors(x, C, covariance=covariance, seed=0)
    assert post.shape == (y.size, C) and np.allclose(post.sum(1), 1.0) and math.isfinite(ll)
    hard = post.argmax(1)
    # each true class is one component and the components are distinct
    assert all(np.unique(hard[y == c]).size == 1 for c in range(C))
    assert np.unique(hard).size == C
    post2, _ = T.gaussian_mixture_posteriors(x, C, covariance=covariance, seed=0)
    assert np.array_equal(post, post2)


def test_nleep_full_covariance_and_seed_options():
    x, y = blobs(1.5)
    assert math.isfinite(T.nleep(x, y, covariance="full"))
    assert T.nleep(x, y, seed=5) == T.nleep(x, y, seed=5)
    assert T.nleep(x, y) > T.nleep(x, np.random.default_rng(3).permutation(y))


def test_pca_reduce_variance_and_sign_convention():
    x, _ = blobs(1.0)
    z = T.pca_reduce(x, variance=0.8)
    full = T.pca_reduce(x)
    ratio = np.cumsum(full.var(0)) / full.var(0).sum()
    assert z.shape[1] == int(np.searchsorted(ratio, 0.8 - 1e-12)) + 1
    assert np.allclose(T.pca_reduce(x[:, ::-1], n_components=3), T.pca_reduce(x, n_components=3))


def test_parc_invariant_to_sample_order_and_feature_order():
    x, y = blobs(1.0)
    base = T.parc(x, y)
    order = np.random.default_rng(0).permutation(y.size)
    assert T.parc(x[order], y[order]) == pytest.approx(base, abs=1e-12)
    assert T.parc(x[:, ::-1], y) == pytest.approx(base, abs=1e-12)
    assert -1.0 <= base <= 1.0


def test_sfda_invariances_and_range():
    x, y = blobs(1.0)
    base = T.sfda(x, y)
    assert 1.0 / C - 0.1 < base <= 1.0
    assert T.sfda(x[:, ::-1], y) == pytest.approx(base, rel=1e-9)
    assert T.sfda(x + 5.0, y) == pytest.approx(base, rel=1e-9)
    assert T.sfda(x, y, use_log=True) < 0


def test_transrate_invariances_and_definition():
    x, y = blobs(1.0)
    base = T.transrate(x, y)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((D, D)))
    assert T.transrate(x @ q + 3.0, y) == pytest.approx(base, rel=1e-9)
    # direct slogdet evaluation as in the paper's code
    z = x - x.mean(0)

    def rate(m, eps=1e-4):
        return 0.5 * np.linalg.slogdet(np.eye(D) + m.T @ m / (len(m) * eps))[1]

    ref = rate(z) - np.mean([rate(z[y == c]) for c in range(C)])
    assert base == pytest.approx(ref, rel=1e-9)


def test_gbc_properties():
    x, y = blobs(1.0)
    base = T.gbc(x, y)
    assert -C * (C - 1) <= base <= 0.0
    assert T.gbc(x[:, ::-1], y) == pytest.approx(base, rel=1e-10)
    assert T.gbc(x, y, gaussian="diagonal") <= 0.0
    # identical classes overlap completely: BC = 1 for every ordered pair
    same = np.tile(x[:NPER], (C, 1))
    assert T.gbc(same, y) == pytest.approx(-C * (C - 1), abs=1e-9)


# ------------------------------------------------------------------------------------------------
# Degenerate-but-valid input: never NaN
# ------------------------------------------------------------------------------------------------


def _degenerate_cases():
    x, y = blobs(1.0, n_per=6, c=3, d=50)  # D > N
    const_cols = x.copy()
    const_cols[:, :10] = 4.2
    dup = np.repeat(x[::2], 2, axis=0)
    return {
        "d_gt_n": (x, y),
        "constant_columns": (const_cols, y),
        "all_constant": (np.full_like(x, 3.0), y),
        "all_zero": (np.zeros_like(x), y),
        "duplicate_rows": (dup, y),
        "single_dim": (x[:, :1], y),
        "huge_scale": (x * 1e8, y),
        "tiny_scale": (x * 1e-8, y),
        "min_size": (np.array([[0.0], [1.0], [5.0], [6.0]]), np.array([0, 0, 1, 1])),
    }


@pytest.mark.parametrize("case", list(_degenerate_cases()))
@pytest.mark.parametrize("name", score_names())
def test_degenerate_inputs_give_finite_scores(case, name):
    x, y = _degenerate_cases()[case]
    p = ProbeSet(x, y, source_probs(y, 1.0, k=3))
    assert math.isfinite(compute_score(name, p))


@pytest.mark.parametrize("case", ["d_gt_n", "constant_columns", "all_constant", "duplicate_rows", "huge_scale"])
def test_nleep_full_covariance_on_degenerate_inputs(case):
    x, y = _degenerate_cases()[case]
    assert math.isfinite(T.nleep(x, y, covariance="full"))


def test_degenerate_probs_give_finite_scores():
    y = np.array([0, 0, 1, 1, 2, 2])
    for p in (np.eye(3)[[0, 0, 0, 0, 0, 0]], np.full((6, 1), 1.0), np.eye(6)):
        assert math.isfinite(T.leep(p, y)) and math.isfinite(T.nce(p, y))


# ------------------------------------------------------------------------------------------------
# Agreement with straightforward re-implementations of the authors' reference algorithms
# ------------------------------------------------------------------------------------------------


def _reference_logme(f, y):
    """The LogME authors' fixed-point algorithm (arXiv:2110.10545), valid for N > D full rank."""
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    sigma = s**2
    out = []
    for c in np.unique(y):
        t = (y == c).astype(float)
        x2 = (u.T @ t) ** 2
        res_x2 = t @ t - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(1000):
            lam = alpha / beta
            gamma = (sigma / (sigma + lam)).sum()
            m2 = (sigma * x2 / (lam + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / lam) ** 2).sum() + res_x2
            alpha, beta = gamma / m2, (n - gamma) / res2
            if abs(alpha / beta - lam) / lam < 1e-10:
                break
        lam = alpha / beta
        m2 = (sigma * x2 / (lam + sigma) ** 2).sum()
        res2 = (x2 / (1 + sigma / lam) ** 2).sum() + res_x2
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - 0.5 * np.sum(np.log(alpha + beta * sigma))
              - beta / 2 * res2 - alpha / 2 * m2 - n / 2 * np.log(2 * np.pi))
        out.append(ev / n)
    return float(np.mean(out))


def test_logme_agrees_with_reference_algorithm_when_n_gt_d():
    x, y = blobs(1.0)
    assert T.logme(x, y) == pytest.approx(_reference_logme(x, y), abs=1e-8)


def _reference_sfda(x, y):
    """The SFDA authors' algorithm with the generalized eigenproblem made explicit."""
    from scipy import linalg

    def fit(x, y, lam):
        n, d = x.shape
        classes = np.unique(y)
        pri = np.array([np.mean(y == c) for c in classes])
        means = np.array([x[y == c].mean(0) for c in classes])
        sw = sum(p * np.cov(x[y == c].T, bias=True) for p, c in zip(pri, classes))
        if lam is None:
            lam = max(np.exp(-5 * np.linalg.eigvalsh(sw).max()), 1e-10)
        st = np.cov(x.T, bias=True)
        st = (1 - lam) * st + lam * np.trace(st) / d * np.eye(d)
        sw_s = (1 - lam) * sw + lam * np.trace(sw) / d * np.eye(d)
        evals, evecs = linalg.eigh(st - sw_s, sw_s)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        intercept = -0.5 * np.diag(means @ coef.T) + np.log(pri)
        return special.softmax(x @ coef.T + intercept, axis=1), lam, means

    n, c = len(y), len(np.unique(y))
    prob, lam, means = fit(x, y, None)
    prob = special.softmax(prob, axis=1)
    outer = (means.sum(0) - means) / (c - 1)
    pt = prob[np.arange(n), y][:, None]
    xm = pt * x + (1 - pt) * outer[y]
    prob2, _, _ = fit(xm, y, lam)
    return float(np.mean(prob2[np.arange(n), y]))


@pytest.mark.parametrize("sep", [0.5, 1.5])
def test_sfda_agrees_with_reference_algorithm(sep):
    x, y = blobs(sep)
    assert T.sfda(x, y) == pytest.approx(_reference_sfda(x, y), abs=1e-8)


def test_parc_agrees_with_reference_formula_without_pca():
    x, y = blobs(1.0)
    z = (x - x.mean(0)) / x.std(0)
    iu = np.triu_indices(y.size, 1)
    ref = stats.spearmanr((1 - np.corrcoef(z))[iu], (1 - np.corrcoef(np.eye(C)[y]))[iu]).statistic
    assert T.parc(x, y, pca_dim=None) == pytest.approx(ref, abs=1e-10)
