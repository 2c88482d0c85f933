"""The submission stage end to end on the hub database (SQLite and PostgreSQL): a submitter uploads a real tiny
transformers CLIP package, a worker checks it in the sandbox and labels it shard by shard, the model becomes
ready, is published into the home's catalog with a complete label, and selection runs with it."""

from __future__ import annotations

import numpy as np
import pytest

from vlmhub.errors import AuthenticationError, ConflictError, PermissionDenied
from vlmhub.submission import pack_folder
from vlmhub.submission.sandbox import SandboxLimits
from vlmhub.submission.workflow import WorkflowConfig, compute_shard, process, publish_model, submit
from vlmhub.tasks import Task

pytestmark = pytest.mark.slow  # each check starts a sandboxed Python with torch

CONFIG = WorkflowConfig(sandbox=SandboxLimits(seconds=300), zero_shot_check=False, nodes_per_shard=2, lease_s=60)


@pytest.fixture
def hubdb(toy_hub, db_url):
    from vlmhub.hubdb import HubDB

    with HubDB(toy_hub.settings.with_(database_url=db_url)) as db:
        yield db


def _principal(db, user, role):
    from vlmhub.hubdb.auth import authenticate, create_token

    return authenticate(db, create_token(db, user, role).token)


def test_submit_check_label_publish_select(toy_hub, hubdb, tiny_clip_dir):
    from vlmhub.hub import Hub
    from vlmhub.hubdb.catalog import get_model, withdraw_submission
    from vlmhub.hubdb.jobs import job_counts

    settings = toy_hub.settings
    alice = _principal(hubdb, "alice", "submitter")
    upload = pack_folder(tiny_clip_dir)
    sub = submit(hubdb, settings, alice, upload, model_id="tiny-clip")
    assert get_model(hubdb, "tiny-clip").state.value == "submitted"
    with pytest.raises(ConflictError):  # the same package twice
        submit(hubdb, settings, alice, upload, model_id="tiny-clip-2")
    with pytest.raises(AuthenticationError):  # anonymous
        submit(hubdb, settings, None, upload)
    with pytest.raises(PermissionDenied):  # a reader
        submit(hubdb, settings, _principal(hubdb, "rita", "reader"), upload)
    with pytest.raises(PermissionDenied):  # another submitter cannot withdraw alice's submission
        withdraw_submission(hubdb, sub.id, _principal(hubdb, "bob", "submitter"))

    steps = process(hubdb, settings, "w1", config=CONFIG)
    kinds = [s.kind for s in steps]
    graph = toy_hub.graph()
    n_shards = -(-len(graph.nodes) // 2)
    assert kinds == ["checked"] + ["labeled"] * n_shards + ["published"], steps
    assert get_model(hubdb, "tiny-clip").state.value == "ready"
    assert job_counts(hubdb, model_id="tiny-clip").get("done") == n_shards
    assert get_model(hubdb, "tiny-clip").spec["embed_dim"] == 16

    # the published label equals the model's embeddings of every sample image and caption
    hub = Hub(settings, model_ids=["toy-a", "toy-b", "toy-c", "tiny-clip"])
    assert "tiny-clip" in hub.model_ids and "tiny-clip" in hub.labeled_model_ids()
    model = hub.model("tiny-clip")
    nodes = [n.id for n in graph.nodes]
    want = compute_shard(model, graph, nodes, batch_size=4)
    from vlmhub.labeling.labels import LabelStore, caption_key
    from vlmhub.submission.workflow import shard_refs

    images, captions = shard_refs(graph, nodes)
    lab = LabelStore(settings).label("tiny-clip")
    np.testing.assert_allclose(lab.images.get(images), want[: len(images)], atol=1e-5)
    np.testing.assert_allclose(lab.captions.get([caption_key(c) for c in captions]), want[len(images):], atol=1e-5)

    sel = hub.select(Task("colours", ("red", "green", "blue")), k=4)
    assert all("tiny-clip" in [m for m, *_ in c.models] for c in sel.classes)
    assert publish_model(hubdb, settings, "tiny-clip") is False  # idempotent
    assert process(hubdb, settings, "w2", config=CONFIG) == []  # nothing left


def test_a_failing_check_rejects_with_reasons(toy_hub, hubdb, tiny_clip_dir):
    from vlmhub.hubdb.catalog import get_model
    from vlmhub.hubdb.jobs import job_counts

    alice = _principal(hubdb, "alice", "submitter")
    submit(hubdb, toy_hub.settings, alice, pack_folder(tiny_clip_dir), model_id="random-clip")
    cfg = WorkflowConfig(sandbox=SandboxLimits(seconds=300), zero_shot_check=True)
    steps = process(hubdb, toy_hub.settings, "w1", config=cfg)
    assert [s.kind for s in steps] == ["rejected"]
    rec = get_model(hubdb, "random-clip")
    assert rec.state.value == "rejected" and any("zero_shot" in r for r in rec.reasons)
    assert job_counts(hubdb, model_id="random-clip") == {} or sum(job_counts(hubdb, model_id="random-clip").values()) == 0
