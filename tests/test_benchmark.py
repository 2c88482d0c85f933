"""``vlmhub benchmark`` on the toy colour hub: tables, plots, growth curve and label quality."""

import json

import numpy as np

from vlmhub.cli.main import main
from vlmhub.evaluation.benchmark import crossfit_best_single, load_target, mll_accuracy
from vlmhub.tasks import load_task


def test_benchmark_writes_tables_and_plots(toy_hub, color_data, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["--home", str(toy_hub.settings.home), "benchmark", "--models", "toy-a,toy-b,toy-c", "--targets",
                 str(color_data["task"]), "--orders", "5", "--no-ablations", "--out", str(out), "--json", "-q"])
    assert code == 0
    s = json.loads(capsys.readouterr().out)
    acc = s["accuracy"]["color-task"]
    assert set(acc) == {"INB", "ModelGPT", "random", "best_single_cv", "MLL_k1", "MLL_k3", "oracle_per_class"}
    assert acc["oracle_per_class"] >= acc["best_single_cv"] - 1e-9
    assert acc["MLL_k1"] > acc["INB"]
    for f in ("report.md", "methods.csv", "growth.csv", "growth.png", "methods.png", "label_quality.csv", "summary.json"):
        assert (out / f).is_file(), f
    assert s["growth_end"]["MLL"] >= s["growth_start"]["MLL"]
    # label quality: p(m, y) tracks true per-class recall on the toy hub
    assert s["label_quality"][0]["per_class_rho"] > 0


def test_crossfit_best_single_never_uses_the_scored_half(toy_hub, color_data):
    task = load_task(color_data["task"])
    data = load_target(task, toy_hub.models(), toy_hub.settings, limit_per_class=None)
    ids = ["toy-a", "toy-b", "toy-c"]
    acc = crossfit_best_single(data, ids)
    assert 0 <= acc <= max(data.model_accuracy().values()) + 1e-9
    r = np.ones((3, len(task.classes)))
    r[1] = 2.0  # every class picks toy-b with k=1
    assert mll_accuracy(data, r, ids, 1) == data.model_accuracy()["toy-b"]
