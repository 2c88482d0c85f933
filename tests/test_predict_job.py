"""Batch prediction: the Ray-style callable class, and the resumable CSV job (kill, resume, refuse, restart)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from vlmhub.cli.main import main
from vlmhub.errors import DataError
from vlmhub.reuse import BatchPredictor, predict_to_csv
from vlmhub.tasks import load_task

from mll_by_hand import ensemble_by_hand

TOYS = "toy-a,toy-b,toy-c"


def _files(color_data, per_class=None):
    out = []
    for c in ["red", "orange", "yellow", "green", "blue", "purple"]:
        fs = sorted((color_data["task"] / c).iterdir())
        out.extend(fs[:per_class] if per_class else fs)
    return out


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.fixture
def predictor(toy_hub, color_data):
    return BatchPredictor(load_task(color_data["task"]), hub=toy_hub, k=2)


def _by_hand(toy_hub, color_data, files, k=2):
    task = load_task(color_data["task"])
    sel = toy_hub.select(task, k=k)
    members = [sel.members(y) for y in range(len(task.classes))]
    return ensemble_by_hand({m: toy_hub.model(m) for m in TOYS.split(",")}, members, list(task.classes), files)


def test_batch_predictor_equals_eq8_10_by_hand_for_paths_and_bytes(predictor, toy_hub, color_data):
    files = _files(color_data, per_class=2)
    want = _by_hand(toy_hub, color_data, files)
    by_path = predictor({"path": np.array([str(f) for f in files])})
    assert by_path["image"].tolist() == [str(f) for f in files]
    assert by_path["class"].tolist() == [r["class"] for r in want]
    np.testing.assert_allclose(by_path["confidence"], [r["confidence"] for r in want], rtol=1e-6)
    np.testing.assert_allclose(by_path["scores"], [r["scores"] for r in want], rtol=1e-5, atol=1e-8)  # float32 encoders
    by_bytes = predictor({"bytes": [f.read_bytes() for f in files], "id": [f.name for f in files]})
    assert by_bytes["image"].tolist() == [f.name for f in files]
    assert by_bytes["class"].tolist() == by_path["class"].tolist()
    np.testing.assert_allclose(by_bytes["scores"], by_path["scores"], rtol=1e-6)
    # Ray's read_binary_files(include_paths=True) layout: bytes are used, paths name the rows
    both = predictor({"bytes": [f.read_bytes() for f in files], "path": [str(f) for f in files]})
    assert both["image"].tolist() == [str(f) for f in files] and both["class"].tolist() == by_path["class"].tolist()
    with pytest.raises(DataError, match="needs a \"path\""):
        predictor({"image": [1]})
    with pytest.raises(DataError, match="\"id\" column has 1 rows"):
        predictor({"path": [str(files[0]), str(files[1])], "id": ["a"]})


def test_job_writes_eq8_10_by_hand(predictor, toy_hub, color_data, tmp_path):
    files = _files(color_data, per_class=3)
    out_dir = tmp_path / "out"
    rep = predict_to_csv(predictor, files, out_dir / "p.csv", batch_size=5, progress=False)
    assert (rep.images, rep.computed, rep.resumed) == (18, 18, 0)
    rows = _rows(out_dir / "p.csv")
    assert rows[0] == ["image", "class", "confidence"]
    want = _by_hand(toy_hub, color_data, files)
    assert [r[:2] for r in rows[1:]] == [[w["image"], w["class"]] for w in want]
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], [w["confidence"] for w in want], rtol=1e-5)
    assert sorted(p.name for p in out_dir.iterdir()) == ["p.csv"]  # nothing left beside it


def test_job_resumes_after_a_kill_without_recomputing(predictor, color_data, tmp_path):
    files = _files(color_data)
    out = tmp_path / "p.csv"
    full = tmp_path / "full.csv"
    predict_to_csv(predictor, files, full, batch_size=7, progress=False)

    def die_after_two(done, total):
        if done >= 14:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_csv(predictor, files, out, batch_size=7, progress=False, on_batch=die_after_two)
    assert not out.exists() and (tmp_path / "p.csv.partial").exists()
    # a torn last line (killed mid-write) is cut off on resume
    with open(tmp_path / "p.csv.partial", "a", encoding="utf-8") as fh:
        fh.write(str(files[14])[:10])
    seen = []
    rep = predict_to_csv(predictor, files, out, batch_size=7, progress=False, on_batch=lambda d, t: seen.append(d))
    assert (rep.resumed, rep.computed, rep.images) == (14, len(files) - 14, len(files))
    assert seen[0] == 21  # the first batch after resuming starts at row 14
    assert out.read_bytes() == full.read_bytes()
    assert not (tmp_path / "p.csv.partial").exists() and not (tmp_path / "p.csv.partial.json").exists()


def test_job_refuses_to_mix_runs_and_restart_discards(predictor, toy_hub, color_data, tmp_path):
    files = _files(color_data, per_class=2)
    out = tmp_path / "p.csv"

    def die(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_to_csv(predictor, files, out, batch_size=3, progress=False, on_batch=die)
    other = BatchPredictor(load_task(color_data["task"]), hub=toy_hub, k=1)
    with pytest.raises(DataError, match="--restart"):
        predict_to_csv(other, files, out, progress=False)
    with pytest.raises(DataError, match="--restart"):
        predict_to_csv(predictor, files[:-1], out, progress=False)
    rep = predict_to_csv(other, files, out, progress=False, restart=True)
    assert rep.resumed == 0 and len(_rows(out)) == len(files) + 1
    with pytest.raises(DataError, match="more than once"):
        predict_to_csv(predictor, [files[0], files[0]], tmp_path / "q.csv", progress=False)
    with pytest.raises(DataError, match="is a folder"):
        predict_to_csv(predictor, files, tmp_path, progress=False)


def test_cli_predict_out_json(settings, color_data, capsys, tmp_path):
    assert main(["--home", str(settings.home), "label", "--models", TOYS, "--samples", str(color_data["samples"]), "-q"]) == 0
    capsys.readouterr()
    out = tmp_path / "preds.csv"
    code = main(["--home", str(settings.home), "predict", str(color_data["task"]), str(color_data["task"] / "blue"),
                 "--models", TOYS, "--out", str(out), "--batch-size", "4", "--json", "-q"])
    assert code == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["images"] == 10 and rep["computed"] == 10 and rep["out"] == str(out)
    rows = _rows(out)[1:]
    assert sum(r[1] == "blue" for r in rows) >= 8
    code = main(["--home", str(settings.home), "predict", str(color_data["task"]), str(tmp_path / "nope"),
                 "--models", TOYS, "--out", str(out)])
    assert code == 2 and "not found" in capsys.readouterr().err
