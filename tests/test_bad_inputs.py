"""A table of hostile inputs (issue 10): every one gets a clean refusal and leaves the hub home untouched.

CLI cases: exit code 2, a single ``error:`` line on stderr, no traceback. HTTP cases: a 4xx status with a
one-line JSON problem, never a 500. For every case the hub home (file list + sha256 of every file) is the
same before and after.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vlmhub.cli.main import main

TOYS = "toy-a,toy-b,toy-c"
COLORS = ["red", "orange", "yellow", "green", "blue", "purple"]
TASK = {"name": "color-task", "domain": "color swatch", "task": "color recognition", "classes": COLORS}


def snapshot(home: Path) -> dict[str, str]:
    """Every file of the home with its sha256. SQLite's ``-shm`` wal-index is left out: it is shared memory
    that any *reader* of the text cache updates, holds no data and is rebuilt from the ``-wal`` file; the
    database and its ``-wal`` journal (where a write would land) are compared."""
    return {str(p.relative_to(home)): (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            for p in sorted(home.rglob("*")) if not p.name.endswith("-shm")}


@pytest.fixture(scope="module")
def env(tmp_path_factory, wordnet_dir, color_data):
    """A labeled toy home (selection caches warmed by one good select) and a folder of bad input files."""
    from vlmhub.hub import Hub
    from vlmhub.settings import Settings, default_data_dir
    from vlmhub.tasks import Task

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("bad-inputs")
    home = root / "hub"
    mp.setenv("VLMHUB_HOME", str(home))
    mp.setenv("VLMHUB_WORDNET", str(wordnet_dir))
    mp.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(home=home, data_dir=default_data_dir(), wordnet_dir=wordnet_dir, batch_size=16)
    hub = Hub(settings, model_ids=TOYS.split(","))
    hub.label(sample_sets=[color_data["samples"]], progress=False)
    hub.select(Task.from_dict(TASK), k=2)  # warm the text cache: later refusals must not write anything
    files = root / "in"
    files.mkdir()

    def task(name, obj):
        (files / name).write_text(json.dumps(obj), encoding="utf-8")

    task("int-domain.json", {**TASK, "domain": 7})
    task("list-domain.json", {**TASK, "domain": ["a"]})
    task("int-task.json", {**TASK, "task": 3})
    task("caps-list.json", {**TASK, "captions": ["a red thing"]})
    task("caps-str.json", {**TASK, "captions": "red"})
    task("caps-int.json", {**TASK, "captions": {"red": 5}})
    task("caps-unknown.json", {**TASK, "captions": {"pink": ["x"]}})
    task("sur-class.json", {**TASK, "classes": ["red", "gr\ud800een"]})
    task("sur-name.json", {**TASK, "name": "t\udfff"})
    task("sur-caption.json", {**TASK, "captions": {"red": ["a \ud83d red"]}})
    task("sur-domain.json", {**TASK, "domain": "\ud800"})
    task("int-name.json", {**TASK, "name": 5})
    task("classes-str.json", {**TASK, "classes": "red,green"})
    task("classes-int.json", {**TASK, "classes": ["red", 1]})
    task("one-class.json", {**TASK, "classes": ["red"]})
    task("no-classes.json", {**TASK, "classes": []})
    task("dups.json", {**TASK, "classes": ["red", "Red"]})
    task("unknown-field.json", {**TASK, "colour": 1})
    task("array.json", [TASK])
    task("samples.json", {"name": "s", "kind": "concept-samples", "classes": ["n04962784", "n04965179"]})
    (files / "latin1.json").write_bytes(json.dumps({**TASK, "name": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"))
    (files / "broken.json").write_text("{nope")
    (files / "empty.json").write_text("")
    (files / "nodataset").mkdir()
    (files / "a-folder.png").mkdir()
    (files / "a-folder.csv").mkdir()
    (files / "not-an-image.png").write_bytes(b"hello")
    badset = files / "badwnid"
    (badset / "n99999999").mkdir(parents=True)
    import shutil

    shutil.copy(color_data["samples"] / "n04962784" / "s0.png", badset / "n99999999" / "s0.png")
    notwnid = files / "notwnid"
    (notwnid / "red").mkdir(parents=True)
    shutil.copy(color_data["samples"] / "n04962784" / "s0.png", notwnid / "red" / "s0.png")
    emptyset = files / "emptyset"
    (emptyset / "n04962784").mkdir(parents=True)
    yield {"settings": settings, "hub": hub, "files": files, "task": color_data["task"], "samples": color_data["samples"]}
    mp.undo()


T = "{task}"
F = "{files}"
SEL = ["select", T, "--models", TOYS]
PRED = ["predict", T, T + "/red", "--models", TOYS]
EVAL = ["evaluate", T, "--models", TOYS, "-q"]
LABEL = ["label", "--models", TOYS, "--samples", "{samples}", "-q"]
RANK = ["rank-models", "openclip", "--task"]

CLI_CASES = [
    # item 4: numeric selection options
    SEL + ["--k", "0"], SEL + ["--k", "-1"], SEL + ["--k", "1000000000"], SEL + ["--k", "4"], SEL + ["--k", "abc"],
    SEL + ["--nodes", "0"], SEL + ["--nodes", "-3"], SEL + ["--nodes", "1000000"], SEL + ["--alpha", "-0.1"],
    SEL + ["--alpha", "2"], SEL + ["--alpha", "nan"], SEL + ["--metric", "recall"], SEL + ["--rendition", "sepia"],
    SEL + ["--models", "toy-a,nope"],
    RANK + [T + "/dataset.json", "--top", "0"], RANK + [T + "/dataset.json", "--top", "-1"],
    RANK + [F + "/sur-class.json"], RANK + [F + "/caps-list.json"], RANK + [F + "/int-domain.json"],
    # items 5, 8, 9: task files
    ["select", F + "/int-domain.json", "--models", TOYS],
    ["select", F + "/int-domain.json", "--models", TOYS, "--rendition", "auto"],
    ["select", F + "/list-domain.json", "--models", TOYS], ["select", F + "/int-task.json", "--models", TOYS],
    ["select", F + "/caps-list.json", "--models", TOYS], ["select", F + "/caps-str.json", "--models", TOYS],
    ["select", F + "/caps-int.json", "--models", TOYS], ["select", F + "/caps-unknown.json", "--models", TOYS],
    ["select", F + "/sur-class.json", "--models", TOYS], ["select", F + "/sur-name.json", "--models", TOYS],
    ["select", F + "/sur-caption.json", "--models", TOYS], ["select", F + "/sur-domain.json", "--models", TOYS],
    ["select", F + "/int-name.json", "--models", TOYS], ["select", F + "/classes-str.json", "--models", TOYS],
    ["select", F + "/classes-int.json", "--models", TOYS], ["select", F + "/one-class.json", "--models", TOYS],
    ["select", F + "/no-classes.json", "--models", TOYS], ["select", F + "/dups.json", "--models", TOYS],
    ["select", F + "/unknown-field.json", "--models", TOYS], ["select", F + "/array.json", "--models", TOYS],
    ["select", F + "/samples.json", "--models", TOYS], ["select", F + "/latin1.json", "--models", TOYS],
    ["select", F + "/broken.json", "--models", TOYS], ["select", F + "/empty.json", "--models", TOYS],
    ["select", F + "/missing.json", "--models", TOYS], ["select", F + "/nodataset", "--models", TOYS],
    # item 8: output paths
    SEL + ["--plot", F + "/a-folder.png"], SEL + ["--plot", "/proc/vlmhub-test.png"],
    SEL + ["--plot", "/proc/no/such/dir/x.png"],
    PRED + ["--k", "0"], PRED + ["--k", "1000"], PRED + ["--batch-size", "0"], PRED + ["--out", F + "/a-folder.csv"],
    PRED + ["--out", "/proc/vlmhub-test.csv"], PRED + ["--weighting", "max"], PRED + ["--alpha", "5"],
    ["predict", T, F + "/missing.png", "--models", TOYS], ["predict", T, F + "/not-an-image.png", "--models", TOYS],
    EVAL + ["--limit-per-class", "-1"], EVAL + ["--limit-per-class", "0"], EVAL + ["--plot", F + "/a-folder.png"],
    EVAL + ["--k", "0"], ["evaluate", F + "/sur-class.json", "--models", TOYS, "-q"],
    # item 3: labeling options and concept-sample sets
    LABEL + ["--max-images", "0"], LABEL + ["--max-images", "-1"], LABEL + ["--max-images", "1000000000"],
    LABEL + ["--max-per-concept", "0"], LABEL + ["--max-per-concept", "-1"], LABEL + ["--renditions", "sepia"],
    ["label", "--models", TOYS, "--samples", F + "/nope", "-q"], ["label", "--models", TOYS, "--samples", F + "/badwnid", "-q"],
    ["label", "--models", TOYS, "--samples", F + "/notwnid", "-q"], ["label", "--models", TOYS, "--samples", F + "/emptyset", "-q"],
    ["label", "--models", "toy-a,nope", "--samples", "{samples}", "-q"],
]


@pytest.mark.parametrize("argv", CLI_CASES, ids=lambda a: " ".join(a).replace("{", "").replace("}", "")[:90])
def test_bad_cli_input_is_refused_cleanly(env, capsys, argv):
    home = env["settings"].home
    argv = [a.format(task=env["task"], files=env["files"], samples=env["samples"]) for a in argv]
    before = snapshot(home)
    try:
        code = main(["--home", str(home), *argv])
    except SystemExit as exc:  # argparse's own refusals (bad choice, not a number)
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in out + err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1 and "error:" in lines[0], err
    assert snapshot(home) == before  # nothing written to the hub home


# -- HTTP ------------------------------------------------------------------------------------------

SUR = "gr\ud800een"


def _img(env):
    import base64

    f = sorted((env["task"] / "red").iterdir())[0]
    return [{"name": "r.png", "data": base64.b64encode(f.read_bytes()).decode()}]


HTTP_CASES = [
    ("select", {"task": TASK, "k": 0}), ("select", {"task": TASK, "k": -1}), ("select", {"task": TASK, "k": 10**9}),
    ("select", {"task": TASK, "k": 4}), ("select", {"task": TASK, "k": 2.5}),
    ("select", {"task": TASK, "config": {"alpha": 2}}), ("select", {"task": TASK, "config": {"alpha": -1}}),
    ("select", {"task": TASK, "config": {"alpha": "x"}}), ("select", {"task": TASK, "config": {"k_nodes": 0}}),
    ("select", {"task": TASK, "config": {"k_nodes": 10**6}}), ("select", {"task": TASK, "config": {"k_nodes": 2.5}}),
    ("select", {"task": TASK, "config": {"metric": "recall"}}), ("select", {"task": TASK, "config": {"rendition": "sepia"}}),
    ("select", {"task": TASK, "config": {"temperature": 1}}), ("select", {"task": TASK, "config": {"normalize_z": "yes"}}),
    ("select", {"task": TASK, "config": {"caption_sources": 5}}),
    ("select", {"task": {**TASK, "name": ""}}), ("select", {"task": {"classes": COLORS}}),
    ("select", {"task": {**TASK, "classes": []}}), ("select", {"task": {**TASK, "classes": ["red"]}}),
    ("select", {"task": {**TASK, "classes": ["red", "red"]}}), ("select", {"task": {**TASK, "classes": "red"}}),
    ("select", {"task": {**TASK, "domain": 5}}), ("select", {"task": {**TASK, "captions": ["x"]}}),
    ("select", {"task": {**TASK, "captions": {"pink": ["x"]}}}), ("select", {"task": {**TASK, "classes": ["red", SUR]}}),
    ("select", {"task": {**TASK, "name": SUR}}), ("select", {"task": {**TASK, "domain": SUR}}),
    ("select", {"task": {**TASK, "captions": {"red": [SUR]}}}), ("select", {"task": {**TASK, "colour": 1}}),
    ("select", {"k": 3}), ("select", [TASK]),
    ("predict", {"task": TASK, "images": []}), ("predict", {"task": TASK, "images": [{"name": "x", "data": "@@@"}]}),
    ("predict", {"task": TASK, "images": [{"name": "x", "data": "aGVsbG8="}]}), ("predict", {"task": TASK, "images": "IMG", "k": 0}),
    ("predict", {"task": TASK, "images": "IMG", "k": 99}), ("predict", {"task": TASK, "images": "IMG", "weighting": "max"}),
    ("predict", {"task": {**TASK, "classes": ["red", SUR]}, "images": "IMG"}),
    ("rank/openclip", {"task": TASK, "top": 0}), ("rank/openclip", {"task": TASK, "top": -1}),
    ("rank/nope", {"task": TASK}), ("rank/openclip", {"task": {**TASK, "name": SUR}}),
]


@pytest.fixture(scope="module")
def client(env):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from vlmhub.service import VlmhubService
    from vlmhub.service.app import create_app

    with TestClient(create_app(VlmhubService(env["hub"], embedder="hashing256")), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("endpoint, body", HTTP_CASES, ids=[f"{i}-{e}" for i, (e, _) in enumerate(HTTP_CASES)])
def test_bad_http_request_is_refused_cleanly(env, client, endpoint, body):
    home = env["settings"].home
    if isinstance(body, dict) and body.get("images") == "IMG":
        body = {**body, "images": _img(env)}
    url = f"/v1/tables/{endpoint.split('/')[1]}/rank" if endpoint.startswith("rank/") else f"/v1/{endpoint}"
    before = snapshot(home)
    # lone surrogates cannot be UTF-8 encoded by a client library: send the JSON escape, as a hostile client would
    content = json.dumps(body).encode("ascii")
    r = client.post(url, content=content, headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert "Traceback" not in r.text
    d = r.json()
    if "error" in d:
        assert "\n" not in d["error"]["message"] and d["error"]["message"]
    else:
        assert d.get("detail")
    assert snapshot(home) == before


# -- targeted regressions (issue 10 items 3, 4, 5, 8, 9) ----------------------------------------------


def test_label_max_images_zero_never_switches_the_current_graph(settings, color_data, capsys):
    """Item 3: --max-images 0 / -1 used to build an empty graph and make it current, breaking every select."""
    for bad in ("0", "-1"):
        code = main(["--home", str(settings.home), "label", "--models", "toy-a", "--samples", str(color_data["samples"]),
                     "--max-images", bad, "-q"])
        err = capsys.readouterr().err
        assert code == 2 and "max_images" in err and "from 1 to" in err
    assert not (settings.graphs_dir / "current.json").exists()


def test_save_graph_refuses_an_empty_graph(settings):
    from vlmhub.concepts.graph import Node, SemanticGraph, save_graph
    from vlmhub.errors import DataError

    empty = SemanticGraph((Node("n04962784", "red", "red, which is red", (), (), True),), {})
    with pytest.raises(DataError, match="empty semantic graph"):
        save_graph(empty, settings)
    assert not (settings.graphs_dir / "current.json").exists()


@pytest.mark.parametrize("k, message", [(0, "k must be from 1 to"), (-1, "from 1 to"), (4, "from 1 to 3"),
                                        (10**9, "from 1 to 10000"), (2.5, "whole number"), (True, "whole number")])
def test_python_api_enforces_the_k_range(env, k, message):
    """Item 4: k=0 silently meant 3 and k=-1 'all models but one'; explicit k above the hub's size is refused."""
    from vlmhub.errors import SelectionError
    from vlmhub.tasks import Task

    with pytest.raises(SelectionError, match=message):
        env["hub"].select(Task.from_dict(TASK), k=k)
    with pytest.raises(SelectionError, match=message):
        env["hub"].selector().select(Task.from_dict(TASK), k=k)


