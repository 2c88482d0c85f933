"""Downloading registered assets into the user data dir: checksummed, atomic, resumable within a call.

:func:`fetch` downloads with **pooch** (``pip install 'vlmhub[data]'``) into a private staging folder inside
the user data dir, resuming a transfer that was cut off with HTTP ``Range`` requests, checks the sha256 the
registry records *before* anything is moved into place, and renames the result into
``<user data dir>/<layout>``. A failed or corrupt download removes its staging folder, so it leaves nothing
behind; the error names every URL tried, how to fetch by hand, and the mirror options (``VLMHUB_DATA``,
``VLMHUB_DATA_URL``).

:func:`verify` recomputes the checksum of every asset it finds; :func:`pack` writes the archives a data
server offers under ``VLMHUB_DATA_URL/archives/<name>.tar``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import ChecksumError, DataError, DownloadError, MissingAssetError, missing_extra
from ..settings import Settings, get_settings
from .registry import Asset, Location, Registry, asset_digest, load_registry, locate

__all__ = ["fetch", "fetch_many", "verify", "pack", "Verification", "DEFAULT_RETRIES", "DEFAULT_TIMEOUT_S"]

DEFAULT_RETRIES = 3  #: resumptions of one URL after the connection drops
DEFAULT_TIMEOUT_S = 30.0  #: connect / read timeout per request


@dataclass(frozen=True)
class Verification:
    """The outcome of checking one asset: ``status`` is ``ok``, ``mismatch`` or ``missing``."""

    name: str
    status: str
    source: str
    path: Path | None
    expected: str
    actual: str = ""


class _TransferError(Exception):
    """One URL failed (private: :func:`fetch` turns the collected failures into a :class:`DownloadError`)."""


def _pooch():
    try:
        import pooch
    except ImportError:
        raise missing_extra("pooch", "data", "Downloading data assets") from None
    return pooch


@contextlib.contextmanager
def _quiet_pooch(pooch) -> Iterator[None]:
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class _ResumingDownloader:
    """A pooch downloader (requests) that resumes a cut-off transfer with ``Range`` up to ``retries`` times."""

    def __init__(self, retries: int, timeout: float):
        self.retries = retries
        self.timeout = timeout

    def __call__(self, url: str, output_file, pooch_obj=None, check_only: bool = False):
        import requests
        import urllib3

        if check_only:
            try:
                return requests.head(url, timeout=self.timeout, allow_redirects=True).ok
            except requests.RequestException:
                return False
        if not isinstance(output_file, (str, os.PathLike)):  # pragma: no cover - pooch passes a path
            raise _TransferError(f"{url}: unsupported output {output_file!r}")
        path = Path(output_file)
        path.write_bytes(b"")
        last = ""
        for _attempt in range(self.retries + 1):
            have = path.stat().st_size
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with requests.get(url, stream=True, timeout=self.timeout, headers=headers) as resp:
                    if resp.status_code == 416 and have:  # nothing left to send
                        return
                    if resp.status_code >= 400:
                        raise _TransferError(f"{url}: HTTP {resp.status_code} {resp.reason}")
                    resumed = resp.status_code == 206
                    expected = _expected_total(resp, have if resumed else 0)
                    with open(path, "ab" if resumed else "wb") as fh:
                        _copy_available(resp, fh)
                    got = path.stat().st_size
                    if expected is not None and got < expected:
                        last = f"connection closed after {got} of {expected} bytes"
                        continue
                    return
            except _TransferError:
                raise
            except requests.exceptions.ConnectionError as exc:
                last = _reason(exc)
                if last in ("connection refused", "name or service not known"):
                    break  # unreachable: retrying will not help
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # read1 raises urllib3's own
                last = _reason(exc)
        raise _TransferError(f"{url}: {last or 'download failed'} (after {self.retries} resumption attempts)")


def _copy_available(resp, fh) -> None:
    """Copy the body to ``fh`` as bytes arrive, so a cut-off transfer keeps every byte received.

    ``iter_content`` reads fixed-size chunks and drops a partial last chunk when the connection breaks;
    ``read1`` returns whatever has arrived (urllib3 2), so the resumption offset is the true one.
    """
    raw = resp.raw
    if resp.headers.get("Content-Encoding", "identity") not in ("", "identity") or not hasattr(raw, "read1"):
        for chunk in resp.iter_content(chunk_size=1 << 16):
            fh.write(chunk)
        return
    while True:
        chunk = raw.read1(1 << 16)
        if not chunk:
            return
        fh.write(chunk)
        fh.flush()


def _expected_total(resp, offset: int) -> int | None:
    rng = resp.headers.get("Content-Range", "")
    if "/" in rng and rng.rsplit("/", 1)[1].strip().isdigit():
        return int(rng.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for key in ("Connection refused", "Name or service not known", "timed out", "IncompleteRead", "Connection broken"):
        if key in text:
            return key.lower() if key != "IncompleteRead" else "connection closed mid-transfer"
    return text[:200]


def _download(url: str, dest: Path, sha256: str, retries: int, timeout: float) -> Path:
    """Download ``url`` to ``dest`` (pooch checks ``sha256`` first when given, deleting a bad file)."""
    pooch = _pooch()
    with _quiet_pooch(pooch):
        try:
            got = pooch.retrieve(url, known_hash=f"sha256:{sha256}" if sha256 else None, fname=dest.name,
                                 path=str(dest.parent), downloader=_ResumingDownloader(retries, timeout), progressbar=False)
        except ValueError as exc:
            if "hash" in str(exc).lower():
                raise ChecksumError(f"{url} sent a file whose sha256 differs from the registry's {sha256}; nothing was "
                                    "kept. The upstream file may have changed: use a mirror (VLMHUB_DATA=/path/to/mirror) "
                                    "or report it.") from None
            raise
    return Path(got)


def _candidates(asset: Asset, base_url: str | None) -> list[tuple[str, str]]:
    """``(kind, url)`` in the order to try: the data server first, then the registry's own URLs."""
    out: list[tuple[str, str]] = []
    if base_url:
        base = base_url.rstrip("/")
        if asset.is_dir and asset.members:
            out.append(("members", f"{base}/{asset.layout}/"))
        elif asset.is_dir:
            out.append(("archive", f"{base}/archives/{asset.name}.tar"))
        else:
            out.append(("file", f"{base}/{asset.layout}"))
    if asset.is_dir:
        out += [("members", u if u.endswith("/") else u + "/") for u in asset.base_urls if asset.members]
        out += [("archive", u) for u in asset.urls]
    else:
        out += [("file", u) for u in asset.urls]
    return out


