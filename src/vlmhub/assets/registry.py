"""The data registry (``vlmhub/data/registry.toml``): what each data asset is, where it lives, its checksum.

An *asset* is one file or one folder at a fixed ``layout`` path below a *data root* (a folder laid out like
the shared mirror: ``images/<set>/``, ``tables/<file>``, ``mll/captions/``, ...). :func:`locate` looks for
it in :attr:`vlmhub.settings.Settings.data_roots` (``VLMHUB_DATA`` -> user data dir -> local mirror), then in
the tables packaged inside vlmhub, and for WordNet also in the hub's nltk copy and Debian's
``/usr/share/wordnet``. Locating only checks that the path exists; :func:`verify` recomputes checksums.

Checksums: a file asset's ``sha256`` is the file's; a folder asset's is :func:`tree_digest` of its files
(sha256 over the sorted ``path NUL sha256 NUL size`` lines), restricted to ``digest_files`` when given.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Iterable

from ..errors import ConfigError, MissingAssetError, UnknownAssetError
from ..settings import Settings, get_settings

__all__ = [
    "Asset",
    "Location",
    "Registry",
    "load_registry",
    "locate",
    "require",
    "package_root",
    "file_sha256",
    "tree_digest",
    "asset_digest",
    "fetch_hint",
    "KINDS",
    "SOURCES",
]

#: asset kinds, for listing and for the lookups that want one kind (e.g. image sets by name)
KINDS = ("images", "table", "text", "wordnet")
#: where :func:`locate` can find an asset, in lookup order ("missing" when nowhere)
SOURCES = ("data-dir", "user", "mirror", "package", "home", "system", "missing")
_DEBIAN_WORDNET = Path("/usr/share/wordnet")


@dataclass(frozen=True)
class Asset:
    """One registered data asset (a row of ``registry.toml``)."""

    name: str
    kind: str
    layout: str  #: posix path below a data root
    is_dir: bool
    sha256: str  #: file sha256, or :func:`tree_digest` for a folder
    size: int  #: bytes (a folder: the sum over its files)
    files: int
    licence: str
    source: str
    citation: str = ""
    description: str = ""
    urls: tuple[str, ...] = ()  #: a file, or an archive (.tar/.tar.gz/.zip) of a folder; alternatives in order
    archive_sha256: str = ""  #: sha256 of the archive behind ``urls``, when known
    archive_root: str = ""  #: folder inside the archive that holds the asset's files
    base_urls: tuple[str, ...] = ()  #: a folder fetched file by file: ``base + member`` for each member
    members: tuple[str, ...] = ()
    digest_files: tuple[str, ...] = ()  #: the files the folder digest covers (default: all)
    packaged: bool = False  #: shipped inside the vlmhub package (licence permitting)
    note: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"registry asset {self.name!r} has kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.layout.startswith("/") or ".." in self.layout.split("/"):
            raise ConfigError(f"registry asset {self.name!r}: layout {self.layout!r} must be a relative path without '..'")

    @property
    def fetchable(self) -> bool:
        """Whether the registry names a public download (a mirror URL may still serve it)."""
        return bool(self.urls or (self.base_urls and self.members))

    def path_in(self, root: Path) -> Path:
        """Where this asset sits below the data root ``root``."""
        return root.joinpath(*self.layout.split("/"))

    def present_in(self, root: Path) -> bool:
        """Whether the data root ``root`` holds this asset (existence only; :func:`verify` checks contents)."""
        return _present(self, self.path_in(root))


@dataclass(frozen=True)
class Location:
    """Where :func:`locate` found an asset: ``source`` is one of :data:`SOURCES`."""

    asset: Asset
    source: str
    path: Path | None = None  #: the asset's file or folder
    root: Path | None = None  #: the data root it lies in (what ``data_dir=`` arguments want)

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class Registry:
    """Every registered asset, in registry order."""

    assets: tuple[Asset, ...]

    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.assets)

    def get(self, name: str) -> Asset:
        """The asset called ``name``, or :class:`UnknownAssetError` naming the known ones."""
        for a in self.assets:
            if a.name == name:
                return a
        import difflib

        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownAssetError(f"no data asset called {name!r}.{hint} Known assets: {', '.join(self.names())} "
                                "(`vlmhub data list` describes them).")

    def by_layout(self, layout: str) -> Asset | None:
        """The asset whose layout is exactly ``layout`` (e.g. ``images/cifar10-test``), if any."""
        return next((a for a in self.assets if a.layout == layout), None)


def _read_toml(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib.loads(text)


def _asset(row: dict) -> Asset:
    tuples = ("urls", "base_urls", "members", "digest_files")
    known = set(Asset.__dataclass_fields__)
    bad = sorted(set(row) - known)
    if bad:
        raise ConfigError(f"registry asset {row.get('name')!r} has unknown keys {bad}; known keys: {sorted(known)}")
    kw = {k: (tuple(v) if k in tuples else v) for k, v in row.items()}
    try:
        return Asset(**kw)
    except TypeError as exc:
        raise ConfigError(f"registry asset {row.get('name')!r} is incomplete ({exc})") from None


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Parse the registry: the package's ``data/registry.toml``, or the TOML file at ``path``."""
    if path is None:
        text = resources.files("vlmhub").joinpath("data/registry.toml").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    rows = _read_toml(text).get("asset", [])
    assets = tuple(_asset(r) for r in rows)
    seen: set[str] = set()
    for a in assets:
        if a.name in seen:
            raise ConfigError(f"registry lists asset {a.name!r} twice; names must be unique")
        seen.add(a.name)
    return Registry(assets)


