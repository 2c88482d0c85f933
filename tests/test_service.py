"""The HTTP service: answers checked against independent expectations, clear errors with the right status,
a real server."""

from __future__ import annotations

import base64
import socket
import threading
import time

import numpy as np
import pytest

from vlmhub.cli.main import main
from vlmhub.errors import ConfigError, DataError, ImageError, TableError, TaskError
from vlmhub.service import ServiceLimits, VlmhubService

fastapi = pytest.importorskip("fastapi", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
from fastapi.testclient import TestClient  # noqa: E402

from vlmhub.service.app import create_app  # noqa: E402

from mll_by_hand import ensemble_by_hand, selection_by_reference  # noqa: E402

COLORS = ["red", "orange", "yellow", "green", "blue", "purple"]
TASK = {"name": "color-task", "domain": "color swatch", "task": "color recognition", "classes": COLORS}


def _b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _images(color_data, per_class=2):
    out = []
    for c in COLORS:
        for f in sorted((color_data["task"] / c).iterdir())[:per_class]:
            out.append({"name": f"{c}/{f.name}", "data": _b64(f)})
    return out


@pytest.fixture
def service(toy_hub):
    return VlmhubService(toy_hub, embedder="hashing256")


@pytest.fixture
def client(service):
    with TestClient(create_app(service)) as c:
        yield c


def _small_table(tmp_path):
    from vlmhub.tables import ModelInfo, PerformanceTable, TaskDescription, save_generic_table

    rng = np.random.default_rng(0)
    models = tuple(ModelInfo(f"m{i}", arch="ViT-B-32", family="ViT", pretraining_data="laion2b") for i in range(6))
    datasets = (TaskDescription("ImageNet 1k", "natural photograph", "object recognition", ("dog", "cat")),
                TaskDescription("pets", "natural photograph", "pet recognition", ("dog", "cat")),
                TaskDescription("digits", "handwritten digit image", "digit classification", tuple("0123456789")))
    acc = np.clip(0.5 + 0.05 * np.arange(6)[:, None] + rng.normal(0, 0.01, (6, 3)), 0, 1)
    csv_path, _ = save_generic_table(PerformanceTable("mine", models, datasets, acc, reference="ImageNet 1k"), tmp_path / "mine.csv")
    return csv_path


# -- the framework-free core ----------------------------------------------------------------------


def test_select_equals_the_independent_reference(service, toy_hub):
    from vlmhub.tasks import Task

    for k in (1, 2, 3):
        got = service.select(TASK, k=k)
        want = selection_by_reference(toy_hub, Task.from_dict(TASK), k)
        assert [c["name"] for c in got["classes"]] == COLORS
        for c, w in zip(got["classes"], want):
            assert [m["id"] for m in c["models"]] == [m for m, _, _ in w], c["name"]
            assert [m["score"] for m in c["models"]] == pytest.approx([r for _, r, _ in w], abs=1e-6)
            assert [m["p"] for m in c["models"]] == pytest.approx([p for _, _, p in w], abs=1e-6)


def test_predict_on_uploaded_bytes_equals_eq8_10_by_hand(service, toy_hub, color_data):
    from vlmhub.tasks import Task

    files = [color_data["task"] / c / sorted(p.name for p in (color_data["task"] / c).iterdir())[0] for c in COLORS]
    sel = toy_hub.select(Task.from_dict(TASK), k=2)
    members = [sel.members(y) for y in range(len(COLORS))]
    want = ensemble_by_hand({m: toy_hub.model(m) for m in ("toy-a", "toy-b", "toy-c")}, members, COLORS, files)
    up = service.predict(TASK, [{"name": f"{f.parent.name}/{f.name}", "data": _b64(f)} for f in files], k=2)
    assert up["weighting"] == "inverse_entropy" and up["task"] == "color-task"
    assert [r["image"] for r in up["predictions"]] == [f"{f.parent.name}/{f.name}" for f in files]
    assert [r["class"] for r in up["predictions"]] == [w["class"] for w in want]
    np.testing.assert_allclose([r["confidence"] for r in up["predictions"]], [w["confidence"] for w in want], rtol=1e-5)
    # the toy colour models get colour swatches right
    assert sum(r["class"] == r["image"].split("/")[0] for r in up["predictions"]) >= 5


@pytest.mark.parametrize(
    "images, error, message",
    [
        ([], DataError, "no images"),
        ([{"name": "a", "data": "not base64!"}], ImageError, "not valid base64"),
        ([{"name": "a", "data": base64.b64encode(b"plain text, no image").decode()}], ImageError, "cannot decode image a"),
        ([{"name": "a"}], ImageError, "base64 string"),
    ],
)
def test_bad_uploads_are_refused_before_any_model_runs(service, images, error, message):
    with pytest.raises(error, match=message):
        service.predict(TASK, images)


def test_upload_limits_and_duplicate_names(toy_hub, color_data):
    imgs = _images(color_data, per_class=1)
    s = VlmhubService(toy_hub, limits=ServiceLimits(max_images=3))
    with pytest.raises(DataError, match="limit is 3"):
        s.predict(TASK, imgs)
    with pytest.raises(ImageError, match="larger than 10 bytes"):
        VlmhubService(toy_hub, limits=ServiceLimits(max_image_bytes=10)).predict(TASK, imgs[:1])
    with pytest.raises(ImageError, match="used twice"):
        s.predict(TASK, [imgs[0], imgs[0]])
    with pytest.raises(ConfigError, match="positive"):
        ServiceLimits(max_images=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"task": {**TASK, "classes": ["red", "red"]}}, "more than once"),
        ({"task": {**TASK, "colour": 1}}, "unknown task field"),
        ({"k": 0}, "k must be"),
        ({"config": {"alpha": 2.0}}, "alpha must lie in"),
        ({"config": {"temperature": 1}}, "unknown selection option 'temperature'"),
        ({"config": {"k_nodes": 2.5}}, "whole"),
    ],
)
def test_bad_selection_requests(service, kwargs, message):
    args = {"task": TASK, "k": 3, "config": None, **kwargs}
    with pytest.raises(TaskError, match=message):
        service.select(args["task"], k=args["k"], config=args["config"])


