"""The default table selector (``safe-default``): never worse than the better of INB and best-mean."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlmhub.settings import default_data_dir
from vlmhub.tables import DEFAULT_SELECTOR, ModelInfo, PerformanceTable, TaskDescription, get_selector, leave_one_dataset_out, load_table
from vlmhub.tables.compare import compare_with_baselines, side_by_side_json, side_by_side_markdown
from vlmhub.tables.protocol import target_indices
from vlmhub.tables.selectors.safe import history_loo_scores

EMB = "hashing256"
DATA = default_data_dir()
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "tables").is_dir(), reason="shared data folder not found")


@pytest.fixture(autouse=True)
def _hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMHUB_HOME", str(tmp_path / "home"))


def _misleading_imagenet(n_models: int = 12, n_tasks: int = 8, seed: int = 0) -> PerformanceTable:
    """Every task ranks the models by index (plus noise); the ImageNet column ranks them backwards,
    so INB picks the worst model everywhere and best-mean the best."""
    rng = np.random.default_rng(seed)
    models = tuple(ModelInfo(f"m{i}", arch="ViT-B-32", family="ViT") for i in range(n_models))
    names = ["ImageNet 1k"] + [f"task{k}" for k in range(n_tasks)]
    datasets = tuple(TaskDescription(n, "natural photograph", "object recognition", ("a", "b")) for n in names)
    q = np.linspace(0.3, 0.8, n_models)
    acc = np.stack([q[::-1]] + [q + rng.normal(0, 0.02, n_models) for _ in range(n_tasks)], axis=1)
    return PerformanceTable("misleading", models, datasets, np.clip(acc, 0, 1), reference="ImageNet 1k")


def _honest_imagenet(seed: int = 1) -> PerformanceTable:
    """ImageNet ranks like every task; the other tasks are noisier, so INB is at least as good as best-mean."""
    t = _misleading_imagenet(seed=seed)
    acc = t.acc.copy()
    acc[:, 0] = np.linspace(0.3, 0.8, t.n_models)
    return PerformanceTable("honest", t.models, t.datasets, acc, reference="ImageNet 1k")


def test_default_is_safe_default():
    assert DEFAULT_SELECTOR == "safe-default"


def test_switches_to_best_mean_when_imagenet_misleads():
    t = _misleading_imagenet()
    sel = get_selector("safe-default", embedder=EMB).fit(t)
    assert sel.baseline_ == "best-mean" and "inb" not in sel.top_.split("+")
    assert set(sel.inner_) >= {"inb", "best-mean", "vlmhub", "mll", "inb+mll"}
    assert sel.inner_["inb"].regret > sel.inner_["best-mean"].regret
    c = compare_with_baselines(t, embedder=EMB)
    assert c.safe and c.row("inb").utility < c.row("best-mean").utility
    assert c.row("safe-default").utility >= c.row("best-mean").utility


def test_keeps_inb_when_nothing_is_clearly_better():
    t = _honest_imagenet()
    sel = get_selector("safe-default", embedder=EMB).fit(t)
    assert sel.baseline_ == "inb"
    c = compare_with_baselines(t, embedder=EMB)
    assert c.safe


def test_bonferroni_threshold():
    from vlmhub.tables.selectors.safe import thresholds

    assert thresholds(0.01, 1) == pytest.approx(2.326, abs=1e-3)
    assert thresholds(0.001, 9) == pytest.approx(3.69, abs=1e-2) and thresholds(0.001, 9) > thresholds(0.001, 1)


def test_falls_back_with_too_little_history():
    t = _misleading_imagenet(n_tasks=2)
    sel = get_selector("safe-default", embedder=EMB).fit(t.without_dataset(1))
    assert "fallback" in sel.choice_ and sel.top_ == sel.order_ == "inb"
    no_ref = PerformanceTable("noref", t.models, t.datasets[1:], t.acc[:, 1:])
    sel = get_selector("safe-default", embedder=EMB).fit(no_ref)
    assert sel.top_ == "best-mean" and np.argmax(sel.score(TaskDescription("new"))) == np.argmax(np.nanmean(t.acc[:, 1:], 1))


def test_falling_back_to_the_baseline_reproduces_it_exactly():
    """When it keeps INB for both top-1 and order, its metrics are INB's on every target."""
    t = _honest_imagenet()
    res = leave_one_dataset_out(t, get_selector("safe-default", embedder=EMB, candidates=("inb", "best-mean"), pairs=False))
    inb = leave_one_dataset_out(t, "inb")
    assert [r.metrics for r in res.targets] == [r.metrics for r in inb.targets]
    assert all(r.choice == "top-1 inb, order inb" for r in res.targets)
    assert res.choices() == {"top-1 inb, order inb": len(res.targets)}


def test_history_loo_never_reads_the_hidden_column():
    t = _misleading_imagenet()
    pseudo = target_indices(t)
    for name in ("best-mean", "mll"):
        before = history_loo_scores(get_selector(name, embedder=EMB), t, pseudo)
        acc = t.acc.copy()
        acc[:, pseudo[0]] = acc[::-1, pseudo[0]]
        changed = PerformanceTable(t.name, t.models, t.datasets, acc, reference=t.reference)
        after = history_loo_scores(get_selector(name, embedder=EMB), changed, pseudo)
        np.testing.assert_array_equal(before[pseudo[0]], after[pseudo[0]])
        assert not np.array_equal(before[pseudo[1]], after[pseudo[1]])


def test_vlmhub_history_loo_scores_are_its_inner_predictions():
    t = _misleading_imagenet()
    sel = get_selector("vlmhub", embedder=EMB)
    loo = sel.history_loo_scores(t)
    assert sorted(loo) == sel.inner_pseudo_ and all(v.shape == (t.n_models,) for v in loo.values())
    # the fit on the whole history is unchanged by recording the inner predictions
    ref = get_selector("vlmhub", embedder=EMB).fit(t)
    assert (ref.lam_, ref.temperature_) == (sel.lam_, sel.temperature_)


def test_side_by_side_rendering():
    comps = [compare_with_baselines(_misleading_imagenet(), embedder=EMB)]
    md = side_by_side_markdown(comps)
    assert "| misleading | 8 |" in md and "yes" in md
    obj = side_by_side_json(comps)
    json.dumps(obj)
    assert obj[0]["safe"] is True and set(obj[0]["selectors"]) == {"inb", "best-mean", "safe-default"}
    assert obj[0]["choice"].startswith("top-1 ")


# -- the published tables: default >= the better of INB and best-mean (utility = tau - regret/100) -------
def _assert_safe(table):
    c = compare_with_baselines(table, embedder=EMB)
    base = c.best_baseline
    d = c.row(c.default)
    assert c.safe, (
        f"{table.name}: default regret {d.regret:.3f} tau {d.tau:.4f} (utility {d.utility:.4f}) is worse than "
        f"{base.selector} regret {base.regret:.3f} tau {base.tau:.4f} (utility {base.utility:.4f}); used {c.fold_choices}"
    )


@needs_data
@pytest.mark.parametrize(
    "fname", ["lovm_eval_table_imagenets.csv", pytest.param("lovm_eval_table.csv", marks=pytest.mark.slow)]
)
def test_default_is_safe_on_lovm_format_tables_by_path(fname):
    p = DATA / "tables" / fname
    if not p.is_file():
        pytest.skip(f"{fname} is not in the mirror")
    _assert_safe(load_table(p))


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name", ["openclip", "lovm"])
def test_default_is_safe_on_the_shared_tables(name):
    _assert_safe(load_table(name))
