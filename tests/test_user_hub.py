"""The user hub: add (load, check, persist), list, remove, reload; the ``vlmhub models`` CLI; source parsing.

Model loading is replaced by tiny in-process models here (``build_from_source`` is patched); the real adapters
are exercised end to end in test_adapters.py.
"""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from vlmhub.errors import ConfigError, ModelCheckError, UnknownModelError, VlmhubError
from vlmhub.models import Catalog, user_hub
from vlmhub.models.adapters import HFSource, OpenClipSource, parse_source
from vlmhub.models.base import ModelSpec, ZeroShotModel, l2_normalize
from vlmhub.models.checker import COLOURS, CheckReport
from vlmhub.models.text import HashingEmbedder
from vlmhub.settings import Settings

DIM = 12


class TinyModel(ZeroShotModel):
    """Deterministic tiny model standing in for a loaded adapter model.

    It sees colours (the first 6 dimensions: closeness of the mean colour to the checker's colours, and the
    colour words of a text), so it passes the default zero-shot sanity check like a real CLIP would."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.w_img = torch.randn(3 * 4 * 4, DIM - 6, generator=torch.Generator().manual_seed(1))
        self.text = HashingEmbedder(32)
        self.w_txt = np.random.default_rng(1).standard_normal((32, DIM - 6)).astype(np.float32)
        self.protos = torch.tensor([rgb for _, rgb in COLOURS], dtype=torch.float32) / 255.0

    def preprocess(self, image):
        arr = np.asarray(image.convert("RGB").resize((4, 4)), dtype=np.float32) / 255.0
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous()

    def image_features(self, pixels):
        colour = torch.exp(-((pixels.mean(dim=(2, 3))[:, None, :] - self.protos[None]) ** 2).sum(-1) / 0.05)
        return torch.cat([colour, 0.1 * (pixels.reshape(pixels.shape[0], -1) - 0.5) @ self.w_img], dim=1)

    def encode_text(self, texts):
        words = [set(t.lower().replace(".", " ").split()) for t in texts]
        colour = np.array([[float(c in w) for c, _ in COLOURS] for w in words], dtype=np.float32).reshape(len(texts), 6)
        return l2_normalize(np.concatenate([colour, 0.1 * (self.text.encode(list(texts)) @ self.w_txt)], axis=1))


class NaNModel(TinyModel):
    def encode_text(self, texts):
        return np.full((len(texts), DIM), np.nan, dtype=np.float32)


class WrongDimModel(TinyModel):
    def project_image(self, features):
        return l2_normalize(np.ones((features.shape[0], DIM + 3), np.float32))


class NondeterministicModel(TinyModel):
    def encode_text(self, texts):
        return l2_normalize(super().encode_text(texts) + 0.05 * np.random.default_rng().standard_normal((len(texts), DIM)))


class UnnormalisedModel(TinyModel):
    def image_features(self, pixels):
        return super().image_features(pixels)

    def project_image(self, features):
        return 3.0 * super().project_image(features)


KINDS = {
    "tiny": TinyModel,
    "tiny2": TinyModel,
    "nan": NaNModel,
    "wrongdim": WrongDimModel,
    "nondeterministic": NondeterministicModel,
    "unnormalised": UnnormalisedModel,
}


class FakeBuilder:
    """Stands in for :func:`user_hub.build_from_source`: ``hf:/fake/<kind>`` builds ``KINDS[kind]``."""

    def __init__(self):
        self.calls: list[str] = []

    def __call__(self, source, *, spec=None, model_id=None, settings=None):
        src = parse_source(source)
        self.calls.append(src.source)
        kind = Path(src.location).name
        if spec is None:
            spec = ModelSpec(
                id=model_id or src.default_id(),
                family="tiny",
                backbone=kind,
                embed_dim=DIM,
                tags=("user", "hf"),
                config=(("source", src.source), ("adapter", "hf")),
            )
        return KINDS[kind](spec)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A hermetic hub in tmp_path with a fake builder (the home's catalog reads its own models.json only)."""
    settings = Settings(home=tmp_path / "hub", data_dir=None)
    monkeypatch.setenv("VLMHUB_HOME", str(settings.home))
    builder = FakeBuilder()
    monkeypatch.setattr(user_hub, "build_from_source", builder)
    yield settings, builder


