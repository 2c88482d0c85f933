"""Hostile and malformed requests against the HTTP service: each is a 4xx problem body, never a 5xx, and
the hub home is byte-for-byte unchanged (file listing + sha256 before and after)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import struct
import zlib

import pytest

fastapi = pytest.importorskip("fastapi", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
from fastapi.testclient import TestClient  # noqa: E402

from vlmhub.service import VlmhubService  # noqa: E402
from vlmhub.service.app import create_app  # noqa: E402

TASK = {"name": "color-task", "domain": "color swatch", "classes": ["red", "green", "blue"]}
LIMITS = dict(rate_limit=0, max_request_bytes=200_000, max_upload_bytes=400_000, max_task_classes=50, max_text_chars=64, max_class_captions=4,
              max_request_images=3, max_image_pixels=1_000_000)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, wordnet_dir, color_data):
    """One labeled toy hub with small limits (Settings fields) behind one app, for every case."""
    from vlmhub.hub import Hub
    from vlmhub.settings import Settings

    root = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VLMHUB_HOME", str(root / "hub"))
        mp.setenv("VLMHUB_WORDNET", str(wordnet_dir))
        mp.setenv("VLMHUB_USER_DATA", str(root / "user-data"))
        settings = Settings(home=root / "hub", wordnet_dir=wordnet_dir, user_data_dir=root / "user-data",
                            batch_size=16, **LIMITS)
        hub = Hub(settings, model_ids=["toy-a", "toy-b", "toy-c"])
        hub.label(sample_sets=[color_data["samples"]], progress=False)
        with TestClient(create_app(VlmhubService(hub, embedder="hashing256")), raise_server_exceptions=False) as client:
            # warm: the selector is fitted and the valid task's captions cached, so what follows must write nothing
            assert client.post("/v1/select", json={"task": TASK, "k": 1}).status_code == 200
            yield client, settings.home


def _listing(home) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file()}


def _png(width: int, height: int, *, idat: bool = True) -> bytes:
    """A PNG whose header claims ``width x height`` (a decompression bomb when large and ``idat``-less)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    if idat:
        body += chunk(b"IDAT", zlib.compress(b"\x00" * (width * 3 + 1) * height))
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IEND", b"")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _img(name="a.png", raw=None):
    return {"name": name, "data": _b64(raw if raw is not None else _png(4, 4))}


def _raw(text: str) -> dict:
    """A request with this exact body text (e.g. JSON escapes Python's json would never write)."""
    return {"content": text.encode("utf-8"), "headers": {"content-type": "application/json"}}


