"""The submission stage over HTTP: a submitter uploads real tiny CLIP packages (one trained on colours, one random),
a worker process checks and labels them, the submissions report ready, and the running service's selection picks
the trained model for the colours it is good at, without a restart.
Anonymous clients, readers and other submitters are refused with 401/403 and nothing is written."""

from __future__ import annotations

import io
import zipfile

import pytest

from vlmhub.submission import pack_folder

pytestmark = pytest.mark.slow  # the check starts a sandboxed Python with torch


@pytest.fixture
def hub_settings(toy_hub, db_url):
    """The toy hub's settings on this test's backend (SQLite in the home, or the throwaway PostgreSQL)."""
    return toy_hub.settings.with_(database_url=db_url)


@pytest.fixture
def client(hub_settings):
    from fastapi.testclient import TestClient

    from vlmhub.hub import Hub
    from vlmhub.service import VlmhubService, create_app

    hub = Hub(hub_settings, tags=("test", "user"))  # the toy models plus whatever gets published
    app = create_app(VlmhubService(hub, embedder="hashing256"))
    with TestClient(app) as c:
        yield c


def _token(settings, user, role):
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.auth import create_token

    with HubDB(settings) as db:
        return create_token(db, user, role).token


def _auth(tok):
    return {"Authorization": f"Bearer {tok}"}


def _run_worker(*args: str) -> str:
    """A real ``vlmhub worker`` process on this test's home and backend (VLMHUB_HOME / VLMHUB_DATABASE_URL are
    set by the fixtures); returns its log (stderr). Fails the test if the worker exits non-zero."""
    import os
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "vlmhub.cli.main", "worker", "--no-zero-shot-check", "--nodes-per-shard", "3",
                        "--check-seconds", "300", *args], env=dict(os.environ), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stderr


COLOURS = ("red", "orange", "yellow", "green", "blue", "purple")


def test_submit_over_http_then_ready_then_selected(client, hub_settings, tiny_clip_dir, colour_clip_dir):
    """alice submits two tiny real CLIPs over HTTP -- one trained on colour swatches, one random -- a real worker
    process checks and labels both, and the running service's selection picks the trained one for every colour
    class of the graph (the classes it is good at) over the random one, among the hub's toy colour models."""
    s = hub_settings
    alice, bob, rita = _token(s, "alice", "submitter"), _token(s, "bob", "submitter"), _token(s, "rita", "reader")
    pkg = pack_folder(tiny_clip_dir)
    files = {"package": ("tiny.zip", pkg, "application/zip")}

    r = client.post("/v1/submissions", files=files, data={"model_id": "tiny-clip"})
    assert r.status_code == 401, r.text
    r = client.post("/v1/submissions", files=files, data={"model_id": "tiny-clip"}, headers=_auth(rita))
    assert r.status_code == 403, r.text
    r = client.post("/v1/submissions", files=files, data={"model_id": "tiny-clip"}, headers=_auth("vlmhub_nope_nope"))
    assert r.status_code == 401, r.text
    def submitted():
        return [m for m in client.get("/v1/hub/models").json()["models"] if m["source"] != "builtin"]

    assert submitted() == []  # nothing written by the refusals (the home's labeled built-ins are imported rows)

    r = client.post("/v1/submissions", files=files, data={"model_id": "tiny-clip"}, headers=_auth(alice))
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["model"]["state"] == "submitted" and sub["submitter"] == "alice"
    assert client.post("/v1/submissions", files=files, headers=_auth(alice)).status_code == 409  # same package
    assert client.get(f"/v1/submissions/{sub['id']}", headers=_auth(bob)).status_code == 403
    assert client.delete(f"/v1/submissions/{sub['id']}", headers=_auth(bob)).status_code == 403
    assert [x["id"] for x in client.get("/v1/submissions", headers=_auth(bob)).json()["submissions"]] == []
    trained = {"package": ("colour.zip", pack_folder(colour_clip_dir), "application/zip")}
    r = client.post("/v1/submissions", files=trained, data={"model_id": "colour-clip"}, headers=_auth(alice))
    assert r.status_code == 201, r.text
    sub2 = r.json()

    log = _run_worker()  # checks both in the sandbox, labels them shard by shard, publishes them
    steps = [line.split()[:2] for line in log.splitlines() if line.split()[:1] in (["checked"], ["published"])]
    assert sorted(steps) == [["checked", "colour-clip"], ["checked", "tiny-clip"],
                             ["published", "colour-clip"], ["published", "tiny-clip"]], log
    for x in (sub, sub2):
        view = client.get(f"/v1/submissions/{x['id']}", headers=_auth(alice)).json()
        assert view["model"]["state"] == "ready" and view["labeling"]["fraction"] == 1.0, view
    assert sorted((m["id"], m["state"]) for m in submitted()) == [("colour-clip", "ready"), ("tiny-clip", "ready")]

    # the running service sees both new models (no restart): 5 candidates, 2 chosen per class
    r = client.post("/v1/select", json={"task": {"name": "colours", "classes": list(COLOURS)}, "k": 2})
    assert r.status_code == 200, r.text
    chosen = {c["name"]: [m["id"] for m in c["models"]] for c in r.json()["classes"]}
    for colour, ids in chosen.items():
        assert "colour-clip" in ids and "tiny-clip" not in ids, (colour, ids)
    r = client.post("/v1/select", json={"task": {"name": "all", "classes": list(COLOURS)}, "k": 5})
    ranked = {c["name"]: [m["id"] for m in c["models"]] for c in r.json()["classes"]}
    assert all(set(ids) == {"toy-a", "toy-b", "toy-c", "colour-clip", "tiny-clip"} for ids in ranked.values()), ranked
    assert all(ids[-1] == "tiny-clip" for ids in ranked.values()), ranked  # the random model is worst at every colour