def _models_json(settings) -> Path:
    return Path(settings.home) / "models.json"


# -- add / list / remove / load ------------------------------------------------------------------------------------
def test_add_persists_registers_and_rebuilds(hub):
    settings, builder = hub
    spec = user_hub.add_model("hf:/fake/tiny", model_id="my-tiny", settings=settings)
    assert spec.id == "my-tiny" and spec.embed_dim == DIM
    doc = json.loads(_models_json(settings).read_text())
    assert doc["format"] == user_hub.MODELS_FORMAT and doc["version"] == 1
    (entry,) = doc["models"]
    assert entry["id"] == "my-tiny" and entry["source"] == "hf:/fake/tiny" and entry["adapter"] == "hf"
    assert entry["checked"] is True and entry["spec"]["config"]["source"] == "hf:/fake/tiny"
    catalog = Catalog(settings)
    assert catalog.spec("my-tiny") == spec and catalog.origin("my-tiny") == "user"
    model = catalog.create("my-tiny")
    assert isinstance(model, TinyModel) and model.spec == spec
    assert builder.calls == ["hf:/fake/tiny", "hf:/fake/tiny"]
    (um,) = user_hub.list_user_models(settings)
    assert um.id == "my-tiny" and um.spec == spec and um.checked and um.added.endswith("Z")


def test_default_id_comes_from_the_source(hub):
    settings, _ = hub
    assert user_hub.add_model("hf:/fake/tiny", settings=settings).id == "hf-tiny"


def test_catalog_reads_user_models_without_loading_them(hub, monkeypatch):
    settings, builder = hub
    catalog = Catalog(settings)
    assert catalog.ids(tag="user") == []
    user_hub.add_model("hf:/fake/tiny", model_id="a", settings=settings)
    user_hub.add_model("hf:/fake/tiny2", model_id="b", settings=settings)
    n_calls = len(builder.calls)
    assert catalog.ids(tag="user") == ["a", "b"]  # the same catalog object sees the file change
    assert Catalog(settings).ids(tag="user") == ["a", "b"]
    assert len(builder.calls) == n_calls  # specs only, nothing built
    assert catalog.spec("b").backbone == "tiny2"
    user_hub.remove_model("a", settings=settings)
    assert catalog.ids(tag="user") == ["b"]


def test_catalog_without_a_models_file_has_only_builtins(hub):
    settings, _ = hub
    catalog = Catalog(settings)
    assert catalog.ids(tag="user") == [] and user_hub.list_user_models(settings) == []
    assert {"toy-a", "conse-lite0"} <= set(catalog) and all(catalog.origin(i) == "builtin" for i in catalog)


@pytest.mark.parametrize("kind", ["nan", "wrongdim", "nondeterministic", "unnormalised"])
def test_broken_model_is_rejected_and_models_json_unchanged(hub, kind):
    settings, _ = hub
    user_hub.add_model("hf:/fake/tiny", model_id="good", settings=settings)
    before = _models_json(settings).read_bytes()
    with pytest.raises(ModelCheckError) as info:
        user_hub.add_model(f"hf:/fake/{kind}", model_id="bad", settings=settings)
    report = info.value.report
    assert isinstance(report, CheckReport) and not report.passed and report.model_id == "bad"
    assert "failed the admission checks" in str(info.value) and "bad" in str(info.value)
    assert _models_json(settings).read_bytes() == before
    assert "bad" not in Catalog(settings)


def test_rejected_first_model_leaves_no_file(hub):
    settings, _ = hub
    with pytest.raises(ModelCheckError):
        user_hub.add_model("hf:/fake/nan", settings=settings)
    assert not _models_json(settings).exists()


def test_no_check_admits_and_records_it(hub):
    settings, _ = hub
    spec = user_hub.add_model("hf:/fake/nan", model_id="unchecked", settings=settings, check=False)
    (um,) = user_hub.list_user_models(settings)
    assert um.spec == spec and um.checked is False


