"""The data registry: lookup order, checksummed downloads from a local HTTP server, the `vlmhub data` CLI.

Every download goes to a real ``http.server`` on 127.0.0.1 in a thread, serving small assets made here; it
can send a wrong file, cut a transfer short, or not be there at all.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vlmhub.assets import fetch, load_registry, locate, pack, require, tree_digest, verify
from vlmhub.assets.lookup import find_image_set, table_root
from vlmhub.errors import ChecksumError, DownloadError, MissingAssetError, UnknownAssetError
from vlmhub.settings import Settings

TABLE = b"model,dataset,accuracy\n" + b"".join(b"m%d,d%d,0.%d\n" % (i, i % 7, i % 10) for i in range(400))
MEMBERS = {"a.txt": b"alpha\n", "b.txt": b"beta\n" * 50}


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.ranges:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if srv.drops.get(self.path, 0) > 0:  # send part of it, then hang up
            srv.drops[self.path] -= 1
            self.wfile.write(body[start: start + (len(body) - start) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.drops, srv.log, srv.ranges = {}, {}, [], True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml(rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append("[[asset]]")
        for k, v in r.items():
            out.append(f"{k} = {json.dumps(v)}" if not isinstance(v, bool) else f"{k} = {str(v).lower()}")
    return "\n".join(out) + "\n"


def _members_digest(tmp_path: Path) -> tuple[str, int]:
    d = tmp_path / "members-src"
    d.mkdir(exist_ok=True)
    for k, v in MEMBERS.items():
        (d / k).write_bytes(v)
    digest, size, _n = tree_digest(d)
    return digest, size


@pytest.fixture
def world(tmp_path, server):
    """A registry of test assets served by ``server`` and hermetic settings (no mirror, empty user dir)."""
    sha = hashlib.sha256(TABLE).hexdigest()
    mdigest, msize = _members_digest(tmp_path)
    rows = [
        dict(name="toy-table", kind="table", layout="tables/toy.csv", is_dir=False, sha256=sha, size=len(TABLE), files=1,
             licence="CC0", source="the test", urls=[server.url + "/toy.csv"]),
        dict(name="bad-table", kind="table", layout="tables/bad.csv", is_dir=False, sha256=sha, size=len(TABLE), files=1,
             licence="CC0", source="the test", urls=[server.url + "/bad.csv"]),
        dict(name="far-table", kind="table", layout="tables/far.csv", is_dir=False, sha256=sha, size=len(TABLE), files=1,
             licence="CC0", source="the test", urls=[f"http://127.0.0.1:{_free_port()}/far.csv"]),
        dict(name="toy-text", kind="text", layout="text/toy", is_dir=True, sha256=mdigest, size=msize, files=2,
             licence="CC0", source="the test", base_urls=[server.url + "/members/"], members=sorted(MEMBERS)),
        dict(name="toy-images", kind="images", layout="images/toy-images", is_dir=True, sha256=mdigest, size=msize,
             files=2, licence="CC0", source="the test"),
    ]
    reg_path = tmp_path / "registry.toml"
    reg_path.write_text(_toml(rows))
    server.files.update({"/toy.csv": TABLE, "/bad.csv": TABLE[:-5] + b"9,9\n",
                         **{f"/members/{k}": v for k, v in MEMBERS.items()}})
    settings = Settings(home=tmp_path / "home", data_dir=None, mirror_dir=None, user_data_dir=tmp_path / "user",
                        data_url=None)
    return {"registry": load_registry(reg_path), "settings": settings, "user": tmp_path / "user", "tmp": tmp_path}


def _leftovers(user: Path) -> list[str]:
    return sorted(p.name for p in user.iterdir()) if user.exists() else []


# -- the package's own registry ------------------------------------------------------------------------
def test_package_registry_covers_the_mirror_and_the_package_copies_match():
    reg = load_registry()
    names = set(reg.names())
    assert {"imagenet-sample", "cifar10-test", "openclip-classification-results", "lovm-eval-table", "mll-captions",
            "wordnet"} <= names
    for a in reg.assets:
        assert len(a.sha256) == 64 and a.size > 0 and a.licence and a.source
    packaged = [a for a in reg.assets if a.packaged]
    assert {a.name for a in packaged} >= {"openclip-classification-results", "mll-model-hub-info"}
    assert not any(a.name.startswith("lovm") for a in packaged)  # no licence declared upstream
    s = Settings(data_dir=None, mirror_dir=None, user_data_dir="/nonexistent-user-data")
    results = {v.name: v for v in verify([a.name for a in packaged], s)}
    assert all(v.status == "ok" and v.source == "package" for v in results.values()), results


def test_unknown_asset_names_the_known_ones():
    with pytest.raises(UnknownAssetError, match="cifar10-test"):
        load_registry().get("cifar10-tset")


# -- lookup order ---------------------------------------------------------------------------------------
def test_lookup_order_data_dir_then_user_then_mirror_then_package(tmp_path):
    a = load_registry().get("openclip-classification-results")
    roots = {k: tmp_path / k for k in ("data", "user", "mirror")}
    s = Settings(data_dir=roots["data"], user_data_dir=roots["user"], mirror_dir=roots["mirror"])
    assert locate(a, s).source == "package"
    for k in ("mirror", "user", "data"):
        p = a.path_in(roots[k])
        p.parent.mkdir(parents=True)
        p.write_bytes(b"x")
        loc = locate(a, s)
        assert (loc.source, loc.root) == ({"data": "data-dir"}.get(k, k), roots[k])


def test_missing_asset_names_the_fetch_command(tmp_path):
    s = Settings(data_dir=tmp_path / "empty", mirror_dir=None, user_data_dir=tmp_path / "user")
    with pytest.raises(MissingAssetError, match="vlmhub data fetch cifar10-test"):
        require("cifar10-test", s)
    with pytest.raises(MissingAssetError, match="vlmhub data fetch cifar10-test"):
        find_image_set("cifar10-test", s)
    assert find_image_set("no-such-set", s) is None
    with pytest.raises(MissingAssetError, match="vlmhub data fetch lovm-eval-table"):
        table_root("lovm", s)


# -- downloads ------------------------------------------------------------------------------------------
def test_fetch_downloads_verifies_and_installs(world, server):
    loc = fetch("toy-table", world["settings"], registry=world["registry"])
    assert loc.source == "user" and loc.path == world["user"] / "tables" / "toy.csv"
    assert loc.path.read_bytes() == TABLE
    assert _leftovers(world["user"]) == ["tables"]
    n = len(server.log)
    assert fetch("toy-table", world["settings"], registry=world["registry"]).path == loc.path  # present: no download
    assert len(server.log) == n


def test_wrong_checksum_is_an_error_and_leaves_nothing(world):
    with pytest.raises(ChecksumError, match="bad.csv"):
        fetch("bad-table", world["settings"], registry=world["registry"])
    assert _leftovers(world["user"]) == []
    assert not locate(world["registry"].get("bad-table"), world["settings"]).found


def test_a_dropped_transfer_is_resumed(world, server):
    server.drops["/toy.csv"] = 2
    loc = fetch("toy-table", world["settings"], registry=world["registry"], timeout=5)
    assert loc.path.read_bytes() == TABLE
    ranges = [r for p, r in server.log if p == "/toy.csv"]
    assert len(ranges) == 3 and ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])


def test_a_server_without_range_support_restarts_the_transfer(world, server):
    server.ranges = False
    server.drops["/toy.csv"] = 1
    assert fetch("toy-table", world["settings"], registry=world["registry"], timeout=5).path.read_bytes() == TABLE


def test_a_transfer_that_keeps_dropping_is_a_clear_error_and_leaves_nothing(world, server):
    server.drops["/toy.csv"] = 99
    with pytest.raises(DownloadError) as err:
        fetch("toy-table", world["settings"], registry=world["registry"], retries=2, timeout=5)
    assert server.url + "/toy.csv" in str(err.value) and "by hand" in str(err.value)
    assert _leftovers(world["user"]) == []


def test_unreachable_server_names_the_url_and_the_mirror_option(world):
    with pytest.raises(DownloadError) as err:
        fetch("far-table", world["settings"], registry=world["registry"], timeout=5)
    msg = str(err.value)
    assert "far.csv" in msg and "connection refused" in msg and "VLMHUB_DATA=" in msg and "VLMHUB_DATA_URL" in msg
    assert _leftovers(world["user"]) == []


def test_folder_fetched_file_by_file(world):
    loc = fetch("toy-text", world["settings"], registry=world["registry"])
    assert {p.name: p.read_bytes() for p in loc.path.iterdir()} == MEMBERS


def test_folder_without_download_comes_from_a_data_server_archive(world, server):
    reg, s = world["registry"], world["settings"]
    with pytest.raises(DownloadError, match="no public download"):
        fetch("toy-images", s, registry=reg)
    # a data server: `pack` writes archives/<name>.tar from a verified local copy
    src_root = world["tmp"] / "mirror"
    (src_root / "images").mkdir(parents=True)
    (world["tmp"] / "members-src").rename(src_root / "images" / "toy-images")
    packed = pack(reg.get("toy-images"), world["tmp"] / "served", Settings(data_dir=src_root, mirror_dir=None,
                                                                          user_data_dir=world["tmp"] / "nouser"))
    server.files["/data/archives/toy-images.tar"] = packed.read_bytes()
    loc = fetch("toy-images", s, registry=reg, base_url=server.url + "/data")
    assert {p.name: p.read_bytes() for p in loc.path.iterdir()} == MEMBERS
    # a tampered archive is refused after unpacking, before anything is installed
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo("a.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    server.files["/data/archives/toy-images.tar"] = buf.getvalue()
    with pytest.raises(ChecksumError):
        fetch("toy-images", s, registry=reg, base_url=server.url + "/data", force=True)
    assert {p.name: p.read_bytes() for p in loc.path.iterdir()} == MEMBERS  # the good copy is untouched
    assert _leftovers(world["user"]) == ["images"]


def test_verify_reports_a_damaged_copy(world):
    loc = fetch("toy-table", world["settings"], registry=world["registry"])
    loc.path.write_bytes(TABLE + b"extra\n")
    (v,) = verify(["toy-table"], world["settings"], registry=world["registry"])
    assert (v.status, v.source) == ("mismatch", "user")


# -- the CLI without any data folder ----------------------------------------------------------------------
@pytest.fixture
def no_data(tmp_path, monkeypatch, settings):
    """Environment of a wheel install: VLMHUB_DATA empty, no mirror, an empty user data dir."""
    monkeypatch.setenv("VLMHUB_DATA", str(tmp_path / "empty-data"))
    monkeypatch.setenv("VLMHUB_MIRROR", "none")
    monkeypatch.setenv("VLMHUB_USER_DATA", str(tmp_path / "user-data"))
    (tmp_path / "empty-data").mkdir()
    return tmp_path


def test_data_list_json(no_data, capsys):
    from vlmhub.cli.main import main

    assert main(["data", "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in out["assets"]}
    assert rows["openclip-classification-results"]["status"] == "package"
    assert rows["cifar10-test"]["status"] == "missing"
    assert rows["lovm-eval-table"]["status"] == "missing" and rows["lovm-eval-table"]["licence"]
    assert [r["source"] for r in out["roots"]] == ["data-dir", "user"]
    assert all(len(r["sha256"]) == 64 for r in rows.values())


def test_rank_models_and_benchmark_tables_work_with_no_data_folder(no_data, capsys):
    from vlmhub.cli.main import main

    task = no_data / "task.json"
    task.write_text(json.dumps({"name": "birds", "domain": "natural photograph", "task": "bird species classification",
                                "classes": ["sparrow", "robin", "eagle", "owl"]}))
    assert main(["rank-models", "openclip", "--task", str(task), "--json", "--embedder", "hashing256"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert ranked["table"] == "openclip" and len(ranked["models"]) == 121
    assert main(["benchmark-tables", "openclip", "--selectors", "inb,best-mean", "--json", "--embedder", "hashing256"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["selectors"]) >= {"inb"}
    assert main(["benchmark-tables", "lovm", "--selectors", "inb"]) == 2
    assert "vlmhub data fetch lovm-eval-table" in capsys.readouterr().err