def test_rank_models_on_a_registered_table_matches_the_selector(toy_hub, tmp_path):
    from vlmhub.tables import TaskDescription, get_selector, load_table

    csv_path = _small_table(tmp_path)
    s = VlmhubService(toy_hub, tables={"mine": csv_path}, embedder="hashing256")
    task = {"name": "my pets", "domain": "natural photograph", "task": "pet recognition", "classes": ["dog", "cat"]}
    got = s.rank_models("mine", task, selector="mll", top=3)
    want = get_selector("mll", embedder="hashing256").fit(load_table(csv_path)).rank(
        TaskDescription("my pets", "natural photograph", "pet recognition", ("dog", "cat")))[:3]
    assert [(m["id"], m["score"]) for m in got["models"]] == [(i, pytest.approx(v)) for i, v in want]
    assert s.list_tables()["tables"] == ["openclip", "lovm", "mine"]
    with pytest.raises(TableError, match="unknown table '/etc/passwd'"):
        s.rank_models("/etc/passwd", task)
    with pytest.raises(TableError, match="unknown selector"):
        s.rank_models("mine", task, selector="nope")
    with pytest.raises(TableError, match="ModelGPT"):  # a task description carries no per-model features
        s.rank_models("mine", task, selector="modelgpt")
    with pytest.raises(ConfigError, match="built in"):
        VlmhubService(toy_hub, tables={"lovm": csv_path})


# -- HTTP ------------------------------------------------------------------------------------------


def test_http_health_models_select_predict(client, color_data):
    h = client.get("/v1/health").json()
    assert h["status"] == "ok" and h["models"] == 3 and h["labeled"] == 3
    ms = client.get("/v1/models").json()["models"]
    assert [m["id"] for m in ms] == ["toy-a", "toy-b", "toy-c"] and all(m["labeled"] for m in ms)
    r = client.post("/v1/select", json={"task": TASK, "k": 1})
    assert r.status_code == 200 and len(r.json()["classes"]) == 6
    r = client.post("/v1/predict", json={"task": TASK, "k": 2, "weighting": "uniform", "images": _images(color_data, 1)})
    assert r.status_code == 200
    body = r.json()
    assert body["weighting"] == "uniform" and len(body["predictions"]) == 6
    assert set(body["predictions"][0]) == {"image", "class", "confidence"}


@pytest.mark.parametrize(
    "path, payload, status, type_, fragment",
    [
        ("/v1/select", {"task": {**TASK, "classes": ["red"]}}, 422, "validation-error", "task.classes: List should have at least 2"),
        ("/v1/select", {"task": {**TASK, "classes": ["red", "Red"]}}, 422, "task-error", "more than once"),
        ("/v1/select", {"task": TASK, "k": 0}, 422, "validation-error", "k: Input should be greater than or equal to 1"),
        ("/v1/select", {"task": TASK, "extra": 1}, 422, "validation-error", "extra: Extra inputs are not permitted"),
        ("/v1/predict", {"task": TASK, "images": [{"name": "x", "data": "%%%"}]}, 422, "image-error", "not valid base64"),
        ("/v1/predict", {"task": TASK, "images": [{"data": "x"}], "weighting": "max"}, 422, "validation-error", "inverse_entropy"),
        ("/v1/tables/nope/rank", {"task": TASK}, 422, "table-error", "unknown table 'nope'"),
    ],
)
def test_http_errors_are_problem_bodies_that_name_the_problem(client, path, payload, status, type_, fragment):
    r = client.post(path, json=payload)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) >= {"type", "title", "status", "detail"} and body["status"] == status
    assert body["type"] == type_ and fragment in body["detail"]
    if type_ == "validation-error":  # the field paths, one entry each
        assert body["errors"] and all(set(e) == {"loc", "msg", "type"} for e in body["errors"])


