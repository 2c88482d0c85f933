"""Uploaded model packages: a real transformers CLIP package unpacks and loads; every unsafe archive is refused
with the reason and leaves nothing behind; the checker runs in a sandbox with time and memory limits."""

from __future__ import annotations

import io
import json
import pickle
import struct
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from vlmhub.errors import PackageError
from vlmhub.submission import PackageLimits, SandboxLimits, check_in_sandbox, pack_folder, unpack_package




def _zip(files: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def _tar(members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for m in members:
            payload = (data or {}).get(m.name)
            tf.addfile(m, io.BytesIO(payload) if payload is not None else None)
    return buf.getvalue()


def _safetensors(n: int = 4) -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    return struct.pack("<Q", len(header)) + header + np.zeros(n, np.float32).tobytes()


def test_a_save_pretrained_package_unpacks_and_loads(tiny_clip_dir, tmp_path):
    from vlmhub.models.user_hub import build_from_source

    pkg = unpack_package(pack_folder(tiny_clip_dir), tmp_path / "pkg")
    assert pkg.kind == "hf" and pkg.source == f"hf:{(tmp_path / 'pkg').resolve()}"
    assert "model.safetensors" in pkg.files and pkg.n_bytes > 0
    model = build_from_source(pkg.source, model_id="tiny-sub")
    emb = model.encode_text(["a photo of a dog."])
    assert emb.shape == (1, 16) and np.isfinite(emb).all()


def test_a_package_in_one_top_folder_with_metadata(tiny_clip_dir, tmp_path):
    files = {f"tiny/{p.name}": p.read_bytes() for p in tiny_clip_dir.iterdir()}
    files["tiny/vlmhub.json"] = json.dumps({"licence": "MIT", "description": "a tiny CLIP"}).encode()
    pkg = unpack_package(_zip(files), tmp_path / "pkg")
    assert pkg.source == f"hf:{(tmp_path / 'pkg' / 'tiny').resolve()}"
    assert pkg.meta_dict() == {"licence": "MIT", "description": "a tiny CLIP"}


def test_an_open_clip_package_names_architecture_and_weights(tmp_path):
    pkg = unpack_package(_zip({"vlmhub.json": b'{"kind": "open_clip", "architecture": "ViT-B-32"}',
                               "open_clip_model.safetensors": _safetensors()}), tmp_path / "pkg")
    assert pkg.kind == "open_clip" and pkg.source.startswith("open_clip:ViT-B-32@") and pkg.source.endswith(".safetensors")


_CONFIG = json.dumps({"model_type": "clip"}).encode()
HOSTILE = {
    "path traversal": (_zip({"../evil.json": b"{}", "model.safetensors": _safetensors()}), "outside the package"),
    "absolute path": (_zip({"/etc/cron.d/x.json": b"{}"}), "absolute path"),
    "zip symlink": (_zip({"config.json": _CONFIG, "model.safetensors": _safetensors()}, symlink="link.json"), "link"),
    "pickled weights by name": (_zip({"config.json": _CONFIG, "pytorch_model.bin": b"x"}), "pickled"),
    "pickle behind a safe name": (_zip({"config.json": _CONFIG, "model.safetensors": _safetensors(),
                                        "tokenizer.json": pickle.dumps({"a": 1})}), "pickled"),
    "torch.save zip renamed": (_zip({"config.json": _CONFIG, "model.safetensors": _safetensors(),
                                     "extra.json": b"PK\x03\x04rest"}), "pickled or archived"),
    "fake safetensors": (_zip({"config.json": _CONFIG, "model.safetensors": b"\x80\x04not really"}), "safetensors"),
    "truncated safetensors": (_zip({"config.json": _CONFIG, "model.safetensors": _safetensors()[:-8]}), "truncated"),
    "python code": (_zip({"config.json": _CONFIG, "model.safetensors": _safetensors(), "modeling.py": b"import os"}), "code"),
    "remote code config": (_zip({"config.json": json.dumps({"model_type": "clip", "auto_map": {"AutoModel": "x.Y"}}).encode(),
                                 "model.safetensors": _safetensors()}), "remote code"),
    "not a clip": (_zip({"config.json": b'{"model_type": "bert"}', "model.safetensors": _safetensors()}), "model_type"),
    "no weights": (_zip({"config.json": _CONFIG}), "no .safetensors"),
    "empty archive": (_zip({}), "empty"),
    "not an archive": (b"hello, I am not a zip", "neither a zip nor a tar"),
    "unknown meta key": (_zip({"vlmhub.json": b'{"kind": "hf", "exec": "rm -rf"}', "config.json": _CONFIG,
                               "model.safetensors": _safetensors()}), "unknown keys"),
    "bad kind": (_zip({"vlmhub.json": b'{"kind": "tensorflow"}', "model.safetensors": _safetensors()}), "kind must be"),
    "duplicate member": (_zip({"config.json": _CONFIG, "CONFIG.json": _CONFIG}), "twice"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_packages_are_refused_and_leave_nothing(case, tmp_path):
    data, match = HOSTILE[case]
    with pytest.raises(PackageError, match=match):
        unpack_package(data, tmp_path / "pkg")
    assert list(tmp_path.iterdir()) == []


def test_tar_links_devices_and_traversal_are_refused(tmp_path):
    link = tarfile.TarInfo("weights.safetensors")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    hard = tarfile.TarInfo("config.json")
    hard.type, hard.linkname = tarfile.LNKTYPE, "/etc/passwd"
    dev = tarfile.TarInfo("tty.json")
    dev.type = tarfile.CHRTYPE
    up = tarfile.TarInfo("a/../../x.json")
    up.size = 2
    for members, data, match in ([link], None, "link"), ([hard], None, "link"), ([dev], None, "special"), \
                                ([up], {"a/../../x.json": b"{}"}, "outside"):
        with pytest.raises(PackageError, match=match):
            unpack_package(_tar(members, data), tmp_path / "pkg")
        assert not (tmp_path / "pkg").exists()


def test_a_zip_bomb_stops_at_the_limit_while_extracting(tmp_path):
    bomb = _zip({"config.json": _CONFIG, "model.safetensors": b"\0" * (20 * 1024**2)})  # 20 MB of zeros, ~20 kB zipped
    assert len(bomb) < 100_000
    with pytest.raises(PackageError, match="more than 1048576 bytes"):
        unpack_package(bomb, tmp_path / "pkg", limits=PackageLimits(max_bytes=1024**2))
    assert list(tmp_path.iterdir()) == []


def test_too_many_files(tmp_path):
    with pytest.raises(PackageError, match="more than 3 files"):
        unpack_package(_zip({f"f{i}.json": b"{}" for i in range(5)}), tmp_path / "pkg", limits=PackageLimits(max_files=3))


# -- the sandboxed checker ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_sandboxed_check_runs_the_real_checker(tiny_clip_dir, tmp_path):
    pkg = unpack_package(pack_folder(tiny_clip_dir), tmp_path / "pkg")
    out = check_in_sandbox(pkg.source, model_id="tiny-sub", home=tmp_path / "home", zero_shot=False,
                           limits=SandboxLimits(seconds=300))
    assert out.passed, out.reasons
    assert out.spec["id"] == "tiny-sub" and out.spec["embed_dim"] == 16 and out.report["passed"]
    # with the zero-shot sanity check, random weights are refused, with the reason
    out = check_in_sandbox(pkg.source, model_id="tiny-sub", home=tmp_path / "home", limits=SandboxLimits(seconds=300))
    assert out.verdict == "failed" and any("zero_shot" in r for r in out.reasons)


@pytest.mark.slow
def test_a_check_over_time_is_stopped(tiny_clip_dir, tmp_path):
    pkg = unpack_package(pack_folder(tiny_clip_dir), tmp_path / "pkg")
    out = check_in_sandbox(pkg.source, model_id="tiny-sub", home=tmp_path / "home", limits=SandboxLimits(seconds=0.5))
    assert out.verdict == "timeout" and "0.5 s" in out.reasons[0]


@pytest.mark.slow
def test_a_check_over_memory_is_rejected_not_fatal(tiny_clip_dir, tmp_path):
    pkg = unpack_package(pack_folder(tiny_clip_dir), tmp_path / "pkg")
    out = check_in_sandbox(pkg.source, model_id="tiny-sub", home=tmp_path / "home",
                           limits=SandboxLimits(seconds=300, memory_bytes=256 * 1024**2))
    assert out.verdict in ("memory", "crashed") and not out.passed, out
    assert out.reasons


@pytest.mark.slow
def test_a_model_that_cannot_load_is_an_error_outcome(tmp_path):
    out = check_in_sandbox(f"hf:{tmp_path / 'nowhere'}", model_id="x", home=tmp_path / "home",
                           limits=SandboxLimits(seconds=120))
    assert out.verdict == "error" and "could not be loaded" in out.reasons[0]
