"""Each selector on a small synthetic table where the right answer is known (hashing embedder, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from vlmhub.errors import TableError
from vlmhub.tables import ModelInfo, PerformanceTable, TaskDescription, get_selector, leave_one_dataset_out
from vlmhub.tables.selectors.fennec import nmf
from vlmhub.tables.selectors.learned import listwise_rank_loss

EMB = "hashing256"
ANIMALS = ("dog", "cat", "horse", "sheep", "cow", "tiger", "lion", "zebra")
DIGITS = tuple("0123456789")


@pytest.fixture(autouse=True)
def _hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMHUB_HOME", str(tmp_path / "home"))


def _synthetic() -> PerformanceTable:
    """12 models: 0-5 are photo specialists (strong on ImageNet and animal tasks), 6-11 digit specialists.

    Within each group, a higher index is better; the photo group is better on average and on ImageNet,
    so INB and best-mean pick a photo model, while a digit task should go to model 11.
    """
    rng = np.random.default_rng(0)
    models = tuple(
        ModelInfo(
            f"m{i}",
            arch="ViT-B-32" if i < 6 else "RN50",
            family="ViT" if i < 6 else "RN",
            pretraining_data="laion2b" if i < 6 else "openai",
            params_m=100.0 + 10 * i,
            gflops=5.0 + i,
        )
        for i in range(12)
    )
    photo = [TaskDescription("ImageNet 1k", "natural photograph", "object recognition", ANIMALS)]
    photo += [TaskDescription(f"animals{k}", "natural photograph of animals", "animal recognition", ANIMALS[k : k + 5]) for k in range(3)]
    digit = [TaskDescription(f"digits{k}", "handwritten digit image", "digit classification", DIGITS) for k in range(3)]
    acc = np.zeros((12, 7))
    for i in range(12):
        g, r = divmod(i, 6)
        for j in range(7):
            is_photo = j < 4
            base = 0.75 if (g == 0) == is_photo else 0.35
            acc[i, j] = base + 0.03 * r + rng.normal(0, 0.003)
    return PerformanceTable("synthetic", models, tuple(photo + digit), np.clip(acc, 0, 1), reference="ImageNet 1k")


TARGET = TaskDescription("my digits", "handwritten digit image", "digit classification", DIGITS)


def _top(name, table=None, **kw):
    t = table or _synthetic()
    sel = get_selector(name, embedder=EMB, **kw).fit(t)
    scores = sel.score(TARGET)
    assert scores.shape == (t.n_models,) and np.isfinite(scores).all()
    return int(np.argmax(scores)), scores


def test_inb_picks_imagenet_best():
    top, _ = _top("inb")
    assert top == 5


def test_best_mean_picks_highest_mean():
    t = _synthetic()
    top, s = _top("best-mean")
    assert top == int(np.argmax(t.acc.mean(1)))
    np.testing.assert_allclose(s, t.acc.mean(1))


@pytest.mark.parametrize(
    "name,kw",
    [
        ("mll", {}),
        ("vlmhub", {"lam": 1.0, "temperature": 0.05}),
        ("vlmhub-overlap", {"lam": 1.0, "temperature": 0.05}),
        ("fennec", {"k": 2, "alpha": 0.0}),
        ("guided-fm", {}),
        ("model-spider", {}),
    ],
)
def test_text_selectors_find_the_digit_specialist(name, kw):
    top, s = _top(name, **kw)
    assert top == 11, f"{name} picked m{top}"
    # the digit group as a whole outranks the photo group
    assert s[6:].mean() > s[:6].mean()


def test_vlmhub_nested_loo_picks_grid_point():
    sel = get_selector("vlmhub", embedder=EMB).fit(_synthetic())
    assert sel.lam_ in sel.LAMBDAS and sel.temperature_ in sel.TEMPERATURES
    assert sel.inner_scores_
    w = sel.neighbour_weights(TARGET)
    assert w.sum() == pytest.approx(1.0) and w[4:].sum() > 0.5  # digit columns dominate


def test_class_overlap_and_field_similarity():
    from vlmhub.tables.text import class_overlap, field_similarity

    cifar = TaskDescription("c10", "photo", "objects", ("airplane", "Automobile", "bird", "cat"))
    stl = TaskDescription("stl", "photo", "objects", ("airplane", "automobile", "bird", "monkey", "ship"))
    assert class_overlap(cifar, stl) == pytest.approx(0.75)  # 3 of the smaller set's 4 names
    assert class_overlap(cifar, TaskDescription("none", "photo")) == 0.0
    assert class_overlap(TARGET, TARGET) == 1.0
    t = _synthetic()
    S = field_similarity(EMB, [TARGET], t.datasets, "domain")
    assert S.shape == (1, t.n_datasets)
    assert S[0, 4:].min() == pytest.approx(1.0, abs=1e-5)  # identical domain text
    assert S[0, 4:].min() > S[0, :4].max()


def test_vlmhub_overlap_trusts_same_label_space():
    """Digit columns share the target's exact class names: nested LOO + overlap kernel weight them."""
    sel = get_selector("vlmhub-overlap", embedder=EMB).fit(_synthetic())
    assert sel.kernel_features == ("desc", "class", "overlap", "domain", "task")
    assert len(sel.coef_) == 1 + 5 + 1
    w = sel.neighbour_weights(TARGET)
    assert w.sum() == pytest.approx(1.0) and w[4:].sum() > 0.5
    assert int(np.argmax(sel.score(TARGET))) == 11
    with pytest.raises(TableError, match="kernel feature"):
        get_selector("vlmhub", embedder=EMB, kernel_features=("desc", "colour")).fit(_synthetic())


