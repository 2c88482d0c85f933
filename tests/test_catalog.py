"""Per-home catalogs (issue 11 item 1): two hub homes in one process never see each other's models, and the
package keeps no module-level mutable state."""

from __future__ import annotations

import importlib
import json
import pkgutil

import numpy as np
import pytest
import torch

from vlmhub.errors import ConfigError, UnknownModelError
from vlmhub.hub import Hub
from vlmhub.models import Catalog, builtin_specs, user_hub
from vlmhub.models.base import ModelSpec
from vlmhub.models.toy import ToyColorModel
from vlmhub.settings import Settings




@pytest.fixture
def two_homes(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VLMHUB_HOME", str(tmp_path / "default-home"))  # neither A nor B
    return Settings(home=tmp_path / "A", data_dir=None), Settings(home=tmp_path / "B", data_dir=None)


def test_a_model_added_to_one_home_is_invisible_to_another(two_homes, tiny_clip_dir):
    a, b = two_homes
    hub_a, hub_b = Hub(a), Hub(b)  # made before the add: catalogs follow models.json, not a snapshot
    spec = user_hub.add_model(f"hf:{tiny_clip_dir}", model_id="my-clip", settings=a, check=False)
    assert spec.id == "my-clip" and "user" in spec.tags

    assert "my-clip" in hub_a.catalog and "my-clip" in hub_a.model_ids
    assert hub_a.model("my-clip").spec.id == "my-clip"  # really built from the saved package
    assert "my-clip" not in hub_b.catalog and "my-clip" not in hub_b.model_ids
    assert "my-clip" not in Catalog(Settings()) and "my-clip" not in Hub().model_ids  # the default home neither
    with pytest.raises(UnknownModelError, match="my-clip") as info:
        hub_b.model("my-clip")
    assert str(b.home) in str(info.value)
    with pytest.raises(UnknownModelError):
        Catalog(b).create("my-clip")
    # both see the same built-ins
    assert set(Catalog(a).ids(tag="default")) == set(Catalog(b).ids(tag="default")) == {s.id for s in builtin_specs("default")}


def test_the_service_of_another_home_answers_404(two_homes, tiny_clip_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vlmhub.service.app import create_app
    from vlmhub.service.core import VlmhubService

    a, b = two_homes
    user_hub.add_model(f"hf:{tiny_clip_dir}", model_id="my-clip", settings=a, check=False)
    with TestClient(create_app(VlmhubService(Hub(b), embedder="hashing256"))) as cb, \
            TestClient(create_app(VlmhubService(Hub(a), embedder="hashing256"))) as ca:
        r = cb.get("/v1/models/my-clip")
        assert r.status_code == 404
        err = r.json()
        assert err["type"] == "unknown-model" and err["status"] == 404 and "my-clip" in err["detail"]
        assert "my-clip" not in [m["id"] for m in cb.get("/v1/models").json()["models"]]
        r = ca.get("/v1/models/my-clip")
        assert r.status_code == 200 and r.json()["origin"] == "user" and r.json()["labeled"] is False
        assert "my-clip" in [m["id"] for m in ca.get("/v1/models").json()["models"]]
        assert cb.get("/v1/models/conse-lite0").json()["origin"] == "builtin"


def test_cli_lists_each_homes_own_models(two_homes, tiny_clip_dir, capsys):
    from vlmhub.cli.main import main

    a, b = two_homes
    assert main(["--home", str(a.home), "models", "add", f"hf:{tiny_clip_dir}", "--id", "my-clip", "--no-check"]) == 0
    capsys.readouterr()
    listed = {}
    for s in (a, b):
        assert main(["--home", str(s.home), "models", "list", "--json"]) == 0
        listed[s.home] = {m["id"] for m in json.loads(capsys.readouterr().out)}
    assert "my-clip" in listed[a.home] and "my-clip" not in listed[b.home]
    assert listed[a.home] - listed[b.home] == {"my-clip"}


def test_runtime_registration_is_per_catalog_object(two_homes):
    a, _ = two_homes
    spec = ModelSpec(id="toy-x", family="toy-color", backbone="mean-rgb", embed_dim=6, tags=("test",),
                     config=(("blind", ("red", "orange")), ("sigma", 0.25)))
    c1, c2 = Catalog(a), Catalog(a)
    c1.register(spec, lambda s, settings: ToyColorModel(s, settings))
    assert "toy-x" in c1 and "toy-x" not in c2 and c1.origin("toy-x") == "runtime"
    out = c1.create("toy-x").encode_text(["a red thing"])
    assert out.shape == (1, 6) and np.isfinite(out).all()
    with pytest.raises(ConfigError, match="already in this catalog"):
        c1.register(spec, lambda s, settings: ToyColorModel(s, settings))
    with pytest.raises(ConfigError, match="built-in"):
        c1.register(builtin_specs("test")[0], lambda s, settings: ToyColorModel(s, settings), overwrite=True)
    c1.unregister("toy-x")
    assert "toy-x" not in c1


def test_hub_refuses_a_catalog_of_another_home(two_homes):
    a, b = two_homes
    with pytest.raises(ConfigError, match="catalog is for the hub at"):
        Hub(a, catalog=Catalog(b))
    assert Hub(catalog=Catalog(b)).settings.home == b.home


_MUTABLE = (dict, list, set, bytearray)


def test_no_module_level_mutable_state():
    """Every module of the package imports (optional extras aside) and binds no dict, list or set at module
    level: constants are tuples, frozensets or read-only mappings, and state lives in objects."""
    import vlmhub

    found, unimportable = [], []
    for info in pkgutil.walk_packages(vlmhub.__path__, "vlmhub."):
        if info.name.startswith("vlmhub.hubdb.migrations."):
            continue  # Alembic's scripts: executed by Alembic on a migration, not importable modules
        try:
            mod = importlib.import_module(info.name)
        except ImportError as exc:  # an optional extra that is not installed here
            unimportable.append(f"{info.name}: {exc}")
            continue
        for name, value in vars(mod).items():
            if not name.startswith("__") and isinstance(value, _MUTABLE):
                found.append(f"{info.name}.{name} ({type(value).__name__})")
    assert not found, "module-level mutable state: " + ", ".join(found)
    assert len(unimportable) <= 3, unimportable  # only adapters whose extras are absent may fail to import
