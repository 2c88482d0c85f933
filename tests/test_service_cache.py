"""The service's caches are never stale: memoised health / catalog data and remembered selection answers.

Every change a hub sees from outside the serving process -- a model labeled by another process, a model
published (registered) or removed, another graph made current -- is visible on the very next request, and a
remembered answer is the computed one byte for byte (compared with a service that remembers nothing on a
fresh hub; only the answer's own ``seconds`` differs between two computations).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import replace

import pytest

from vlmhub.hub import Hub
from vlmhub.models.toy import ToyColorModel
from vlmhub.service import VlmhubService
from vlmhub.service.core import json_bytes
from vlmhub.storage import FileMemo, atomic_write_json

fastapi = pytest.importorskip("fastapi", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
from fastapi.testclient import TestClient  # noqa: E402

from vlmhub.service.app import create_app  # noqa: E402

COLORS = ["red", "orange", "yellow", "green", "blue", "purple"]
TASK = {"name": "color-task", "domain": "color swatch", "task": "color recognition", "classes": COLORS}
TOYS = ["toy-a", "toy-b", "toy-c"]


def _untimed(body: bytes) -> bytes:
    """The answer's bytes without its own timing (``"seconds":0.0123``), the one field two computations differ in."""
    out, n = re.subn(rb'"seconds":[0-9.eE+-]+', b'"seconds":0', body)
    assert n == 1, body[:200]
    return out


def _toy_d(catalog) -> None:
    """Publish a fourth toy model (blind to red/green) into ``catalog`` (a run-time registration)."""
    spec = replace(catalog.spec("toy-a"), id="toy-d", description="test colour VLM blind to red/green",
                   config=(("blind", ("red", "green")), ("sigma", 0.25)))
    catalog.register(spec, lambda s, settings: ToyColorModel(s, settings))


def _fresh_answer(settings, *, with_d: bool = False, k: int = 3) -> bytes:
    """The answer of a service that remembers nothing, on a hub object of its own (a fresh fit)."""
    hub = Hub(settings, tags=("test",))
    if with_d:
        _toy_d(hub.catalog)
    body, cached = VlmhubService(hub, embedder="hashing256", select_cache_bytes=0).select_json(TASK, k=k)
    assert not cached
    return body


@pytest.fixture
def labeled(settings, color_data):
    """The three toy models labeled by a worker (its own Hub object, as another process would)."""
    Hub(settings, model_ids=TOYS).label(sample_sets=[color_data["samples"]], progress=False)
    return settings


def _select(client, k: int = 3):
    r = client.post("/v1/select", json={"task": TASK, "k": k})
    return r, r.headers.get("x-vlmhub-cache")


def test_repeated_select_is_served_from_the_cache_byte_for_byte(labeled):
    service = VlmhubService(Hub(labeled, tags=("test",)), embedder="hashing256")
    with TestClient(create_app(service)) as client:
        first, how1 = _select(client)
        again, how2 = _select(client)
        other_k, how3 = _select(client, k=2)
    assert first.status_code == again.status_code == other_k.status_code == 200
    assert (how1, how2, how3) == ("miss", "hit", "miss")  # k is part of the request: its own answer
    assert again.content == first.content and again.headers["content-type"] == "application/json"
    assert _untimed(first.content) == _untimed(_fresh_answer(labeled))
    # what the framework rendered before answers were bytes: the dict through JSONResponse
    from starlette.responses import JSONResponse

    d = json.loads(first.content)
    assert JSONResponse(d).body == json_bytes(d) == first.content
    assert d["classes"][0]["name"] == "red" and len(d["classes"][0]["models"]) == 3


def test_published_labeled_removed_model_and_new_graph_are_seen_on_the_next_request(labeled, color_data):
    hub = Hub(labeled, tags=("test",))
    service = VlmhubService(hub, embedder="hashing256")
    with TestClient(create_app(service)) as client:
        assert client.get("/v1/health").json()["labeled"] == 3
        base, _ = _select(client)
        assert _select(client)[1] == "hit"

        _toy_d(hub.catalog)  # published: a fourth hub model, not labeled yet
        h = client.get("/v1/health").json()
        assert (h["models"], h["labeled"]) == (4, 3)
        assert {m["id"]: m["labeled"] for m in client.get("/v1/models").json()["models"]}["toy-d"] is False
        r, _ = _select(client)  # never the remembered 3-model answer: the hub is not fully labeled now
        assert r.status_code == 409 and "toy-d" in r.json()["detail"]

        worker = Hub(labeled, model_ids=["toy-d"])  # another process labels it on the current graph
        _toy_d(worker.catalog)
        worker.label(graph=worker.graph(), progress=False)
        assert client.get("/v1/health").json()["labeled"] == 4
        assert client.get("/v1/models/toy-d").json()["labeled"] is True
        with_d, how = _select(client, k=4)
        assert with_d.status_code == 200 and how == "miss"
        assert _untimed(with_d.content) == _untimed(_fresh_answer(labeled, with_d=True, k=4))
        assert len(json.loads(with_d.content)["classes"][0]["models"]) == 4

        hub.catalog.unregister("toy-d")  # removed
        assert client.get("/v1/health").json()["models"] == 3
        r, how = _select(client)
        assert how == "miss" and _untimed(r.content) == _untimed(base.content)  # the 3-model fit answers again
        r4 = client.post("/v1/select", json={"task": TASK, "k": 4})
        assert r4.status_code == 422  # k=4 with 3 models: refused, not the 4-model answer remembered before

        version = hub.graph_version()
        worker = Hub(labeled, model_ids=TOYS)  # another graph (fewer images per concept) made current elsewhere
        worker.label(sample_sets=[color_data["samples"]], max_per_concept=2, progress=False)
        assert worker.graph_version() != version
        r, how = _select(client)
        assert how == "miss" and json.loads(r.content)["graph_version"] == worker.graph_version()
        assert _untimed(r.content) == _untimed(_fresh_answer(labeled))
        assert client.get("/v1/health").json()["labeled"] == 3


