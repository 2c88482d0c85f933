"""The hub worker on Ray (vlmhub.submission.ray_worker): shards embedded by Ray actors are stored as the very
artifacts a local worker stores, byte for byte — with 1 and 2 actors, with an actor SIGKILLed mid-shard, and for
a submitted transformers CLIP taken from upload to ready.

Runs on a local Ray cluster started once for the module (2 CPUs, a small object store). Skipped, with the reason,
only when Ray cannot be imported. The CLI's choice of Ray (flags and VLMHUB_RAY_ADDRESS) is tested without Ray.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest
from ray_testing import Delegate, DiesOnce, Killer, label_bytes, local_ray, ship_by_value

from vlmhub.submission.sandbox import SandboxLimits
from vlmhub.submission.workflow import WorkflowConfig, compute_shard, process

TOYS = ("toy-a", "toy-b", "toy-c")


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vlmhub[ray]')")
    with local_ray() as cluster:
        ship_by_value(cluster, sys.modules[__name__])
        yield cluster


def _ray_options(**kw):
    from vlmhub.labeling.ray_backend import RayOptions

    return RayOptions(**kw)


@pytest.fixture
def toy_jobs(toy_hub, tmp_path, db_url):
    """A fresh home holding the toy hub's graph, its database with the three built-in toy models (as the JSON-home
    import makes them) and one label job per 2 nodes for each; yields (db, settings, graph)."""
    from vlmhub.concepts.graph import save_graph
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.catalog import add_model
    from vlmhub.hubdb.jobs import enqueue_label_jobs, shard_nodes

    graph = toy_hub.graph()
    settings = dataclasses.replace(toy_hub.settings, home=tmp_path / "worker-home", database_url=None)
    save_graph(graph, settings, make_current=True)
    with HubDB(settings.with_(database_url=db_url)) as db:
        for m in TOYS:
            spec = json.loads((toy_hub.settings.home / "labels" / m / "manifest.json").read_text())["spec"]
            add_model(db, m, f"builtin:{m}", spec, architecture="toy-color", state="checking")
            enqueue_label_jobs(db, m, shard_nodes([n.id for n in graph.nodes], 2), graph_version=graph.version)
        yield db, db.settings, graph


def _artifacts(db) -> dict[tuple[str, int], bytes]:
    """(model, shard) → the bytes of the array its done job stored (checksum verified on load)."""
    from vlmhub.hubdb.artifacts import load_array
    from vlmhub.hubdb.jobs import list_jobs
    from vlmhub.submission.workflow import _artifact

    out = {}
    for j in list_jobs(db):
        assert j.status.value == "done", j
        arr = load_array(db.settings, _artifact(db, j.artifact_id))
        out[j.model_id, j.shard] = (arr.dtype.str, arr.shape, arr.tobytes())
    return out


def _in_process(db, settings, graph, models) -> dict[tuple[str, int], bytes]:
    """What a local worker computes for every job (the reference), with the same models."""
    from vlmhub.hubdb.jobs import list_jobs

    out = {}
    for j in list_jobs(db):
        arr = compute_shard(models[j.model_id], graph, j.nodes, batch_size=WorkflowConfig().batch_size)
        out[j.model_id, j.shard] = (arr.dtype.str, arr.shape, arr.tobytes())
    return out


@pytest.mark.slow  # Ray actors loading models: ~15-30 s on a 2-core machine
@pytest.mark.parametrize("workers", [1, 2])
def test_worker_on_ray_stores_a_local_workers_artifacts_byte_for_byte(ray_cluster, toy_hub, toy_jobs, workers):
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.hubdb.jobs import list_jobs

    db, settings, graph = toy_jobs
    steps = process(db, settings, "ray-worker", config=WorkflowConfig(ray=_ray_options(workers=workers)))
    labeled = [s for s in steps if s.kind == "labeled"]
    assert labeled and all("on Ray" in s.detail and "failed" not in s.detail for s in labeled), steps
    n_jobs = len(list_jobs(db))
    # a step holds up to two shards per actor in flight: fewer steps than shards (one per shard locally)
    assert len(labeled) < n_jobs
    # a finished shard's place is claimed again at once: a step holds more shards than are ever in flight
    per_step = [len(s.detail.split()[1].split(",")) for s in labeled]
    assert n_jobs // len(TOYS) > 2 * workers and max(per_step) > 2 * workers, (per_step, n_jobs)
    assert all(j.attempts == 1 and j.lease_holder is None for j in list_jobs(db))
    assert {get_model(db, m).state.value for m in TOYS} == {"ready"}
    assert _artifacts(db) == _in_process(db, settings, graph, {m.id: m for m in toy_hub.models(list(TOYS))})
    # published (built-in models get their label rows only): the labels `vlmhub label` made in the toy hub
    assert [s.model_id for s in steps if s.kind == "published"] == list(TOYS)
    assert label_bytes(settings, TOYS, graph) == label_bytes(toy_hub.settings, TOYS, graph)


@pytest.mark.slow  # Ray actors: ~15 s on a 2-core machine
def test_an_idle_worker_gives_its_actors_back_and_stops_when_asked(ray_cluster, toy_jobs):
    """A `--forever` worker on Ray labels everything, then, idle, holds no actor (the cluster's CPUs are free
    again), and exits when its stop event is set (what SIGTERM does in the CLI)."""
    import threading
    import time

    from vlmhub.hubdb.jobs import job_counts

    db, settings, graph = toy_jobs
    stop = threading.Event()
    steps: list = []
    config = WorkflowConfig(ray=_ray_options(workers=2))
    worker = threading.Thread(target=lambda: steps.extend(process(db, settings, "ray-forever", config=config,
                                                                   idle_exit=False, poll_s=0.2, stop=stop)))
    worker.start()
    try:
        deadline = time.monotonic() + 180
        busy = 0.0  # the fewest free CPUs seen while labeling: the actors held them
        while time.monotonic() < deadline:
            counts = job_counts(db)
            if counts["done"] == sum(counts.values()):
                break
            busy = max(busy, 2.0 - ray_cluster.available_resources().get("CPU", 0.0))
            time.sleep(0.2)
        assert job_counts(db)["done"] == sum(job_counts(db).values())
        while time.monotonic() < deadline and ray_cluster.available_resources().get("CPU", 0.0) < 2.0:
            time.sleep(0.2)
        assert ray_cluster.available_resources().get("CPU", 0.0) == 2.0  # idle: both actors are gone
        assert busy == 2.0  # ... and they held both CPUs while there was work
        assert worker.is_alive()  # still polling for work
    finally:
        stop.set()
        worker.join(timeout=60)
    assert not worker.is_alive()
    assert {s.kind for s in steps} == {"labeled", "published"}


def _load_dying(marks):
    def load(settings, model_id, source):
        from vlmhub.submission.shards import load_labeling_model

        return DiesOnce(load_labeling_model(settings, model_id, source), marks=str(marks), method="encode_image")
    return load


@pytest.mark.slow  # a Ray actor restart: ~20-40 s on a 2-core machine
def test_worker_on_ray_survives_a_killed_actor_byte_for_byte(ray_cluster, toy_hub, toy_jobs, tmp_path):
    """SIGKILL of a Ray actor's process in the middle of a shard: Ray restarts the actor (the model loads again)
    and retries the shard; the hub sees one attempt per job and the artifacts are a local worker's."""
    import os

    from vlmhub.hubdb.jobs import list_jobs
    from vlmhub.submission.ray_worker import RayShardPool
    from vlmhub.submission.workflow import work_once

    db, settings, graph = toy_jobs
    marks = tmp_path / "marks"
    marks.mkdir()
    config = WorkflowConfig(ray=_ray_options(workers=2, max_retries=2))
    pool = RayShardPool(ray_cluster, settings, config.ray, load=_load_dying(marks))
    with Killer(marks) as killer:
        try:
            while work_once(db, settings, "ray-worker", config=config, _pool=pool).kind != "idle":
                pass
        finally:
            pool.close()
    assert len(killer.killed) == 1 and killer.killed[0] != os.getpid()
    assert killer.redone  # shards were embedded after the kill
    jobs = list_jobs(db)
    assert all(j.status.value == "done" and j.attempts == 1 for j in jobs)  # Ray retried; no lease was lost
    assert _artifacts(db) == _in_process(db, settings, graph, {m.id: m for m in toy_hub.models(list(TOYS))})


