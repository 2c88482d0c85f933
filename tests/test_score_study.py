"""Score study (vlmhub.evaluation.score_study): splits, linear probe, metrics, end-to-end on toy models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from vlmhub.errors import DataError
from vlmhub.evaluation.score_study import (
    INB,
    MLL,
    PROBE_ZS,
    StudyConfig,
    TargetData,
    cross_fit_accuracy,
    draw_probe,
    fit_logistic,
    pick_accuracy,
    rank_agreement,
    split_eval_pool,
    stratified_folds,
    study_target,
)
from vlmhub.selection.transferability import score_names


def _blobs(n_per_class=40, C=4, D=20, sep=6.0, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(C, D))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    y = np.repeat(np.arange(C), n_per_class)
    x = sep * means[y] + rng.normal(size=(y.size, D))
    return x, y


# -- splits --------------------------------------------------------------------------------------


def test_split_eval_pool_disjoint_and_sized():
    y = np.repeat(np.arange(3), [100, 30, 5])
    ev, pool = split_eval_pool(y, 40, 50, seed=1)
    assert np.intersect1d(ev, pool).size == 0
    assert list(np.bincount(y[ev])) == [40, 13, 2]  # 30 images split 40:50, tiny class keeps >= 2 per side
    assert list(np.bincount(y[pool])) == [50, 17, 3]
    ev2, pool2 = split_eval_pool(y, 40, 50, seed=1)
    assert np.array_equal(ev, ev2) and np.array_equal(pool, pool2)
    ev3, _ = split_eval_pool(y, 40, 50, seed=2)
    assert not np.array_equal(ev, ev3)
    with pytest.raises(DataError, match="at least 4"):
        split_eval_pool(np.array([0, 0, 0, 1, 1, 1, 1]), 2, 2)


def test_draw_probe_nested_capped_and_inside_pool():
    y = np.repeat(np.arange(3), 20)
    _, pool = split_eval_pool(y, 8, 12)
    small, big = draw_probe(y, pool, 5, 0), draw_probe(y, pool, 10, 0)
    assert set(small) <= set(big) <= set(pool)
    assert list(np.bincount(y[small])) == [5, 5, 5]
    assert list(np.bincount(y[draw_probe(y, pool, 50, 0)])) == [12, 12, 12]  # capped at the pool
    assert not np.array_equal(draw_probe(y, pool, 5, 1), small)  # another repeat, another set
    assert np.array_equal(draw_probe(y, pool, 5, 0), small)


def test_cross_fitting_never_tests_on_training_images():
    y = np.repeat(np.arange(4), [7, 11, 5, 9])
    folds = stratified_folds(y, 5, seed=3)
    seen = np.zeros(y.size, int)
    for train, test in folds:
        assert np.intersect1d(train, test).size == 0
        assert train.size + test.size == y.size
        seen[test] += 1
    assert (seen == 1).all()  # every image is held out exactly once
    sizes = [t.size for _, t in folds]
    assert max(sizes) - min(sizes) <= 1


def test_cross_fit_uses_only_training_rows(monkeypatch):
    """Spy on fit_logistic: the rows it is trained on never include the rows predicted in that fold."""
    import vlmhub.evaluation.score_study.protocol as ss

    x, y = _blobs(n_per_class=10, C=3, D=5)
    x = np.column_stack([x, np.arange(y.size)])  # last column identifies the row
    calls = []
    real = ss.fit_logistic

    def spy(features, labels, **kw):
        calls.append(set(np.asarray(features)[:, -1].astype(int)))
        return real(features, labels, **kw)

    monkeypatch.setattr(ss, "fit_logistic", spy)
    res = ss.cross_fit_accuracy(x, y, folds=5, seed=0)
    folds = stratified_folds(y, 5, seed=0)
    assert len(calls) == 5
    for trained, (train, test) in zip(calls, folds):
        assert trained == set(train.tolist()) and not trained & set(test.tolist())
    assert len(res.fold_accuracies) == 5 and all(p >= 0 for p in res.predictions)


# -- linear probe --------------------------------------------------------------------------------


def test_logistic_probe_separable_and_shuffled():
    x, y = _blobs(n_per_class=40, C=4, D=20, sep=8.0)
    assert cross_fit_accuracy(x, y, folds=5).accuracy >= 0.98
    y_shuf = np.random.default_rng(1).permutation(y)
    acc = cross_fit_accuracy(x, y_shuf, folds=5).accuracy
    assert abs(acc - 0.25) < 0.15  # chance is 1/4


def test_logistic_probe_wide_features_and_constant_columns():
    x, y = _blobs(n_per_class=10, C=3, D=8, sep=8.0)
    wide = np.column_stack([x, np.zeros((y.size, 300)), np.ones((y.size, 5))])  # D > N, constant columns
    probe = fit_logistic(wide, y)
    assert probe.weights.shape == (wide.shape[1], 3)
    assert np.mean(probe.predict(wide) == y) == 1.0
    assert np.allclose(probe.weights[8:], 0.0)
    assert cross_fit_accuracy(wide, y, folds=3).accuracy >= 0.95


def test_logistic_probe_matches_gradient_optimality():
    """At the optimum the gradient of the penalised loss vanishes (checks the row-space reduction)."""
    x, y = _blobs(n_per_class=15, C=3, D=40, sep=1.0, seed=4)  # D > N_class, overlapping classes
    probe = fit_logistic(x, y, l2=2.0, tol=1e-10, max_iter=5000)
    xs = (x - probe.mean) / probe.scale
    logits = xs @ probe.weights + probe.bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    Y = np.eye(3)[y]
    gW = xs.T @ (p - Y) / y.size + 2.0 / y.size * probe.weights
    assert np.abs(gW).max() < 1e-5 and np.abs((p - Y).sum(0)).max() / y.size < 1e-5


# -- metrics -------------------------------------------------------------------------------------


def test_rank_agreement_and_pick():
    assert rank_agreement([1, 2, 3], [0.1, 0.2, 0.3]) == pytest.approx((1.0, 1.0))
    assert rank_agreement([3, 2, 1], [0.1, 0.2, 0.3]) == pytest.approx((-1.0, -1.0))
    assert rank_agreement([1, 1, 1], [0.1, 0.2, 0.3]) == (0.0, 0.0)  # constant scores rank nothing
    assert all(math.isnan(v) for v in rank_agreement([1, np.nan, 2], [0.1, 0.2, 0.3]))
    assert pick_accuracy([0.2, 0.9, 0.1], [0.5, 0.7, 0.9]) == (1, 0.7)
    assert pick_accuracy([1.0, 1.0, 0.0], [0.4, 0.8, 0.9]) == (0, pytest.approx(0.6))  # ties: mean truth


def test_config_validation():
    with pytest.raises(DataError):
        StudyConfig(shots=(1, 5))
    with pytest.raises(DataError):
        StudyConfig(repeats=0)
    with pytest.raises(DataError):
        StudyConfig(folds=1)
    assert StudyConfig(shots=(10, 5, 10)).shots == (5, 10)
    assert StudyConfig(scores=("LogME", "h-score")).scores == ("logme", "hscore")


# -- pure study on synthetic data ------------------------------------------------------------------


def _synthetic_target(seed=0):
    """Three 'models' with decreasing class separation: good, medium, useless."""
    rng = np.random.default_rng(seed)
    C, n = 3, 30
    y = np.repeat(np.arange(C), n)
    feats, probs = {}, {}
    for m, sep in (("good", 4.0), ("medium", 1.5), ("bad", 0.0)):
        means = rng.normal(size=(C, 10))
        x = sep * means[y] + rng.normal(size=(y.size, 10))
        feats[m] = x
        logits = sep * np.eye(C)[y] + rng.normal(size=(y.size, C))
        e = np.exp(logits - logits.max(1, keepdims=True))
        probs[m] = e / e.sum(1, keepdims=True)
    ev, pool = split_eval_pool(y, 12, 18)
    return TargetData("synthetic", ("a", "b", "c"), ("bad", "medium", "good"), y, feats, probs, ev, pool,
                      {MLL: {"good": 0.9, "medium": 0.5, "bad": 0.1}, INB: {"good": 0.7, "medium": 0.8, "bad": 0.6}},
                      {MLL: 0.01})


def test_study_target_on_synthetic_models():
    cfg = StudyConfig(shots=(3, 6), repeats=2, folds=3, scores=("logme", "leep", "gbc"))
    st = study_target(_synthetic_target(), cfg)
    zs, lp = dict(zip(st.truth.model_ids, st.truth.zero_shot)), dict(zip(st.truth.model_ids, st.truth.linear_probe))
    assert zs["good"] > zs["medium"] > zs["bad"]
    assert lp["good"] > lp["bad"]
    by = {(r.selector, r.shots, r.seed): r for r in st.rows}
    assert len(st.rows) == 2 + 2 * 2 * 4  # label-free + repeats x shots x (probe_zs + 3 scores)
    assert by[(MLL, 0, 0)].tau_zs == pytest.approx(1.0) and by[(MLL, 0, 0)].regret == 0.0
    assert by[(MLL, 0, 0)].images_per_model == 0 and by[(MLL, 0, 0)].seconds == 0.01
    assert by[(INB, 0, 0)].pick == "medium"
    assert by[(PROBE_ZS, 6, 0)].images_per_model == 18
    for r in st.rows:
        assert len(r.scores) == 3 and math.isfinite(r.tau_zs) and -1 <= r.tau_zs <= 1, r
        assert r.regret >= 0 and r.pick in st.truth.model_ids


# -- end to end on the toy hub ----------------------------------------------------------------------


def test_run_score_study_toy_hub_end_to_end(toy_hub, color_data, tmp_path):
    from vlmhub.evaluation.score_study import report_markdown, write_outputs
    from vlmhub.evaluation.score_study import run_score_study
    from vlmhub.tasks import load_task

    task = load_task(color_data["task"])
    cfg = StudyConfig(shots=(2, 4), repeats=2, eval_per_class=4, pool_per_class=6, folds=3)
    res = run_score_study(toy_hub, [task], cfg, forward_timing_images=4)
    (st,) = res.targets
    assert st.truth.model_ids == ("toy-a", "toy-b", "toy-c")
    assert st.truth.n_eval == 24 and st.truth.pool_per_class == (6,) * 6
    assert all(0 <= a <= 1 for a in st.truth.zero_shot + st.truth.linear_probe)
    sels = res.selectors()
    assert sels[:2] == [MLL, INB] and PROBE_ZS in sels and set(score_names()) <= set(sels)
    n_scores = len(score_names()) + 1
    assert len(res.rows) == 2 + 2 * 2 * n_scores
    assert set(res.forward_seconds_per_image) == {"mean-rgb"} or len(res.forward_seconds_per_image) >= 1
    summ = res.summary()
    assert {(s.selector, s.shots) for s in summ} == {(r.selector, r.shots) for r in res.rows}
    for s in summ:
        assert s.n_rows == (1 if s.selector in (MLL, INB) else 2)
        assert s.images_per_model == (0 if s.selector in (MLL, INB) else 6 * s.shots)
    md = report_markdown(res)
    assert "| mll |" in md and "| probe_zs_acc | 2 |" in md and "color-task" in md
    paths = write_outputs(res, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"score_study.md", "score_study_rows.csv", "score_study.png", "score_study.json"} <= names
    assert (tmp_path / "out" / "score_study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows_csv = (tmp_path / "out" / "score_study_rows.csv").read_text().splitlines()
    assert len(rows_csv) == 1 + len(res.rows)
    # JSON round trip and combining runs
    from vlmhub.evaluation.score_study import StudyResult, combine_results

    back = StudyResult.from_dict(json.loads((tmp_path / "out" / "score_study.json").read_text()))
    assert json.loads(json.dumps(back.to_dict())) == json.loads(json.dumps(res.to_dict()))
    assert back.summary_markdown() == res.summary_markdown()
    with pytest.raises(DataError, match="more than one"):
        combine_results([res, back])
    with pytest.raises(DataError, match="not a score-study result"):
        StudyResult.from_dict({"config": {}})
    # seeds make it deterministic (features come from the cache the second time)
    res2 = run_score_study(toy_hub, [task], cfg, forward_timing_images=0)
    assert [(r.selector, r.shots, r.seed, r.scores, r.tau_zs) for r in res.rows] == \
           [(r.selector, r.shots, r.seed, r.scores, r.tau_zs) for r in res2.rows]
    assert res.targets[0].truth.linear_probe == res2.targets[0].truth.linear_probe


def test_cli_score_study_toy(toy_hub, color_data, tmp_path, capsys):
    from vlmhub.cli.main import main

    out = tmp_path / "cli-out"
    rc = main(["--home", str(toy_hub.settings.home), "score-study", "--targets", str(color_data["task"]),
               "--models", "toy-a,toy-b,toy-c", "--shots", "2,3", "--seeds", "1", "--eval-per-class", "4",
               "--pool-per-class", "6", "--folds", "3", "--scores", "logme,leep", "--forward-images", "0",
               "--out", str(out), "--json"])
    assert rc == 0
    data = json.loads(capsys.readouterr().out)
    assert {s["selector"] for s in data["summary"]} == {MLL, INB, PROBE_ZS, "logme", "leep"}
    assert (out / "score_study_summary.csv").is_file()
    rc = main(["--home", str(toy_hub.settings.home), "score-study", "--targets", str(color_data["task"]), "--shots", "x"])
    assert rc == 2
    assert "comma-separated integers" in capsys.readouterr().err