def test_http_unknown_route_model_method_and_bad_json_are_problems(client):
    cases = [(client.get("/v1/nope"), 404, "not-found", "/docs"),
             (client.get("/v1/models/nope"), 404, "unknown-model", "nope"),
             (client.delete("/v1/health"), 405, "method-not-allowed", "DELETE"),
             (client.post("/v1/select", content=b"{not json", headers={"content-type": "application/json"}),
              400, "malformed-json", "not valid JSON")]
    for r, status, type_, fragment in cases:
        assert (r.status_code, r.headers["content-type"]) == (status, "application/problem+json"), r.text
        assert r.json()["type"] == type_ and fragment in r.json()["detail"], r.text


def test_http_unlabeled_hub_is_a_conflict_with_the_fix(settings):
    from vlmhub.hub import Hub

    hub = Hub(settings, model_ids=["toy-a", "toy-b"])
    with TestClient(create_app(VlmhubService(hub, embedder="hashing256"), preload=True)) as c:
        assert c.get("/v1/health").json()["labeled"] == 0
        r = c.post("/v1/select", json={"task": TASK})
        assert r.status_code == 409
        err = r.json()
        assert err["type"] == "not-labeled" and err["status"] == 409 and "vlmhub label" in err["detail"]


# -- a real server -------------------------------------------------------------------------------


def test_real_uvicorn_server_answers(toy_hub):
    import httpx
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(VlmhubService(toy_hub, embedder="hashing256")), host="127.0.0.1",
                                           port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        for _ in range(200):
            if server.started:
                break
            time.sleep(0.05)
        assert server.started
        r = httpx.post(f"http://127.0.0.1:{port}/v1/select", json={"task": TASK, "k": 1}, timeout=60)
        assert r.status_code == 200 and r.json()["task"] == "color-task"
    finally:
        server.should_exit = True
        th.join(timeout=10)


def test_cli_serve_rejects_bad_options(settings, capsys, tmp_path):
    assert main(["--home", str(settings.home), "serve", "--table", "mine"]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert main(["--home", str(settings.home), "serve", "--table", f"mine={tmp_path / 'missing.csv'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--home", str(settings.home), "serve", "--port", "70000"]) == 2
    assert "TCP port" in capsys.readouterr().err
    assert main(["--home", str(settings.home), "serve", "--max-images", "0"]) == 2
    assert "positive" in capsys.readouterr().err


def test_health_reads_no_graph(toy_hub, monkeypatch):
    """Issue 10 item 12: /v1/health parsed the whole graph file (1.2 MB on the default hub) on every call."""
    from vlmhub.concepts import graph as graph_mod
    from vlmhub.service import VlmhubService

    service = VlmhubService(toy_hub, embedder="hashing256")
    before = service.health()

    def no_graph(*a, **kw):
        raise AssertionError("health must not load the semantic graph")

    monkeypatch.setattr(graph_mod, "load_graph", no_graph)
    after = service.health()
    assert after["labeled"] == before["labeled"] == 3 and after["models"] == 3


def test_limits_are_settings_with_env_overrides(settings, toy_hub, monkeypatch):
    from vlmhub.settings import Settings

    monkeypatch.setenv("VLMHUB_MAX_TASK_CLASSES", "5")
    monkeypatch.setenv("VLMHUB_SERVICE_THREADS", "3")
    env = Settings(home=settings.home)
    assert (env.max_task_classes, env.service_threads, env.max_text_chars) == (5, 3, 256)
    limits = ServiceLimits.from_settings(env)
    assert (limits.max_classes, limits.threads, limits.max_body_bytes) == (5, 3, 32 * 1024 * 1024)
    with pytest.raises(TaskError, match="at most 5 per task"):  # TASK has 6 classes
        VlmhubService(toy_hub, limits=limits).select(TASK)
    with pytest.raises(TaskError, match="limit is 4"):
        VlmhubService(toy_hub, limits=ServiceLimits(max_text_chars=4)).select(TASK)  # "orange"
    monkeypatch.setenv("VLMHUB_MAX_REQUEST_BYTES", "0")
    with pytest.raises(ConfigError, match="VLMHUB_MAX_REQUEST_BYTES"):
        Settings(home=settings.home)


def test_repeated_task_reuses_its_class_embeddings(service, toy_hub, monkeypatch):
    from vlmhub.tasks import Task

    first = service.select(TASK, k=2)
    assert toy_hub.knows_task(Task.from_dict(TASK)) and service.select_is_cheap(TASK)
    assert not service.select_is_cheap({**TASK, "classes": COLORS[:3]})
    assert not service.select_is_cheap({**TASK, "classes": ["red"]})  # invalid: the normal path refuses it
    sel = toy_hub.selector()
    encoded: list[int] = []
    real = type(sel.embedder_).encode
    monkeypatch.setattr(type(sel.embedder_), "encode", lambda self, texts: encoded.append(len(texts)) or real(self, texts))
    again = service.select(TASK, k=2)
    other_alpha = service.select(TASK, k=2, config={"alpha": 0.3})  # a query-time variant shares the cache
    assert again["classes"] == first["classes"] and encoded == []
    assert [c["name"] for c in other_alpha["classes"]] == COLORS
    service.select({**TASK, "classes": COLORS[:3]}, k=2)
    assert encoded  # a new task is encoded