class _FailsOnText(Delegate):
    def encode_text(self, captions):
        from vlmhub.errors import LabelError

        raise LabelError(f"this model cannot embed {captions[0]!r}")


def _load_failing(settings, model_id, source):
    from vlmhub.submission.shards import load_labeling_model

    return _FailsOnText(load_labeling_model(settings, model_id, source))


@pytest.mark.slow  # Ray actors: ~15 s on a 2-core machine
def test_a_shard_failing_on_ray_fails_its_job_with_the_models_error(ray_cluster, toy_jobs):
    from vlmhub.hubdb.jobs import claim, fail, job_counts, list_jobs
    from vlmhub.submission.ray_worker import RayShardPool, label_on_ray

    db, settings, graph = toy_jobs
    config = WorkflowConfig(ray=_ray_options(workers=1, max_retries=0))
    pool = RayShardPool(ray_cluster, settings, config.ray, load=_load_failing)
    try:
        out = label_on_ray(db, settings, "ray-worker", config, pool)
    finally:
        pool.close()
    assert out.failed == 2 and out.finished == 0 and len(out.shards) == 2 and "2 failed" in out.describe(), out
    failed = [j for j in list_jobs(db) if j.error]
    assert len(failed) == 2  # both shards it held, sent back to the queue with the model's own message
    assert all("on Ray" in j.error and "cannot embed" in j.error and j.status.value == "queued" for j in failed)
    assert job_counts(db)["leased"] == 0