def test_duplicate_and_invalid_ids(hub):
    settings, _ = hub
    user_hub.add_model("hf:/fake/tiny", model_id="dup", settings=settings)
    with pytest.raises(ConfigError, match="already exists"):
        user_hub.add_model("hf:/fake/tiny2", model_id="dup", settings=settings)
    for bad in ("", "has space", "../x", "-lead", "a" * 101):
        with pytest.raises(ConfigError, match="invalid model id"):
            user_hub.add_model("hf:/fake/tiny", model_id=bad, settings=settings)


def test_builtin_ids_are_not_taken_or_removed(hub):
    settings, _ = hub
    for builtin in ("toy-a", "conse-lite0"):
        with pytest.raises(ConfigError, match="built-in"):
            user_hub.add_model("hf:/fake/tiny", model_id=builtin, settings=settings)
        with pytest.raises(ConfigError, match="built in"):
            user_hub.remove_model(builtin, settings=settings)
    assert not _models_json(settings).exists()


def test_a_user_model_shadowed_by_a_builtin_is_skipped_with_a_warning(hub):
    settings, _ = hub
    user_hub.add_model("hf:/fake/tiny", model_id="mine", settings=settings)
    doc = json.loads(_models_json(settings).read_text())
    doc["models"][0]["id"] = doc["models"][0]["spec"]["id"] = "toy-a"  # e.g. a later release ships "toy-a"
    _models_json(settings).write_text(json.dumps(doc))
    catalog = Catalog(settings)
    with pytest.warns(UserWarning, match="shadowed by a built-in"):
        assert catalog.origin("toy-a") == "builtin" and catalog.ids(tag="user") == []


def test_remove(hub):
    settings, _ = hub
    user_hub.add_model("hf:/fake/tiny", model_id="a", settings=settings)
    user_hub.add_model("hf:/fake/tiny2", model_id="b", settings=settings)
    assert user_hub.remove_model("a", settings=settings).id == "a"
    assert [m.id for m in user_hub.list_user_models(settings)] == ["b"]
    catalog = Catalog(settings)
    assert "a" not in catalog and "b" in catalog
    with pytest.raises(UnknownModelError, match="no user model 'a'"):
        user_hub.remove_model("a", settings=settings)


def test_concurrent_adds_keep_every_entry(hub):
    settings, _ = hub
    errors: list[BaseException] = []

    def add(i):
        try:
            user_hub.add_model("hf:/fake/tiny", model_id=f"m{i}", settings=settings)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(m.id for m in user_hub.list_user_models(settings)) == ["m0", "m1", "m2", "m3"]


