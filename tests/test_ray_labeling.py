"""Labeling on Ray (vlmhub.labeling.ray_backend): labels byte for byte those of the local labeler.

Runs on a local Ray cluster started once for the module (2 CPUs, a small object store). Skipped, with the
reason, only when Ray cannot be imported.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vlmhub[ray]')")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    yield ray
    ray.shutdown()


def _label_bytes(settings, model_ids, graph):
    from vlmhub.labeling.labels import LabelStore, caption_key

    store = LabelStore(settings)
    out = {}
    for mid in model_ids:
        lab = store.label(mid)
        assert lab.is_complete(graph.version)
        img = lab.images.get(graph.image_ids())
        cap = lab.captions.get([caption_key(c) for c in graph.captions()])
        out[mid] = (img.dtype.str, img.shape, img.tobytes(), cap.tobytes())
    return out


@pytest.mark.slow  # starting Ray and its workers takes longer than 20 s on a 2-core machine
@pytest.mark.parametrize("concurrency", [1, 2])
def test_ray_labels_equal_local_labels_byte_for_byte(ray_cluster, toy_hub, tmp_path, concurrency):
    from vlmhub.labeling.ray_backend import label_models_ray

    ids = ["toy-a", "toy-b", "toy-c"]
    graph = toy_hub.graph()
    other = dataclasses.replace(toy_hub.settings, home=tmp_path / f"ray-hub-{concurrency}")
    report = label_models_ray(toy_hub.models(ids), graph, other, concurrency=concurrency, progress=False)
    assert set(report.new_images) == set(ids) and all(n == len(graph.image_ids()) for n in report.new_images.values())
    want, got = _label_bytes(toy_hub.settings, ids, graph), _label_bytes(other, ids, graph)
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
    assert "shard" in err  # the progress bar over shards
    graph = current_graph(settings)
    ray_settings = dataclasses.replace(settings, home=on_ray)
    assert current_graph(ray_settings).version == graph.version
    ids = ["toy-a", "toy-b", "toy-c"]
    assert _label_bytes(ray_settings, ids, graph) == _label_bytes(settings, ids, graph)
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


class _DiesOnce:
    """A toy model (delegated to) whose first trunk forward after some chunk was embedded anywhere publishes its
    worker's pid in ``marks/victim`` and waits there to be killed; every other forward just runs."""

    def __init__(self, inner, marks):
        self.__dict__.update(inner=inner, marks=str(marks))

    def __getattr__(self, name):
        if name in ("inner", "marks"):  # while unpickling, before __dict__ is filled
            raise AttributeError(name)
        return getattr(self.inner, name)

    def image_features(self, pixels):
        import os
        import time
        import uuid
        from pathlib import Path

        marks = Path(self.marks)
        if any(marks.glob("done-*")) and not (marks / "victim").exists():
            tmp = marks / f"victim-{os.getpid()}"
            tmp.write_text(str(os.getpid()))
            try:
                os.link(tmp, marks / "victim")  # exactly one forward becomes the victim
            except FileExistsError:
                pass
            else:
                time.sleep(120)  # killed here by the test
        out = self.inner.image_features(pixels)
        (marks / f"done-{os.getpid()}-{uuid.uuid4().hex[:6]}").touch()
        return out


@pytest.mark.slow  # Ray Data with a worker restart: ~20-30 s on a 2-core machine
def test_ray_labels_survive_a_killed_worker_byte_for_byte(ray_cluster, toy_hub, tmp_path):
    """SIGKILL of a Ray worker process in the middle of a chunk: the actor restarts, the chunk is retried and
    the labels are byte for byte the local ones."""
    import os
    import signal
    import sys
    import threading
    import time

    from vlmhub.labeling.ray_backend import label_models_ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    ids = ["toy-a", "toy-b", "toy-c"]
    graph = toy_hub.graph()
    marks = tmp_path / "marks"
    marks.mkdir()
    models = [_DiesOnce(m, marks) for m in toy_hub.models(ids)]
    assert len(graph.image_ids()) > 2 * toy_hub.settings.batch_size  # several chunks per trunk: a kill mid-run
    killed: list[int] = []
    before: set = set()  # chunks embedded when the worker was killed

    def killer():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (marks / "victim").exists():
            time.sleep(0.05)
        if (marks / "victim").exists():
            pid = int((marks / "victim").read_text())
            before.update(marks.glob("done-*"))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    other = dataclasses.replace(toy_hub.settings, home=tmp_path / "ray-hub")
    label_models_ray(models, graph, other, concurrency=2, max_retries=2, progress=False)
    thread.join(timeout=5)
    assert len(killed) == 1 and killed[0] != os.getpid()
    assert set(marks.glob("done-*")) - before  # the killed worker's chunk was embedded again after the kill
    assert _label_bytes(other, ids, graph) == _label_bytes(toy_hub.settings, ids, graph)


def test_missing_ray_names_the_extra(monkeypatch):
    from hide_imports import hide_modules
    from vlmhub.errors import MissingExtraError
    from vlmhub.labeling.ray_backend import import_ray

    hide_modules(monkeypatch, "ray")
    with pytest.raises(MissingExtraError, match=r"pip install 'vlmhub\[ray\]'"):
        import_ray()
