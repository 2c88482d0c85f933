"""``vlmhub db upgrade`` (importing a home made by the JSON release), ``vlmhub db check`` and ``vlmhub token ...``
on both backends, through ``main(argv)`` and one real subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

sa = pytest.importorskip("sqlalchemy")


def _run(capsys, *argv) -> tuple[int, str, str]:
    from vlmhub.cli.main import main

    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _listing(home) -> dict[str, str]:
    return {p.relative_to(home).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and not p.name.startswith("hub.db")}


def _write_models_json(settings) -> None:
    """models.json as the JSON release writes it (vlmhub.models.user_hub): one checked user model, not labeled."""
    from vlmhub.models.toy import TOY_MODELS

    spec = {**TOY_MODELS[0].to_dict(), "id": "my-clip", "description": "a user model"}
    doc = {"format": "vlmhub-user-models", "version": 1,
           "models": [{"id": "my-clip", "source": "hf:/models/my-clip", "adapter": "hf", "added": "2026-11-30T10:00:00Z",
                       "checked": True, "spec": spec}]}
    (settings.home / "models.json").write_text(json.dumps(doc))


def test_db_upgrade_imports_a_json_home_once_and_db_check_verifies_it(toy_hub, settings, db_url, capsys):
    from vlmhub.concepts.graph import current_graph, current_graph_version
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.catalog import get_model, list_models
    from vlmhub.hubdb.migrate import head_revision
    from vlmhub.hubdb.schema import AuditRow, GraphVersionRow, LabelArtifactRow

    _write_models_json(settings)
    shards = sorted(p.relative_to(settings.home).as_posix() for p in (settings.home / "labels").glob("*/*/shard-*.npz"))
    assert len(shards) >= 6  # images and captions of the three toy models
    before = _listing(settings.home)

    rc, out, _ = _run(capsys, "db", "upgrade", "--json")
    assert rc == 0
    rep = json.loads(out)
    assert rep["from_revision"] is None and rep["to_revision"] == head_revision()
    imp = rep["imported"]
    assert (imp["models"], imp["graphs"], imp["label_artifacts"]) == (4, 1, len(shards)) and imp["skipped"] == []
    assert _listing(settings.home) == before  # nothing moved, rewritten or lost

    with HubDB(settings.with_(database_url=db_url)) as db:
        models = {m.id: m for m in list_models(db)}
        assert set(models) == {"toy-a", "toy-b", "toy-c", "my-clip"}
        assert {models[m].state.value for m in ("toy-a", "toy-b", "toy-c")} == {"ready"}
        assert models["toy-a"].source == "builtin:toy-a" and models["toy-a"].spec["embed_dim"] == 6
        mine = get_model(db, "my-clip")
        assert (mine.state.value, mine.source, mine.owner) == ("queued", "hf:/models/my-clip", None)
        assert "run `vlmhub label`" in mine.reasons[0]
        with db.session() as s:
            (g,) = s.scalars(sa.select(GraphVersionRow)).all()
            arts = s.scalars(sa.select(LabelArtifactRow).order_by(LabelArtifactRow.path)).all()
        assert (g.version, g.current, g.path) == (current_graph_version(settings), True, f"graphs/{g.version}.json")
        graph = current_graph(settings)
        assert (g.nodes, g.images) == (len(graph), len(graph.image_paths)) and g.nodes >= 6
        assert [a.path for a in arts] == shards and {a.kind for a in arts} == {"label-table-shard"}
        assert all(a.sha256 == before[a.path] and a.dtype == "<f4" and a.shape[1] == 6 for a in arts)
        with db.session() as s:
            (entry,) = s.scalars(sa.select(AuditRow).where(AuditRow.action == "home.import")).all()
        assert (entry.detail["models"], entry.detail["label_artifacts"]) == (4, len(shards))

    again = _run(capsys, "db", "upgrade", "--json")
    assert again[0] == 0 and json.loads(again[1])["imported"] is None  # imported once only

    rc, out, _ = _run(capsys, "db", "check", "--json")
    check = json.loads(out)
    assert rc == 0 and check["ok"] and check["checked"] == len(shards)
    damaged = settings.home / shards[0]
    damaged.write_bytes(damaged.read_bytes() + b"x")
    (settings.home / shards[1]).unlink()
    rc, out, _ = _run(capsys, "db", "check")
    assert rc == 1 and "DAMAGED" in out and shards[0] in out and shards[1] in out
    assert "checksum mismatch (1;" in out and "file missing (1;" in out


def test_db_upgrade_of_a_new_home_and_unreadable_files_are_reported(settings, db_url, capsys):
    settings.home.mkdir(parents=True)
    (settings.home / "models.json").write_text("{not json")
    (settings.home / "graphs").mkdir()
    (settings.home / "graphs" / "abc.json").write_text(json.dumps({"format": "other"}))
    rc, out, _ = _run(capsys, "db", "upgrade")
    assert rc == 0 and "schema (new) -> " in out and "imported the JSON home: 0 models, 0 graph versions" in out
    assert "skipped: model list models.json: unreadable" in out and "skipped: graph abc.json: not a vlmhub.graph/1" in out
    assert (settings.home / "models.json").read_text() == "{not json"  # left as it is
    rc, out, _ = _run(capsys, "db", "check")
    assert rc == 0 and out.startswith("0 artifacts checked: ok")


def test_token_cli_prints_the_token_once_and_revokes_it(settings, db_url, capsys):
    from vlmhub.errors import AuthenticationError
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.auth import authenticate
    from vlmhub.hubdb.schema import AuditRow

    rc, out, err = _run(capsys, "token", "create", "--user", "alice", "--role", "submitter", "--note", "ci")
    token = out.strip()
    assert rc == 0 and out.count("\n") == 1 and token.startswith("vlmhub_") and "shown only now" in err
    token_id = token.split("_")[1]
    with HubDB(settings.with_(database_url=db_url)) as db:
        p = authenticate(db, token)
        assert (p.user, p.role.value) == ("alice", "submitter")
    rc, out, _ = _run(capsys, "token", "list", "--json")
    (listed,) = json.loads(out)
    assert (listed["token_id"], listed["user"], listed["active"], listed["note"]) == (token_id, "alice", True, "ci")
    assert token.split("_", 2)[2] not in out
    rc, out, _ = _run(capsys, "token", "revoke", token_id)
    assert rc == 0 and f"token {token_id} of alice revoked" in out
    with HubDB(settings.with_(database_url=db_url)) as db:
        with pytest.raises(AuthenticationError, match="revoked"):
            authenticate(db, token)
        with db.session() as s:
            actions = [(r.action, r.actor.startswith("local")) for r in s.scalars(sa.select(AuditRow).order_by(AuditRow.id))
                       if r.action.startswith("token.")]
    assert actions == [("token.create", True), ("token.revoke", True)]
    rc, _, err = _run(capsys, "token", "revoke", "0" * 12)
    assert rc == 2 and "no token with id" in err
    rc, _, err = _run(capsys, "token", "create", "--user", "bad name!", "--role", "reader")
    assert rc == 2 and "invalid user name" in err
    rc, _, err = _run(capsys, "token", "create", "--user", "bob", "--role", "reader", "--expires-days", "0")
    assert rc == 2 and "--expires-days must be positive" in err
    with pytest.raises(SystemExit) as info:
        _run(capsys, "token", "create", "--user", "bob", "--role", "root")
    assert info.value.code == 2 and "invalid choice: 'root'" in capsys.readouterr().err


def test_token_create_in_a_subprocess_prints_only_the_token_on_stdout(settings, db_url):
    env = {**os.environ, "VLMHUB_HOME": str(settings.home)}
    r = subprocess.run([sys.executable, "-m", "vlmhub.cli.main", "token", "create", "--user", "ci-bot", "--role", "admin",
                        "--expires-days", "1"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    assert line.startswith("vlmhub_") and "ci-bot (admin), valid until" in r.stderr
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.auth import authenticate

    with HubDB(settings.with_(database_url=db_url)) as db:
        assert authenticate(db, line).role.value == "admin"


def test_db_grow_enqueues_jobs_for_changed_nodes_only_and_refuses_to_shrink(toy_hub, settings, db_url, color_data,
                                                                             tmp_path, capsys):
    """`vlmhub db grow`: the grown graph is stored beside the current one (not current), every ready model gets
    jobs over the new and changed nodes only; a set list that drops nodes exits 2 and writes nothing."""
    from conftest import _swatch
    from vlmhub.concepts.graph import current_graph_version
    from vlmhub.concepts.wordnet import get_wordnet, wnid_of
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.graphs import graph_base, pending_graphs
    from vlmhub.hubdb.jobs import list_jobs

    wnid = wnid_of(get_wordnet(settings).synset("pink.n.01"))
    (tmp_path / "pink" / wnid).mkdir(parents=True)
    for j in range(3):
        _swatch((255, 160, 200), 50 + j).save(tmp_path / "pink" / wnid / f"p{j}.png")
    base = current_graph_version(settings)
    before = _listing(settings.home)

    rc, out, err = _run(capsys, "db", "grow", "--sample-set", str(tmp_path / "pink"))
    assert rc == 2 and "growth only adds" in err and "color-samples" in err  # 2: a usage error
    assert _listing(settings.home) == before

    rc, out, _ = _run(capsys, "db", "grow", "--sample-set", str(color_data["samples"]), "--sample-set",
                      str(tmp_path / "pink"), "--json")
    assert rc == 0
    rep = json.loads(out)
    assert rep["base_version"] == base and wnid in rep["new_nodes"] and rep["new_images"] == 3
    assert sorted(rep["models"]) == ["toy-a", "toy-b", "toy-c"] and rep["jobs"] == 3 * -(-len(rep["changed_nodes"]) // 64)
    assert current_graph_version(settings) == base  # labels first: the worker makes it current
    with HubDB(settings.with_(database_url=db_url)) as db:
        assert graph_base(db, rep["version"]) == base and pending_graphs(db, base) == [rep["version"]]
        jobs = [j for j in list_jobs(db) if j.graph_version == rep["version"]]
        assert len(jobs) == rep["jobs"] and {n for j in jobs for n in j.nodes} == set(rep["changed_nodes"])
    rc, out, _ = _run(capsys, "db", "grow", "--sample-set", str(color_data["samples"]), "--sample-set", str(tmp_path / "pink"))
    assert rc == 0 and "0 label jobs" in out  # idempotent


def test_a_forever_worker_stops_on_sigterm_after_its_step(settings, db_url):
    """`vlmhub worker --forever` (how it runs under docker / Kubernetes) exits 0 on SIGTERM instead of dying."""
    import signal

    env = {**os.environ, "VLMHUB_HOME": str(settings.home)}
    p = subprocess.Popen([sys.executable, "-m", "vlmhub.cli.main", "worker", "--forever", "--poll", "0.2", "--no-ray",
                          "--name", "w-term"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = p.stderr.readline()  # printed once the handlers are in place and the database is open
        assert first.startswith("worker w-term: started on the ") and "labeling in this process" in first, first
        p.send_signal(signal.SIGTERM)
        rest = p.stderr.read()
        assert p.wait(timeout=60) == 0, rest
    finally:
        p.kill()
    assert "worker w-term: SIGTERM: stopping after this step" in rest and "worker w-term: 0 steps" in rest, rest