def test_removed_label_and_relabel_in_process_are_seen(labeled, color_data):
    import shutil

    hub = Hub(labeled, tags=("test",))
    service = VlmhubService(hub, embedder="hashing256")
    with TestClient(create_app(service)) as client:
        first, _ = _select(client)
        assert _select(client)[1] == "hit"
        hub.label(graph=hub.graph(), progress=False, force=True)  # in-process relabel: the fits are dropped
        r, how = _select(client)
        assert how == "miss" and _untimed(r.content) == _untimed(first.content)
        shutil.rmtree(labeled.labels_dir / "toy-c")  # a label deleted by hand
        assert client.get("/v1/health").json()["labeled"] == 2
        r, _ = _select(client)
        assert r.status_code == 409 and "toy-c" in r.json()["detail"]


def test_answer_cache_is_bounded_by_bytes(labeled):
    hub = Hub(labeled, tags=("test",))
    one, _ = VlmhubService(hub, embedder="hashing256").select_json(TASK)
    service = VlmhubService(hub, embedder="hashing256", select_cache_bytes=2 * len(one) + 10)
    for n in range(2, 7):
        service.select_json({**TASK, "classes": COLORS[:n]})
    assert service._answers_bytes <= service.select_cache_bytes and 1 <= len(service._answers) <= 3
    assert service.select_json({**TASK, "classes": COLORS[:6]})[1]  # the most recent is kept
    assert not service.select_json({**TASK, "classes": COLORS[:2]})[1]  # the oldest was dropped
    tiny = VlmhubService(hub, embedder="hashing256", select_cache_bytes=10)  # no answer fits: none remembered
    assert [tiny.select_json(TASK)[1] for _ in range(2)] == [False, False] and not tiny._answers
    off = VlmhubService(hub, embedder="hashing256", select_cache_bytes=0)
    assert [off.select_json(TASK)[1] for _ in range(2)] == [False, False]
    from vlmhub.errors import ConfigError

    with pytest.raises(ConfigError, match="select_cache_bytes"):
        VlmhubService(hub, select_cache_bytes=-1)


def test_invalid_request_is_never_remembered(labeled):
    from vlmhub.errors import TaskError

    service = VlmhubService(Hub(labeled, tags=("test",)), embedder="hashing256")
    bad = {**TASK, "classes": ["red", "bl\x00ue"]}
    for _ in range(2):
        with pytest.raises(TaskError, match="control characters"):
            service.select_json(bad)
    assert not service._answers


def test_file_memo_sees_every_change(tmp_path):
    memo, reads = FileMemo(max_entries=2), []

    def load(p):
        reads.append(p)
        return json.loads(open(p).read())

    f = tmp_path / "current.json"
    with pytest.raises(FileNotFoundError):
        memo.get(f, load)  # a missing file: the loader's error, every time, nothing remembered
    atomic_write_json(f, {"version": "a" * 12})
    assert memo.get(f, load) == memo.get(f, load) == {"version": "a" * 12} and len(reads) == 2
    atomic_write_json(f, {"version": "b" * 12})  # same size, renamed into place
    assert memo.get(f, load) == {"version": "b" * 12}
    st = os.stat(f)
    f.write_text(json.dumps({"version": "c" * 12}))  # in place, same size, times moved on
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert memo.get(f, load) == {"version": "c" * 12}
    f.unlink()
    with pytest.raises(FileNotFoundError):
        memo.get(f, load)
    for i in range(3):  # bounded: least recently used dropped first
        atomic_write_json(tmp_path / f"{i}.json", i)
        memo.get(tmp_path / f"{i}.json", load)
    assert len(memo._entries) == 2
