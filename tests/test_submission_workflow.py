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


def _pink_samples(root, settings):
    """A new concept-sample set: pink swatches in the folder of WordNet's pink.n.01 (a node the colour graph lacks)."""
    from conftest import _swatch
    from vlmhub.concepts.wordnet import get_wordnet, wnid_of

    wnid = wnid_of(get_wordnet(settings).synset("pink.n.01"))
    (root / wnid).mkdir(parents=True)
    for j in range(6):
        _swatch((255, 160, 200), 7_000 + j).save(root / wnid / f"p{j}.png")
    return root, wnid


def test_growing_the_graph_labels_only_new_and_changed_nodes(toy_hub, hubdb, tiny_clip_dir, color_data, tmp_path):
    """The paper's growing graph on the hub database: a grown graph's jobs embed only what the current graph
    lacks, for every ready model (built-in and submitted); workers label and publish them, then make the grown
    graph current; the labels equal the models' embeddings on the whole grown graph."""
    from collections import Counter

    from vlmhub.concepts.graph import current_graph_version, load_graph
    from vlmhub.errors import ConfigError
    from vlmhub.hub import Hub
    from vlmhub.hubdb.artifacts import load_array
    from vlmhub.hubdb.catalog import get_model, list_models
    from vlmhub.hubdb.jobs import list_jobs
    from vlmhub.labeling.labels import LabelStore, caption_key
    from vlmhub.submission.growth import grow_graph
    from vlmhub.submission.workflow import _artifact, shard_refs

    settings = toy_hub.settings
    submit(hubdb, settings, _principal(hubdb, "alice", "submitter"), pack_folder(tiny_clip_dir), model_id="tiny-clip")
    process(hubdb, settings, "w1", config=CONFIG)
    ids = ["toy-a", "toy-b", "toy-c", "tiny-clip"]
    assert sorted(m.id for m in list_models(hubdb, state="ready")) == sorted(ids)
    base = toy_hub.graph()
    graphs_before = sorted(settings.graphs_dir.iterdir())
    with pytest.raises(ConfigError, match="growth only adds"):  # a set list that drops the colours: refused, nothing written
        grow_graph(hubdb, settings, [_pink_samples(tmp_path / "pink-only", settings)[0]], config=CONFIG)
    assert sorted(settings.graphs_dir.iterdir()) == graphs_before

    pink_dir, pink = _pink_samples(tmp_path / "pink", settings)
    report = grow_graph(hubdb, settings, [color_data["samples"], pink_dir], config=CONFIG)
    grown = load_graph(report.version, settings)
    assert pink in report.new_nodes and report.new_images == 6 and sorted(report.models) == sorted(ids)
    assert set(report.changed_nodes) < {n.id for n in grown.nodes}  # unchanged nodes get no job
    assert current_graph_version(settings) == base.version  # current until every model is labeled on it
    n_shards = -(-len(report.changed_nodes) // CONFIG.nodes_per_shard)
    assert report.jobs == len(ids) * n_shards
    again = grow_graph(hubdb, settings, [color_data["samples"], pink_dir], config=CONFIG)
    assert again.jobs == 0  # enqueueing is idempotent

    kinds = Counter(s.kind for s in process(hubdb, settings, "w2", config=CONFIG))
    assert kinds == {"labeled": report.jobs, "published": len(ids), "promoted": 1}, kinds
    assert current_graph_version(settings) == report.version
    assert all(get_model(hubdb, m).state.value == "ready" for m in ids)

    hub = Hub(settings, model_ids=ids)
    assert sorted(hub.labeled_model_ids()) == sorted(ids)
    for mid in ids:
        jobs = [j for j in list_jobs(hubdb, model_id=mid) if j.graph_version == report.version]
        rows = sum(load_array(settings, _artifact(hubdb, j.artifact_id)).shape[0] for j in jobs)
        refs = [shard_refs(grown, j.nodes, base) for j in jobs]
        # every row computed is one the base lacks: the 6 pink images and the new node's caption, nothing else
        # (an image under several changed ancestors is embedded once per shard holding one of them)
        assert rows == sum(len(i) + len(c) for i, c in refs)
        assert {x for i, _ in refs for x in i} == set(grown.image_ids()) - set(base.image_ids())
        assert {c for _, c in refs for c in c} == set(grown.captions()) - set(base.captions())
        model = hub.model(mid)
        nodes = [n.id for n in grown.nodes]
        want = compute_shard(model, grown, nodes, batch_size=4)
        images, captions = shard_refs(grown, nodes)
        lab = LabelStore(settings).label(mid)
        np.testing.assert_allclose(lab.images.get(images), want[: len(images)], atol=1e-5)
        np.testing.assert_allclose(lab.captions.get([caption_key(c) for c in captions]), want[len(images):], atol=1e-5)
    sel = hub.select(Task("colours", ("red", "pink", "blue")), k=2)
    assert [c.name for c in sel.classes] == ["red", "pink", "blue"]
    assert sel.classes[1].nodes[0][0] == pink  # the grown graph's new node explains the new class
    assert process(hubdb, settings, "w3", config=CONFIG) == []