def test_selection_config_is_frozen_and_validated():
    import dataclasses

    from vlmhub.errors import SelectionError, TaskError
    from vlmhub.selection.config import SelectionConfig

    c = SelectionConfig(k=2, alpha=1, k_nodes=4, metric="f1", weighting="uniform")
    assert c.alpha == 1.0 and c.overrides() == {"alpha": 1.0, "k_nodes": 4, "metric": "f1"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.k = 0  # type: ignore[misc]
    for bad in ({"k": 0}, {"k_nodes": 10**6}, {"alpha": float("nan")}, {"metric": "recall"}, {"weighting": "max"}):
        with pytest.raises(SelectionError):
            SelectionConfig(**bad)
    assert issubclass(SelectionError, TaskError) and issubclass(SelectionError, ValueError)
    with pytest.raises(SelectionError, match="from 1 to 3"):
        SelectionConfig(k=4).check_against(3)
    with pytest.raises(SelectionError, match="nodes must be from 1 to 13"):
        SelectionConfig(k_nodes=14).check_against(3, 13)


def test_nodes_above_the_graph_size_is_refused(env):
    from vlmhub.errors import SelectionError
    from vlmhub.tasks import Task

    with pytest.raises(SelectionError, match="nodes must be from 1 to"):
        env["hub"].select(Task.from_dict(TASK), k=1, k_nodes=5000)


@pytest.mark.parametrize("field, value, message", [
    ("domain", 7, "domain"), ("domain", ["x"], "domain"), ("task", 3, "task"), ("captions", ["x"], "captions"),
    ("captions", "x", "captions"), ("classes", ["red", "gr\ud800"], "not valid Unicode"),
    ("name", "t\udfff", "not valid Unicode"), ("domain", "\ud800", "not valid Unicode"),
])
def test_task_fields_are_type_checked(tmp_path, field, value, message):
    """Items 5, 8, 9: wrong-typed or unencodable task fields are a TaskError, never a later traceback."""
    from vlmhub.errors import TaskError
    from vlmhub.tasks import Task, load_task

    f = tmp_path / "t.json"
    f.write_text(json.dumps({**TASK, field: value}))
    with pytest.raises(TaskError, match=message):
        load_task(f)
    with pytest.raises(TaskError, match=message):
        Task.from_dict({**TASK, field: value})


def test_non_utf8_task_file_is_a_task_error(tmp_path):
    from vlmhub.errors import TaskError
    from vlmhub.tasks import load_task

    f = tmp_path / "t.json"
    f.write_bytes(json.dumps({**TASK, "name": "caf\u00e9"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(TaskError, match="not UTF-8"):
        load_task(f)


@pytest.mark.parametrize("limit", [0, -1, 2.5])
def test_limit_per_class_range(color_data, limit):
    from vlmhub.errors import TaskError
    from vlmhub.tasks import load_task, task_images

    with pytest.raises(TaskError, match="limit of images per class"):
        task_images(load_task(color_data["task"]), limit_per_class=limit)


def test_truncated_wordnet_is_a_config_error(settings, color_data, tmp_path, wordnet_dir):
    """Item 8: a truncated data.noun gave AttributeError on `definition`."""
    import dataclasses
    import shutil

    from vlmhub.concepts.graph import build_graph
    from vlmhub.concepts.samples import scan_sample_set
    from vlmhub.errors import VlmhubError

    wn = tmp_path / "wn"
    shutil.copytree(wordnet_dir, wn)
    data = wn / "corpora" / "wordnet" / "data.noun"
    raw = data.read_bytes()
    data.write_bytes(raw[: 4962784 + 40])  # offsets are byte positions: cut inside the line of "red" (n04962784)
    s = dataclasses.replace(settings, wordnet_dir=wn)
    with pytest.raises(VlmhubError):
        build_graph([scan_sample_set(color_data["samples"])], s)
