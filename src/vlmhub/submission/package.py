"""Model packages: what a developer uploads to the hub, unpacked without trusting a byte of it.

A package is a zip or tar (optionally gzip/bz2/xz) archive holding one model, in one of two layouts:

``hf``
    a transformers CLIP or SigLIP folder written by ``save_pretrained`` (``config.json``,
    ``model.safetensors``, tokenizer and image-processor files), at the archive's root or in one top folder.
``open_clip``
    an open_clip architecture name plus a ``.safetensors`` state dict; the architecture is named in
    ``vlmhub.json`` (``{"kind": "open_clip", "architecture": "ViT-B-32"}``) or given by an architecture JSON
    config next to the weights.

An optional ``vlmhub.json`` at the package root carries metadata: ``id``, ``kind``, ``architecture``,
``licence``, ``description``, ``homepage``.

What :func:`unpack_package` refuses (each a :class:`~vlmhub.errors.PackageError` naming the member and the fix,
with nothing left on disk):

* members with absolute paths, ``..`` components, drive letters or backslashes (path traversal);
* symlinks, hard links, devices, FIFOs;
* more than ``limits.max_files`` members, or more than ``limits.max_bytes`` unpacked (counted while
  extracting, not from the archive's own claims, so a zip bomb stops at the limit);
* any file that may hold a pickle: ``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``, ``.pickle``, ``.npy``,
  ``.joblib`` by name, and any file whose bytes start like a pickle or a ``torch.save`` zip, whatever its
  name. Weights are accepted as **safetensors only** (their header is parsed and checked);
* Python code and remote-code configs (``auto_map`` in ``config.json``): ``trust_remote_code`` is never set.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import struct
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Literal

from ..errors import PackageError

__all__ = ["PackageKind", "PackageLimits", "ModelPackage", "unpack_package", "pack_folder", "check_safetensors", "PACKAGE_META"]

PackageKind = Literal["hf", "open_clip"]
PACKAGE_META = "vlmhub.json"

#: names whose format may embed a pickle (torch.save, joblib, numpy object arrays)
_PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npy", ".npz", ".joblib", ".h5",
                              ".msgpack", ".onnx"})
_CODE_SUFFIXES = frozenset({".py", ".pyc", ".so", ".dll", ".dylib", ".sh", ".exe"})
_ALLOWED_SUFFIXES = frozenset({".json", ".txt", ".safetensors", ".model", ".md", ".tiktoken", ".vocab"})
_META_KEYS = frozenset({"id", "kind", "architecture", "licence", "license", "description", "homepage"})
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


@dataclass(frozen=True)
class PackageLimits:
    """Bounds on an uploaded package (the service passes ``Settings.max_upload_bytes``)."""

    max_bytes: int = 2 * 1024**3
    max_files: int = 64
    max_member_bytes: int | None = None  # default: max_bytes

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_files"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise PackageError(f"PackageLimits.{name} must be a whole number >= 1 (got {v!r}).")


@dataclass(frozen=True)
class ModelPackage:
    """A validated, unpacked model package: where it lies, its kind, and the model source string that the
    adapters load (``hf:/abs/dir`` or ``open_clip:ARCH@/abs/weights.safetensors``)."""

    root: Path
    kind: PackageKind
    source: str
    files: tuple[str, ...]
    n_bytes: int
    meta: tuple[tuple[str, str], ...] = ()

    def meta_dict(self) -> dict[str, str]:
        return dict(self.meta)

    def to_dict(self) -> dict[str, Any]:
        return {"root": str(self.root), "kind": self.kind, "source": self.source, "files": list(self.files),
                "bytes": self.n_bytes, "meta": self.meta_dict()}


# -- member names -------------------------------------------------------------------------------------------
def _safe_name(name: str) -> PurePosixPath:
    """``name`` as a relative path inside the package, or a PackageError (traversal, absolute, odd)."""
    if not name or "\x00" in name or "\\" in name:
        raise PackageError(f"archive member {name!r} has an invalid name; use plain relative paths with '/'.")
    p = PurePosixPath(name)
    if p.is_absolute() or (p.parts and ":" in p.parts[0]):
        raise PackageError(f"archive member {name!r} is an absolute path; pack the files with relative paths.")
    if any(part == ".." for part in p.parts):
        raise PackageError(f"archive member {name!r} points outside the package ('..'); pack the files with relative paths.")
    parts = [x for x in p.parts if x not in ("", ".")]
    if not parts:
        raise PackageError(f"archive member {name!r} has no file name.")
    return PurePosixPath(*parts)


def _check_suffix(rel: PurePosixPath) -> None:
    suf = rel.suffix.lower()
    if suf in _PICKLE_SUFFIXES:
        raise PackageError(f"{rel} may hold pickled data ({suf}); vlmhub accepts weights as .safetensors only. Convert "
                           "with safetensors.torch.save_file(model.state_dict(), 'model.safetensors') or "
                           "save_pretrained(dir, safe_serialization=True).")
    if suf in _CODE_SUFFIXES:
        raise PackageError(f"{rel} is code ({suf}); packages hold weights and configs only (no remote code is ever run).")
    if suf not in _ALLOWED_SUFFIXES and rel.name not in ("merges.txt", "vocab.txt", "LICENSE", "LICENCE", "README"):
        raise PackageError(f"{rel}: files of type {suf or '(none)'} are not accepted; a package holds "
                           f"{', '.join(sorted(_ALLOWED_SUFFIXES))} files.")


# -- archive readers (yield name, kind, size claim, opener) ------------------------------------------------------
def _members(archive: Path) -> Iterator[tuple[str, str, Any]]:
    """``(name, 'file'|'dir', open())`` for each member; refuses links, devices and unknown formats."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o177777
                if mode and stat.S_ISLNK(mode):
                    raise PackageError(f"archive member {info.filename!r} is a symbolic link; links are not accepted.")
                if info.flag_bits & 0x1:
                    raise PackageError(f"archive member {info.filename!r} is encrypted; upload an unencrypted archive.")
                kind = "dir" if info.is_dir() else "file"
                yield info.filename, kind, (lambda i=info: zf.open(i))
        return
    try:
        tf = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError(f"the upload is neither a zip nor a tar archive ({exc}); pack the model folder with "
                           "`zip -r model.zip DIR` or `tar czf model.tar.gz DIR`.") from None
    with tf:
        try:
            for m in tf:
                if m.issym() or m.islnk():
                    raise PackageError(f"archive member {m.name!r} is a link; links are not accepted.")
                if not (m.isfile() or m.isdir()):
                    raise PackageError(f"archive member {m.name!r} is a device, FIFO or other special file; not accepted.")
                yield m.name, "dir" if m.isdir() else "file", (lambda mm=m: tf.extractfile(mm))
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise PackageError(f"the tar archive is damaged ({type(exc).__name__}: {exc}); pack it again.") from None