def test_worker_uses_ray_from_the_flags_or_vlmhub_ray_address(settings, monkeypatch, capsys):
    from vlmhub.cli.main import build_parser, main
    from vlmhub.cli.submit_cmd import _worker_ray
    from vlmhub.settings import Settings

    def ray_of(*argv):
        return _worker_ray(build_parser().parse_args(["worker", *argv]), Settings(home=settings.home))

    monkeypatch.delenv("VLMHUB_RAY_ADDRESS", raising=False)
    assert ray_of() is None  # in this process
    assert ray_of("--ray").resolved_address(Settings(home=settings.home)) is None  # a local Ray
    assert ray_of("--ray", "ray://head:10001", "--ray-workers", "3") == _ray_options(address="ray://head:10001", workers=3)
    monkeypatch.setenv("VLMHUB_RAY_ADDRESS", "auto")
    assert ray_of().resolved_address(Settings(home=settings.home)) == "auto"  # configured: on Ray by itself
    assert ray_of("--no-ray") is None
    assert main(["worker", "--ray", "--no-ray"]) == 2
    assert "--no-ray" in capsys.readouterr().err
    assert main(["worker", "--ray", "--ray-workers", "0"]) == 2
    assert "whole number >= 1" in capsys.readouterr().err


@pytest.mark.slow  # the sandboxed check and transformers in the Ray actor: ~60 s on a 2-core machine
def test_submitted_clip_checked_labeled_on_ray_published(ray_cluster, toy_hub, tiny_clip_dir, db_url):
    """A transformers CLIP package from upload to ready with its shards embedded on Ray; every artifact equals the
    shard computed in this process from the same package; the published label serves selection."""
    from vlmhub.hub import Hub
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.auth import authenticate, create_token
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.models.user_hub import build_from_source
    from vlmhub.submission import pack_folder
    from vlmhub.submission.workflow import submit
    from vlmhub.tasks import Task

    settings = toy_hub.settings
    with HubDB(settings.with_(database_url=db_url)) as db:
        alice = authenticate(db, create_token(db, "alice", "submitter").token)
        submit(db, db.settings, alice, pack_folder(tiny_clip_dir), model_id="tiny-clip")
        config = WorkflowConfig(sandbox=SandboxLimits(seconds=300), zero_shot_check=False, nodes_per_shard=2,
                                ray=_ray_options(workers=1))
        steps = process(db, db.settings, "ray-worker", config=config)
        assert [s.kind for s in steps][0] == "checked" and steps[-1].kind == "published", steps
        assert get_model(db, "tiny-clip").state.value == "ready"
        rec = get_model(db, "tiny-clip")
        model = build_from_source(rec.source, model_id="tiny-clip", settings=settings)
        assert _artifacts(db) == _in_process(db, db.settings, toy_hub.graph(), {"tiny-clip": model})
    hub = Hub(settings, model_ids=[*TOYS, "tiny-clip"])
    assert "tiny-clip" in hub.labeled_model_ids()
    sel = hub.select(Task("colours", ("red", "green", "blue")), k=4)
    assert all("tiny-clip" in [m for m, *_ in c.models] for c in sel.classes)
