"""The web pages: each renders, shows the same numbers as the JSON API, and answers bad input with a 4xx page."""

from __future__ import annotations

import base64
import re

import numpy as np

import pytest

pytest.importorskip("fastapi", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
pytest.importorskip("jinja2", reason="the service extra (pip install 'vlmhub[service]') is part of vlmhub[test]")
from fastapi.testclient import TestClient  # noqa: E402

import webhome  # noqa: E402  (tests/webhome.py)
from vlmhub.evaluation.profile import hub_profiles  # noqa: E402
from vlmhub.service import VlmhubService  # noqa: E402
from vlmhub.service.app import create_app  # noqa: E402

TASK_QS = "classes=red%0Agreen%0Ablue%0Apurple&name=colors&domain=color+swatch&task=color+recognition&k=2"
TASK = {"name": "colors", "classes": ["red", "green", "blue", "purple"], "domain": "color swatch", "task": "color recognition"}


@pytest.fixture(scope="module")
def web_hub(tmp_path_factory, wordnet_dir):
    from vlmhub.settings import Settings, default_data_dir

    root = tmp_path_factory.mktemp("web")
    settings = Settings(home=root / "hub", data_dir=default_data_dir(), wordnet_dir=wordnet_dir, batch_size=16)
    return webhome.build_hub(settings, root)


@pytest.fixture(scope="module")
def client(web_hub):
    with TestClient(create_app(VlmhubService(web_hub, embedder="hashing256"))) as c:
        yield c


def _home_state(hub) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in hub.settings.home.rglob("*") if p.is_file()}


def _no_external(html: str) -> None:
    assert not re.search(r'(src|href)="(https?:)?//', html), "pages load nothing from the network"


