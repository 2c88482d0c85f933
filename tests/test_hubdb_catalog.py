"""The catalog in the database on both backends: the model state machine, submissions and withdrawal, the audit
log entries they write, and content-addressed artifact files."""

from __future__ import annotations

import numpy as np
import pytest

sa = pytest.importorskip("sqlalchemy")


@pytest.fixture
def db(settings, db_url):
    from vlmhub.hubdb import HubDB

    with HubDB(settings.with_(database_url=db_url)) as hub_db:
        yield hub_db


def _audit(db, action=None):
    from vlmhub.hubdb.schema import AuditRow

    with db.session() as s:
        q = sa.select(AuditRow).order_by(AuditRow.id)
        if action is not None:
            q = q.where(AuditRow.action == action)
        return [(r.actor, r.action, r.target, r.detail) for r in s.scalars(q)]


def _counts(db) -> dict[str, int]:
    with db.session() as s:
        return {t: s.scalar(sa.text(f"SELECT count(*) FROM {t}"))
                for t in ("models", "submissions", "users", "audit_log", "label_jobs", "label_artifacts")}


SHA = "ab" * 32


def test_models_are_added_listed_and_conflicts_refused(db):
    from vlmhub.errors import ConfigError, ConflictError, UnknownModelError
    from vlmhub.hubdb.catalog import add_model, get_model, list_models

    a = add_model(db, "clip-a", "open_clip:ViT-B-32", {"arch": "ViT-B-32"}, architecture="ViT-B-32", params_m=151.3,
                  gflops=4.4, licence="MIT", owner="alice", actor="alice")
    add_model(db, "clip-b", "hf:clip", {}, state="ready")
    assert (a.state.value, a.owner, a.params_m, a.reasons) == ("submitted", "alice", 151.3, ())
    assert get_model(db, "clip-a") == a and a.to_dict()["state"] == "submitted"
    assert [m.id for m in list_models(db)] == ["clip-a", "clip-b"]
    assert [m.id for m in list_models(db, state="ready")] == ["clip-b"]
    assert [m.id for m in list_models(db, owner="alice")] == ["clip-a"]
    before = _counts(db)
    with pytest.raises(ConflictError, match="already in the catalog"):
        add_model(db, "clip-a", "x", {})
    for bad in ("", "-lead", "a/b", "../x", "x" * 101):
        with pytest.raises(ConfigError, match="invalid model id"):
            add_model(db, bad, "x", {})
    with pytest.raises(UnknownModelError, match="no model 'nope'"):
        get_model(db, "nope")
    assert _counts(db) == before
    assert _audit(db, "model.add")[0] == ("alice", "model.add", "clip-a", {"source": "open_clip:ViT-B-32",
                                                                            "state": "submitted"})


def test_state_machine_walks_the_submission_stage_and_refuses_illegal_moves(db):
    from vlmhub.errors import StateError
    from vlmhub.hubdb.catalog import add_model, get_model, set_model_state
    from vlmhub.hubdb.schema import MODEL_TRANSITIONS, ModelState

    add_model(db, "m", "toy:m", {})
    for st in ("checking", "queued", "labeling", "ready"):
        assert set_model_state(db, "m", st, actor="worker-1").state.value == st
    moves = [(d["before"], d["after"]) for _, _, _, d in _audit(db, "model.state")]
    assert moves == [("submitted", "checking"), ("checking", "queued"), ("queued", "labeling"), ("labeling", "ready")]
    assert {a for a, *_ in _audit(db, "model.state")} == {"worker-1"}

    add_model(db, "r", "toy:r", {})
    with pytest.raises(StateError) as info:
        set_model_state(db, "r", ModelState.READY)
    msg = str(info.value)
    assert "is submitted and cannot become ready" in msg and "it can become: checking, rejected" in msg
    assert get_model(db, "r").state == ModelState.SUBMITTED and len(_audit(db, "model.state")) == 4  # nothing written
    rej = set_model_state(db, "r", "rejected", reasons=["image tower returns NaN"], actor="checker")
    assert rej.reasons == ("image tower returns NaN",)
    for target in ("checking", "queued", "labeling", "ready"):
        with pytest.raises(StateError, match="from rejected it can become: submitted"):
            set_model_state(db, "r", target)
    # every state not in MODEL_TRANSITIONS[s] is refused, every one in it accepted (a fresh model per pair)
    path = {ModelState.SUBMITTED: [], ModelState.CHECKING: ["checking"], ModelState.QUEUED: ["checking", "queued"],
            ModelState.LABELING: ["checking", "queued", "labeling"], ModelState.READY: ["checking", "queued", "ready"],
            ModelState.REJECTED: ["rejected"]}
    n = 0
    for src, allowed in MODEL_TRANSITIONS.items():
        for dst in ModelState:
            if dst == src:
                continue
            n += 1
            mid = f"x{n}"
            add_model(db, mid, "toy:x", {})
            for st in path[src]:
                set_model_state(db, mid, st)
            if dst in allowed:
                assert set_model_state(db, mid, dst).state == dst
            else:
                with pytest.raises(StateError, match=f"cannot become {dst.value}"):
                    set_model_state(db, mid, dst)
                assert get_model(db, mid).state == src
    assert n == 30


