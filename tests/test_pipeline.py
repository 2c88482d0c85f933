"""Label -> select -> reuse end to end on the tiny colour models (seconds, no weights)."""

import json
import shutil

import pytest

from vlmhub.concepts.graph import current_graph
from vlmhub.errors import NotLabeledError, UnknownModelError
from vlmhub.evaluation import evaluate_task
from vlmhub.hub import Hub
from vlmhub.labeling import LabelStore
from vlmhub.models import create_model, list_models
from vlmhub.tasks import load_task


def test_registry_lists_default_and_test_models_and_explains_misses():
    assert {"toy-a", "toy-b", "toy-c"} <= set(list_models(tag="test"))
    default = list_models(tag="default")
    assert len(default) >= 6 and len({m.split("-")[0] for m in default}) >= 2
    with pytest.raises(UnknownModelError, match="Known ids:.*toy-a"):
        create_model("toy-z")


def test_graph_nodes_captions_and_ancestor_sampling(toy_hub):
    g = current_graph(toy_hub.settings)
    by_id = {n.id: n for n in g.nodes}
    red = by_id["n04962784"]
    assert red.own and len(red.images) == 6
    assert red.caption.startswith("red, which is red color or pigment")
    chromatic = next(n for n in g.nodes if n.name == "chromatic color")
    assert not chromatic.own and len(chromatic.images) == 36  # drawn from all six colours
    assert all(set(n.images) <= set(g.image_paths) for n in g.nodes)
    assert red.parents  # hypernym edges


def test_labels_are_stored_per_image_and_caption(toy_hub):
    g = current_graph(toy_hub.settings)
    store = LabelStore(toy_hub.settings)
    for m in ("toy-a", "toy-b", "toy-c"):
        lab = store.label(m)
        assert lab.is_complete(g.version)
        assert len(lab.images) == len(g.image_ids())
        assert len(lab.captions) == len(set(g.captions()))
        man = json.loads(lab.manifest_path.read_text())
        assert man["format"] == "vlmhub.label/1" and man["embed_dim"] == 6


def test_selection_avoids_each_models_blind_spot(toy_hub, color_data):
    task = load_task(color_data["task"])
    # toy-a cannot tell blue from purple, toy-b red from orange, toy-c green from yellow.
    # With the official F1 variant of Eq. 5 no class picks the model that is blind to it.
    sel_f1 = toy_hub.select(task, k=1, metric="f1")
    chosen = {c.name: sel_f1.members(i)[0] for i, c in enumerate(sel_f1.classes)}
    assert chosen["blue"] != "toy-a" and chosen["purple"] != "toy-a"
    assert chosen["red"] != "toy-b" and chosen["orange"] != "toy-b"
    assert chosen["green"] != "toy-c" and chosen["yellow"] != "toy-c"
    # Eq. 5 as printed only sees the half of a blind pair whose images go to the other node: a blind model
    # that sends blue *and* purple images to "purple" scores 1.0 on purple. It still avoids blue.
    sel = toy_hub.select(task, k=1)
    chosen = {c.name: sel.members(i)[0] for i, c in enumerate(sel.classes)}
    assert chosen["blue"] != "toy-a"
    d = sel.to_dict()
    assert [c["name"] for c in d["classes"]] == list(task.classes)
    assert d["classes"][0]["nodes"][0]["id"] == "n04962784"  # "red" matched the red synset first
    assert {"id", "score"} <= set(d["classes"][0]["models"][0])


def test_reuse_beats_inb_and_single_models(toy_hub, color_data):
    task = load_task(color_data["task"])
    res = evaluate_task(task, toy_hub.models(), toy_hub.selector(), toy_hub.settings, progress=False)
    acc = res.accuracy
    assert set(acc) == {"INB", "best_single", "MLL_k1", "MLL_k3", "oracle_per_class"}
    assert acc["MLL_k1"] > acc["INB"]
    assert acc["MLL_k1"] >= acc["best_single"]
    assert acc["oracle_per_class"] >= acc["best_single"]
    preds = toy_hub.predict(task, [color_data["task"] / "blue"], k=1)
    assert sum(p["class"] == "blue" for p in preds) >= 8