def test_catalog_lists_filters_sorts_and_pages(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    _no_external(r.text)
    assert re.findall(r'<tr class="model" data-id="([^"]+)"', r.text) == ["toy-a", "toy-b", "toy-c"]
    assert r.text.count("badge ok") == 3  # all labeled
    by_top1 = client.get("/?sort=-top1").text
    assert re.findall(r'data-id="([^"]+)"', by_top1) == ["toy-b", "toy-a", "toy-c"]  # 0.75, 0.70, 0.65
    assert re.findall(r'data-id="([^"]+)"', client.get("/?q=blue").text) == ["toy-a"]  # "blind to blue/purple"
    assert re.findall(r'data-id="([^"]+)"', client.get("/?origin=builtin&q=toy").text) == ["toy-a", "toy-b", "toy-c"]
    assert "No model matches" in client.get("/?q=no-such-model").text
    for bad, code, words in (("/?sort=size", 400, "Use one of id"), ("/?origin=mars", 400, "origins: builtin"),
                             ("/?page=0", 400, "whole number"), ("/?page=2", 404, "Use ?page=1")):
        r = client.get(bad)
        assert r.status_code == code and words in r.text, bad


def test_model_page_has_one_axis_per_category_and_the_profile_numbers(client, web_hub):
    hp = hub_profiles(web_hub)
    assert hp.categories == ("noun.animal", "noun.artifact", "noun.attribute", "noun.food", "noun.object", "noun.plant")
    r = client.get("/models/toy-a")
    assert r.status_code == 200
    _no_external(r.text)
    svg = re.search(r"<svg.*?</svg>", r.text, re.S).group(0)
    assert "<title>" in svg and 'role="img"' in svg and "aria-label=" in svg
    assert re.findall(r'<g class="axis" data-axis="([^"]+)"', svg) == list(hp.categories)
    assert 'data-series="toy-a"' in svg and 'data-series="hub median"' in svg
    prof = hp.get("toy-a")
    med = dict(zip(hp.categories, hp.median()))
    for cat in hp.categories:
        row = re.search(rf'<tr data-category="{re.escape(cat)}">(.*?)</tr>', r.text, re.S).group(1)
        nums = re.findall(r'<td class="n">([^<]+)</td>', row)
        assert nums[1:] == [f"{prof.score(cat):.3f}", f"{med[cat]:.3f}"]
    assert prof.strongest(1)[0].name in r.text.split("Strongest concepts")[1].split("Weakest")[0]


def test_unknown_model_is_a_404_page_naming_the_known_ids(client):
    r = client.get("/models/no-such-model")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert "no-such-model" in r.text and "toy-a" in r.text


def test_compare_overlays_models_and_lists_differences(client, web_hub):
    r = client.get("/compare?ids=toy-a,toy-b,toy-c")
    assert r.status_code == 200
    assert re.findall(r'data-series="([^"]+)"', r.text) == ["hub median", "toy-a", "toy-b", "toy-c"]
    from vlmhub.evaluation.profile import largest_differences

    hp = hub_profiles(web_hub)
    top = largest_differences([hp.get(i) for i in ("toy-a", "toy-b", "toy-c")], n=15)[0]
    assert top[0].name in r.text.split("Where they differ most")[1]
    assert client.get("/compare").status_code == 200  # the empty form
    for bad, code in (("/compare?ids=toy-a", 400), ("/compare?ids=toy-a,nope", 404), ("/compare?ids=a,b,c,d,e,f", 400)):
        assert client.get(bad).status_code == code, bad


def test_task_page_numbers_equal_the_json_api(client, web_hub):
    api = client.post("/v1/select", json={"task": TASK, "k": 2}).json()
    r = client.get("/task?" + TASK_QS)
    assert r.status_code == 200
    _no_external(r.text)
    rows = re.findall(r'<tr class="class-row" data-class="([^"]+)">(.*?)</tr>', r.text, re.S)
    assert [name for name, _ in rows] == TASK["classes"]
    for (name, html), want in zip(rows, api["classes"]):
        got = [(m, float(s)) for m, s in re.findall(r'<li data-model="([^"]+)" data-score="([^"]+)"', html)]
        assert got == [(m["id"], m["score"]) for m in want["models"]]
        for n in want["nodes"]:
            assert n["name"] in html
    # the heatmap has every model x class, the top-k outlined
    cells = re.findall(r'<rect class="cell( top)?"', r.text)
    assert len(cells) == 3 * 4 and sum(1 for c in cells if c) == 4 * 2
    assert 'href="/task?' in r.text  # shareable link holds the task
    assert client.get("/task").status_code == 200  # the empty form


def test_bad_task_forms_are_4xx_pages_and_write_nothing(client, web_hub):
    before = _home_state(web_hub)
    for qs, code, words in (("classes=&name=x&k=2", 400, "one per line"),
                            ("classes=red%0Ablue&k=two", 400, "whole number"),
                            ("classes=red%0Ablue&k=9", 422, "k must be from 1 to 3"),
                            ("classes=red%0Ared&k=1", 422, "red")):
        r = client.get("/task?" + qs)
        assert r.status_code == code, (qs, r.status_code)
        assert words in r.text and 'role="alert"' in r.text
    assert _home_state(web_hub) == before


def test_predict_page_matches_the_json_api_and_shows_votes(client, web_hub, tmp_path):
    img = webhome.swatch_png("green", tmp_path / "g.png")
    form = {"classes": "red\ngreen\nblue\npurple", "name": "colors", "domain": "color swatch",
            "task": "color recognition", "k": "2"}
    r = client.post("/predict", data=form, files=[("images", ("g.png", img.read_bytes(), "image/png"))])
    assert r.status_code == 200
    api = client.post("/v1/predict", json={"task": TASK, "k": 2,
                                           "images": [{"name": "g.png", "data": base64.b64encode(img.read_bytes()).decode()}]}).json()
    want = api["predictions"][0]
    row = re.search(r'<tr class="prediction" data-image="g.png">(.*?)</tr>', r.text, re.S).group(1)
    assert f'<td class="pred">{want["class"]}</td>' in row
    assert f"{100 * want['confidence']:.1f}%" in row
    used = client.post("/v1/select", json={"task": TASK, "k": 2}).json()["models_used"]
    assert sorted(re.findall(r'<li data-model="([^"]+)"', row)) == sorted(used)
    assert client.get("/predict").status_code == 200


def test_bad_predict_forms_are_4xx_pages(client, web_hub, tmp_path):
    before = _home_state(web_hub)
    no_images = client.post("/predict", data={"classes": "red\nblue"}, files=[("images", ("", b"", "application/octet-stream"))])
    assert no_images.status_code == 400 and "no images were uploaded" in no_images.text
    not_image = client.post("/predict", data={"classes": "red\nblue"}, files=[("images", ("x.png", b"not an image", "image/png"))])
    assert 400 <= not_image.status_code < 500 and "x.png" in not_image.text
    no_classes = client.post("/predict", data={"classes": ""}, files=[("images", ("x.png", b"x", "image/png"))])
    assert no_classes.status_code == 400 and "no classes" in no_classes.text
    assert _home_state(web_hub) == before


def test_css_is_served_from_the_package(client):
    r = client.get("/static/web.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert "@media (max-width: 600px)" in r.text and "url(" not in r.text


def test_concept_sample_images_are_served_from_the_graph_only(client, web_hub):
    page = client.get("/models/toy-a").text
    srcs = re.findall(r'<img src="(/concepts/[^"]+)"[^>]*alt="sample image', page)
    assert srcs, "strongest/weakest concepts show sample images"
    r = client.get(srcs[0])
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    wnid = srcs[0].split("/")[2]
    node = next(n for n in web_hub.graph().nodes if n.id == wnid)
    assert client.get(f"/concepts/{wnid}/images/{len(node.images)}").status_code == 404
    assert client.get("/concepts/n00000000/images/0").status_code == 404
    assert client.get("/concepts/..%2F..%2Fetc/images/0").status_code == 404


def test_task_page_per_class_spider_has_one_axis_per_class(client):
    r = client.get("/task?" + TASK_QS)
    radar = re.search(r'<svg[^>]*class="chart radar".*?</svg>', r.text, re.S).group(0)
    assert re.findall(r'data-axis="([^"]+)"', radar) == TASK["classes"]
    api = client.post("/v1/select", json={"task": TASK, "k": 2}).json()
    assert sorted(re.findall(r'data-series="([^"]+)"', radar)) == sorted(api["models_used"])


def test_catalog_pages_a_large_hub_50_at_a_time(web_hub):
    """120 catalog models (the 3 labeled toys + 117 run-time registrations of the toy model class)."""
    from dataclasses import replace

    from vlmhub.hub import Hub
    from vlmhub.models.catalog import Catalog
    from vlmhub.models.toy import TOY_MODELS, ToyColorModel

    catalog = Catalog(web_hub.settings)
    extra = [f"toy-x{i:03d}" for i in range(117)]
    for i, mid in enumerate(extra):
        catalog.register(replace(TOY_MODELS[i % 3], id=mid, params_m=float(i)), ToyColorModel)
    hub = Hub(web_hub.settings, catalog=catalog, model_ids=list(webhome.TOY_IDS) + extra)
    with TestClient(create_app(VlmhubService(hub, embedder="hashing256"))) as c:
        pages = [c.get(f"/?page={p}") for p in (1, 2, 3)]
        ids = [re.findall(r'<tr class="model" data-id="([^"]+)"', r.text) for r in pages]
        assert [len(x) for x in ids] == [50, 50, 20]
        assert sum(ids, []) == sorted(list(webhome.TOY_IDS) + extra)
        assert 'rel="next"' in pages[0].text and 'rel="prev"' not in pages[0].text
        assert 'rel="prev"' in pages[2].text and 'rel="next"' not in pages[2].text
        assert "120 of 120 models" in pages[0].text
        assert [r.text.count("badge ok") for r in pages] == [3, 0, 0]  # toy-a..c sort first, toy-x* are not labeled
        assert c.get("/?page=4").status_code == 404
        heavy = re.findall(r'data-id="([^"]+)"', c.get("/?sort=-params&q=toy-x").text)
        assert heavy[:3] == ["toy-x116", "toy-x115", "toy-x114"] and len(heavy) == 50
        assert "117 of 120 models" in c.get("/?q=toy-x").text


def _catalog_rows(html: str) -> dict[str, dict]:
    """id -> the numbers and words of one catalog row, as the page prints them."""
    out = {}
    for mid, state, row in re.findall(r'<tr class="model" data-id="([^"]+)" data-state="([^"]+)">(.*?)</tr>', html, re.S):
        cell = {k: re.search(rf'<td class="[^"]*\b{k}">([^<]*)</td>', row).group(1).strip()
                for k in ("source", "params", "gflops", "licence", "coverage", "top1")}
        out[mid] = {"state": state, **cell}
    return out


def _printed(m: dict) -> dict:
    """How the page prints one entry of GET /v1/hub/models (the num/pct filters)."""
    def num(v):
        return "—" if v is None else f"{float(v):.1f}"

    def pct(v):
        return "—" if v is None else f"{100 * float(v):.1f}%"

    return {"state": m["state"], "source": m["source"], "params": num(m["params_m"]), "gflops": num(m["gflops"]),
            "licence": m["licence"] or "—", "coverage": pct(m["coverage"]), "top1": pct(m["imagenet_top1"])}


def test_catalog_numbers_equal_the_json_api_for_every_filter(client):
    for qs in ("", "?sort=-params", "?state=ready&source=builtin", "?min_params=0&max_params=1000", "?q=toy&sort=-coverage"):
        page = _catalog_rows(client.get("/" + qs).text)
        api = client.get("/v1/hub/models" + qs)
        assert api.status_code == 200, (qs, api.text)
        models = api.json()["models"]
        assert list(page) == [m["id"] for m in models], qs  # same entries, same order
        assert page == {m["id"]: _printed(m) for m in models}, qs
    rows = _catalog_rows(client.get("/").text)
    assert {r["state"] for r in rows.values()} == {"ready"} and {r["coverage"] for r in rows.values()} == {"100.0%"}
    assert {r["source"] for r in rows.values()} == {"builtin"}


def test_bad_catalog_filters_are_400_pages_naming_the_fix(client, web_hub):
    before = _home_state(web_hub)
    for qs, words in (("state=mars", "Use one of submitted, checking, queued, labeling, ready, rejected"),
                      ("source=mars", "sources: builtin"),
                      ("min_params=lots", "min_params=150"),
                      ("max_params=-3", "max_params must be a number"),
                      ("min_params=10&max_params=1", "swap them"),
                      ("sort=-size", "Use one of id")):
        r = client.get("/?" + qs)
        assert r.status_code == 400 and words in r.text and 'role="alert"' in r.text, (qs, r.status_code)
        api = client.get("/v1/hub/models?" + qs)
        assert api.status_code == 422 and words in api.json()["detail"], qs
    assert _home_state(web_hub) == before  # a page view creates no hub database either
    assert not (web_hub.settings.home / "hub.db").exists()


def test_catalog_shows_the_hub_database_states_and_label_coverage(toy_hub):
    """Submissions in every state of the hub database, one half labeled: the page shows each state, the
    licence, the size filter and the fraction of the current graph's nodes labeled, as the API does."""
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.catalog import create_submission, set_model_state, update_model_spec
    from vlmhub.hubdb.jobs import claim, enqueue_label_jobs, finish, shard_nodes

    from vlmhub.hub import Hub

    hub = Hub(toy_hub.settings.with_(database_url=None), model_ids=toy_hub.model_ids)  # the SQLite file in the home
    graph = hub.graph()
    nodes = [n.id for n in graph.nodes]
    with HubDB(hub.settings) as db:
        for i, (mid, licence, params) in enumerate((("sub-new", "MIT", 12.5), ("sub-bad", None, 3.0),
                                                    ("sub-half", "Apache-2.0", 150.0))):
            create_submission(db, model_id=mid, source=f"hf:/packages/{mid}", spec={}, submitter="alice",
                              package_sha256=f"{i:064x}", package_bytes=100, licence=licence, params_m=params)
        set_model_state(db, "sub-bad", "checking")
        set_model_state(db, "sub-bad", "rejected", reasons=["weights are not safetensors"])
        set_model_state(db, "sub-half", "checking")
        update_model_spec(db, "sub-half", {"id": "sub-half", "family": "clip", "backbone": "ViT-T"}, params_m=150.0, gflops=4.5)
        shards = shard_nodes(nodes, -(-len(nodes) // 2))
        enqueue_label_jobs(db, "sub-half", shards, graph_version=graph.version)
        lease = claim(db, "w1")
        finish(db, lease, np.zeros((1, 4), np.float32))
    want_cov = len(shards[0]) / len(nodes)
    with TestClient(create_app(VlmhubService(hub, embedder="hashing256"))) as c:
        html = c.get("/").text
        rows = _catalog_rows(html)
        api = c.get("/v1/hub/models").json()["models"]
        assert rows == {m["id"]: _printed(m) for m in api}
        assert {k: r["state"] for k, r in rows.items()} == {
            "sub-bad": "rejected", "sub-half": "labeling", "sub-new": "submitted",
            "toy-a": "ready", "toy-b": "ready", "toy-c": "ready"}
        assert rows["sub-half"]["coverage"] == f"{100 * want_cov:.1f}%" and 0 < want_cov < 1
        assert rows["sub-new"]["coverage"] == "0.0%" and rows["sub-new"]["licence"] == "MIT"
        assert rows["sub-half"]["gflops"] == "4.5" and rows["sub-half"]["source"] == "hf"
        assert 'title="weights are not safetensors"' in html
        assert list(_catalog_rows(c.get("/?state=labeling").text)) == ["sub-half"]
        assert list(_catalog_rows(c.get("/?source=hf&min_params=10&max_params=100").text)) == ["sub-new"]
        assert list(_catalog_rows(c.get("/?sort=-coverage&source=hf").text)) == ["sub-half", "sub-bad", "sub-new"]
        r = c.get("/?source=open_clip")
        assert r.status_code == 400 and "sources: builtin, hf" in r.text
        # every catalog row links to its page; a submission's page shows its state and labeling progress
        assert 'href="/models/sub-half"' in html and 'href="/models/sub-bad"' in html
        page = c.get("/models/sub-half")
        assert page.status_code == 200 and 'data-state="labeling"' in page.text
        assert f'value="{want_cov}"' in page.text and f"{100 * want_cov:.1f}% of the graph" in page.text
        assert 'http-equiv="refresh"' in page.text  # live while it is labeled, without JavaScript
        page = c.get("/models/sub-bad")
        assert 'data-state="rejected"' in page.text and "weights are not safetensors" in page.text
        assert 'http-equiv="refresh"' not in page.text
        assert c.get("/models/no-such-model").status_code == 404


def _picks(html: str) -> list[tuple[str, list[tuple[str, float]]]]:
    rows = re.findall(r'<tr class="class-row" data-class="([^"]+)">(.*?)</tr>', html, re.S)
    return [(name, [(m, float(s)) for m, s in re.findall(r'<li data-model="([^"]+)" data-score="([^"]+)"', row)])
            for name, row in rows]


def test_task_json_upload_gives_the_json_api_numbers_and_a_shareable_link(client):
    import json

    r = client.post("/task", data={"k": "2"}, files={"task_file": ("colors.json", json.dumps(TASK).encode(), "application/json")})
    assert r.status_code == 200, r.text[:500]
    api = client.post("/v1/select", json={"task": TASK, "k": 2}).json()
    assert _picks(r.text) == [(c["name"], [(m["id"], m["score"]) for m in c["models"]]) for c in api["classes"]]
    share = re.search(r'<a class="share" href="([^"]+)"', r.text).group(1).replace("&amp;", "&")
    assert _picks(client.get(share).text) == _picks(r.text)  # the link reopens the same task
    # a file with captions: selection uses them (the API with the same captions gives the same numbers)
    caps = {**TASK, "captions": {"red": ["a red swatch"], "blue": ["a blue swatch"]}}
    r = client.post("/task", data={"k": "1"}, files={"task_file": ("caps.json", json.dumps(caps).encode(), "application/json")})
    assert r.status_code == 200 and 'class="note"' in r.text and "2 captions of caps.json" in r.text
    api = client.post("/v1/select", json={"task": caps, "k": 1}).json()
    assert _picks(r.text) == [(c["name"], [(m["id"], m["score"]) for m in c["models"]]) for c in api["classes"]]
    assert 'name="task_file"' in client.get("/task").text and 'for="task_file"' in client.get("/task").text


def test_bad_task_json_uploads_are_4xx_pages_naming_the_fix(client, web_hub):
    before = _home_state(web_hub)
    example = "{&#34;name&#34;: &#34;pets&#34;, &#34;classes&#34;: [&#34;cat&#34;, &#34;dog&#34;]"  # the fix: a task file's shape
    cases = ((b'{"name": "x", "classes": ["a", "b"', 400, ("not valid JSON (line 1", example)),
             (b'["red", "blue"]', 400, ("holds a JSON list, not an object", example)),
             (b"", 400, ("is empty", example)),
             (b"\xff\xfe{}", 400, ("not UTF-8", "Save it as UTF-8 JSON")),
             (b'{"name": "x", "classes": ["red", "blue"], "colour": 1}', 400, ("unknown task field", "Allowed: name, classes")),
             (b'{"name": "x", "classes": ["red", "Red"]}', 400, ("more than once", "Remove the duplicates")),
             (b'{"name": "x", "classes": ["red", "blue"]}', 422, ("k must be from 1 to 3", "")))
    for body, code, words in cases:
        r = client.post("/task", data={"k": "9" if code == 422 else "2"}, files={"task_file": ("t.json", body, "application/json")})
        assert r.status_code == code and 'role="alert"' in r.text, (body, r.status_code)
        assert all(w in r.text for w in words), (body, words, r.text[-700:])
    r = client.post("/task", data={"k": "2"}, files={"task_file": ("", b"", "application/octet-stream")})
    assert r.status_code == 400 and "no task file was uploaded" in r.text and 'href="/task"' in r.text
    r = client.post("/task", data={"k": "two"}, files={"task_file": ("t.json", b'{"name": "x", "classes": ["red", "blue"]}', "application/json")})
    assert r.status_code == 400 and "whole number" in r.text
    assert _home_state(web_hub) == before