def test_expect_makes_a_state_move_a_compare_and_set(db):
    """Two workers that both read a model as submitted: only the first claim (submitted -> checking) succeeds;
    the second is refused and writes nothing (the same-state move checking -> checking is otherwise a no-op)."""
    from vlmhub.errors import StateError
    from vlmhub.hubdb.catalog import add_model, get_model, set_model_state

    add_model(db, "m", "toy:m", {})
    assert set_model_state(db, "m", "checking", actor="w1", expect="submitted").state.value == "checking"
    before = _audit(db, "model.state")
    with pytest.raises(StateError, match="is checking, not submitted"):
        set_model_state(db, "m", "checking", actor="w2", expect="submitted")
    assert set_model_state(db, "m", "checking", actor="w2").state.value == "checking"  # without expect: a no-op move
    assert get_model(db, "m").state.value == "checking" and _audit(db, "model.state")[: len(before)] == before
    with pytest.raises(StateError):
        set_model_state(db, "m", "submitted", expect="submitted")  # a stale reset of a model no longer checking


def test_submissions_are_owned_and_withdrawn_only_by_their_submitter_or_an_admin(db):
    from vlmhub.errors import ConfigError, ConflictError, NotFoundError, PermissionDenied
    from vlmhub.hubdb.auth import Principal
    from vlmhub.hubdb.catalog import create_submission, get_model, get_submission, list_submissions, withdraw_submission
    from vlmhub.hubdb.schema import Role

    sub = create_submission(db, model_id="alice-clip", source="open_clip:ViT-B-32", spec={"arch": "ViT-B-32"},
                            submitter="alice", package_sha256=SHA, package_bytes=1234,
                            package_path="submissions/ab/pkg.zip", details={"licence": "MIT"}, licence="MIT")
    assert (sub.submitter, sub.status.value, sub.package_bytes) == ("alice", "open", 1234)
    assert get_model(db, "alice-clip").owner == "alice" and get_model(db, "alice-clip").state.value == "submitted"
    create_submission(db, model_id="bob-clip", source="hf:x", spec={}, submitter="bob", package_sha256="cd" * 32,
                      package_bytes=1)
    assert [s.model_id for s in list_submissions(db)] == ["bob-clip", "alice-clip"]
    assert [s.model_id for s in list_submissions(db, submitter="alice")] == ["alice-clip"]
    before = _counts(db)
    with pytest.raises(ConflictError, match="already submitted as model 'alice-clip'"):
        create_submission(db, model_id="copy", source="x", spec={}, submitter="carol", package_sha256=SHA,
                          package_bytes=1)
    with pytest.raises(ConflictError, match="already in the catalog"):
        create_submission(db, model_id="alice-clip", source="x", spec={}, submitter="carol",
                          package_sha256="ef" * 32, package_bytes=1)
    with pytest.raises(ConfigError, match="64 lowercase hex"):
        create_submission(db, model_id="y", source="x", spec={}, submitter="carol", package_sha256="XYZ",
                          package_bytes=1)
    with pytest.raises(PermissionDenied, match="belongs to another user"):
        withdraw_submission(db, sub.id, Principal("bob", Role.SUBMITTER))
    with pytest.raises(NotFoundError):
        withdraw_submission(db, 9999, Principal("alice", Role.SUBMITTER))
    assert _counts(db) == before  # the users carol never came into being either
    gone = withdraw_submission(db, sub.id, Principal("alice", Role.SUBMITTER))
    assert gone.status.value == "withdrawn" and gone.withdrawn_at is not None
    m = get_model(db, "alice-clip")
    assert (m.state.value, m.reasons) == ("rejected", ("withdrawn by alice",))
    assert withdraw_submission(db, sub.id, Principal("alice", Role.SUBMITTER)) == gone  # twice: a no-op
    assert len(_audit(db, "submission.withdraw")) == 1
    admin = withdraw_submission(db, get_submission(db, 2).id, Principal("root", Role.ADMIN))
    assert admin.status.value == "withdrawn" and get_model(db, "bob-clip").reasons == ("withdrawn by root",)
    # a withdrawn package may be submitted again (under a new id)
    again = create_submission(db, model_id="alice-clip-2", source="x", spec={}, submitter="alice",
                              package_sha256=SHA, package_bytes=1234)
    assert again.status.value == "open"
    actions = [a for _, a, _, _ in _audit(db)]
    assert actions.count("submission.create") == 3 and actions.count("submission.withdraw") == 2