def _counting_toy(model_id):
    """A real toy colour model that records every image its trunk sees and every row its head projects."""
    from vlmhub.models import get_spec
    from vlmhub.models.toy import ToyColorModel

    class CountingToy(ToyColorModel):
        def __init__(self, spec):
            super().__init__(spec)
            self.seen: list[bytes] = []  # one entry per preprocessed image (its pixels)
            self.trunk_rows = 0
            self.head_rows = 0

        def preprocess(self, image):
            self.seen.append(image.convert("RGB").tobytes())
            return super().preprocess(image)

        def image_features(self, pixels):
            self.trunk_rows += int(pixels.shape[0])
            return super().image_features(pixels)

        def project_image(self, features):
            self.head_rows += len(features)
            return super().project_image(features)

    return CountingToy(get_spec(model_id))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_ensemble_runs_each_selected_model_once_per_image(toy_hub, color_data, k):
    from PIL import Image

    from vlmhub.reuse.ensemble import MLLEnsemble

    task = load_task(color_data["task"])
    sel = toy_hub.select(task, k=k)
    used = set(sel.used_models())
    assert used == {m for y in range(len(task.classes)) for m in sel.members(y)}
    models = {m: _counting_toy(m) for m in ("toy-a", "toy-b", "toy-c")}
    files = [f for c in task.classes for f in sorted((color_data["task"] / c).iterdir())[:3]]
    pixels = []
    for f in files:
        with Image.open(f) as im:
            pixels.append(im.convert("RGB").tobytes())
    assert len(set(pixels)) == len(files)  # distinct swatches: a repeat would show
    scores = MLLEnsemble(sel, models).scores(files)
    assert scores.shape == (len(files), len(task.classes))
    for m, model in models.items():
        if m in used:  # once per image, however many classes chose it
            assert sorted(model.seen) == sorted(pixels), m
            assert model.trunk_rows == model.head_rows == len(files), m
        else:
            assert model.seen == [] and model.trunk_rows == model.head_rows == 0, m


def test_labeling_is_incremental_when_images_are_added(toy_hub, color_data, tmp_path):
    extra = tmp_path / "more-colors"
    shutil.copytree(color_data["samples"], extra)
    from PIL import Image

    Image.new("RGB", (8, 8), (230, 20, 20)).save(extra / "n04962784" / "new.png")
    rep = toy_hub.label(sample_sets=[extra], progress=False)
    # only the new sample set's 37 images are new ids (another set name); captions are all reused
    assert all(v == 37 for v in rep.new_images.values())
    assert all(v == 0 for v in rep.new_captions.values())
    rep2 = toy_hub.label(sample_sets=[extra], progress=False)
    assert sorted(rep2.skipped) == ["toy-a", "toy-b", "toy-c"]


def test_resume_after_kill_keeps_finished_shards(settings, color_data, monkeypatch):
    hub = Hub(settings, model_ids=["toy-a"])
    graph = hub.build_graph([color_data["samples"]])
    model = hub.model("toy-a")
    calls = {"n": 0}
    real = type(model).image_features

    def dying(self, pixels):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the job is killed during the second batch
        return real(self, pixels)

    monkeypatch.setattr(type(model), "image_features", dying)
    with pytest.raises(KeyboardInterrupt):
        hub.label(graph=graph, progress=False)
    lab = LabelStore(settings).label("toy-a")
    assert not lab.is_complete(graph.version)
    assert len(lab.images) == settings.batch_size  # the first batch was kept
    monkeypatch.setattr(type(model), "image_features", real)
    rep = hub.label(graph=graph, progress=False)
    assert rep.new_images["toy-a"] == 36 - settings.batch_size
    assert lab.is_complete(graph.version)


def test_selection_without_labels_says_what_to_do(settings, color_data):
    hub = Hub(settings, model_ids=["toy-a"])
    with pytest.raises(NotLabeledError, match="vlmhub label"):
        hub.select(load_task(color_data["task"]))


def test_class_without_synset_still_matches_through_captions(toy_hub, color_data):
    from vlmhub.tasks import Task

    task = Task("odd", ("bright crimson-ish", "deep sky blue-ish"), domain="color swatch",
                captions={"bright crimson-ish": ["a strong red color"], "deep sky blue-ish": ["a blue color"]})
    sel = toy_hub.select(task, k=1)
    assert sel.classes[0].nodes and sel.classes[1].nodes
