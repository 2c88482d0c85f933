"""Published table shapes by path: detection (pure), each shape from a small table made here, the mirror files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlmhub.errors import TableError
from vlmhub.settings import default_data_dir
from vlmhub.tables import load_table
from vlmhub.tables.shapes import TableShape, detect_table_shape, long_format_cells, model_identity

DATA = default_data_dir()
needs_data = pytest.mark.skipif(DATA is None or not (DATA / "tables").is_dir(), reason="shared data folder not found")


@pytest.fixture(autouse=True)
def _hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("VLMHUB_HOME", str(tmp_path / "home"))


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# -- detection (pure) -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header,shape",
    [
        (["name", "pretrained", "params (M)", "FLOPs (B)", "Average perf. on 35 datasets", "ImageNet 1k", "MNIST"], TableShape.OPENCLIP_WIDE),
        (["name", "pretrained", "ImageNet"], TableShape.OPENCLIP_WIDE),
        (["", "task", "dataset", "model_fullname", "model", "pretrained", "mean_per_class_recall", "acc1", "acc5"], TableShape.LOVM_LONG),
        (["acc1", "model_fullname", "dataset"], TableShape.LOVM_LONG),
        (["Dataset", "Model", "Pretrained", "ACC1"], TableShape.LOVM_LONG),
        (
            ["acc1", "acc5", "mean_per_class_recall", "dataset", "model", "pretrained", "task", "mean_average_precision",
             "image_retrieval_recall@5", "text_retrieval_recall@5", "model_fullname"],
            TableShape.CLIP_BENCHMARK,
        ),
        (["model", "dataset", "accuracy", "params_m"], TableShape.GENERIC),
    ],
)
def test_detect_table_shape(header, shape):
    assert detect_table_shape(header) is shape


@pytest.mark.parametrize(
    "header,lacks",
    [
        (["model", "dataset"], "generic lacks accuracy"),
        (["dataset", "model", "top1"], "lovm-long lacks acc1"),
        (["name", "pretrained", "params (M)"], "generic lacks model, dataset, accuracy"),
        ([], "Columns found: none"),
    ],
)
def test_unknown_shape_lists_accepted_shapes_and_columns(header, lacks):
    with pytest.raises(TableError) as info:
        detect_table_shape(header)
    msg = str(info.value)
    for s in TableShape:
        assert s.value in msg
    for c in header:
        assert repr(c) in msg
    assert __import__("re").search(lacks, msg)


def test_model_identity():
    assert model_identity("ViT-B-32", "openai", "ignored") == ("ViT-B-32", "openai")
    assert model_identity("", "", "ViT-B-32 laion2b_e16") == ("ViT-B-32", "laion2b_e16")
    assert model_identity("RN50", "", "") == ("RN50", "")


# -- each shape by path -----------------------------------------------------------------------------
def test_openclip_wide_by_path_drops_average_and_retrieval(tmp_path):
    p = _write(
        tmp_path,
        "oc.csv",
        "name,pretrained,params (M),FLOPs (B),Average perf. on 3 datasets,ImageNet 1k,MNIST,Flickr,MSCOCO\n"
        "ViT-B-32,openai,151.28,7.4,0.5,0.63,0.48,0.8,0.5\n"
        "RN50,openai,102.01,18.18,0.4,0.59,0.58,0.7,0.4\n",
    )
    t = load_table(p)
    assert t.dataset_names == ("ImageNet 1k", "MNIST") and t.reference == "ImageNet 1k"
    assert t.model_ids == ("ViT-B-32/openai", "RN50/openai") and t.models[0].params_m == pytest.approx(151.28)
    assert t.acc[1, 1] == pytest.approx(0.58) and t.name == "oc"


LOVM_TEXT = (
    ",task,dataset,model_fullname,model,pretrained,mean_per_class_recall,acc1,acc5\n"
    "0,zeroshot_classification,cars,ViT-B-32 openai,ViT-B-32,openai,0.6,0.59,0.9\n"
    "1,zeroshot_classification,cars,RN50 openai,RN50,openai,0.5,0.55,0.9\n"
    "2,zeroshot_classification,imagenet1k,ViT-B-32 openai,ViT-B-32,openai,0.6,0.63,0.9\n"
    "3,zeroshot_classification,imagenet1k,RN50 openai,RN50,openai,0.6,0.60,0.9\n"
    "4,zeroshot_classification,mnist,RN50 openai,RN50,openai,0.6,0.58,0.9\n"
)


def test_lovm_long_by_path(tmp_path):
    t = load_table(_write(tmp_path, "eval_table.csv", LOVM_TEXT))
    assert t.model_ids == ("ViT-B-32/openai", "RN50/openai")
    assert t.dataset_names == ("cars", "imagenet1k", "mnist") and t.reference == "imagenet1k"
    np.testing.assert_allclose(t.acc, [[0.59, 0.63, np.nan], [0.55, 0.60, 0.58]])
    assert t.models[1].family == "RN" and t.models[0].pretraining_data == "openai"
    # known benchmark ids get the package's descriptions
    assert t.datasets[0].domain and t.datasets[2].domain


def test_lovm_long_any_column_order_fullname_only_and_descriptions_beside(tmp_path):
    p = _write(
        tmp_path,
        "mine.csv",
        "acc1,dataset,model_fullname,notes\n0.7,birds,ViT-L-14 laion2b_s32b_b82k,x\n0.4,birds,RN50 yfcc15m,\n0.5,cubes,RN50 yfcc15m,\n",
    )
    _write(tmp_path, "mine.json", '{"birds": {"domain": "bird photograph", "task": "species", "classes": ["crow", "owl"]}}')
    t = load_table(p)
    assert t.model_ids == ("ViT-L-14/laion2b_s32b_b82k", "RN50/yfcc15m") and t.reference is None
    assert t.datasets[0].classes == ("crow", "owl") and t.datasets[1].domain == ""
    assert math.isnan(t.acc[0, 1])


CLIPB_TEXT = (
    "acc1,acc5,mean_per_class_recall,dataset,model,pretrained,task,mean_average_precision,"
    "image_retrieval_recall@5,text_retrieval_recall@5,model_fullname\n"
    "0.90,0.99,0.9,vtab/cifar10,ViT-B-32,openai,zeroshot_classification,,,,ViT-B-32 openai\n"
    "0.63,0.88,0.6,imagenet1k,ViT-B-32,openai,zeroshot_classification,,,,ViT-B-32 openai\n"
    ",,,voc2007_multilabel,ViT-B-32,openai,zeroshot_classification,0.76,,,ViT-B-32 openai\n"
    ",,,flickr30k,ViT-B-32,openai,zeroshot_retrieval,,0.83,0.94,ViT-B-32 openai\n"
    "0.92,0.99,0.9,vtab/cifar10,ViT-B-32,laion2b_e16,zeroshot_classification,,,,ViT-B-32 laion2b_e16\n"
    "0.66,0.88,0.6,imagenet1k,ViT-B-32,laion2b_e16,zeroshot_classification,,,,ViT-B-32 laion2b_e16\n"
    "0.80,0.95,0.8,linear_probe_cifar10,ViT-B-32,laion2b_e16,linear_probe,,,,ViT-B-32 laion2b_e16\n"
    ",,,mscoco_captions,ViT-B-32,laion2b_e16,zeroshot_retrieval,,0.6,0.8,ViT-B-32 laion2b_e16\n"
)


def test_clip_benchmark_keeps_zero_shot_classification_with_acc1(tmp_path):
    p = _write(tmp_path, "benchmark.csv", CLIPB_TEXT)
    t = load_table(p)
    assert t.dataset_names == ("vtab/cifar10", "imagenet1k") and t.reference == "imagenet1k"
    assert t.model_ids == ("ViT-B-32/openai", "ViT-B-32/laion2b_e16")
    np.testing.assert_allclose(t.acc, [[0.90, 0.63], [0.92, 0.66]])
    # "vtab/cifar10" is described as the package describes CIFAR-10
    assert t.datasets[0].key == "cifar10" and "32x32" in t.datasets[0].domain


def test_clip_benchmark_languages_are_separate_datasets(tmp_path):
    text = "dataset,model,pretrained,task,acc1,language,text_retrieval_recall@5\n" \
        "imagenet1k,A,x,zeroshot_classification,0.5,en,\nimagenet1k,A,x,zeroshot_classification,0.3,fr,\n" \
        "imagenet1k,B,x,zeroshot_classification,0.6,en,\n"
    t = load_table(_write(tmp_path, "ml.csv", text))
    assert t.dataset_names == ("imagenet1k", "imagenet1k (fr)") and t.reference == "imagenet1k"


def test_generic_identity_is_model_plus_pretrained(tmp_path):
    p = _write(tmp_path, "g.csv", "model,dataset,accuracy,pretrained\nRN50,x,0.5,openai\nRN50,x,0.4,yfcc15m\nViT-B-32/openai,x,0.6,openai\n")
    t = load_table(p)
    assert t.model_ids == ("RN50/openai", "RN50/yfcc15m", "ViT-B-32/openai")
    assert t.models[1].pretraining_data == "yfcc15m" and t.models[0].arch == "RN50"


@pytest.mark.parametrize(
    "text,match",
    [
        ("dataset,model,acc1\ncars,A,55\n", "outside \\[0, 1\\]"),
        ("dataset,model,acc1\ncars,A,abc\n", "not a number"),
        ("dataset,model,acc1\ncars,A,0.5\ncars,A,0.6\n", "keep one"),
        ("dataset,model,acc1\ncars,,0.5\n", "empty model"),
        ("dataset,model,task,acc1,image_retrieval_recall@5\nflickr,A,zeroshot_retrieval,,0.5\n", "no zero-shot classification.*zeroshot_retrieval"),
        ("dataset,model,acc1\n", "no rows"),
        ("foo,bar\n1,2\n", "none of the accepted shapes"),
    ],
)
def test_long_format_bad_input(tmp_path, text, match):
    with pytest.raises(TableError, match=match):
        load_table(_write(tmp_path, "bad.csv", text))


def test_identical_duplicate_rows_are_one_cell():
    rows = [{"dataset": "d", "model": "A", "acc1": "0.5"}, {"dataset": "d", "model": "A", "acc1": "0.5"}]
    cells = long_format_cells(rows, TableShape.LOVM_LONG, "t")
    assert len(cells) == 1 and cells[0].line == 2 and cells[0].model_id == "A"
    with pytest.raises(TableError, match="reads lovm-long"):
        long_format_cells(rows, TableShape.GENERIC, "t")


# -- the real published files of the mirror --------------------------------------------------------
@needs_data
def test_mirror_files_load_in_their_shapes():
    from vlmhub.tables.io import read_table_header

    tables = DATA / "tables"
    expect = {
        "openclip_classification_results.csv": (TableShape.OPENCLIP_WIDE, 121, 35),
        "openclip_results.csv": (TableShape.OPENCLIP_WIDE, 121, 35),  # 38 minus 3 retrieval columns
        "lovm_eval_table.csv": (TableShape.LOVM_LONG, 35, 23),
        "lovm_eval_table_imagenets.csv": (TableShape.LOVM_LONG, 35, 6),
        "mll_model_hub_info.csv": (TableShape.OPENCLIP_WIDE, 49, 1),
    }
    for fname, (shape, n_models, n_datasets) in expect.items():
        p = tables / fname
        if not p.is_file():
            continue
        assert detect_table_shape(read_table_header(p)) is shape, fname
        t = load_table(p)
        assert (t.n_models, t.n_datasets) == (n_models, n_datasets), fname
        assert t.reference is not None, fname


@needs_data
def test_lovm_by_path_matches_the_shared_lovm_table():
    p = DATA / "tables" / "lovm_eval_table.csv"
    by_path, shared = load_table(p), load_table("lovm")
    assert by_path.model_ids == shared.model_ids and by_path.dataset_names == shared.dataset_names
    np.testing.assert_array_equal(by_path.acc, shared.acc)
    assert [d.domain for d in by_path.datasets] == [d.domain for d in shared.datasets]
    assert [d.classes for d in by_path.datasets] == [d.classes for d in shared.datasets]
    assert not by_path.features  # ModelGPT's features belong to the shared 'lovm' table only
