"""Label-job leasing on SQLite and PostgreSQL: claims, heartbeats, expiry, failures, and real worker processes
claiming concurrently that neither lose nor duplicate a job (kills: tests/test_hubdb_kills.py)."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import pytest

sa = pytest.importorskip("sqlalchemy")


def shard_result(nodes) -> np.ndarray:
    """A deterministic per-shard result (what a real labeler computes from the model and the nodes' images)."""
    return np.stack([np.frombuffer(hashlib.sha256(n.encode()).digest(), dtype=np.uint8) for n in nodes]).astype(np.float32)


@pytest.fixture
def db(settings, db_url):
    from vlmhub.hubdb import HubDB

    with HubDB(settings.with_(database_url=db_url)) as hub_db:
        yield hub_db


def _model(db, model_id="m1", state="checking"):
    from vlmhub.hubdb.catalog import add_model

    return add_model(db, model_id, f"toy:{model_id}", {"id": model_id}, architecture="toy", state=state)


NODES = [f"n{i:05d}" for i in range(10)]


def test_enqueue_is_idempotent_and_queues_the_model(db):
    from vlmhub.errors import ConfigError, StateError, UnknownModelError
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.hubdb.jobs import enqueue_label_jobs, job_counts, shard_nodes

    _model(db)
    jobs = enqueue_label_jobs(db, "m1", shard_nodes(NODES, 4), graph_version="g1")
    assert [(j.shard, j.nodes) for j in jobs] == [(0, tuple(NODES[:4])), (1, tuple(NODES[4:8])), (2, tuple(NODES[8:]))]
    assert get_model(db, "m1").state.value == "queued"
    assert enqueue_label_jobs(db, "m1", shard_nodes(NODES, 4), graph_version="g1") == []
    grown = enqueue_label_jobs(db, "m1", [["n99999"], NODES[:4]], graph_version="g1")  # only the new node's shard
    assert [(j.shard, j.nodes) for j in grown] == [(3, ("n99999",))]
    assert len(enqueue_label_jobs(db, "m1", [NODES[:4]], graph_version="g2")) == 1  # another graph version
    assert job_counts(db) == {"queued": 5, "leased": 0, "done": 0, "failed": 0}
    _model(db, "m2", state="submitted")
    with pytest.raises(StateError, match="submitted and cannot become queued"):
        enqueue_label_jobs(db, "m2", [NODES[:1]], graph_version="g1")
    with pytest.raises(UnknownModelError):
        enqueue_label_jobs(db, "nope", [NODES[:1]], graph_version="g1")
    for bad in ([[]], [[1, 2]], [[""]]):
        with pytest.raises(ConfigError, match="non-empty list of node ids"):
            enqueue_label_jobs(db, "m1", bad, graph_version="g1")
    assert job_counts(db, model_id="m2")["queued"] == 0


def test_claim_heartbeat_finish_makes_the_model_ready(db, settings):
    from vlmhub.hubdb.artifacts import check_artifacts, load_array
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, finish, heartbeat, list_jobs, shard_nodes

    _model(db)
    enqueue_label_jobs(db, "m1", shard_nodes(NODES, 5), graph_version="g1")
    a = claim(db, "w1", 30)
    b = claim(db, "w2", 30)
    assert (a.job_id, a.attempt, a.worker_id) != (b.job_id, b.attempt, b.worker_id) and a.job_id != b.job_id
    assert claim(db, "w3", 30) is None
    assert get_model(db, "m1").state.value == "labeling"
    a2 = heartbeat(db, a, 120)
    assert a2.expires_at > a.expires_at
    art = finish(db, a2, shard_result(a.nodes))
    assert get_model(db, "m1").state.value == "labeling"
    art_b = finish(db, b, shard_result(b.nodes))
    assert get_model(db, "m1").state.value == "ready"
    assert art.path.startswith("artifacts/sha256/") and (settings.home / art.path).is_file()
    assert art.shape == (5, 32) and art.dtype == "<f4" and art.graph_version == "g1"
    np.testing.assert_array_equal(load_array(settings, art_b), shard_result(b.nodes))
    assert [j.status.value for j in list_jobs(db)] == ["done", "done"]
    report = check_artifacts(db)
    assert report.ok and report.checked == 2 and report.orphan_files == ()
    assert claim(db, "w3", 30) is None  # finished shards are never handed out again


def test_heartbeat_keeps_a_short_lease_from_being_taken_over(db):
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, heartbeat, list_jobs

    _model(db)
    enqueue_label_jobs(db, "m1", [NODES[:3]], graph_version="g1")
    lease = claim(db, "w1", 1.0)
    for _ in range(5):  # 5 x 0.3 s: well past the original 1 s lease, renewed each time
        time.sleep(0.3)
        lease = heartbeat(db, lease, 1.0)
        assert claim(db, "w2", 10) is None
    (job,) = list_jobs(db)
    assert (job.status.value, job.lease_holder, job.attempts) == ("leased", "w1", 1)


def test_expired_lease_is_reclaimed_and_the_old_holder_is_locked_out(db):
    from vlmhub.errors import LeaseLostError
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, fail, finish, heartbeat, list_jobs

    _model(db)
    enqueue_label_jobs(db, "m1", [NODES[:3]], graph_version="g1")
    old = claim(db, "w-old", 0.2)
    assert claim(db, "w-new", 10) is None  # still leased
    time.sleep(0.4)
    new = claim(db, "w-new", 10)
    assert (new.job_id, new.attempt) == (old.job_id, 2)
    for act in (lambda: heartbeat(db, old), lambda: finish(db, old, shard_result(old.nodes)), lambda: fail(db, old, "x")):
        with pytest.raises(LeaseLostError, match="another worker took it over"):
            act()
    with db.session() as s:
        assert s.scalar(sa.text("SELECT count(*) FROM label_artifacts")) == 0  # the late result left no row
    finish(db, new, shard_result(new.nodes))
    (job,) = list_jobs(db)
    assert (job.status.value, job.attempts, job.lease_holder) == ("done", 2, None)


def test_fail_retries_then_gives_up(db):
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, fail, list_jobs

    _model(db)
    enqueue_label_jobs(db, "m1", [NODES[:2]], graph_version="g1", max_attempts=2)
    first = fail(db, claim(db, "w", 10), "CUDA out of memory")
    assert (first.status.value, first.attempts, first.error) == ("queued", 1, "CUDA out of memory")
    second = fail(db, claim(db, "w", 10), "again")
    assert (second.status.value, second.attempts) == ("failed", 2)
    assert claim(db, "w", 10) is None and get_model(db, "m1").state.value == "labeling"
    enqueue_label_jobs(db, "m1", [NODES[2:4]], graph_version="g1", max_attempts=1)
    claim(db, "w", 0.1)
    time.sleep(0.3)
    assert claim(db, "w", 10) is None  # the expired lease had no attempts left
    assert [j.status.value for j in list_jobs(db)] == ["failed", "failed"]
    assert "lease expired" in list_jobs(db)[1].error


def test_artifact_check_reports_damage_and_orphans(db, settings):
    from vlmhub.hubdb.artifacts import check_artifacts, store_array
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, finish

    _model(db)
    enqueue_label_jobs(db, "m1", [NODES[:2], NODES[2:4], NODES[4:6]], graph_version="g1")
    arts = [finish(db, claim(db, "w", 10), shard_result(NODES[2 * i:2 * i + 2])) for i in range(3)]
    orphan = store_array(settings, np.arange(3))  # a file whose row was never written (crash before commit)
    (settings.artifacts_dir / ".tmp-half").write_bytes(b"partial")
    p0, p1 = settings.home / arts[0].path, settings.home / arts[1].path
    p0.write_bytes(p0.read_bytes()[:-1] + b"\x00")
    p1.unlink()
    r = check_artifacts(db)
    assert not r.ok and r.checked == 3
    assert r.bad_checksum == (arts[0].path,) and r.missing_files == (arts[1].path,)
    assert r.orphan_files == (orphan.path,) and r.partial_files == ("artifacts/.tmp-half",)


# -- real worker processes --------------------------------------------------------------------------------------


def _worker_main(home: str, url: str | None, worker_id: str, lease_s: float, log_dir: str, max_jobs: int | None,
                 idle_exit: bool, delay: float) -> None:
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.jobs import run_worker
    from vlmhub.settings import Settings

    log = Path(log_dir) / f"{worker_id}.log"

    def compute(lease):
        with open(log, "a") as fh:  # one line per claim, flushed before the work: a kill leaves the claim on record
            fh.write(f"{lease.job_id} {lease.attempt}\n")
        time.sleep(delay)
        return shard_result(lease.nodes)

    with HubDB(Settings(home=home, database_url=url)) as db:
        run_worker(db, worker_id, compute, lease_s=lease_s, heartbeat_s=lease_s / 4, poll_s=0.05, idle_exit=idle_exit,
                   max_jobs=max_jobs)


def _claims(log_dir: Path) -> list[tuple[int, int]]:
    out = []
    for f in log_dir.glob("*.log"):
        out += [tuple(map(int, line.split())) for line in f.read_text().splitlines() if line]
    return out


def _start(ctx, db, log_dir, worker_id, *, lease_s=5.0, max_jobs=None, idle_exit=True, delay=0.01):
    p = ctx.Process(target=_worker_main, args=(str(db.settings.home), db.settings.database_url, worker_id, lease_s,
                                               str(log_dir), max_jobs, idle_exit, delay))
    p.start()
    return p


def _expected_artifacts_are_exact(db, jobs) -> None:
    from vlmhub.hubdb.artifacts import check_artifacts, load_array
    from vlmhub.hubdb.schema import LabelArtifactRow, LabelJobRow

    with db.session() as s:
        rows = s.execute(sa.select(LabelJobRow, LabelArtifactRow).join(
            LabelArtifactRow, LabelJobRow.artifact_id == LabelArtifactRow.id)).all()
        n_art = s.scalar(sa.select(sa.func.count()).select_from(LabelArtifactRow))
    assert len(rows) == len(jobs) == n_art  # every job done exactly once: one artifact each, none extra
    from vlmhub.hubdb.artifacts import ArtifactRecord

    for job, art in rows:
        np.testing.assert_array_equal(load_array(db.settings, ArtifactRecord.from_row(art)), shard_result(job.nodes))
    report = check_artifacts(db)
    assert report.ok and report.orphan_files == (), report.to_dict()


def test_concurrent_worker_processes_neither_lose_nor_duplicate_jobs(db, tmp_path):
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.hubdb.jobs import enqueue_label_jobs, job_counts, shard_nodes

    nodes = [f"c{i:04d}" for i in range(60)]
    jobs = []
    for m in ("m1", "m2"):
        _model(db, m)
        jobs += enqueue_label_jobs(db, m, shard_nodes(nodes, 3), graph_version="g1")
    ctx = mp.get_context("spawn")
    procs = [_start(ctx, db, tmp_path, f"w{i}") for i in range(3)]
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    claims = _claims(tmp_path)
    assert sorted(j for j, _ in claims) == sorted(j.id for j in jobs)  # each job claimed once, by one worker
    assert {a for _, a in claims} == {1}
    assert len({f.name for f in tmp_path.glob("*.log")}) >= 2  # the work really was shared
    assert job_counts(db) == {"queued": 0, "leased": 0, "done": 40, "failed": 0}
    assert get_model(db, "m1").state.value == get_model(db, "m2").state.value == "ready"
    _expected_artifacts_are_exact(db, jobs)