def _sniff_pickle(head: bytes) -> bool:
    """Whether ``head`` starts like a pickle (protocol 2-5 start with ``\\x80 <protocol>``) or a zip (torch.save's
    format keeps a data.pkl inside one). Defence in depth: nothing in an upload is ever unpickled anyway."""
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return True
    return head[:4] == b"PK\x03\x04"  # torch.save's zip format (data.pkl inside) or any nested archive


def check_safetensors(path: Path) -> dict[str, Any]:
    """Parse a .safetensors header (8-byte length + JSON) and check the offsets against the file size.

    Returns the header; raises :class:`PackageError` for a file that is not valid safetensors."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise PackageError(f"{path.name} is not a safetensors file (too short).")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_MAX_HEADER, size - 8):
            raise PackageError(f"{path.name} is not a safetensors file (header length {n} exceeds the file).")
        try:
            header = json.loads(fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise PackageError(f"{path.name} is not a safetensors file (its header is not JSON).") from None
    if not isinstance(header, dict):
        raise PackageError(f"{path.name} is not a safetensors file (header is not an object).")
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(t, dict) and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2
                and isinstance(t.get("shape"), list) and isinstance(t.get("dtype"), str)):
            raise PackageError(f"{path.name}: tensor {name!r} has a malformed header entry.")
        a, b = t["data_offsets"]
        if not (isinstance(a, int) and isinstance(b, int) and 0 <= a <= b):
            raise PackageError(f"{path.name}: tensor {name!r} has invalid offsets.")
        end = max(end, b)
    if 8 + n + end > size:
        raise PackageError(f"{path.name} is truncated: its tensors need {8 + n + end} bytes, the file has {size}.")
    return header


def _extract(archive: Path, into: Path, limits: PackageLimits) -> tuple[list[str], int]:
    per_member = limits.max_member_bytes or limits.max_bytes
    total, files, seen = 0, [], set()
    for name, kind, opener in _members(archive):
        rel = _safe_name(name)
        if kind == "dir":
            continue
        key = rel.as_posix().lower()
        if key in seen:
            raise PackageError(f"archive member {rel} appears twice; pack each file once.")
        seen.add(key)
        if len(files) + 1 > limits.max_files:
            raise PackageError(f"the package has more than {limits.max_files} files; a model package holds its "
                               "weights, config and tokenizer files only.")
        _check_suffix(rel)
        dest = into.joinpath(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with opener() as src, open(dest, "xb") as out:
            head = src.read(8)
            if rel.suffix.lower() != ".safetensors" and _sniff_pickle(head):
                raise PackageError(f"{rel} holds pickled or archived data; vlmhub never unpickles uploads. "
                                   "Upload weights as .safetensors.")
            out.write(head)
            n += len(head)
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
                if n > per_member or total + n > limits.max_bytes:
                    raise PackageError(f"the package unpacks to more than {limits.max_bytes} bytes (at {rel}); "
                                       "the hub's limit is Settings.max_upload_bytes (VLMHUB_MAX_UPLOAD_BYTES).")
                out.write(chunk)
        total += n
        files.append(rel.as_posix())
    if not files:
        raise PackageError("the archive is empty; pack the model folder (config.json, model.safetensors, ...).")
    return files, total


def _read_meta(root: Path) -> dict[str, str]:
    p = root / PACKAGE_META
    if not p.is_file():
        return {}
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(f"{PACKAGE_META} is not valid JSON ({exc}).") from None
    if not isinstance(meta, dict):
        raise PackageError(f"{PACKAGE_META} must be a JSON object like {{\"kind\": \"hf\", \"licence\": \"MIT\"}}.")
    unknown = sorted(set(meta) - _META_KEYS)
    if unknown:
        raise PackageError(f"{PACKAGE_META} has unknown keys {unknown}; allowed: {', '.join(sorted(_META_KEYS))}.")
    bad = [k for k, v in meta.items() if not isinstance(v, str) or len(v) > 2000]
    if bad:
        raise PackageError(f"{PACKAGE_META}: {', '.join(bad)} must be strings of at most 2000 characters.")
    if "license" in meta:
        meta.setdefault("licence", meta.pop("license"))
    return meta


def _model_root(into: Path) -> Path:
    """The folder holding the model: the archive root, or its single top-level folder."""
    entries = [p for p in into.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return into


def _classify(root: Path, meta: dict[str, str]) -> tuple[PackageKind, str]:
    weights = sorted(p for p in root.rglob("*.safetensors"))
    if not weights:
        raise PackageError("the package has no .safetensors weights; add model.safetensors "
                           "(save_pretrained(dir, safe_serialization=True) or safetensors.torch.save_file).")
    for w in weights:
        check_safetensors(w)
    kind = meta.get("kind")
    if kind is None:
        kind = "hf" if (root / "config.json").is_file() else "open_clip"
    if kind == "hf":
        cfg_path = root / "config.json"
        if not cfg_path.is_file():
            raise PackageError("an hf package needs config.json at its root (written by save_pretrained).")
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PackageError(f"config.json is not valid JSON ({exc}).") from None
        if not isinstance(cfg, dict):
            raise PackageError("config.json must be a JSON object.")
        if "auto_map" in cfg or any("auto_map" in v for v in cfg.values() if isinstance(v, dict)):
            raise PackageError("config.json asks for remote code (auto_map); the hub never runs uploaded code. "
                               "Save a standard CLIPModel or SiglipModel.")
        if cfg.get("model_type") not in ("clip", "siglip"):
            raise PackageError(f"config.json has model_type {cfg.get('model_type')!r}; hf packages hold a transformers "
                               "CLIP or SigLIP model (model_type 'clip' or 'siglip').")
        return "hf", f"hf:{root}"
    if kind == "open_clip":
        arch = meta.get("architecture")
        configs = [p for p in root.glob("*.json") if p.name not in (PACKAGE_META, "config.json")]
        if not arch:
            if len(configs) != 1:
                raise PackageError("an open_clip package names its architecture: add vlmhub.json with "
                                   '{"kind": "open_clip", "architecture": "ViT-B-32"} or one architecture JSON config.')
            arch = str(configs[0])
        if len(weights) != 1:
            raise PackageError(f"an open_clip package holds one .safetensors file; found {len(weights)}.")
        if not all(c.isalnum() or c in "-_./" for c in arch) or ".." in arch:
            raise PackageError(f"architecture {arch!r} is not an open_clip model name like ViT-B-32.")
        return "open_clip", f"open_clip:{arch}@{weights[0]}"
    raise PackageError(f"{PACKAGE_META}: kind must be 'hf' or 'open_clip' (got {kind!r}).")


def unpack_package(upload: str | os.PathLike | bytes, into: str | os.PathLike, *,
                   limits: PackageLimits | None = None) -> ModelPackage:
    """Validate and unpack the archive ``upload`` (a path or the bytes) into the new folder ``into``.

    ``into`` must not exist; on any refusal it is removed again, so nothing half-unpacked is left.
    """
    limits = limits or PackageLimits()
    into = Path(into)
    if into.exists():
        raise PackageError(f"{into} already exists; unpack each package into a new folder.")
    tmp_archive = None
    if isinstance(upload, (bytes, bytearray)):
        if len(upload) > limits.max_bytes:
            raise PackageError(f"the upload is {len(upload)} bytes, over the hub's limit of {limits.max_bytes}.")
        into.parent.mkdir(parents=True, exist_ok=True)
        tmp_archive = into.with_name(into.name + ".upload")
        tmp_archive.write_bytes(bytes(upload))
        archive = tmp_archive
    else:
        archive = Path(upload)
        if not archive.is_file():
            raise PackageError(f"{archive} is not a file; pass the model package archive (.zip or .tar.gz).")
    into.mkdir(parents=True)
    try:
        files, n = _extract(archive, into, limits)
        root = _model_root(into)
        meta = _read_meta(into) or _read_meta(root)
        kind, source = _classify(root, meta)
        return ModelPackage(into.resolve(), kind, source.replace(str(root), str(root.resolve()), 1), tuple(files), n,
                            tuple(sorted(meta.items())))
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise
    finally:
        if tmp_archive is not None:
            tmp_archive.unlink(missing_ok=True)


def pack_folder(folder: str | os.PathLike) -> bytes:
    """A zip of ``folder``'s files (relative names), e.g. to submit a ``save_pretrained`` folder."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.is_symlink():
                zf.write(p, p.relative_to(folder).as_posix())
    return buf.getvalue()