def _chunks(total: int):
    yield b'{"task": {"name": "x", "classes": ["'
    for _ in range(total // 10_000):
        yield b"a" * 10_000
    yield b'", "b"]}}'


def _zip_bomb_b64() -> str:
    """A tiny zip that unpacks to 20 MB of zeros: sent as an "image" it is just undecodable bytes."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb.png", b"\x00" * 20_000_000)
    return _b64(buf.getvalue())


SEL, PRED = "/v1/select", "/v1/predict"
CASES = {
    # -- not JSON, or not the right JSON --------------------------------------------------------------
    "invalid-json": ("POST", SEL, _raw("{not json"), 400),
    "truncated-json": ("POST", SEL, _raw('{"task": {"name": '), 400),
    "deeply-nested-json": ("POST", SEL, _raw("[" * 50_000 + "]" * 50_000), 400),
    "json-array-body": ("POST", SEL, {"json": [1, 2, 3]}, 422),
    "json-string-body": ("POST", SEL, {"json": "select please"}, 422),
    "empty-body": ("POST", SEL, {"content": b"", "headers": {"content-type": "application/json"}}, 422),
    "text-plain-body": ("POST", SEL, {"content": b"task=cats", "headers": {"content-type": "text/plain"}}, 422),
    "not-utf8-body": ("POST", SEL, {"content": b'{"task": "\xff\xfe"}', "headers": {"content-type": "application/json"}}, 400),
    # -- wrong types and ranges ---------------------------------------------------------------------
    "task-missing": ("POST", SEL, {"json": {"k": 1}}, 422),
    "classes-a-string": ("POST", SEL, {"json": {"task": {**TASK, "classes": "red,green"}}}, 422),
    "class-a-number": ("POST", SEL, {"json": {"task": {**TASK, "classes": ["red", 7]}}}, 422),
    "k-a-word": ("POST", SEL, {"json": {"task": TASK, "k": "three"}}, 422),
    "k-negative": ("POST", SEL, {"json": {"task": TASK, "k": -1}}, 422),
    "k-huge": ("POST", SEL, {"json": {"task": TASK, "k": 10**30}}, 422),
    "k-fractional": ("POST", SEL, {"json": {"task": TASK, "k": 1.5}}, 422),
    "k-beyond-the-hub": ("POST", SEL, {"json": {"task": TASK, "k": 4}}, 422),
    "unknown-field": ("POST", SEL, {"json": {"task": TASK, "admin": True}}, 422),
    "config-not-an-object": ("POST", SEL, {"json": {"task": TASK, "config": 5}}, 422),
    "unknown-selection-option": ("POST", SEL, {"json": {"task": TASK, "config": {"__class__": 1}}}, 422),
    "alpha-nan": ("POST", SEL, _raw(json.dumps({"task": TASK}).replace("}}", '}, "config": {"alpha": NaN}}')), 422),
    "alpha-infinity": ("POST", SEL, _raw(json.dumps({"task": TASK})[:-1] + ', "config": {"alpha": Infinity}}'), 422),
    "k-nodes-1e300": ("POST", SEL, {"json": {"task": TASK, "config": {"k_nodes": 1e300}}}, 422),
    "caption-sources-a-number": ("POST", SEL, {"json": {"task": TASK, "config": {"caption_sources": 3}}}, 422),
    "bad-weighting": ("POST", PRED, {"json": {"task": TASK, "images": [_img()], "weighting": "max"}}, 422),
    # -- limits (Settings fields) -----------------------------------------------------------------
    "too-many-classes": ("POST", SEL, {"json": {"task": {**TASK, "classes": [f"c{i}" for i in range(51)]}}}, 422),
    "huge-class-name": ("POST", SEL, {"json": {"task": {**TASK, "classes": ["red", "g" * 65]}}}, 422),
    "too-many-captions": ("POST", SEL, {"json": {"task": {**TASK, "captions": {"red": ["a red thing"] * 5}}}}, 422),
    "huge-body-content-length": ("POST", SEL, {"json": {"task": {**TASK, "classes": ["red", "x" * 300_000]}}}, 413),
    "huge-body-streamed": ("POST", SEL, {"content": _chunks(400_000), "headers": {"content-type": "application/json"}}, 413),
    "too-many-images": ("POST", PRED, {"json": {"task": TASK, "images": [_img(f"{i}.png") for i in range(4)]}}, 422),
    "huge-upload": ("POST", "/v1/submissions", {"content": b"0" * 500_000, "headers": {"content-type": "application/zip"}}, 413),
    # an upload route has its own, larger limit: 300 kB passes the byte check (then: no token, or no route)
    "upload-below-its-limit": ("POST", "/v1/submissions", {"content": b"0" * 300_000,
                                                           "headers": {"content-type": "application/zip"}}, (401, 404, 422)),
    # -- text that is not text ------------------------------------------------------------------------
    "surrogate-class-name": ("POST", SEL, _raw('{"task": {"name": "t", "classes": ["\\ud800", "blue"]}}'), 422),
    "surrogate-task-name": ("POST", SEL, _raw('{"task": {"name": "\\udfff", "classes": ["red", "blue"]}}'), 422),
    "surrogate-caption": ("POST", SEL, _raw('{"task": {"name": "t", "classes": ["red", "blue"], '
                                             '"captions": {"red": ["\\ud83d"]}}}'), 422),
    "surrogate-image-name": ("POST", PRED, _raw(json.dumps({"task": TASK, "images": [_img("IMG")]}).replace("IMG", "\\udc00")), 422),
    "nul-in-class-name": ("POST", SEL, {"json": {"task": {**TASK, "classes": ["red\x00", "blue"]}}}, 422),
    "empty-task-name": ("POST", SEL, {"json": {"task": {**TASK, "name": ""}}}, 422),
    "blank-task-name": ("POST", SEL, {"json": {"task": {**TASK, "name": "   "}}}, 422),
    "duplicate-classes": ("POST", SEL, {"json": {"task": {**TASK, "classes": ["red", "RED "]}}}, 422),
    # -- paths, unknown names ------------------------------------------------------------------------------
    "path-task-name": ("POST", SEL, {"json": {"task": {**TASK, "name": "../../etc/passwd"}}}, 422),
    "absolute-image-name": ("POST", PRED, {"json": {"task": TASK, "images": [_img("/etc/passwd")]}}, 422),
    "dotdot-image-name": ("POST", PRED, {"json": {"task": TASK, "images": [_img("a/../../b.png")]}}, 422),
    "path-table": ("POST", "/v1/tables/..%2F..%2Fetc%2Fpasswd/rank", {"json": {"task": TASK}}, (404, 422)),
    "unknown-table": ("POST", "/v1/tables/etc-passwd/rank", {"json": {"task": TASK}}, 422),
    "unknown-selector": ("POST", "/v1/tables/openclip/rank", {"json": {"task": TASK, "selector": "os.system"}}, 422),
    "unknown-model": ("GET", "/v1/models/no-such-model", {}, 404),
    "path-model-id": ("GET", "/v1/models/..%2F..%2Fetc%2Fpasswd", {}, 404),
    "unknown-route": ("GET", "/v1/admin", {}, 404),
    "wrong-method": ("DELETE", "/v1/models", {}, 405),
    # -- images that are not images ---------------------------------------------------------------------
    "bad-base64": ("POST", PRED, {"json": {"task": TASK, "images": [{"name": "a", "data": "%%%not base64%%%"}]}}, 422),
    "not-an-image": ("POST", PRED, {"json": {"task": TASK, "images": [_img(raw=b"GIF89a but not really")]}}, 422),
    "png-bomb-header": ("POST", PRED, {"json": {"task": TASK, "images": [_img(raw=_png(100_000, 100_000, idat=False))]}}, 422),
    "png-above-pixel-limit": ("POST", PRED, {"json": {"task": TASK, "images": [_img(raw=_png(1001, 1000, idat=False))]}}, 422),
    "truncated-png": ("POST", PRED, {"json": {"task": TASK, "images": [_img(raw=_png(8, 8)[:40])]}}, 422),
    "zip-bomb-as-image": ("POST", PRED, {"json": {"task": TASK, "images": [{"name": "z", "data": _zip_bomb_b64()}]}}, 422),
    "duplicate-image-names": ("POST", PRED, {"json": {"task": TASK, "images": [_img("a"), _img("a")]}}, 422),
    "no-images": ("POST", PRED, {"json": {"task": TASK, "images": []}}, 422),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_request_is_a_4xx_problem_and_changes_nothing(hostile, case):
    client, home = hostile
    method, path, kwargs, status = CASES[case]
    before = _listing(home)
    r = client.request(method, path, **kwargs)
    assert r.status_code in (status if isinstance(status, tuple) else (status,)), (case, r.status_code, r.text[:500])
    assert r.headers["content-type"] == "application/problem+json", case
    body = r.json()
    assert set(body) >= {"type", "title", "status", "detail"} and body["status"] == r.status_code, body
    assert isinstance(body["detail"], str) and len(body["detail"]) > 20, body  # says what is wrong
    assert "Traceback" not in r.text and str(home) not in r.text, body  # no internals, no server paths
    assert _listing(home) == before, f"{case} changed the hub home"


def test_the_cases_cover_enough_ground():
    assert len(CASES) >= 30
    assert {s for *_, s in CASES.values() if isinstance(s, int)} >= {400, 404, 405, 413, 422}


def test_a_valid_request_still_works_after_the_hostile_ones(hostile):
    client, _ = hostile
    r = client.post(PRED, json={"task": TASK, "k": 1, "images": [_img("ok.png", _png(8, 8))]})
    assert r.status_code == 200, r.text
    assert [p["image"] for p in r.json()["predictions"]] == ["ok.png"]
    assert client.get("/v1/health").json()["status"] == "ok"


# -- schemathesis over the app's own OpenAPI schema -------------------------------------------------------
# (schemathesis' pytest plugin, ``from_fixture``, does not run under pytest 9: the operations are driven with
# Hypothesis directly, which is what the plugin does)


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_schemathesis_finds_no_server_error(hostile, mode):
    """Up to 20 generated requests per operation and mode (schema-valid, then schema-violating): never a 5xx,
    and every error answer is a problem body."""
    schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is part of vlmhub[test]")
    from hypothesis import HealthCheck, given, settings as hsettings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    client, home = hostile
    before = _listing(home)
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    seen: dict[str, set[int]] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for op in operations:
        @given(case=op.as_strategy(generation_mode=GenerationMode(mode)))
        @hsettings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call_and_validate(checks=[not_a_server_error])
            seen.setdefault(op.label, set()).add(response.status_code)
            if response.status_code >= 400:
                assert response.headers["content-type"][0].startswith("application/problem+json"), response.text[:300]

        try:
            run()
        except Unsatisfiable:  # a route without parameters or body has no schema-violating request
            assert mode == "negative" and op.method.upper() == "GET" and "{" not in op.path, op.label
    assert {"POST /v1/select", "POST /v1/predict"} <= set(seen), seen
    assert all(code < 500 for codes in seen.values() for code in codes), seen
    if mode == "negative":  # schema-violating requests write nothing to the home
        assert _listing(home) == before
