"""Regression tests of issue 10 items 1, 13, 14 and 15: feature-cache keys, concurrent labeling, resumed
prediction jobs, and the default zero-shot admission check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vlmhub.models.toy import COLOR_RGB


def _color_folder(root: Path, swap: bool) -> Path:
    """A task folder ``root/colors`` with one swatch per class; ``swap`` puts the wrong colour in each folder."""
    from PIL import Image

    classes = ["red", "blue", "green"]
    shown = ["blue", "green", "red"] if swap else classes
    for c, s in zip(classes, shown):
        (root / "colors" / c).mkdir(parents=True)
        Image.new("RGB", (16, 16), COLOR_RGB[s]).save(root / "colors" / c / "img0.png")
    (root / "colors" / "dataset.json").write_text(json.dumps({"name": "colors", "classes": classes}))
    return root / "colors"


def test_feature_cache_is_keyed_by_content_not_folder_name(settings, tmp_path):
    """Item 1: two task folders with equal <folder>/<class>/<file> names but other images get their own features."""
    from vlmhub.evaluation.evaluate import model_probabilities
    from vlmhub.models import create_model
    from vlmhub.tasks import load_task, task_images

    model = create_model("toy-a", settings)
    right = load_task(_color_folder(tmp_path / "a", swap=False))
    wrong = load_task(_color_folder(tmp_path / "b", swap=True))
    ri, wi = task_images(right), task_images(wrong)
    assert ri.ids == wi.ids  # the display ids collide: exactly the situation of the issue
    p_right = model_probabilities([model], right, ri, settings)["toy-a"]
    p_wrong = model_probabilities([model], wrong, wi, settings)["toy-a"]
    assert (p_right.argmax(1) == [0, 1, 2]).all()
    assert (p_wrong.argmax(1) == [1, 2, 0]).all()  # the swapped colours, not the cached features of folder a
    # identical content is still served from the cache (one row per distinct image)
    again = model_probabilities([model], right, ri, settings)["toy-a"]
    np.testing.assert_allclose(again, p_right)
    tables = list((settings.cache_dir / "features").iterdir())
    assert len(tables) == 1
    from vlmhub.storage import EmbeddingTable

    assert len(EmbeddingTable(tables[0])) == 3  # the two folders hold the same three swatches, shuffled


def _shard_rows(table_dir: Path) -> int:
    return sum(s["count"] for s in json.loads((table_dir / "index.json").read_text())["shards"])


def test_concurrent_label_runs_store_each_row_once(settings, color_data):
    """Item 13: two concurrent label runs of one model: the second waits, then skips; every image id stored once."""
    import threading
    import time

    from vlmhub.hub import Hub
    from vlmhub.labeling.labeler import label_models
    from vlmhub.models import create_model

    hub = Hub(settings, model_ids=["toy-a"])
    graph = hub.build_graph([color_data["samples"]])
    n_images = len(graph.image_ids())
    featurized, count_lock = [], threading.Lock()
    start = threading.Barrier(2)
    reports, errors = [], []

    def run():
        model = create_model("toy-a", settings)
        inner = model.image_features

        def slow(pixels):
            time.sleep(0.05)  # long enough for the two runs to overlap
            with count_lock:
                featurized.append(pixels.shape[0])
            return inner(pixels)

        model.image_features = slow
        start.wait()
        try:
            reports.append(label_models([model], graph, settings, batch_size=4, progress=False))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert sum(featurized) == n_images  # the trunk ran once per image, not once per run
    lab = settings.labels_dir / "toy-a"
    assert _shard_rows(lab / "images") == n_images
    assert _shard_rows(lab / "captions") == len(set(graph.captions()))
    assert sorted(len(r.skipped) for r in reports) == [0, 1]


def test_embedding_table_append_skips_stored_ids(tmp_path):
    """Item 13: a writer with a stale view appending ids another writer stored meanwhile stores nothing twice."""
    from vlmhub.storage import EmbeddingTable

    a, b = EmbeddingTable(tmp_path / "t"), EmbeddingTable(tmp_path / "t")
    assert b.missing(["x", "y"]) == ["x", "y"]  # b's view: nothing stored yet
    a.append(["x", "y"], np.ones((2, 3), np.float32))
    b.append(["x", "y", "z"], np.zeros((3, 3), np.float32))
    assert _shard_rows(tmp_path / "t") == 3
    t = EmbeddingTable(tmp_path / "t")
    np.testing.assert_array_equal(t.get(["x", "z"]), [[1, 1, 1], [0, 0, 0]])  # the first stored row is kept


def test_label_force_relabels_and_keeps_one_copy(settings, color_data):
    """Item 13: --force under the lock clears the label (not the lock file) and stores every row once again."""
    from vlmhub.hub import Hub
    from vlmhub.labeling.labeler import LABELING_LOCK

    hub = Hub(settings, model_ids=["toy-a"])
    first = hub.label(sample_sets=[color_data["samples"]], progress=False)
    n = first.new_images["toy-a"]
    again = hub.label(sample_sets=[color_data["samples"]], progress=False, force=True)
    assert again.new_images["toy-a"] == n and not again.skipped
    lab = settings.labels_dir / "toy-a"
    assert (lab / LABELING_LOCK).exists() and _shard_rows(lab / "images") == n
    assert hub.label(sample_sets=[color_data["samples"]], progress=False).skipped == ["toy-a"]


@pytest.fixture
def predictor(toy_hub, color_data):
    from vlmhub.reuse import BatchPredictor
    from vlmhub.tasks import load_task

    return BatchPredictor(load_task(color_data["task"]), hub=toy_hub, k=2)


def _task_files(color_data, per_class=2):
    return [f for c in ["red", "orange", "yellow", "green", "blue", "purple"] for f in sorted((color_data["task"] / c).iterdir())[:per_class]]


def _die(done, total):
    raise KeyboardInterrupt


def test_stale_partial_manifest_after_a_finished_run_is_ignored(predictor, color_data, tmp_path):
    """Item 14: a .partial.json left by a run killed after it finished is no 'unfinished run' to refuse."""
    from vlmhub.reuse import predict_to_csv

    files = _task_files(color_data)
    out = tmp_path / "p.csv"
    manifest = tmp_path / "p.csv.partial.json"
    with pytest.raises(KeyboardInterrupt):
        predict_to_csv(predictor, files, out, batch_size=4, progress=False, on_batch=_die)
    saved = manifest.read_bytes()
    predict_to_csv(predictor, files, out, batch_size=4, progress=False)
    manifest.write_bytes(saved)  # as if killed between the rename of the rows and the removal of the manifest
    rep = predict_to_csv(predictor, files[:-1], out, batch_size=4, progress=False)  # other inputs: a new run
    assert (rep.images, rep.resumed) == (len(files) - 1, 0)
    assert len(out.read_text().splitlines()) == len(files) and not manifest.exists()


@pytest.mark.parametrize("column, value, what", [(1, "violet", "class 'violet'"), (2, "7.5", "confidence '7.5'"),
                                                 (2, "high", "confidence 'high'")])
def test_resumed_rows_are_validated_against_the_task(predictor, color_data, tmp_path, column, value, what):
    """Item 14: a done row whose class (or confidence) was edited is refused on resume, naming the row and --restart."""
    import csv

    from vlmhub.errors import DataError
    from vlmhub.reuse import predict_to_csv

    files = _task_files(color_data)
    out = tmp_path / "p.csv"
    partial = tmp_path / "p.csv.partial"
    with pytest.raises(KeyboardInterrupt):
        predict_to_csv(predictor, files, out, batch_size=4, progress=False, on_batch=_die)
    rows = list(csv.reader(partial.open(newline="", encoding="utf-8")))
    rows[3][column] = value
    with partial.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(DataError, match=rf"row 4 has {what}.*--restart"):
        predict_to_csv(predictor, files, out, batch_size=4, progress=False)
    rep = predict_to_csv(predictor, files, out, batch_size=4, progress=False, restart=True)
    assert rep.resumed == 0 and value not in out.read_text()


# -- item 15: the default zero-shot admission check -----------------------------------------------------------------
class _BlindToy:
    """Factories of toy colour models whose image embeddings carry no colour: constant, or a fixed random map."""

    @staticmethod
    def build(kind: str, spec):
        import torch

        from vlmhub.models.base import l2_normalize
        from vlmhub.models.toy import ToyColorModel

        class Constant(ToyColorModel):
            def project_image(self, features):
                return l2_normalize(np.ones((np.asarray(features).shape[0], 6), np.float32))

        class Random(ToyColorModel):  # like a randomly initialised CLIP: deterministic, normalised, meaningless
            w = torch.randn(3, 6, generator=torch.Generator().manual_seed(3))

            def project_image(self, features):
                return l2_normalize(np.asarray(torch.sin(7 * torch.as_tensor(features) @ self.w) + 1.5, np.float32))

        return {"good": ToyColorModel, "constant": Constant, "random": Random}[kind](spec)


@pytest.fixture
def toy_adds(settings, monkeypatch):
    """``add_model("hf:/toy/<kind>")`` builds a toy colour model of that kind."""
    import dataclasses

    from vlmhub.models import user_hub
    from vlmhub.models.adapters import parse_source
    from vlmhub.models.toy import TOY_MODELS

    def build(source, *, spec=None, model_id=None, settings=None):
        src = parse_source(source)
        spec = spec or dataclasses.replace(TOY_MODELS[0], id=model_id or src.default_id(), tags=("user",),
                                           config=TOY_MODELS[0].config + (("source", src.source), ("adapter", "hf")))
        return _BlindToy.build(Path(src.location).name, spec)

    monkeypatch.setattr(user_hub, "build_from_source", build)
    yield settings


@pytest.mark.parametrize("kind", ["constant", "random"])
def test_model_that_cannot_classify_is_refused_by_default(toy_adds, kind):
    """Item 15: every label-free check passes, yet the default zero-shot check refuses it, saying why."""
    from vlmhub.errors import ModelCheckError
    from vlmhub.models import user_hub

    with pytest.raises(ModelCheckError) as info:
        user_hub.add_model(f"hf:/toy/{kind}", model_id=f"bad-{kind}", settings=toy_adds)
    assert [r.name for r in info.value.report.failures] == ["zero_shot_sanity"]
    msg = str(info.value)
    assert "zero_shot_sanity (colour top-1 accuracy" in msg and "binomial p" in msg and "--no-zero-shot-check" in msg
    assert user_hub.list_user_models(toy_adds) == []
    # the skip flag lets it in, and the CLI says what it skipped
    spec = user_hub.add_model(f"hf:/toy/{kind}", model_id=f"bad-{kind}", settings=toy_adds, zero_shot_check=False)
    assert [m.id for m in user_hub.list_user_models(toy_adds)] == [spec.id]


def test_good_toy_model_passes_the_default_zero_shot_check(toy_adds, capsys):
    """Item 15: a model that sees colours is admitted with the zero-shot check on; the CLI flag skips only that check."""
    import argparse

    from vlmhub.cli.models_cmd import register
    from vlmhub.models import user_hub

    def cli(argv):
        parser = argparse.ArgumentParser(prog="vlmhub")
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(argv)
        args.settings = toy_adds
        return args.func(args)

    assert cli(["models", "add", "hf:/toy/good", "--id", "good-toy"]) == 0
    assert "checks passed" in capsys.readouterr().out
    from vlmhub.errors import ModelCheckError

    with pytest.raises(ModelCheckError, match="zero_shot_sanity"):
        cli(["models", "add", "hf:/toy/random", "--id", "rnd"])
    assert cli(["models", "add", "hf:/toy/random", "--id", "rnd", "--no-zero-shot-check"]) == 0
    assert "zero-shot check skipped" in capsys.readouterr().out
    assert sorted(m.id for m in user_hub.list_user_models(toy_adds)) == ["good-toy", "rnd"]