def test_hostile_uploads_are_refused_and_write_nothing(client, hub_settings):
    s = hub_settings
    alice = _token(s, "alice", "submitter")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../etc/evil.json", "{}")
    cases = {
        "traversal": buf.getvalue(),
        "not an archive": b"just bytes",
        "empty": b"",
    }
    for name, data in cases.items():
        r = client.post("/v1/submissions", files={"package": ("p.zip", data, "application/zip")}, headers=_auth(alice))
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
    r = client.post("/v1/submissions", headers=_auth(alice))  # no file part
    assert r.status_code == 422
    assert [m for m in client.get("/v1/hub/models").json()["models"] if m["source"] != "builtin"] == []
    assert not (s.home / "packages").exists() or not any((s.home / "packages").iterdir())


def _live_server(app):
    import socket
    import threading
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, t, f"http://127.0.0.1:{port}"


def test_cli_submit_remote_and_local_then_worker(hub_settings, tiny_clip_dir, capsys, tmp_path):
    import json as _json
    import shutil

    from vlmhub.cli.main import main
    from vlmhub.hub import Hub
    from vlmhub.service import VlmhubService, create_app

    s = hub_settings  # the CLI reads the same backend from VLMHUB_DATABASE_URL (set by the db_url fixture)
    alice = _token(s, "alice", "submitter")
    assert main(["submit", str(tiny_clip_dir), "--id", "tiny-a"]) == 2  # no token: one-line error
    assert "token" in capsys.readouterr().err

    app = create_app(VlmhubService(Hub(s, tags=("test", "user")), embedder="hashing256"))
    server, thread, url = _live_server(app)
    try:
        assert main(["submit", str(tiny_clip_dir), "--id", "tiny-a", "--token", alice, "--hub", url, "--json"]) == 0
        remote = _json.loads(capsys.readouterr().out)
        assert remote["model_id"] == "tiny-a" and remote["model"]["state"] == "submitted"
        assert main(["submit", str(tiny_clip_dir), "--id", "tiny-b", "--token", alice, "--hub", url]) == 2  # same package
        assert "409" in capsys.readouterr().err
    finally:
        server.should_exit = True
        thread.join(10)

    other = tmp_path / "other"  # a second package (one more file) submitted into the local home
    shutil.copytree(tiny_clip_dir, other)
    (other / "vlmhub.json").write_text('{"licence": "MIT"}')
    assert main(["submit", str(other), "--id", "tiny-b", "--token", alice]) == 0
    capsys.readouterr()
    assert main(["worker", "--no-zero-shot-check", "--nodes-per-shard", "4", "--check-seconds", "300"]) == 0
    err = capsys.readouterr().err
    assert err.count("published") == 2, err
    assert {"tiny-a", "tiny-b"} <= set(Hub(s, tags=("user",)).labeled_model_ids())
