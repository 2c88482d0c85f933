"""Content-addressed array files inside the home, and the check that every artifact row still matches its file.

An array is stored as ``<home>/artifacts/sha256/<first two hex digits>/<sha256>.npy`` (plain ``.npy``, no
pickle: object arrays are refused), written with :func:`vlmhub.storage.atomic.atomic_write_bytes` (temp file,
fsync, rename). The same bytes always land on the same path, so a job that is recomputed after a crash rewrites
nothing. A database row names a file only after that file is complete (:func:`vlmhub.hubdb.jobs.finish`), so
a crash leaves at most an *orphan file* (complete, unreferenced, harmless) or a ``.tmp-*`` partial file, both of
which :func:`check_artifacts` reports (``vlmhub db check``), never a row without its file.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np

from . import _deps  # noqa: F401

from sqlalchemy import select

from ..errors import DataError, LabelError
from ..settings import Settings
from ..storage.atomic import atomic_write_bytes
from .schema import LabelArtifactRow, LabelJobRow, JobStatus

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["StoredArray", "ArtifactRecord", "ArtifactCheck", "array_bytes", "store_array", "load_array",
           "check_artifacts", "home_path", "sha256_file"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredArray:
    """A complete array file: ``path`` relative to the home (POSIX separators), its checksum, shape and dtype."""

    path: str
    sha256: str
    shape: tuple[int, ...]
    dtype: str
    size_bytes: int


@dataclass(frozen=True)
class ArtifactRecord:
    """An artifact row."""

    id: int
    model_id: str | None
    kind: str
    path: str
    sha256: str
    shape: tuple[int, ...]
    dtype: str
    size_bytes: int
    graph_version: str | None
    label_set_version: str
    created_at: datetime

    @classmethod
    def from_row(cls, r: LabelArtifactRow) -> "ArtifactRecord":
        return cls(r.id, r.model_id, r.kind, r.path, r.sha256, tuple(r.shape), r.dtype, r.size_bytes, r.graph_version,
                   r.label_set_version, r.created_at)


@dataclass(frozen=True)
class ArtifactCheck:
    """What ``vlmhub db check`` found. ``ok`` when no row is missing its file or has a wrong checksum and no done
    job lacks its artifact; orphan and partial files are reported but harmless (a crash between file and row)."""

    checked: int
    bad_checksum: tuple[str, ...] = ()
    missing_files: tuple[str, ...] = ()
    jobs_without_artifact: tuple[int, ...] = ()
    orphan_files: tuple[str, ...] = ()
    partial_files: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not (self.bad_checksum or self.missing_files or self.jobs_without_artifact)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "checked": self.checked, "bad_checksum": list(self.bad_checksum),
                "missing_files": list(self.missing_files), "jobs_without_artifact": list(self.jobs_without_artifact),
                "orphan_files": list(self.orphan_files), "partial_files": list(self.partial_files)}


def home_path(settings: Settings, rel: str) -> Path:
    """The absolute path of a home-relative artifact path; refuses absolute paths and ``..`` (a row cannot point
    outside the home)."""
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DataError(f"artifact path {rel!r} is not a relative path inside the home. The database row is corrupt; "
                        "run `vlmhub db check`.")
    return settings.home.joinpath(*p.parts)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def array_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``array`` (C order, no pickle): identical arrays give identical bytes."""
    a = np.ascontiguousarray(array)
    if a.dtype == object:
        raise TypeError("an object array cannot be stored: vlmhub never stores pickled data")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def store_array(settings: Settings, array: np.ndarray) -> StoredArray:
    """Write ``array`` content-addressed under ``<home>/artifacts`` (atomically; skipped when the same, intact file is
    already there) and return where it is. The file is complete when this returns."""
    a = np.ascontiguousarray(array)
    data = array_bytes(a)
    digest = hashlib.sha256(data).hexdigest()
    rel = f"artifacts/sha256/{digest[:2]}/{digest}.npy"
    path = home_path(settings, rel)
    if not (path.is_file() and path.stat().st_size == len(data) and sha256_file(path) == digest):
        atomic_write_bytes(path, data)
    return StoredArray(rel, digest, tuple(int(n) for n in a.shape), a.dtype.str, len(data))


def load_array(settings: Settings, artifact: ArtifactRecord | StoredArray, *, verify: bool = True) -> np.ndarray:
    """Read an artifact's array (``allow_pickle=False``), checking its sha256 first unless ``verify=False``."""
    path = home_path(settings, artifact.path)
    fix = "Run `vlmhub db check`, then re-label the model (its label jobs recompute the file)."
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LabelError(f"artifact file {path} is missing. {fix}") from None
    if verify and hashlib.sha256(data).hexdigest() != artifact.sha256:
        raise LabelError(f"artifact file {path} does not match its checksum {artifact.sha256[:12]}... (damaged). {fix}")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise LabelError(f"artifact file {path} is not a readable .npy array ({exc}). {fix}") from None


def check_artifacts(db: "HubDB") -> ArtifactCheck:
    """Verify every artifact row's file checksum; list rows whose file is gone, done jobs without an artifact, and
    files under ``<home>/artifacts`` that no row names (orphans) or that are half-written (``.tmp-*``)."""
    settings = db.settings
    with db.session() as s:
        rows = [(r.path, r.sha256) for r in s.scalars(select(LabelArtifactRow).order_by(LabelArtifactRow.id))]
        lost = s.scalars(select(LabelJobRow.id).where(LabelJobRow.status == JobStatus.DONE,
                                                      LabelJobRow.artifact_id.is_(None)).order_by(LabelJobRow.id)).all()
    status: dict[tuple[str, str], str] = {}  # (path, sha256) -> ok | missing | bad; rows may share a file
    for rel, digest in rows:
        if (rel, digest) in status:
            continue
        try:
            path = home_path(settings, rel)
        except DataError:
            status[rel, digest] = "bad"
            continue
        if not path.is_file():
            status[rel, digest] = "missing"
        else:
            status[rel, digest] = "ok" if sha256_file(path) == digest else "bad"
    bad = sorted({rel for (rel, _), st in status.items() if st == "bad"})
    missing = sorted({rel for (rel, _), st in status.items() if st == "missing"})
    seen = {rel for rel, _ in status}
    orphans: list[str] = []
    partial: list[str] = []
    root = settings.artifacts_dir
    if root.is_dir():
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                rel = Path(dirpath, name).relative_to(settings.home).as_posix()
                if name.startswith(".tmp-"):
                    partial.append(rel)
                elif rel not in seen:
                    orphans.append(rel)
    return ArtifactCheck(len(rows), tuple(bad), tuple(missing), tuple(lost), tuple(sorted(orphans)), tuple(sorted(partial)))
