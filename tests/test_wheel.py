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
