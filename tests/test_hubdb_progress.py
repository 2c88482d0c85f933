"""Label-job progress on SQLite and PostgreSQL: :func:`vlmhub.hubdb.jobs.job_progress` counted exactly for two models
claimed by two workers (one finish, one failure, one expired lease), and the same numbers in ``vlmhub db jobs``
(text and JSON), ``GET /v1/jobs`` and the "labeling now" box of the web catalog, which disappears when every job
is done. A home without a database: the command names ``vlmhub db upgrade``, the route answers empty progress, and
neither creates one."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest

sa = pytest.importorskip("sqlalchemy")

NODES = [f"n{i:05d}" for i in range(10)]


def _result(nodes) -> np.ndarray:
    return np.arange(len(nodes) * 3, dtype=np.float32).reshape(len(nodes), 3)


def _run(capsys, *argv) -> tuple[int, str, str]:
    from vlmhub.cli.main import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def hub_settings(toy_hub, db_url):
    """The toy hub's settings on this test's backend (SQLite in the home, or a throwaway PostgreSQL database)."""
    return toy_hub.settings.with_(database_url=db_url)


@pytest.fixture
def db(hub_settings):
    from vlmhub.hubdb import HubDB

    with HubDB(hub_settings) as hub_db:
        yield hub_db


@pytest.fixture
def client(hub_settings):
    from fastapi.testclient import TestClient

    from vlmhub.hub import Hub
    from vlmhub.service import VlmhubService, create_app

    hub = Hub(hub_settings, model_ids=["toy-a", "toy-b", "toy-c"])
    with TestClient(create_app(VlmhubService(hub, embedder="hashing256"))) as c:
        yield c


def _scenario(db):
    """m-alpha: 5 shards on g1 (w1 holds two and finished one of them, w2 holds one); m-beta: 3 shards on g1
    (w2 failed one for good, w3's lease expired on another) and 1 shard on g2 (queued). Returns the live leases."""
    from vlmhub.hubdb.catalog import add_model
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, fail, finish, heartbeat, shard_nodes

    for mid in ("m-alpha", "m-beta"):
        add_model(db, mid, f"toy:{mid}", {"id": mid}, architecture="toy", state="checking")
    enqueue_label_jobs(db, "m-alpha", shard_nodes(NODES, 2), graph_version="g1")
    enqueue_label_jobs(db, "m-beta", shard_nodes(NODES, 4), graph_version="g1")
    enqueue_label_jobs(db, "m-beta", [NODES[:1]], graph_version="g2")
    w1a = claim(db, "w1", 300, model_id="m-alpha")
    w1b = claim(db, "w1", 300, model_id="m-alpha")
    w1c = claim(db, "w1", 300, model_id="m-alpha")
    finish(db, w1a, _result(w1a.nodes))
    w1b = heartbeat(db, w1b, 600)  # w1's latest heartbeat and lease expiry
    w2a = claim(db, "w2", 300, model_id="m-alpha")
    fail(db, w1c, "CUDA out of memory")  # retried: queued again
    w2b = claim(db, "w2", 300, model_id="m-beta")
    fail(db, w2b, "weights are corrupt", retry=False)
    w2c = claim(db, "w2", 200, model_id="m-beta")
    claim(db, "w3", 0.1, model_id="m-beta")
    time.sleep(0.4)  # w3's lease runs out: counted as leased and expired, w3 is no active worker
    return {"w1": [w1b], "w2": [w2a, w2c]}


def _held_rows(db, worker: str):
    from vlmhub.hubdb.schema import LabelJobRow

    with db.session() as s:
        return s.scalars(sa.select(LabelJobRow).where(LabelJobRow.lease_holder == worker)).all()


def test_job_progress_counts_per_model_graph_and_worker(db):
    from vlmhub.hubdb.jobs import job_progress
    from vlmhub.hubdb.progress import StatusCounts

    leases = _scenario(db)
    p = job_progress(db)
    assert [(m.model_id, m.graph_version, m.counts) for m in p.models] == [
        ("m-alpha", "g1", StatusCounts(queued=2, leased=2, done=1, failed=0, expired=0)),
        ("m-beta", "g1", StatusCounts(queued=0, leased=2, done=0, failed=1, expired=1)),
        ("m-beta", "g2", StatusCounts(queued=1, leased=0, done=0, failed=0, expired=0)),
    ]
    assert p.total == StatusCounts(queued=3, leased=4, done=1, failed=1, expired=1)
    assert (p.total.total, p.total.fraction, p.active) == (9, 1 / 9, True)
    assert (p.models[0].counts.total, p.models[0].counts.fraction) == (5, 0.2)
    assert [m.model_id + "@" + m.graph_version for m in p.labeling] == ["m-alpha@g1", "m-beta@g1", "m-beta@g2"]
    assert [(w.worker_id, w.jobs, w.models) for w in p.workers] == [("w1", 1, ("m-alpha",)),
                                                                    ("w2", 2, ("m-alpha", "m-beta"))]
    for w in p.workers:
        rows = _held_rows(db, w.worker_id)
        assert w.last_heartbeat == max(r.updated_at for r in rows)
        assert w.lease_expires_at == max(lease.expires_at for lease in leases[w.worker_id])
    assert p.workers[0].lease_expires_at == leases["w1"][0].expires_at  # the heartbeat's renewed expiry
    d = p.to_dict()
    assert d["total"] == {"queued": 3, "leased": 4, "done": 1, "failed": 1, "expired": 1, "total": 9, "fraction": 1 / 9}
    assert d["models"][1] == {"model_id": "m-beta", "graph_version": "g1", "queued": 0, "leased": 2, "done": 0,
                              "failed": 1, "expired": 1, "total": 3, "fraction": 0.0}
    assert d["workers"][1] == {"worker_id": "w2", "jobs": 2, "models": ["m-alpha", "m-beta"],
                               "last_heartbeat": p.workers[1].last_heartbeat.isoformat(),
                               "lease_expires_at": leases["w2"][0].expires_at.isoformat()}  # 300 s > the later 200 s
    json.dumps(d)  # plain JSON


def test_node_coverage_counts_the_nodes_of_done_jobs(db):
    """The catalog's label coverage: nodes in done jobs / nodes in all jobs, per model, from one grouped query."""
    from vlmhub.hubdb.jobs import node_coverage

    _scenario(db)
    # m-alpha: 5 shards of 2 nodes, one done; m-beta on g1: shards of 4, 4 and 2 nodes, none done
    assert node_coverage(db, "g1") == {"m-alpha": (2, 10), "m-beta": (0, 10)}
    assert node_coverage(db, "g2") == {"m-beta": (0, 1)}
    assert node_coverage(db, "g1", model_ids=["m-beta", "nobody"]) == {"m-beta": (0, 10)}
    assert node_coverage(db, "g9") == {}


def test_cli_http_and_catalog_page_show_the_same_progress(db, client, capsys):
    from vlmhub.hubdb.jobs import claim, finish, job_progress, list_jobs

    leases = _scenario(db)
    expected = job_progress(db)

    rc, out, _ = _run(capsys, "db", "jobs", "--json")
    assert rc == 0 and json.loads(out) == expected.to_dict()
    rc, out, _ = _run(capsys, "db", "jobs")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["model", "graph", "done/total", "%", "queued", "leased", "failed"]
    assert lines[2].split() == ["m-alpha", "g1", "1/5", "20.0", "2", "2", "0"]
    assert lines[3].split() == ["m-beta", "g1", "0/3", "0.0", "0", "2", "(1", "expired)", "1"]
    assert lines[4].split() == ["m-beta", "g2", "0/1", "0.0", "1", "0", "0"]
    assert lines[6].split() == ["all", "1/9", "11.1", "3", "4", "(1", "expired)", "1"]
    assert lines[7] == "2 active workers:"
    assert lines[8].startswith("  w1: 1 job of m-alpha; last heartbeat ")
    assert lines[9].startswith("  w2: 2 jobs of m-alpha, m-beta; last heartbeat ")
    assert "w3" not in out

    r = client.get("/v1/jobs")
    assert r.status_code == 200 and r.json() == expected.to_dict()

    page = client.get("/")
    assert page.status_code == 200
    box = re.search(r'<section class="labeling".*?</section>', page.text, re.S)
    assert box is not None and "Labeling now" in box.group(0)
    items = re.findall(r'<li class="job" data-model="([^"]+)" data-graph="([^"]+)" data-done="(\d+)" data-total="(\d+)">'
                       r'.*?<progress value="(\d+)" max="(\d+)">', box.group(0), re.S)
    assert items == [("m-alpha", "g1", "1", "5", "1", "5"), ("m-beta", "g1", "0", "3", "0", "3"),
                     ("m-beta", "g2", "0", "1", "0", "1")]
    assert "1 of 9 label jobs done · 1 failed" in box.group(0) and "1/5 (20.0%)" in box.group(0)
    workers = re.findall(r'<span class="worker" data-worker="([^"]+)" data-jobs="(\d+)"', box.group(0))
    assert workers == [("w1", "1"), ("w2", "2")]

    for lease in [*leases["w1"], *leases["w2"]]:
        finish(db, lease, _result(lease.nodes))
    while (lease := claim(db, "w-final", 300)) is not None:  # the queued jobs and the expired lease's job
        finish(db, lease, _result(lease.nodes))
    assert {j.status.value for j in list_jobs(db)} == {"done", "failed"}
    idle = job_progress(db)
    assert (idle.active, idle.labeling, idle.workers, idle.total.done, idle.total.failed) == (False, (), (), 8, 1)
    assert client.get("/v1/jobs").json() == idle.to_dict()
    page = client.get("/")
    assert page.status_code == 200 and 'class="labeling"' not in page.text and "Labeling now" not in page.text
    rc, out, _ = _run(capsys, "db", "jobs")
    assert rc == 0 and out.splitlines()[-1] == "idle: no label job is queued or leased"


def test_a_home_without_a_database_is_named_not_created(settings, tmp_path, capsys, monkeypatch):
    from fastapi.testclient import TestClient

    from vlmhub.hub import Hub
    from vlmhub.service import VlmhubService, create_app

    monkeypatch.delenv("VLMHUB_DATABASE_URL", raising=False)
    home = tmp_path / "other-home"
    rc, out, err = _run(capsys, "db", "jobs", "--home", str(home))
    assert rc == 2 and out == "" and "has no hub database" in err and "`vlmhub db upgrade`" in err and str(home) in err
    rc, _, err = _run(capsys, "--home", str(home), "db", "jobs", "--json")
    assert rc == 2 and "`vlmhub db upgrade`" in err
    assert not (home / "hub.db").exists()

    with TestClient(create_app(VlmhubService(Hub(settings), embedder="hashing256"))) as c:
        r = c.get("/v1/jobs")
        assert r.status_code == 200
        assert r.json() == {"active": False, "models": [], "workers": [],
                            "total": {"queued": 0, "leased": 0, "done": 0, "failed": 0, "expired": 0, "total": 0,
                                      "fraction": 0.0}}
        page = c.get("/")
        assert page.status_code == 200 and 'class="labeling"' not in page.text
    assert not (settings.home / "hub.db").exists()


def test_db_jobs_home_option_reads_that_home(toy_hub, capsys, monkeypatch):
    """``vlmhub db jobs --home H`` reads H's database, the SQLite file in H (also when $VLMHUB_HOME names another
    home; a PostgreSQL hub is named by VLMHUB_DATABASE_URL instead, so this is a SQLite-only question)."""
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.catalog import add_model
    from vlmhub.hubdb.jobs import enqueue_label_jobs

    monkeypatch.delenv("VLMHUB_DATABASE_URL", raising=False)
    hub_settings = toy_hub.settings.with_(database_url=None)
    with HubDB(hub_settings) as db:
        add_model(db, "m-home", "toy:m-home", {"id": "m-home"}, architecture="toy", state="checking")
        enqueue_label_jobs(db, "m-home", [NODES[:2]], graph_version="g1")
    monkeypatch.setenv("VLMHUB_HOME", str(hub_settings.home.parent / "elsewhere"))
    rc, out, _ = _run(capsys, "db", "jobs", "--home", str(hub_settings.home), "--json")
    assert rc == 0 and [(m["model_id"], m["queued"]) for m in json.loads(out)["models"]] == [("m-home", 1)]
    rc, out, _ = _run(capsys, "db", "jobs", "--home", str(hub_settings.home))
    assert rc == 0 and out.splitlines()[-1] == "no active worker: start one with `vlmhub worker`"
