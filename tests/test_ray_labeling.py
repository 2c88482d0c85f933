"""Labeling on Ray (vlmhub.labeling.ray_backend): labels byte for byte those of the local labeler.

Runs on a local Ray cluster started once for the module (2 CPUs, a small object store). Skipped, with the
reason, only when Ray cannot be imported.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from many_captions import with_many_captions
from ray_testing import Delegate, DiesOnce, Killer, label_bytes, local_ray, ship_by_value

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vlmhub[ray]')")


@pytest.fixture(scope="module")
def ray_cluster():
    with local_ray() as cluster:
        yield cluster


class _Recorded(Delegate):
    """A model (delegated to; ``marks``) that leaves ``marks/<method>-<pid>-<uid>`` behind for every text and
    trunk forward: which processes computed the labels."""

    def _mark(self, method):
        import os
        import uuid
        from pathlib import Path

        (Path(self.marks) / f"{method}-{os.getpid()}-{uuid.uuid4().hex[:6]}").touch()

    def encode_text(self, texts):
        self._mark("encode_text")
        return self.inner.encode_text(texts)

    def image_features(self, pixels):
        self._mark("image_features")
        return self.inner.image_features(pixels)


def _pids(marks, method):
    return [int(p.name.split("-")[1]) for p in marks.glob(f"{method}-*")]


@pytest.mark.slow  # starting Ray and its workers takes longer than 20 s on a 2-core machine
@pytest.mark.parametrize("concurrency", [1, 2])
def test_ray_labels_equal_local_labels_byte_for_byte(ray_cluster, toy_hub, tmp_path, concurrency):
    """Captions and images both computed by Ray workers (the driver runs no text or trunk forward), several
    caption chunks per model: the labels are byte for byte the local ones."""
    import os
    import sys

    from vlmhub.labeling.labeler import CAPTION_CHUNK, label_models
    from vlmhub.labeling.ray_backend import label_models_ray

    ship_by_value(ray, sys.modules[__name__])
    ids = ["toy-a", "toy-b", "toy-c"]
    graph = with_many_captions(toy_hub.graph())
    local = label_models(toy_hub.models(ids), graph, toy_hub.settings, progress=False)  # the new captions, locally
    assert all(n == 600 for n in local.new_captions.values())
    marks = tmp_path / "marks"
    marks.mkdir()
    other = dataclasses.replace(toy_hub.settings, home=tmp_path / f"ray-hub-{concurrency}")
    report = label_models_ray([_Recorded(m, marks=str(marks)) for m in toy_hub.models(ids)], graph, other,
                              concurrency=concurrency, progress=False)
    assert set(report.new_images) == set(ids) and all(n == len(graph.image_ids()) for n in report.new_images.values())
    assert all(n == len(graph.nodes) for n in report.new_captions.values())
    text, trunk = _pids(marks, "encode_text"), _pids(marks, "image_features")
    chunks_per_model = -(-len(graph.nodes) // CAPTION_CHUNK)
    assert len(text) == len(ids) * chunks_per_model and os.getpid() not in text  # every caption chunk, on Ray
    assert trunk and os.getpid() not in trunk
    want, got = label_bytes(toy_hub.settings, ids, graph), label_bytes(other, ids, graph)
    assert got == want
    again = label_models_ray(toy_hub.models(ids), graph, other, concurrency=concurrency, progress=False)
    assert sorted(again.skipped) == ids  # complete labels are not recomputed


@pytest.mark.slow  # two labelings of the toy hub on the WordNet graph, one of them on Ray
def test_cli_label_ray_writes_the_labels_of_cli_label(ray_cluster, settings, color_data, tmp_path, capsys):
    """`vlmhub label --ray` (2 Ray workers) stores labels byte for byte those of `vlmhub label`; its bar counts shards."""
    from vlmhub.cli.main import main
    from vlmhub.concepts.graph import current_graph

    local, on_ray = settings.home, tmp_path / "ray-home"
    argv = ["label", "--models", "toy-a,toy-b,toy-c", "--samples", str(color_data["samples"])]
    assert main(["--home", str(local), *argv, "-q"]) == 0
    capsys.readouterr()
    assert main(["--home", str(on_ray), *argv, "--ray", "--ray-workers", "2"]) == 0
    err = capsys.readouterr().err
    assert "shard" in err and "captions" in err  # the progress bars over caption chunks and shards
    graph = current_graph(settings)
    ray_settings = dataclasses.replace(settings, home=on_ray)
    assert current_graph(ray_settings).version == graph.version
    ids = ["toy-a", "toy-b", "toy-c"]
    assert label_bytes(ray_settings, ids, graph) == label_bytes(settings, ids, graph)
    # a second run finds everything labeled and computes nothing
    assert main(["--home", str(on_ray), *argv, "--ray", "--json", "-q"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["already_labeled"]) == ids


def test_ray_address_comes_from_the_option_then_vlmhub_ray_address(settings, monkeypatch):
    from vlmhub.cli.main import _ray_options, build_parser
    from vlmhub.errors import ConfigError
    from vlmhub.labeling.ray_backend import RayOptions
    from vlmhub.settings import Settings

    def opts(*argv):
        args = build_parser().parse_args(["label", *argv])
        args.settings = Settings(home=settings.home)
        return _ray_options(args)

    monkeypatch.delenv("VLMHUB_RAY_ADDRESS", raising=False)
    assert opts() is None  # no --ray: the local labeler
    assert opts("--ray").resolved_address(Settings(home=settings.home)) is None  # a local Ray for the command
    assert opts("--ray", "ray://head:10001", "--ray-workers", "3") == RayOptions("ray://head:10001", workers=3)
    monkeypatch.setenv("VLMHUB_RAY_ADDRESS", "auto")
    assert opts("--ray").resolved_address(Settings(home=settings.home)) == "auto"
    assert opts("--ray", "ray://other:10001").resolved_address(Settings(home=settings.home)) == "ray://other:10001"
    with pytest.raises(ConfigError, match="whole number >= 1"):
        opts("--ray", "--ray-workers", "0")


@pytest.mark.slow  # Ray Data with a worker restart: ~20-30 s on a 2-core machine
@pytest.mark.parametrize("method", ["image_features", "encode_text"])
def test_ray_labels_survive_a_killed_worker_byte_for_byte(ray_cluster, toy_hub, tmp_path, method):
    """SIGKILL of a Ray worker process in the middle of an image chunk or a caption chunk: the actor restarts,
    the chunk is retried and the labels are byte for byte the local ones."""
    import os
    import sys

    from vlmhub.labeling.labeler import label_models
    from vlmhub.labeling.ray_backend import label_models_ray

    ship_by_value(ray, sys.modules[__name__])
    ids = ["toy-a", "toy-b", "toy-c"]
    graph = with_many_captions(toy_hub.graph())
    label_models(toy_hub.models(ids), graph, toy_hub.settings, progress=False)  # the reference: the new captions, locally
    marks = tmp_path / "marks"
    marks.mkdir()
    models = [DiesOnce(m, marks=str(marks), method=method) for m in toy_hub.models(ids)]
    assert len(graph.image_ids()) > 2 * toy_hub.settings.batch_size  # several chunks per trunk: a kill mid-run
    other = dataclasses.replace(toy_hub.settings, home=tmp_path / "ray-hub")
    with Killer(marks) as killer:
        label_models_ray(models, graph, other, concurrency=2, max_retries=2, progress=False)
    assert len(killer.killed) == 1 and killer.killed[0] != os.getpid()
    assert killer.redone  # the killed worker's chunk was computed again after the kill
    assert label_bytes(other, ids, graph) == label_bytes(toy_hub.settings, ids, graph)


def test_missing_ray_names_the_extra(monkeypatch):
    from hide_imports import hide_modules
    from vlmhub.errors import MissingExtraError
    from vlmhub.labeling.ray_backend import import_ray

    hide_modules(monkeypatch, "ray")
    with pytest.raises(MissingExtraError, match=r"pip install 'vlmhub\[ray\]'"):
        import_ray()
