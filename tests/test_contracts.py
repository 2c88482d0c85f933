"""Contract tests: the registries are the test matrix (timm's way). Every registered model, every table
selector and every forward score is checked for the same promises — shapes, normalisation, determinism and
refusal of bad input — so adding one to its registry adds it here (issue 11 item 8)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlmhub.errors import DataError, TableError, VlmhubError
from vlmhub.models import Catalog
from vlmhub.models.registry import builtin_specs
from vlmhub.selection.transferability import SCORES
from vlmhub.selection.transferability.base import ProbeSet
from vlmhub.tables import ModelInfo, PerformanceTable, TaskDescription, get_selector, list_selectors

_SPECS = builtin_specs()
_FAST = [s.id for s in _SPECS if "test" in s.tags]
_SLOW = [s.id for s in _SPECS if "test" not in s.tags]


# -- models ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", _SPECS, ids=lambda s: s.id)
def test_spec_is_complete_and_round_trips(spec):
    assert spec.id and spec.id == spec.id.strip() and " " not in spec.id
    assert spec.family and spec.backbone and spec.embed_dim >= 1
    assert isinstance(spec.tags, tuple) and all(isinstance(t, str) for t in spec.tags)
    for value in (spec.params_m, spec.gflops):
        assert value is None or value >= 0
    assert spec.imagenet_top1 is None or 0.0 <= spec.imagenet_top1 <= 1.0
    d = spec.to_dict()
    assert d["id"] == spec.id and isinstance(d["config"], dict) and isinstance(d["tags"], list)


def _images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(7)
    return [Image.fromarray(rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8)) for i in range(n)]


def _model_contract(model, spec):
    import torch

    assert model.id == spec.id and model.embed_dim == spec.embed_dim
    pix = [model.preprocess(im) for im in _images()]
    assert len({tuple(p.shape) for p in pix}) == 1, "preprocess must give one (C, H, W) shape for any input size"
    batch = torch.stack(pix)
    a = np.asarray(model.encode_image(batch))
    b = np.asarray(model.encode_image(batch))
    assert a.shape == (3, spec.embed_dim) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)  # deterministic
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    one = np.asarray(model.encode_image(batch[:1]))  # a batch of one gives the same row
    np.testing.assert_allclose(one[0], a[0], atol=1e-4)
    t = np.asarray(model.encode_text(["a photo of a dog.", "a photo of a cat."]))
    assert t.shape == (2, spec.embed_dim) and np.isfinite(t).all()
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-4)
    w = np.asarray(model.class_embeddings(["dog", "cat", "red"]))
    assert w.shape == (3, spec.embed_dim)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-4)


@pytest.mark.parametrize("model_id", _FAST)
def test_tiny_registered_model_keeps_the_model_contract(model_id, settings):
    catalog = Catalog(settings)
    _model_contract(catalog.create(model_id), catalog.spec(model_id))


@pytest.mark.slow
@pytest.mark.parametrize("model_id", _SLOW)
def test_default_hub_model_keeps_the_model_contract(model_id, settings):
    catalog = Catalog(settings)
    _model_contract(catalog.create(model_id), catalog.spec(model_id))


def test_the_matrix_covers_every_registered_model():
    assert set(_FAST) | set(_SLOW) == {s.id for s in _SPECS} and _FAST and _SLOW


# -- table selectors -----------------------------------------------------------------------------------------
ANIMALS = ("dog", "cat", "horse", "sheep", "cow", "tiger")
DIGITS = tuple("0123456789")


def _table() -> PerformanceTable:
    rng = np.random.default_rng(3)
    models = tuple(ModelInfo(f"m{i}", arch="ViT-B-32" if i % 2 else "RN50", family="ViT" if i % 2 else "RN",
                             pretraining_data="laion2b" if i < 4 else "openai", params_m=50.0 + 10 * i, gflops=4.0 + i)
                   for i in range(8))
    tasks = (TaskDescription("ImageNet 1k", "natural photograph", "object recognition", ANIMALS),
             *(TaskDescription(f"animals{k}", "photo of animals", "animal recognition", ANIMALS[k:k + 4]) for k in range(2)),
             *(TaskDescription(f"digits{k}", "handwritten digit", "digit classification", DIGITS) for k in range(2)))
    acc = np.clip(0.3 + 0.5 * rng.random((8, len(tasks))), 0, 1)
    return PerformanceTable("contract", models, tasks, acc, reference="ImageNet 1k")


TARGET = TaskDescription("my digits", "handwritten digit", "digit classification", DIGITS)


@pytest.mark.parametrize("name", list_selectors())
def test_selector_keeps_the_selector_contract(name, tmp_path, monkeypatch):
    monkeypatch.setenv("VLMHUB_HOME", str(tmp_path / "home"))
    table = _table()
    with pytest.raises(TableError, match="valid|accept|choose|unknown"):
        get_selector(name, embedder="hashing256", no_such_option=1)
    sel = get_selector(name, embedder="hashing256")
    with pytest.raises(VlmhubError):  # used before fit: a clear error, not an AttributeError traceback
        sel.score(TARGET)
    try:
        sel.fit(table)
        scores = sel.score(TARGET)
    except TableError as exc:  # a selector may refuse a table it cannot serve, with the reason
        assert str(exc) and "\n" not in str(exc).strip()[:1]
        return
    assert scores.shape == (table.n_models,) and np.isfinite(scores).all()
    again = get_selector(name, embedder="hashing256").fit(table).score(TARGET)
    np.testing.assert_array_equal(scores, again)  # deterministic
    ranked = sel.rank(TARGET)
    assert [m for m, _ in ranked] == [table.models[i].id for i in np.argsort(-scores, kind="stable")]


# -- forward scores -----------------------------------------------------------------------------------------
def _probe(informative: bool, seed: int = 0) -> ProbeSet:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), 15)
    centres = rng.normal(0, 1, (4, 16)) * (4.0 if informative else 0.0)
    x = centres[y] + rng.normal(0, 1, (60, 16))
    logits = (np.eye(4)[y] * (4.0 if informative else 0.0)) + rng.normal(0, 1, (60, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return ProbeSet(features=x, labels=y, source_probs=p)


@pytest.mark.parametrize("name", sorted(SCORES))
def test_score_keeps_the_score_contract(name):
    score = SCORES[name]
    good, noise = _probe(True), _probe(False)
    a, b = score(good), score(good)
    assert isinstance(a, float) and np.isfinite(a) and a == b  # finite and deterministic
    assert a > score(noise), f"{name} must rate separable classes above noise"
    with pytest.raises(DataError):
        score(np.zeros((4, 2)))  # not a ProbeSet
    if score.needs_source_probs:
        with pytest.raises(DataError, match="source_probs"):
            score(ProbeSet(features=good.features, labels=good.labels))


@pytest.mark.parametrize("bad", [
    dict(features=np.ones((6, 3)), labels=np.zeros(6, int)),                  # one class only
    dict(features=np.ones((6, 3)), labels=np.array([0, 0, 1, 1, 2, 2.5])),     # non-integer labels
    dict(features=np.full((6, 3), np.nan), labels=np.array([0, 0, 1, 1, 2, 2])),  # NaN features
    dict(features=np.ones((6, 3)), labels=np.array([0, 0, 1, 1, 2])),          # lengths differ
])
def test_bad_probe_sets_are_refused(bad):
    with pytest.raises(DataError):
        ProbeSet(**bad)
