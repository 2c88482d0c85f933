"""Damaged hub files: a clean one-line VlmhubError naming the file and the fix, or self-healing; never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vlmhub.errors import VlmhubError
from vlmhub.tasks import Task


def _task():
    return Task("color-task", ("red", "green", "blue"), domain="color swatch")


def _ranking(hub):
    from vlmhub.hub import Hub

    sel = Hub(hub.settings, model_ids=list(hub.model_ids)).select(_task(), k=2)
    return [tuple(m for m, *_ in c.models) for c in sel.classes]


def _damage(path, how):
    if how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: max(1, len(data) // 2)])
    elif how == "random":
        path.write_bytes(np.random.default_rng(0).bytes(300))
    elif how == "wrong_type":
        path.write_text(json.dumps(["not", "an", "object"]))
    elif how == "deleted":
        path.unlink()


HOWS = ["truncated", "random", "wrong_type", "deleted"]


def _files(home, kind):
    if kind == "current":
        return [home / "graphs" / "current.json"]
    if kind == "graph":
        return [p for p in (home / "graphs").glob("*.json") if p.name != "current.json"]
    if kind == "manifest":
        return [home / "labels" / "toy-a" / "manifest.json"]
    if kind == "label_index":
        return [home / "labels" / "toy-a" / "images" / "index.json"]
    if kind == "label_shard":
        return sorted((home / "labels" / "toy-a" / "images").glob("shard-*.npz"))[:1]
    if kind == "fastpath":
        return sorted((home / "cache" / "fastpath").rglob("ranks.npy"))[:1]
    if kind == "textcache":
        return sorted((home / "cache" / "text").rglob("vectors.sqlite"))[:1]
    raise AssertionError(kind)


LABEL_KINDS = ["current", "graph", "manifest", "label_index", "label_shard"]
CACHE_KINDS = ["fastpath", "textcache"]


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("kind", LABEL_KINDS + CACHE_KINDS)
def test_damaged_hub_file_gives_clean_error_or_heals(toy_hub, kind, how):
    before = _ranking(toy_hub)  # also fills the fast-path and text caches
    files = _files(toy_hub.settings.home, kind)
    assert files, kind
    if how == "wrong_type" and files[0].suffix != ".json":
        how = "random"
    for f in files:
        _damage(f, how)
    try:
        after = _ranking(toy_hub)
    except VlmhubError as exc:
        msg = str(exc)
        assert kind in LABEL_KINDS, f"a damaged cache must heal, got: {msg}"
        assert "\n" not in msg and "vlmhub label" in msg, msg
        if how != "deleted":
            assert files[0].name in msg or str(files[0].parent) in msg, msg
        return
    assert after == before  # healed (caches) or harmless (a deleted label file that nothing needed)
    if kind in CACHE_KINDS:
        assert _ranking(toy_hub) == before  # and stays healed


@pytest.mark.parametrize("how", ["truncated", "wrong_type"])
def test_cli_damaged_manifest_is_one_line_exit_2(toy_hub, how):
    _damage(toy_hub.settings.home / "labels" / "toy-a" / "manifest.json", how)
    task = toy_hub.settings.home.parent / "task.json"
    task.write_text(json.dumps({"name": "t", "classes": ["red", "green"]}))
    r = subprocess.run([sys.executable, "-m", "vlmhub.cli.main", "select", str(task), "--models", "toy-a,toy-b,toy-c"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "manifest.json" in r.stderr and "vlmhub label --force toy-a" in r.stderr


def test_schema_checks_name_file_and_field(tmp_path):
    from vlmhub.storage.schema import check_embedding_index, check_graph_pointer, check_label_manifest

    with pytest.raises(VlmhubError, match=r"x\.json.*'shards' is missing.*Run it"):
        check_embedding_index({"format": "vlmhub.embeddings/1", "dim": 3}, tmp_path / "x.json", fix="Run it.")
    with pytest.raises(VlmhubError, match="'version' is a number"):
        check_graph_pointer({"version": 3}, "current.json")
    with pytest.raises(VlmhubError, match=r"graphs\['v'\]"):
        check_label_manifest({"format": "vlmhub.label/1", "graphs": {"v": []}}, "manifest.json", fix="x")