def _safe_extract(archive: Path, into: Path) -> None:
    into = into.resolve()

    def check(name: str) -> None:
        target = (into / name).resolve()
        if target != into and into not in target.parents:
            raise DataError(f"archive {archive.name} has a member {name!r} outside its folder; refusing to unpack it")

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for n in z.namelist():
                check(n)
            z.extractall(into)
        return
    with tarfile.open(archive) as t:
        members = t.getmembers()
        for m in members:
            check(m.name)
            if not (m.isfile() or m.isdir()):
                raise DataError(f"archive {archive.name} has a link or device {m.name!r}; refusing to unpack it")
        t.extractall(into, members=members)


def _stage(asset: Asset, kind: str, url: str, staging: Path, retries: int, timeout: float) -> Path:
    """Download one candidate into ``staging``; return the staged file or folder (checksum verified)."""
    if kind == "file":
        staged = _download(url, staging / "file", asset.sha256, retries, timeout)
    elif kind == "members":
        staged = staging / "content"
        for m in asset.members:
            (staged / m).parent.mkdir(parents=True, exist_ok=True)
            _download(url + m, staged / m, "", retries, timeout)
    else:
        arch = _download(url, staging / "archive", asset.archive_sha256, retries, timeout)
        unpacked = staging / "unpacked"
        unpacked.mkdir()
        _safe_extract(arch, unpacked)
        arch.unlink()
        staged = unpacked / asset.archive_root if asset.archive_root else unpacked
        if not staged.is_dir():
            raise DataError(f"{url} has no folder {asset.archive_root!r}; it is not the archive of {asset.name}")
    digest = asset_digest(asset, staged)
    if digest != asset.sha256:
        raise ChecksumError(f"{url} gave {asset.name} with checksum {digest}, the registry records {asset.sha256}; "
                            "nothing was kept. Use a mirror (VLMHUB_DATA=/path/to/mirror) or report the change.")
    return staged


