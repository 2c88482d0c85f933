"""Tables: loaders, generic format, metrics, protocol anchors, CLI shapes and bad input (hermetic, fast)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
from scipy import stats

from vlmhub.errors import TableError, TaskError
from vlmhub.settings import default_data_dir
from vlmhub.tables import (
    PerformanceTable,
    TaskDescription,
    ModelInfo,
    get_selector,
    leave_one_dataset_out,
    load_generic_table,
    load_table,
    load_task_json,
    parse_model_name,
    save_generic_table,
    target_metrics,
    top_k_overlap,
)
from vlmhub.tables.records import ArchFamily, pretraining_source

DATA = default_data_dir()
needs_data = pytest.mark.shared_data


@pytest.fixture(autouse=True)
def _hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMHUB_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def openclip():
    return load_table("openclip")


@pytest.fixture(scope="module")
def lovm():
    return load_table("lovm")


# -- records -------------------------------------------------------------------------------------------
def test_parse_model_names():
    assert parse_model_name("ViT-L-14-336") == (ArchFamily.VIT, "L", 14)
    assert parse_model_name("ViT-bigG-14-CLIPA")[:2] == (ArchFamily.VIT, "bigG")
    assert parse_model_name("RN50x64")[:2] == (ArchFamily.RESNET, "50x64")
    assert parse_model_name("convnext_xxlarge")[:2] == (ArchFamily.CONVNEXT, "xxlarge")
    assert parse_model_name("EVA02-E-14-plus")[:2] == (ArchFamily.EVA, "E")
    assert parse_model_name("coca_ViT-L-14")[0] == ArchFamily.COCA
    assert pretraining_source("laion2b_s34b_b79k") == "laion2b"
    assert pretraining_source("datacomp_xl_s13b_b90k") == "datacomp"
    assert pretraining_source("dfn5b") == "dfn"
    assert pretraining_source("metaclip_fullcc") == "metaclip"


def test_table_validation():
    m = (ModelInfo("a"), ModelInfo("b"))
    d = (TaskDescription("x"),)
    with pytest.raises(TableError, match="shape"):
        PerformanceTable("t", m, d, np.zeros((3, 1)))
    with pytest.raises(TableError, match="fractions"):
        PerformanceTable("t", m, d, np.array([[50.0], [60.0]]))
    with pytest.raises(TableError, match="duplicate model"):
        PerformanceTable("t", (ModelInfo("a"), ModelInfo("a")), d, np.zeros((2, 1)))
    t = PerformanceTable("t", m, d, np.array([[0.5], [0.6]]))
    with pytest.raises(ValueError):
        t.acc[0, 0] = 1.0  # read-only
    with pytest.raises(TableError, match="not in table"):
        t.dataset_index("nope")


# -- loaders on the shared tables -------------------------------------------------------------------------
@needs_data
def test_openclip_loader(openclip):
    t = openclip
    assert (t.n_models, t.n_datasets) == (121, 35)
    assert t.reference == "ImageNet 1k"
    assert not np.isnan(t.acc).any()
    m = t.models[0]
    assert m.id == "ViT-H-14-378-quickgelu/dfn5b" and m.family == "ViT" and m.pretraining_data == "dfn"
    assert m.params_m == pytest.approx(986.71) and m.gflops == pytest.approx(1054.05)
    by = {d.name: d for d in t.datasets}
    assert len(by["Stanford Cars"].classes) == 196
    assert by["Describable Textures"].domain and by["RESISC45"].task
    assert len(by["ObjectNet"].classes) == 1000  # ImageNet-1k names reused
    assert all(d.domain for d in t.datasets)


@needs_data
def test_lovm_loader(lovm):
    t = lovm
    assert (t.n_models, t.n_datasets) == (35, 23)
    assert t.reference == "imagenet1k"
    assert sorted(t.features) == sorted(
        ["IN-score", "text-f1", "text-acc1", "intraclass_sim", "inter_close", "intra_close", "superclass_metric"]
    )
    assert t.target_features("cars").shape == (35, 7)
    by = {d.name: d for d in t.datasets}
    assert by["kitti_closest_vehicle_distance"].domain  # parsed despite the missing comma in the JSON
    assert len(by["cifar100"].classes) == 100
    assert np.isfinite(t.acc).all()
    # params/FLOPs joined from the open_clip table
    assert np.isfinite([m.params_m for m in t.models]).mean() > 0.8


def _tiny_table() -> PerformanceTable:
    models = (
        ModelInfo("m/a", arch="ViT-B-32", pretrained="openai", family="ViT", pretraining_data="openai", params_m=150.0, gflops=7.0),
        ModelInfo("m/b", arch="RN50", pretrained="yfcc15m", family="RN", pretraining_data="yfcc15m"),
        ModelInfo("m/c", arch="ViT-L-14", pretrained="laion2b_s32b_b82k", family="ViT", pretraining_data="laion2b", params_m=428.0),
    )
    datasets = (
        TaskDescription("ImageNet 1k", "natural photograph", "object recognition", ("dog", "cat")),
        TaskDescription("digits", "handwritten digit", "digit classification", tuple("0123456789")),
    )
    acc = np.array([[0.6, 0.5], [0.3, np.nan], [0.7, 0.9]])
    feats = {"f1": np.arange(6, dtype=float).reshape(3, 2) / 10}
    return PerformanceTable("tiny", models, datasets, acc, features=feats, reference="ImageNet 1k")


def test_generic_round_trip(tmp_path):
    t = _tiny_table()
    csv_path, json_path = save_generic_table(t, tmp_path / "mine.csv")
    assert json_path == tmp_path / "mine.json"
    back = load_table(str(csv_path))
    assert back.model_ids == t.model_ids and back.dataset_names == t.dataset_names
    np.testing.assert_allclose(back.acc, t.acc, equal_nan=True)
    np.testing.assert_allclose(back.features["f1"][0], t.features["f1"][0])
    assert back.reference == "ImageNet 1k"
    assert back.models[0].params_m == 150.0 and math.isnan(back.models[1].params_m)
    assert back.models[1].family == "RN" and back.models[2].pretraining_data == "laion2b"
    assert back.datasets[1].classes == tuple("0123456789")


def test_generic_minimal_csv(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("model,dataset,accuracy\nA,x,0.5\nB,x,0.7\nA,y,0.2\n")
    t = load_generic_table(p)
    assert t.n_models == 2 and t.n_datasets == 2 and math.isnan(t.acc[1, 1])
    assert t.reference is None


@pytest.mark.parametrize(
    "text,match",
    [
        ("model,dataset\nA,x\n", "generic lacks accuracy"),
        ("model,dataset,accuracy\nA,x,55\n", "outside"),
        ("model,dataset,accuracy\nA,x,abc\n", "not a number"),
        ("model,dataset,accuracy\nA,x,0.5\nA,x,0.6\n", "duplicate"),
        ("model,dataset,accuracy\n", "no rows"),
    ],
)
def test_generic_bad_input(tmp_path, text, match):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(TableError, match=match):
        load_table(str(p))


def test_load_table_bad_spec(tmp_path):
    with pytest.raises(TableError, match="neither"):
        load_table("no-such-table")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(TableError, match=".csv"):
        load_table(str(tmp_path / "x.txt"))


def test_task_json(tmp_path):
    p = tmp_path / "task.json"
    p.write_text(json.dumps({"name": "birds", "domain": "photo", "task": "bird species", "classes": ["crow", "owl"]}))
    t = load_task_json(p)
    assert t.classes == ("crow", "owl") and t.key == "birds"
    for obj, match in [({"classes": []}, "name"), ({"name": "x", "classes": "abc"}, "list"), ({"name": "x", "classes": ["a", "a"]}, "duplicate")]:
        p.write_text(json.dumps(obj))
        with pytest.raises(TaskError, match=match):
            load_task_json(p)
    p.write_text("{not json")
    with pytest.raises(TaskError, match="JSON"):
        load_task_json(p)
    with pytest.raises(TaskError, match="does not exist"):
        load_task_json(tmp_path / "missing.json")


# -- metrics ---------------------------------------------------------------------------------------------
def test_metrics_hand_computed():
    y = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    s = np.array([2.0, 3.0, 1.0, 0.0, -1.0, -2.0])  # picks model 1 (0.8); one discordant pair of 15
    m = target_metrics(s, y)
    assert m.selected_acc == pytest.approx(0.8) and m.best_acc == pytest.approx(0.9)
    assert m.regret == pytest.approx(10.0)
    assert m.tau == pytest.approx((14 - 1) / 15)
    assert m.tau_w == pytest.approx(stats.weightedtau(y, s).statistic)
    assert m.pearson == pytest.approx(np.corrcoef(s, y)[0, 1])
    assert m.top5 == pytest.approx(1.0)  # top-5 sets {0,1,2,3,4} agree
    assert top_k_overlap(np.array([0, 0, 0, 0, 0, 9.0]), y, 1) == 0.0
    # NaN truths are dropped; NaN scores rank last
    m2 = target_metrics(np.array([np.nan, 1.0, 0.5]), np.array([0.9, 0.5, np.nan]))
    assert m2.regret == pytest.approx(40.0)


def test_metrics_bad_input():
    with pytest.raises(TableError):
        target_metrics(np.zeros(3), np.zeros(4))
    with pytest.raises(TableError):
        target_metrics(np.zeros(2), np.array([0.5, np.nan]))


# -- protocol anchors ------------------------------------------------------------------------------------
@needs_data
def test_inb_and_best_mean_anchors(openclip):
    inb = leave_one_dataset_out(openclip, "inb")
    bm = leave_one_dataset_out(openclip, "best-mean")
    assert len(inb.targets) == 34 and "ImageNet 1k" not in {t.dataset for t in inb.targets}
    assert round(inb.mean("regret"), 2) == 3.89 and round(inb.mean("tau"), 3) == 0.660
    assert round(bm.mean("regret"), 2) == 3.89 and round(bm.mean("tau"), 3) == 0.657


@needs_data
def test_lovm_inb_and_modelgpt(lovm):
    inb = leave_one_dataset_out(lovm, "inb")
    assert len(inb.targets) == 22
    assert inb.mean("regret") == pytest.approx(6.706, abs=1e-3)
    gpt = leave_one_dataset_out(lovm, "modelgpt")
    assert math.isfinite(gpt.mean("tau"))


# -- CLI functions ---------------------------------------------------------------------------------------
def _parser():
    from vlmhub.cli import tables_cmd

    p = argparse.ArgumentParser()
    p.add_argument("--data-dir")
    sub = p.add_subparsers()
    tables_cmd.register(sub)
    return p


def _run(argv, capsys):
    args = _parser().parse_args(argv)
    rc = args.func(args)
    return rc, capsys.readouterr().out


def test_cli_benchmark_json_and_files(tmp_path, capsys):
    t = _tiny_table()
    # three datasets so leave-one-out has history besides the reference
    t3 = PerformanceTable(
        "tiny3",
        t.models,
        t.datasets + (TaskDescription("letters", "handwritten letter", "letter classification", ("a", "b")),),
        np.concatenate([t.acc, np.array([[0.4], [0.2], [0.8]])], axis=1),
        reference="ImageNet 1k",
    )
    csv_path, _ = save_generic_table(t3, tmp_path / "t3.csv")
    out = tmp_path / "out"
    rc, text = _run(["benchmark-tables", str(csv_path), "--selectors", "inb,best-mean,vlmhub", "--embedder", "hashing256", "--json", "--out", str(out)], capsys)
    assert rc == 0
    obj = json.loads(text)
    assert obj["default"] == "safe-default"
    assert set(obj["selectors"]) == {"inb", "best-mean", "vlmhub"}
    (side,) = obj["side_by_side"]
    assert side["table"] == "t3" and set(side["selectors"]) == {"inb", "best-mean", "safe-default"}
    for v in obj["selectors"].values():
        assert {"regret", "tau", "tau_w", "top5"} <= set(v)
    for f in ("tables_benchmark.md", "tables_benchmark.csv", "tables_benchmark.png", "tables_summary.json"):
        assert (out / f).is_file()
    assert (out / "tables_benchmark.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_compare_tables(tmp_path, capsys):
    t = _tiny_table()
    rng = np.random.default_rng(0)
    extra = tuple(TaskDescription(f"task{k}", "natural photograph", "object recognition", ("a", "b")) for k in range(4))
    acc = np.concatenate([t.acc, np.clip(t.acc[:, :1] + rng.normal(0, 0.05, (3, 4)), 0, 1)], axis=1)
    csv_path, _ = save_generic_table(PerformanceTable("t6", t.models, t.datasets + extra, acc, reference="ImageNet 1k"), tmp_path / "t6.csv")
    rc, text = _run(["compare-tables", str(csv_path), "--embedder", "hashing256", "--json"], capsys)
    assert rc == 0
    (row,) = json.loads(text)
    assert row["table"] == "t6" and row["n_targets"] == 5 and row["default"] == "safe-default"
    assert set(row["selectors"]) == {"inb", "best-mean", "safe-default"} and isinstance(row["safe"], bool)
    rc, text = _run(["compare-tables", str(csv_path), "--embedder", "hashing256"], capsys)
    assert rc == 0 and "| t6 | 5 |" in text and "INB regret / tau" in text


def test_cli_rank_models_json(tmp_path, capsys):
    csv_path, _ = save_generic_table(_tiny_table(), tmp_path / "t.csv")
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"name": "numbers", "domain": "handwritten digit", "task": "digit classification", "classes": ["1", "2"]}))
    rc, text = _run(["rank-models", str(csv_path), "--task", str(task), "--selector", "best-mean", "--json"], capsys)
    assert rc == 0
    models = json.loads(text)["models"]
    assert [m["id"] for m in models] == ["m/c", "m/a", "m/b"]
    assert all(isinstance(m["score"], float) for m in models)


def test_cli_bad_input(tmp_path):
    p = _parser()
    with pytest.raises(TableError, match="unknown selector"):
        a = p.parse_args(["benchmark-tables", "openclip", "--selectors", "nope"])
        a.func(a)
    csv_path, _ = save_generic_table(_tiny_table(), tmp_path / "t.csv")
    with pytest.raises(TaskError):
        a = p.parse_args(["rank-models", str(csv_path), "--task", str(tmp_path / "missing.json")])
        a.func(a)
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"name": "n", "classes": ["a", "b"]}))
    with pytest.raises(TableError, match="ModelGPT"):
        a = p.parse_args(["rank-models", str(csv_path), "--task", str(task), "--selector", "modelgpt"])
        a.func(a)


def test_selector_registry():
    from vlmhub.tables import list_selectors

    names = list_selectors()
    for n in ("inb", "best-mean", "modelgpt", "mll", "fennec", "guided-fm", "model-spider", "vlmhub", "safe-default"):
        assert n in names
    with pytest.raises(TableError, match="unknown selector"):
        get_selector("nope")
    s = get_selector("fennec", embedder="hashing256", k=3)
    assert s.get_params()["k"] == 3 and s.clone().get_params() == s.get_params()
    with pytest.raises(TableError, match="not fitted"):
        s.score(TaskDescription("x"))


def test_malformed_descriptions_beside_a_generic_csv_is_a_table_error(tmp_path):
    csv_path, json_path = save_generic_table(_tiny_table(), tmp_path / "t.csv")
    json_path.write_text("{not json")
    with pytest.raises(TableError, match="descriptions file .* is not valid JSON"):
        load_table(csv_path)
