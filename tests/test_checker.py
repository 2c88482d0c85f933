"""The admission checker: a sound tiny model passes; each kind of broken model fails the right check."""

from __future__ import annotations

import dataclasses
import json
import time

import numpy as np
import pytest
import torch

from vlmhub.models.base import ModelSpec, ZeroShotModel, l2_normalize
from vlmhub.models.checker import COLOURS, CheckBudget, CheckReport, CheckResult, check_model, synthetic_images
from vlmhub.models.text import HashingEmbedder

DIM = 16


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread (and are not slowed by a busy machine's thread contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinyModel(ZeroShotModel):
    """A deterministic tiny zero-shot model: pooled pixels and hashed text, each through a fixed projection."""

    def __init__(self, model_id: str = "tiny", dim: int = DIM):
        self.spec = ModelSpec(id=model_id, family="tiny", backbone="pool8", embed_dim=dim)
        g = torch.Generator().manual_seed(0)
        self.w_img = torch.randn(3 * 8 * 8, dim, generator=g)
        self.text = HashingEmbedder(64)
        self.w_txt = np.random.default_rng(0).standard_normal((64, dim)).astype(np.float32)

    def preprocess(self, image):
        arr = np.asarray(image.convert("RGB").resize((8, 8)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def image_features(self, pixels):
        return (pixels.reshape(pixels.shape[0], -1) - 0.5) @ self.w_img

    def encode_text(self, texts):
        return l2_normalize(self.text.encode(list(texts)) @ self.w_txt)


class NaNModel(TinyModel):
    def encode_text(self, texts):
        out = super().encode_text(texts)
        out[0, 0] = np.nan
        return out


class WrongDimModel(TinyModel):
    def project_image(self, features):
        return l2_normalize(np.concatenate([super().project_image(features), np.ones((features.shape[0], 1), np.float32)], 1))


class NondeterministicModel(TinyModel):
    def image_features(self, pixels):
        return super().image_features(pixels) + 0.1 * torch.randn(pixels.shape[0], DIM)


class UnnormalisedModel(TinyModel):
    def encode_text(self, texts):
        return 2.0 * super().encode_text(texts)


class BatchDependentModel(TinyModel):
    """Normalises features by batch statistics: rows change with the batch they are in."""

    def image_features(self, pixels):
        f = super().image_features(pixels)
        return f - f.mean(0, keepdim=True) if f.shape[0] > 1 else f


class BadScaleModel(TinyModel):
    logit_scale = float("nan")


class RaisingModel(TinyModel):
    def image_features(self, pixels):
        raise RuntimeError("CUDA out of memory (pretend)")


class SlowModel(TinyModel):
    def encode_text(self, texts):
        time.sleep(0.05)
        return super().encode_text(texts)


class HungryModel(TinyModel):
    def image_features(self, pixels):
        block = np.ones((64, 2**20), dtype=np.uint8)  # touches 64 MiB
        block[:, ::4096] = 2
        time.sleep(0.03)  # hold it long enough for the RSS sampler to see it
        return super().image_features(pixels) + float(block[0, 0] - 2)


def test_sound_model_passes_every_check():
    report = check_model(TinyModel())
    assert report.passed, report.format()
    names = [r.name for r in report.results]
    assert names == [
        "logit_scale",
        "preprocess",
        "image_embeddings",
        "image_normalised",
        "image_deterministic",
        "image_batch_consistency",
        "image_time",
        "text_embeddings",
        "text_normalised",
        "text_deterministic",
        "text_batch_consistency",
        "text_time",
        "memory",
    ]
    assert all(isinstance(r, CheckResult) and r.seconds >= 0 for r in report.results)
    assert report.model_id == "tiny" and report.embed_dim == DIM and not report.failures


@pytest.mark.parametrize(
    "cls, failing",
    [
        (NaNModel, {"text_embeddings", "text_normalised", "text_deterministic", "text_batch_consistency"}),
        (WrongDimModel, {"image_embeddings"}),
        (NondeterministicModel, {"image_deterministic", "image_batch_consistency"}),
        (UnnormalisedModel, {"text_normalised"}),
        (BatchDependentModel, {"image_batch_consistency"}),
        (BadScaleModel, {"logit_scale"}),
    ],
)
def test_broken_models_fail_the_right_checks(cls, failing):
    report = check_model(cls())
    assert not report.passed
    assert {r.name for r in report.failures} == failing, report.format()
    assert "FAIL" in report.format()


def test_wrong_dimension_detail_names_the_declared_dim():
    r = check_model(WrongDimModel()).result("image_embeddings")
    assert f"expected (8, {DIM})" in r.detail and "spec.embed_dim" in r.detail


def test_a_raising_model_is_reported_not_raised():
    report = check_model(RaisingModel())
    r = report.result("image_embeddings")
    assert not r.passed and "RuntimeError" in r.detail and "out of memory" in r.detail
    assert not report.result("image_time").passed
    assert report.result("text_embeddings").passed


def test_time_budget():
    assert not check_model(SlowModel(), budget=CheckBudget(max_seconds_per_text_batch=0.01)).result("text_time").passed
    assert check_model(SlowModel(), budget=CheckBudget(max_seconds_per_text_batch=5.0)).result("text_time").passed


def test_memory_budget():
    tight = check_model(HungryModel(), budget=CheckBudget(max_memory_mb=16))
    assert not tight.result("memory").passed, tight.result("memory").detail
    assert "MiB" in tight.result("memory").detail
    assert check_model(HungryModel(), budget=CheckBudget(max_memory_mb=2048)).result("memory").passed


def test_zero_shot_sanity_is_optional_and_reported():
    assert "zero_shot_sanity" not in [r.name for r in check_model(TinyModel()).results]
    r = check_model(TinyModel(), budget=CheckBudget(zero_shot=True, zero_shot_min_accuracy=0.0, zero_shot_max_p=1.0)).result("zero_shot_sanity")
    assert r.passed and "accuracy" in r.detail
    r = check_model(TinyModel(), budget=CheckBudget(zero_shot=True, zero_shot_min_accuracy=1.01)).result("zero_shot_sanity")
    assert not r.passed


def test_user_images_replace_the_synthetic_ones():
    imgs = synthetic_images(3, size=20, seed=5)
    report = check_model(TinyModel(), images=imgs)
    assert report.passed and "3 images" in report.result("preprocess").detail


def test_synthetic_images_are_seeded():
    a, b, c = synthetic_images(8, seed=1), synthetic_images(8, seed=1), synthetic_images(8, seed=2)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))
    assert not np.array_equal(np.asarray(a[-1]), np.asarray(c[-1]))
    assert np.asarray(a[0])[0, 0].tolist() == list(COLOURS[0][1])
    assert all(im.mode == "RGB" for im in a)


def test_report_serialises_and_formats():
    report = check_model(NaNModel())
    d = json.loads(json.dumps(report.to_dict()))
    assert d["passed"] is False and d["model_id"] == "tiny"
    assert {r["name"] for r in d["results"] if not r["passed"]} >= {"text_embeddings"}
    assert d["budget"]["batch_size"] == 8
    text = report.format()
    assert text.splitlines()[0].startswith("model check of 'tiny': FAILED")
    assert len(text.splitlines()) == len(report.results) + 1
    with pytest.raises(KeyError):
        report.result("nope")


def test_report_and_budget_are_frozen_and_validated():
    report = check_model(TinyModel())
    assert isinstance(report, CheckReport)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.model_id = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        CheckBudget(batch_size=1)
    with pytest.raises(ValueError):
        CheckBudget(max_memory_mb=0)