def _install(staged: Path, final: Path, staging: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():  # an older or damaged copy: move it aside, then drop it
        old = staging / "old"
        os.replace(final, old)
    os.replace(staged, final)


def _hand_hint(asset: Asset, settings: Settings) -> str:
    target = asset.path_in(settings.user_data_dir)
    if asset.is_dir and asset.members and asset.base_urls:
        how = f"download the {len(asset.members)} files under {asset.base_urls[0]} into {target}/"
    elif asset.urls:
        how = f"download {asset.urls[0]} (curl -L -o FILE URL) and {'unpack it to' if asset.is_dir else 'save it as'} {target}"
    else:
        how = f"copy {asset.layout} from a copy of the data mirror into {settings.user_data_dir}"
    return (f"To fetch it by hand, {how}, then run `vlmhub data verify {asset.name}`. Or use a mirror: "
            f"VLMHUB_DATA=/path/to/mirror (a folder holding {asset.layout}) or VLMHUB_DATA_URL=https://host/path "
            "(a web server holding one).")


def fetch(name: str | Asset, settings: Settings | None = None, *, force: bool = False, base_url: str | None = None,
          retries: int = DEFAULT_RETRIES, timeout: float = DEFAULT_TIMEOUT_S, registry: Registry | None = None) -> Location:
    """Make asset ``name`` available, downloading it into the user data dir if no data location has it.

    Returns where it is now. ``force`` downloads again even when a copy exists. ``base_url`` (default
    ``settings.data_url`` / ``VLMHUB_DATA_URL``) is a data server tried before the registry's URLs.
    Raises :class:`ChecksumError` or :class:`DownloadError`; either way nothing is left behind.
    """
    settings = settings or get_settings()
    asset = name if isinstance(name, Asset) else (registry or load_registry()).get(name)
    if not force:
        loc = locate(asset, settings)
        if loc.found:
            return loc
    candidates = _candidates(asset, base_url if base_url is not None else settings.data_url)
    if not candidates:
        raise DownloadError(f"{asset.name} has no public download ({(asset.note or asset.source).rstrip('.')}). "
                            f"{_hand_hint(asset, settings)}")
    _pooch()  # the missing-extra error before any folder is made
    settings.user_data_dir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    checksum: ChecksumError | None = None
    for kind, url in candidates:
        staging = Path(tempfile.mkdtemp(prefix=f".fetch-{asset.name}-", dir=settings.user_data_dir))
        try:
            staged = _stage(asset, kind, url, staging, retries, timeout)
            final = asset.path_in(settings.user_data_dir)
            _install(staged, final, staging)
            return Location(asset, "user", final, settings.user_data_dir)
        except ChecksumError as exc:
            checksum = exc
            failures.append(f"{url}: checksum mismatch")
        except _TransferError as exc:
            failures.append(str(exc))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if checksum is not None and len(failures) == 1:
        raise checksum
    raise DownloadError(f"could not download {asset.name}; nothing was kept. Tried: {'; '.join(failures)}. "
                        f"{_hand_hint(asset, settings)}")


def fetch_many(names: Iterable[str], settings: Settings | None = None, *, force: bool = False,
               base_url: str | None = None, on_done: Callable[[Location], None] | None = None,
               registry: Registry | None = None) -> list[Location]:
    """:func:`fetch` each name in turn (stopping at the first error); ``on_done`` sees each result."""
    registry = registry or load_registry()
    out = []
    for n in names:
        loc = fetch(n, settings, force=force, base_url=base_url, registry=registry)
        out.append(loc)
        if on_done is not None:
            on_done(loc)
    return out


def verify(names: Iterable[str] | None = None, settings: Settings | None = None, *,
           registry: Registry | None = None) -> list[Verification]:
    """Recompute the checksum of each asset where :func:`~vlmhub.assets.locate` finds it (all by default)."""
    settings = settings or get_settings()
    registry = registry or load_registry()
    assets = [registry.get(n) for n in names] if names else list(registry.assets)
    out = []
    for a in assets:
        loc = locate(a, settings)
        if not loc.found:
            out.append(Verification(a.name, "missing", "missing", None, a.sha256))
            continue
        try:
            actual = asset_digest(a, loc.path)
        except MissingAssetError:
            actual = "incomplete"
        out.append(Verification(a.name, "ok" if actual == a.sha256 else "mismatch", loc.source, loc.path, a.sha256, actual))
    return out


def pack(name: str | Asset, out_dir: str | os.PathLike, settings: Settings | None = None, *,
         registry: Registry | None = None) -> Path:
    """Write ``<out_dir>/archives/<name>.tar`` of a folder asset (verified first), for a data server."""
    settings = settings or get_settings()
    asset = name if isinstance(name, Asset) else (registry or load_registry()).get(name)
    if not asset.is_dir:
        raise DataError(f"{asset.name} is a single file; a data server serves it as <url>/{asset.layout}, no archive needed.")
    loc = locate(asset, settings)
    if not loc.found:
        raise MissingAssetError(f"{asset.name} is not here to pack; point VLMHUB_DATA at a folder holding {asset.layout}.")
    if asset_digest(asset, loc.path) != asset.sha256:
        raise ChecksumError(f"{loc.path} does not match the registry's checksum of {asset.name}; not packing it.")
    dest = Path(out_dir) / "archives" / f"{asset.name}.tar"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
            for p in sorted(q for q in Path(loc.path).rglob("*") if q.is_file()):  # sorted, mtime 0: reproducible
                info = tarfile.TarInfo(p.relative_to(loc.path).as_posix())
                info.size, info.mtime, info.mode = p.stat().st_size, 0, 0o644
                with open(p, "rb") as fh:
                    t.addfile(info, fh)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return dest
