"""The wheel works outside the checkout (issue 15): built from this tree, installed into a fresh virtualenv
in a temp folder, it lists its data assets and ranks models from the packaged open_clip table with no data
directory and no mirror. The fresh venv borrows this venv's third-party packages through a .pth line
(never its editable vlmhub: a .pth path does not run the editable finder), so nothing is downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp), str(ROOT)],
                   check=True, cwd=tmp)
    (whl,) = tmp.glob("vlmhub-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(whl) as zf:  # a pure-Python wheel: installing is unpacking into site-packages
        zf.extractall(site)
    (site / "_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLMHUB_") and k != "PYTHONPATH"}
    env.update(VLMHUB_HOME=str(tmp / "home"), VLMHUB_DATA=str(tmp / "nonexistent"), VLMHUB_MIRROR="none",
               VLMHUB_USER_DATA=str(tmp / "user-data"), HF_HUB_OFFLINE="1")
    return {"py": py, "env": env, "cwd": tmp, "whl": whl, "site": site}


def _vlmhub(w, *args):
    return subprocess.run([str(w["py"]), "-c", "import sys; from vlmhub.cli.main import main; sys.exit(main())", *args],
                          cwd=w["cwd"], env=w["env"], capture_output=True, text=True, timeout=600)


def test_the_installed_package_is_the_wheel(wheel_env):
    r = subprocess.run([str(wheel_env["py"]), "-c", "import vlmhub; print(vlmhub.__file__)"], cwd=wheel_env["cwd"],
                       env=wheel_env["env"], capture_output=True, text=True, check=True)
    assert Path(r.stdout.strip()).is_relative_to(wheel_env["site"]), r.stdout
    names = zipfile.ZipFile(wheel_env["whl"]).namelist()
    for f in ("vlmhub/data/registry.toml", "vlmhub/data/published/NOTICE", "vlmhub/service/web/templates/base.html",
              "vlmhub/hubdb/migrations/env.py", "vlmhub/hubdb/migrations/script.py.mako"):
        assert f in names, f


def test_data_list_and_rank_models_with_no_data_folder(wheel_env, tmp_path):
    r = _vlmhub(wheel_env, "data", "list", "--json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    assert len(listing["assets"]) >= 20 and listing["user_data_dir"] == wheel_env["env"]["VLMHUB_USER_DATA"]
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"name": "pets", "domain": "natural photograph", "task": "pet breed classification",
                                "classes": ["beagle", "persian cat", "pug"]}))
    r = _vlmhub(wheel_env, "rank-models", "openclip", "--task", str(task), "--json", "--top", "3", "--embedder", "hashing256")
    assert r.returncode == 0, r.stderr
    ranked = json.loads(r.stdout)
    assert ranked["table"] == "openclip" and len(ranked["models"]) == 3


def test_benchmark_tables_on_the_packaged_table_and_a_fetch_hint_for_the_rest(wheel_env):
    """The packaged open_clip table benchmarks with no data folder; LOVM's tables are not shipped (no licence
    declared), so asking for them names the exact `vlmhub data fetch` command."""
    r = _vlmhub(wheel_env, "benchmark-tables", "openclip", "--selectors", "inb,best-mean", "--embedder", "hashing256", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert set(got["selectors"]) == {"inb", "best-mean"} and got["selectors"]["inb"]["tau"] > 0.5
    r = _vlmhub(wheel_env, "benchmark-tables", "lovm", "--selectors", "inb", "--embedder", "hashing256")
    assert r.returncode == 2 and "vlmhub data fetch lovm-eval-table" in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.shared_data
def test_the_demo_runs_from_the_wheel_with_the_mirror_as_data(wheel_env, wordnet_dir, tmp_path):
    """`vlmhub demo` from the installed wheel, its data from the local mirror (VLMHUB_DATA), in a fresh home:
    builds the graph, labels two offline models and evaluates one target (kept small for CI)."""
    from vlmhub.settings import default_data_dir

    mirror = default_data_dir()
    env = {**wheel_env["env"], "VLMHUB_DATA": str(mirror), "VLMHUB_WORDNET": str(wordnet_dir),
           "VLMHUB_HOME": str(tmp_path / "demo-home")}
    r = subprocess.run([str(wheel_env["py"]), "-c", "import sys; from vlmhub.cli.main import main; sys.exit(main())",
                        "demo", "--models", "conse-lite0,label-lite0", "--targets", "cifar10-test", "--limit-per-class", "2",
                        "-q"], cwd=wheel_env["cwd"], env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| cifar10-test | 20 |" in r.stdout and "What MLL chose for cifar10-test" in r.stdout, r.stdout
    assert "semantic graph" in r.stderr and str(tmp_path / "demo-home") in r.stderr