def test_vlmhub_beats_inb_on_synthetic_protocol():
    t = _synthetic()
    inb = leave_one_dataset_out(t, "inb")
    ours = leave_one_dataset_out(t, get_selector("vlmhub", embedder=EMB))
    assert ours.mean("regret") < inb.mean("regret")


def test_modelgpt_recovers_linear_relation():
    t = _synthetic()
    rng = np.random.default_rng(1)
    f1 = rng.uniform(size=t.acc.shape)
    f2 = rng.uniform(size=t.acc.shape)
    acc = np.clip(0.2 + 0.5 * f1 + 0.1 * f2, 0, 1)
    tt = PerformanceTable("lin", t.models, t.datasets, acc, features={"a": f1, "b": f2}, reference="ImageNet 1k")
    res = leave_one_dataset_out(tt, "modelgpt")
    assert res.mean("regret") == pytest.approx(0.0, abs=1e-6)
    assert res.mean("tau") == pytest.approx(1.0)
    sel = get_selector("modelgpt").fit(tt.without_dataset(1))
    with pytest.raises(TableError, match="features"):
        sel.score(TARGET)
    with pytest.raises(TableError, match="features"):
        get_selector("modelgpt").fit(_synthetic())


def test_inb_needs_reference():
    t = _synthetic()
    no_ref = PerformanceTable("x", t.models, t.datasets, t.acc, reference=None)
    with pytest.raises(TableError, match="ImageNet"):
        get_selector("inb").fit(no_ref)


def test_ensemble_runs():
    top, s = _top("vlmhub-ensemble", members=("vlmhub", "mll"))
    assert s.min() >= 0 and s.max() <= 1


def test_missing_cells_are_handled():
    t = _synthetic()
    acc = t.acc.copy()
    acc[3, 5] = np.nan
    acc[8, 1] = np.nan
    tt = PerformanceTable("holes", t.models, t.datasets, acc, reference="ImageNet 1k")
    for name in ("best-mean", "mll", "fennec", "guided-fm", "vlmhub", "vlmhub-overlap"):
        s = get_selector(name, embedder=EMB).fit(tt).score(TARGET)
        assert np.isfinite(s).all(), name


def test_nmf_reconstructs_low_rank():
    rng = np.random.default_rng(0)
    P = rng.uniform(size=(20, 3)) @ rng.uniform(size=(3, 8))
    M, D = nmf(P, 3, n_iter=2000, alpha_m=0.0, alpha_d=0.0)
    assert np.abs(M @ D.T - P).max() < 0.05


def test_listwise_loss_prefers_correct_order():
    import torch

    truth = torch.tensor([[0.9, 0.5, 0.1]])
    good = listwise_rank_loss(torch.tensor([[3.0, 2.0, 1.0]]), truth)
    bad = listwise_rank_loss(torch.tensor([[1.0, 2.0, 3.0]]), truth)
    assert good < bad


def test_oracles_bound_the_anchor_and_fit_a_linear_target_exactly():
    from vlmhub.tables.oracles import ceiling_table

    t = _synthetic()
    rows = {r.name: r for r in ceiling_table(t, pc_counts=(1, 2))}
    assert set(rows) >= {"anchor", "anchor-top5", "column-corr", "column-tau", "column-regret", "pcs-1", "pcs-all", "fixed-best"}
    assert all(r.n_targets == 6 for r in rows.values())
    # the ImageNet column is itself a history column: a column oracle can only do better than INB
    assert rows["column-regret"].regret <= rows["anchor"].regret + 1e-9
    assert rows["column-tau"].tau >= rows["anchor"].tau - 1e-9
    assert rows["anchor-top5"].regret <= rows["anchor"].regret + 1e-9
    # group (photo vs digit) and within-group quality: two components fitted to the target beat INB
    assert rows["pcs-2"].tau > rows["anchor"].tau + 0.2
    # a target that is exactly linear in the history is recovered by the in-sample regression
    acc = t.acc.copy()
    acc[:, 6] = 0.2 + 0.5 * acc[:, 4] - 0.2 * acc[:, 1] + 0.1 * acc[:, 5]
    rows = {r.name: r for r in ceiling_table(PerformanceTable("lin", t.models, t.datasets, acc, reference="ImageNet 1k"))}
    per = {d: (reg, tau) for d, reg, tau in rows["pcs-all"].per_target}
    assert per["digits2"][0] == pytest.approx(0.0, abs=1e-9) and per["digits2"][1] > 0.99
    # a target that is a non-negative mixture of history columns is recovered by the mixture ceiling
    acc2 = t.acc.copy()
    acc2[:, 5] = 0.1 + 0.3 * acc2[:, 4] + 0.2 * acc2[:, 6]
    mix = {r.name: r for r in ceiling_table(PerformanceTable("mix", t.models, t.datasets, acc2, reference="ImageNet 1k"))}
    per_mix = {d: (reg, tau) for d, reg, tau in mix["columns-nonneg"].per_target}
    assert per_mix["digits1"][0] == pytest.approx(0.0, abs=1e-9) and per_mix["digits1"][1] > 0.99
    assert [d for d, _, _ in rows["fixed-best"].per_target] == ["animals0", "animals1", "animals2", "digits0", "digits1", "digits2"]


def test_ceiling_plot_is_a_png(tmp_path):
    from vlmhub.tables.oracles import ceiling_plot_png, ceiling_table

    png = ceiling_plot_png({"synthetic": ceiling_table(_synthetic(), pc_counts=(1, 2, 3))},
                           {"synthetic": {"inb": (19.8, 0.45)}}, {"synthetic": (1.5, 0.75)})
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
