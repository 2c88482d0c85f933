"""Bulk reuse on Ray Data (vlmhub.reuse.ray_predict, `vlmhub predict --ray --out preds.parquet`).

Predictions equal the single-process path's (BatchPredictor / the CSV job) on the same images; an interrupted
run resumes, skipping the Parquet parts already written. Runs on one local Ray cluster started for the module
(2 CPUs, a small object store); skipped, with the reason, only when Ray cannot be imported.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from ray_testing import local_ray

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vlmhub[ray]')")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed (pip install 'vlmhub[ray]')")

TOYS = "toy-a,toy-b,toy-c"


@pytest.fixture(scope="module")
def ray_cluster():
    with local_ray() as cluster:
        yield cluster


def _files(color_data):
    return [f for c in ["red", "orange", "yellow", "green", "blue", "purple"]
            for f in sorted((color_data["task"] / c).iterdir())]


def _parquet_rows(path):
    t = pq.read_table(path)
    assert t.column_names == ["image", "class", "confidence"]
    return t.column("image").to_pylist(), t.column("class").to_pylist(), np.asarray(t.column("confidence").to_numpy())


@pytest.mark.slow  # Ray Data with three model stages, twice, on a 2-core machine
def test_ray_predictions_equal_the_single_process_path_and_resume(ray_cluster, toy_hub, color_data, tmp_path):
    from vlmhub.labeling.ray_backend import RayOptions
    from vlmhub.reuse import BatchPredictor, predict_to_csv
    from vlmhub.reuse.ray_predict import predict_to_parquet_ray
    from vlmhub.tasks import load_task

    predictor = BatchPredictor(load_task(color_data["task"]), hub=toy_hub, k=2)
    files = _files(color_data)
    opts = RayOptions(workers=2, num_cpus=0.5)
    out = tmp_path / "p.parquet"
    seen = []

    def die_after_three(done, total):
        seen.append(done)
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_parquet_ray(predictor, files, out, batch_size=7, progress=False, ray=opts, on_chunk=die_after_three)
    parts = tmp_path / "p.parquet.parts"
    written = sorted(int(p.stem.split("-")[1]) for p in parts.glob("part-*.parquet"))  # chunks finish in any order
    assert not out.exists() and len(written) == 3
    skipped = sum(len(files[7 * ci : 7 * ci + 7]) for ci in written)
    again = []
    rep = predict_to_parquet_ray(predictor, files, out, batch_size=7, progress=False, ray=opts,
                                 on_chunk=lambda done, total: again.append((done, total)))
    assert (rep.images, rep.resumed, rep.computed) == (len(files), skipped, len(files) - skipped)
    assert again == [(d, 9) for d in range(4, 10)]  # only the six missing chunks ran
    assert not parts.exists()
    images, classes, conf = _parquet_rows(out)
    # the single-process path, chunk by chunk as the CSV job runs it
    want = [predictor.predict_refs([(str(f), f) for f in files[i : i + 7]]) for i in range(0, len(files), 7)]
    assert images == [str(f) for f in files]
    assert classes == [c for w in want for c in w["class"].tolist()]
    assert conf.tolist() == [c for w in want for c in w["confidence"].tolist()]  # exactly
    csv_out = tmp_path / "p.csv"
    predict_to_csv(predictor, files, csv_out, batch_size=7, progress=False)
    with open(csv_out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["image", "class", "confidence"]] + [[i, c, f"{x:.6f}"] for i, c, x in zip(images, classes, conf)]


@pytest.mark.slow
def test_cli_predict_ray_writes_parquet(ray_cluster, toy_hub, color_data, tmp_path, capsys):
    from vlmhub.cli.main import main

    out = tmp_path / "preds.parquet"
    argv = ["--home", str(toy_hub.settings.home), "predict", str(color_data["task"]), str(color_data["task"] / "blue"),
            "--models", TOYS, "--k", "2", "--batch-size", "4"]
    assert main([*argv, "--ray", "--ray-workers", "1", "--out", str(out), "--json", "-q"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["images"], rep["computed"], rep["out"]) == (10, 10, str(out))
    assert main([*argv, "--out", str(tmp_path / "preds.csv"), "-q"]) == 0
    with open(tmp_path / "preds.csv", newline="", encoding="utf-8") as fh:
        want = list(csv.reader(fh))[1:]
    images, classes, conf = _parquet_rows(out)
    assert [[i, c, f"{x:.6f}"] for i, c, x in zip(images, classes, conf)] == want


def test_predict_ray_and_parquet_go_together(settings, color_data, tmp_path, capsys):
    from vlmhub.cli.main import main

    base = ["--home", str(settings.home), "predict", str(color_data["task"]), str(color_data["task"] / "blue")]
    assert main([*base, "--ray"]) == 2
    assert "--out FILE.parquet" in capsys.readouterr().err
    assert main([*base, "--ray", "--out", str(tmp_path / "p.csv")]) == 2
    assert "--out FILE.parquet" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "p.parquet")]) == 2
    assert "add --ray" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_unfinished_parquet_run_with_other_settings_is_refused(toy_hub, color_data, tmp_path):
    from vlmhub.errors import DataError
    from vlmhub.reuse import BatchPredictor
    from vlmhub.reuse.ray_predict import predict_to_parquet_ray
    from vlmhub.storage.atomic import atomic_write_json
    from vlmhub.tasks import load_task

    predictor = BatchPredictor(load_task(color_data["task"]), hub=toy_hub, k=2)
    parts = tmp_path / "p.parquet.parts"
    parts.mkdir()
    atomic_write_json(parts / "manifest.json", {"format": "vlmhub.predictions.parquet/1", "batch_size": 3})
    with pytest.raises(DataError, match="other inputs or settings.*--restart"):
        predict_to_parquet_ray(predictor, _files(color_data), tmp_path / "p.parquet", batch_size=7, progress=False)


def test_missing_pyarrow_names_the_extra(monkeypatch):
    from hide_imports import hide_modules
    from vlmhub.errors import MissingExtraError
    from vlmhub.reuse.ray_predict import _pyarrow

    hide_modules(monkeypatch, "pyarrow")
    with pytest.raises(MissingExtraError, match=r"pip install 'vlmhub\[ray\]'"):
        _pyarrow()