def package_root() -> Path:
    """The data root packaged inside vlmhub (``vlmhub/data/published``): the tables whose licence allows it."""
    return Path(str(resources.files("vlmhub").joinpath("data/published")))


def _present(asset: Asset, path: Path) -> bool:
    if asset.is_dir:
        if not path.is_dir():
            return False
        if asset.digest_files:
            return all((path / f).is_file() for f in asset.digest_files)
        return any(path.iterdir())
    return path.is_file()


def _candidates(asset: Asset, settings: Settings) -> Iterable[tuple[str, Path, Path]]:
    for source, root in settings.data_roots:
        yield source, root, asset.path_in(root)
    if asset.packaged:
        yield "package", package_root(), asset.path_in(package_root())
    if asset.kind == "wordnet":
        if settings.wordnet_dir is not None:
            yield "home", settings.wordnet_dir, settings.wordnet_dir / "corpora" / "wordnet"
        src = Path(os.environ.get("VLMHUB_WORDNET_SOURCE", _DEBIAN_WORDNET))
        yield "system", src.parent, src


def locate(name: str | Asset, settings: Settings | None = None, *, registry: Registry | None = None) -> Location:
    """Where asset ``name`` is (first hit of the documented lookup order), or a ``missing`` location."""
    settings = settings or get_settings()
    asset = name if isinstance(name, Asset) else (registry or load_registry()).get(name)
    for source, root, path in _candidates(asset, settings):
        if _present(asset, path):
            return Location(asset, source, path, root)
    return Location(asset, "missing")


def fetch_hint(asset: Asset) -> str:
    """The sentence that tells a user how to get ``asset``."""
    return (f"Get it with `vlmhub data fetch {asset.name}`, or point VLMHUB_DATA at a folder laid out like the "
            f"mirror that holds {asset.layout}")


def require(name: str | Asset, settings: Settings | None = None, *, registry: Registry | None = None) -> Location:
    """:func:`locate`, raising :class:`MissingAssetError` (naming the fetch command) when it is nowhere."""
    settings = settings or get_settings()
    loc = locate(name, settings, registry=registry)
    if not loc.found:
        where = ", ".join(f"{s} {r}" for s, r in settings.data_roots) or "no data folder"
        raise MissingAssetError(f"data asset {loc.asset.name!r} ({loc.asset.layout}) was not found (looked in {where}"
                                f"{', the package' if loc.asset.packaged else ''}). {fetch_hint(loc.asset)}.")
    return loc


# -- checksums -------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(folder: str | os.PathLike, only: Iterable[str] = ()) -> tuple[str, int, int]:
    """``(digest, total bytes, file count)`` of the regular files below ``folder`` (or of ``only``)."""
    folder = Path(folder)
    if only:
        rels = sorted(set(only))
    else:
        rels = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    h = hashlib.sha256()
    total = 0
    for rel in rels:
        p = folder / rel
        if not p.is_file():
            raise MissingAssetError(f"{p} is missing from {folder}; fetch the asset again with `vlmhub data fetch`")
        size = p.stat().st_size
        total += size
        h.update(f"{rel}\0{file_sha256(p)}\0{size}\n".encode("utf-8"))
    return h.hexdigest(), total, len(rels)


def asset_digest(asset: Asset, path: str | os.PathLike) -> str:
    """The checksum of ``path`` computed the way the registry records it for ``asset``."""
    if asset.is_dir:
        return tree_digest(path, asset.digest_files)[0]
    return file_sha256(path)