def test_deleting_a_model_removes_its_rows_and_leaves_its_files_as_orphans(db, settings):
    from vlmhub.errors import UnknownModelError
    from vlmhub.hubdb.artifacts import check_artifacts
    from vlmhub.hubdb.catalog import add_model, delete_model
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, finish

    add_model(db, "m", "toy:m", {}, state="checking")
    enqueue_label_jobs(db, "m", [["n1", "n2"]], graph_version="g")
    art = finish(db, claim(db, "w", 10), np.eye(2, dtype=np.float32))
    delete_model(db, "m", actor="root")
    c = _counts(db)
    assert (c["models"], c["label_jobs"], c["label_artifacts"]) == (0, 0, 0)
    assert ("root", "model.delete", "m", {}) in _audit(db)
    r = check_artifacts(db)
    assert r.ok and r.orphan_files == (art.path,) and (settings.home / art.path).is_file()
    with pytest.raises(UnknownModelError):
        delete_model(db, "m")


def test_arrays_are_content_addressed_atomic_and_verified(settings):
    from vlmhub.errors import DataError, LabelError
    from vlmhub.hubdb.artifacts import array_bytes, home_path, load_array, sha256_file, store_array

    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    s1 = store_array(settings, a)
    s2 = store_array(settings, a.copy(order="F"))  # same values, other memory order: same bytes, same file
    assert s1 == s2 and s1.shape == (3, 4) and s1.dtype == "<f4" and s1.path.endswith(f"{s1.sha256}.npy")
    path = settings.home / s1.path
    assert sha256_file(path) == s1.sha256 and path.read_bytes() == array_bytes(a)
    assert store_array(settings, a.astype(np.float64)).sha256 != s1.sha256  # dtype is part of the content
    assert list(path.parent.glob(".tmp-*")) == []
    np.testing.assert_array_equal(load_array(settings, s1), a)
    path.write_bytes(path.read_bytes()[:-4] + b"\x00\x00\x00\x00")
    with pytest.raises(LabelError, match="does not match its checksum"):
        load_array(settings, s1)
    assert store_array(settings, a) == s1 and sha256_file(path) == s1.sha256  # a damaged file is rewritten
    with pytest.raises(TypeError, match="never stores pickled"):
        store_array(settings, np.array([{"x": 1}], dtype=object))
    for bad in ("/etc/passwd", "../outside.npy", "artifacts/../../x", ""):
        with pytest.raises(DataError, match="not a relative path inside the home"):
            home_path(settings, bad)
