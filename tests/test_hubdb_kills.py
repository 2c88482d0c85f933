"""Kill -9 of real worker processes at random points: leases expire, other workers resume from the last finished
shard, and the final label artifacts are byte-identical to an uninterrupted run (both backends).

The workers are separate Python processes (``tests/hubdb_worker.py``) computing each shard with a toy model
(:mod:`vlmhub.models.toy`); the uninterrupted reference run labels the same jobs in a second home on SQLite."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sa = pytest.importorskip("sqlalchemy")

WORKER = Path(__file__).with_name("hubdb_worker.py")
MODELS = ("toy-a", "toy-b", "toy-c")
NODES = [f"n{i:08d}" for i in range(40)]
LEASE_S = 2.0


@pytest.fixture
def db(settings, db_url):
    from vlmhub.hubdb import HubDB

    with HubDB(settings.with_(database_url=db_url)) as hub_db:
        yield hub_db


def _enqueue(db):
    from vlmhub.hubdb.catalog import add_model
    from vlmhub.hubdb.jobs import enqueue_label_jobs, shard_nodes

    jobs = []
    for m in MODELS:
        add_model(db, m, f"builtin:{m}", {"id": m}, architecture="toy-color", state="checking")
        jobs += enqueue_label_jobs(db, m, shard_nodes(NODES, 2), graph_version="g1", max_attempts=20)
    return jobs


def _artifacts(db) -> dict[tuple[str, int], bytes]:
    """(model, shard) -> the bytes of its artifact file, for every done job (checksums verified)."""
    from vlmhub.hubdb.artifacts import ArtifactRecord, home_path, load_array
    from vlmhub.hubdb.schema import LabelArtifactRow, LabelJobRow

    with db.session() as s:
        rows = s.execute(sa.select(LabelJobRow, LabelArtifactRow).join(
            LabelArtifactRow, LabelJobRow.artifact_id == LabelArtifactRow.id)).all()
        n_art = s.scalar(sa.select(sa.func.count()).select_from(LabelArtifactRow))
    assert n_art == len(rows)  # no artifact row besides the jobs' own
    out = {}
    for job, art in rows:
        load_array(db.settings, ArtifactRecord.from_row(art))  # verifies the sha256
        out[job.model_id, job.shard] = home_path(db.settings, art.path).read_bytes()
    return out


def _start(db, log_dir: Path, worker_id: str, delay: float) -> subprocess.Popen:
    args = [sys.executable, str(WORKER), str(db.settings.home), db.settings.database_url or "", worker_id,
            str(log_dir / f"{worker_id}.log"), str(LEASE_S), str(delay)]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _claims_of(log: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in log.read_text().splitlines() if line]


def _claims(log_dir: Path) -> list[tuple[int, int]]:
    return [c for f in log_dir.glob("*.log") for c in _claims_of(f)]


def _reference(tmp_path, settings) -> dict[tuple[str, int], bytes]:
    """The uninterrupted run: the same jobs labeled by one worker (in this process) in a fresh SQLite home."""
    from hubdb_worker import toy_shard
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.jobs import job_counts, run_worker

    with HubDB(settings.with_(home=tmp_path / "reference", database_url=None)) as ref:
        jobs = _enqueue(ref)
        stats = run_worker(ref, "ref", lambda lease: toy_shard(lease.model_id, lease.nodes), lease_s=60)
        assert stats.finished == len(jobs) and job_counts(ref)["done"] == len(jobs)
        return _artifacts(ref)


def test_sigkilled_workers_resume_and_labels_are_byte_identical_to_an_uninterrupted_run(db, tmp_path, settings):
    from vlmhub.hubdb.artifacts import check_artifacts
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.hubdb.jobs import job_counts, list_jobs

    reference = _reference(tmp_path, settings)
    jobs = _enqueue(db)
    assert len(reference) == len(jobs) == 60
    logs = tmp_path / "logs"
    logs.mkdir()
    rng = random.Random(20261203)
    kills: list[dict] = []
    rounds = 0
    while len(kills) < 6 and rounds < 12 and job_counts(db)["done"] < len(jobs):
        rounds += 1
        procs = {f"r{rounds}w{i}": _start(db, logs, f"r{rounds}w{i}", delay=0.03) for i in range(2)}
        # each worker is killed at its own random moment after its first claim: mid-claim, mid-compute, mid-write
        # of the artifact file or mid-commit, wherever that moment falls
        kill_at: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while procs and time.monotonic() < deadline:
            for wid, p in list(procs.items()):
                if p.poll() is not None:  # it ran out of claimable work before its kill: a clean exit
                    assert p.returncode == 0, p.stderr.read()
                    del procs[wid]
                elif wid not in kill_at and (logs / f"{wid}.log").exists():
                    kill_at[wid] = time.monotonic() + rng.uniform(0.0, 0.6)
                elif wid in kill_at and time.monotonic() >= kill_at[wid]:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(30)
                    assert p.returncode == -signal.SIGKILL
                    held = [j.id for j in list_jobs(db, status="leased") if j.lease_holder == wid]
                    kills.append({"worker": wid, "held": held, "done": job_counts(db)["done"]})
                    del procs[wid]
            time.sleep(0.005)
        assert not procs, "a worker neither finished nor got killed within 60 s"
    assert len(kills) >= 5, kills
    assert any(k["held"] for k in kills), "no kill landed while a worker held a lease"  # (seen right after the kill)
    assert job_counts(db)["done"] < len(jobs)  # the kills really left work behind

    for _ in range(10):  # restart workers until every job is done (killed leases expire after LEASE_S)
        finishers = [_start(db, logs, f"finish{_}w{i}", delay=0.0) for i in range(2)]
        for p in finishers:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        if job_counts(db)["done"] == len(jobs):
            break
        time.sleep(LEASE_S)
    assert job_counts(db) == {"queued": 0, "leased": 0, "done": len(jobs), "failed": 0}
    assert {get_model(db, m).state.value for m in MODELS} == {"ready"}

    final = {j.id: j.attempts for j in list_jobs(db)}
    claims = _claims(logs)
    killed = {k["worker"] for k in kills}
    by_worker = {(j, a): f.stem for f in logs.glob("*.log") for j, a in _claims_of(f)}
    assert len(by_worker) == len(claims)  # no (job, attempt) was claimed twice
    for (job, attempt), worker in by_worker.items():
        assert attempt <= final[job]
        if attempt < final[job]:  # an attempt was superseded only because its worker was killed holding it
            assert worker in killed, (job, attempt, worker)
    redone = sum(n - 1 for n in final.values())
    assert 1 <= redone <= len(kills)  # each kill cost at most the one shard its worker held; finished ones stayed
    assert len(jobs) <= len(claims) <= sum(final.values())  # a kill between claim and log line leaves one unlogged

    got = _artifacts(db)
    assert got.keys() == reference.keys()
    assert [k for k in reference if got[k] != reference[k]] == []  # byte-identical, shard by shard
    ref_files = sorted(p.relative_to(tmp_path / "reference").as_posix()
                       for p in (tmp_path / "reference" / "artifacts").rglob("*.npy"))
    got_files = sorted(p.relative_to(settings.home).as_posix() for p in settings.artifacts_dir.rglob("*.npy"))
    assert got_files == ref_files  # the same content-addressed files, no orphans left by the kills
    report = check_artifacts(db)
    assert report.ok and report.orphan_files == (), report.to_dict()
    print(f"\n{len(kills)} kills survived ({sum(bool(k['held']) for k in kills)} mid-job); "
          f"{redone} shards redone; partial files left: {report.partial_files}")
