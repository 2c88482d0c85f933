"""The CLI: JSON shapes, exit codes and nothing half-written on bad input."""

import json
import os
import subprocess
import sys

import pytest

from vlmhub.cli.main import main

TOYS = "toy-a,toy-b,toy-c"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def labeled(settings, color_data, capsys):
    code, _, _ = run(capsys, "--home", str(settings.home), "label", "--models", TOYS, "--samples", str(color_data["samples"]), "-q")
    assert code == 0
    return settings


def test_select_json_shape(labeled, color_data, capsys):
    code, out, _ = run(capsys, "--home", str(labeled.home), "select", str(color_data["task"]), "--models", TOYS, "--k", "2", "--json")
    assert code == 0
    d = json.loads(out)
    assert len(d["classes"]) == 6
    c0 = d["classes"][0]
    assert c0["name"] == "red" and len(c0["models"]) == 2
    assert set(c0["models"][0]) >= {"id", "score"} and set(c0["nodes"][0]) >= {"id", "similarity"}
    assert c0["models"][0]["score"] >= c0["models"][1]["score"]


def test_evaluate_json_shape(labeled, color_data, capsys):
    code, out, _ = run(capsys, "--home", str(labeled.home), "evaluate", str(color_data["task"]), "--models", TOYS, "--json", "-q")
    assert code == 0
    d = json.loads(out)
    assert d["dataset"] == "color-task"
    assert set(d["accuracy"]) == {"INB", "best_single", "MLL_k1", "MLL_k3", "oracle_per_class"}
    assert all(0 <= v <= 1 for v in d["accuracy"].values())


def test_predict_prints_one_line_per_image(labeled, color_data, capsys):
    code, out, _ = run(capsys, "--home", str(labeled.home), "predict", str(color_data["task"]), str(color_data["task"] / "green"),
                       "--models", TOYS, "--k", "1")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 10 and sum(l.split("\t")[1] == "green" for l in lines) >= 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["select", "/nonexistent/task.json"], "not found"),
        (["select", "cifar10"], "Did you mean cifar10-test?"),  # a shared target name, mistyped
        (["select", "{task}", "--models", "toy-a,nope"], "unknown model id 'nope'"),
        (["select", "{task}", "--models", TOYS, "--alpha", "2"], "alpha must lie in"),
        (["select", "{bad}", "--models", TOYS], "not valid JSON"),
        (["select", "{empty}", "--models", TOYS], "no classes"),
        (["select", "{dups}", "--models", TOYS], "more than once"),
        (["label", "--models", TOYS, "--samples", "/nonexistent/set"], "not found"),
        (["predict", "{task}", "/nonexistent.png", "--models", TOYS], "not found"),
    ],
)
def test_bad_input_exits_nonzero_with_a_fix(labeled, color_data, tmp_path, capsys, argv, message):
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "empty.json").write_text(json.dumps({"name": "e", "classes": []}))
    (tmp_path / "dups.json").write_text(json.dumps({"name": "d", "classes": ["a", "b", "a"]}))
    argv = [a.format(task=color_data["task"], bad=tmp_path / "bad.json", empty=tmp_path / "empty.json", dups=tmp_path / "dups.json")
            for a in argv]
    before = sorted(p.relative_to(labeled.home) for p in labeled.home.rglob("*"))
    code, _, err = run(capsys, "--home", str(labeled.home), *argv)
    assert code == 2
    assert message in err and err.startswith("vlmhub: error:")
    assert sorted(p.relative_to(labeled.home) for p in labeled.home.rglob("*")) == before  # nothing written


def test_corrupt_image_in_samples_fails_cleanly(settings, color_data, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad-samples"
    shutil.copytree(color_data["samples"], bad)
    (bad / "n04962784" / "zz-broken.png").write_bytes(b"not a png")
    code, _, err = run(capsys, "--home", str(settings.home), "label", "--models", "toy-a", "--samples", str(bad), "-q")
    assert code == 2 and "zz-broken.png" in err and "Remove or replace" in err
    lab = settings.home / "labels" / "toy-a" / "manifest.json"
    assert not lab.exists()  # not marked complete


def test_console_script_exit_code(settings, tmp_path):
    env = dict(os.environ, VLMHUB_HOME=str(settings.home))
    p = subprocess.run([sys.executable, "-m", "vlmhub.cli.main", "select", str(tmp_path / "missing.json")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "vlmhub: error:" in p.stderr


def test_select_plot_writes_a_png(labeled, color_data, tmp_path, capsys):
    png = tmp_path / "plots" / "sel.png"
    code, out, err = run(capsys, "--home", str(labeled.home), "select", str(color_data["task"]), "--models", TOYS,
                         "--k", "2", "--plot", str(png), "--json")
    assert code == 0 and json.loads(out)["k"] == 2 and "wrote" in err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_evaluate_plot_and_per_class_recall(labeled, color_data, tmp_path, capsys):
    png = tmp_path / "eval.png"
    code, out, err = run(capsys, "--home", str(labeled.home), "evaluate", str(color_data["task"]), "--models", TOYS,
                         "--json", "--detail", "--plot", str(png), "-q")
    assert code == 0 and "wrote" in err
    d = json.loads(out)
    rec = d["per_class_recall"]
    assert set(rec) == {"toy-a", "toy-b", "toy-c"} and all(len(v) == 6 and all(0 <= x <= 1 for x in v) for v in rec.values())
    # the per-class oracle is the count-weighted mean of the per-class best recalls (equal class sizes here)
    import numpy as np

    assert d["accuracy"]["oracle_per_class"] == pytest.approx(np.mean(np.max(list(rec.values()), axis=0)), abs=1e-3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