# -- corrupt models.json -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a vlmhub model list"),
        ('{"format": "vlmhub-user-models", "version": 99, "models": []}', "version 99"),
        ('{"format": "vlmhub-user-models", "version": 1, "models": [{"id": "x"}]}', "entry 0"),
        ('{"format": "vlmhub-user-models", "version": 1, "models": [{"id": "x", "source": "hf:/a", "adapter": "hf", '
         '"spec": {"id": "x", "family": "f", "backbone": "b", "embed_dim": 4, "bogus": 1}}]}', "entry 0"),
    ],
)
def test_corrupt_models_json_gives_a_clear_config_error(hub, content, match):
    settings, _ = hub
    path = _models_json(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        Catalog(settings).ids()
    msg = str(info.value)
    assert str(path) in msg and "vlmhub models add" in msg
    with pytest.raises(ConfigError):  # adding refuses too, leaving the file for the user to fix
        user_hub.add_model("hf:/fake/tiny", settings=settings)
    assert path.read_text() == content


# -- sources -------------------------------------------------------------------------------------------------------
def test_unknown_source_prefixes_raise_a_clear_error(hub):
    settings, _ = hub
    for bad, hint in [
        ("timm:vit_base", "expected one of open_clip:, hf:"),
        ("openclip:ViT-B-32/openai", "Did you mean 'open_clip:ViT-B-32/openai'"),
        ("transformers:openai/clip", "Did you mean 'hf:openai/clip'"),
        ("ViT-B-32", "unknown model source prefix"),
        ("", "empty model source"),
    ]:
        with pytest.raises(ConfigError) as info:
            user_hub.add_model(bad, settings=settings)
        assert hint in str(info.value)
    assert not _models_json(settings).exists()


def test_parse_open_clip_sources(tmp_path, monkeypatch):
    s = parse_source("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert s == OpenClipSource(kind="tag", arch="ViT-B-32", pretrained="laion2b_s34b_b79k")
    assert s.source == "open_clip:ViT-B-32/laion2b_s34b_b79k" and s.default_id() == "openclip-vit-b-32-laion2b_s34b_b79k"
    s = parse_source("open_clip:hf-hub:timm/ViT-B-16-SigLIP")
    assert s.kind == "hf-hub" and s.location == "timm/ViT-B-16-SigLIP" and s.model_name == "hf-hub:timm/ViT-B-16-SigLIP"
    monkeypatch.chdir(tmp_path)
    s = parse_source("open_clip:ViT-B-32@ckpt.pt")
    assert s.kind == "checkpoint" and s.pretrained == str(tmp_path / "ckpt.pt") and s.arch == "ViT-B-32"
    s = parse_source("open_clip:cfg/Tiny.json@./w.pt")
    assert s.arch == str(tmp_path / "cfg" / "Tiny.json") and s.model_name == "Tiny"
    assert parse_source(s.source) == s
    s = parse_source("open_clip:local-dir:./oc")
    assert s.location == str(tmp_path / "oc") and parse_source(s.source) == s
    for bad in ("open_clip:ViT-B-32", "open_clip:@x.pt", "open_clip:hf-hub:", "open_clip:ViT-B-32/a/b", "open_clip:hf-hub:a/b/c"):
        with pytest.raises(ConfigError):
            parse_source(bad)


def test_parse_hf_sources(tmp_path, monkeypatch):
    assert parse_source("hf:openai/clip-vit-base-patch32") == HFSource("openai/clip-vit-base-patch32", False)
    assert parse_source("hf:openai/clip-vit-base-patch32").default_id() == "hf-clip-vit-base-patch32"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "saved").mkdir()
    assert parse_source("hf:saved") == HFSource(str(tmp_path / "saved"), True)
    assert parse_source("hf:./other") == HFSource(str(tmp_path / "other"), True)
    with pytest.raises(ConfigError):
        parse_source("hf:a/b/c")


# -- CLI -----------------------------------------------------------------------------------------------------------
def _cli(argv, settings):
    from vlmhub.cli.models_cmd import register

    parser = argparse.ArgumentParser(prog="vlmhub")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    args.settings = settings
    return args.func(args)


def test_cli_add_list_check_remove(hub, capsys):
    settings, _ = hub
    assert _cli(["models", "add", "hf:/fake/tiny", "--id", "cli-tiny"], settings) == 0
    assert "added cli-tiny" in capsys.readouterr().out
    assert _cli(["models", "list", "--json"], settings) == 0
    listed = json.loads(capsys.readouterr().out)
    assert "cli-tiny" in [d["id"] for d in listed]
    assert _cli(["models", "list"], settings) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["id", "family", "backbone"] and "cli-tiny" in out
    assert _cli(["models"], settings) == 0 and "cli-tiny" in capsys.readouterr().out
    assert _cli(["models", "check", "cli-tiny", "--json"], settings) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
    assert _cli(["models", "check", "cli-tiny"], settings) == 0
    assert "PASSED" in capsys.readouterr().out
    assert _cli(["models", "remove", "cli-tiny"], settings) == 0
    assert "removed cli-tiny" in capsys.readouterr().out


def test_cli_errors_are_vlmhub_errors(hub, capsys):
    settings, _ = hub
    with pytest.raises(ModelCheckError):
        _cli(["models", "add", "hf:/fake/wrongdim"], settings)
    with pytest.raises(VlmhubError):
        _cli(["models", "add", "nope:x"], settings)
    with pytest.raises(UnknownModelError):
        _cli(["models", "check", "missing-model"], settings)
    with pytest.raises(UnknownModelError):
        _cli(["models", "remove", "missing-model"], settings)
    assert _cli(["models", "add", "hf:/fake/wrongdim", "--id", "forced", "--no-check"], settings) == 0
    capsys.readouterr()
    assert _cli(["models", "check", "forced"], settings) == 1
    assert "FAIL" in capsys.readouterr().out
