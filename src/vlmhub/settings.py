"""One settings object for every path vlmhub reads or writes.

Resolution order for each path: an explicit argument, then an environment variable, then a default that
never depends on the current working directory:

* ``home`` (``VLMHUB_HOME``): where labels, graphs, caches and the WordNet copy live.
  Default ``$XDG_CACHE_HOME/vlmhub`` or ``~/.cache/vlmhub``.
* ``data_dir`` (``VLMHUB_DATA``): a data folder laid out like the shared mirror (``images/``, ``tables/``,
  ``mll/``, ...). Default: the mirror below, if there is one.
* ``user_data_dir`` (``VLMHUB_USER_DATA``): where ``vlmhub data fetch`` stores downloaded assets, laid out
  the same way. Default: platformdirs' user data dir (``~/.local/share/vlmhub`` on Linux).
* ``mirror_dir`` (``VLMHUB_MIRROR``; empty or ``none`` disables it): a local read-only mirror, by default
  ``shared/data`` next to the source checkout vlmhub was installed from, if it exists.
* ``data_url`` (``VLMHUB_DATA_URL``): optional base URL of a web server holding a copy of the mirror, tried
  before the upstream URLs by ``vlmhub data fetch``.

Data assets (:mod:`vlmhub.assets`) are looked up in ``data_dir`` -> ``user_data_dir`` -> ``mirror_dir`` ->
the tables packaged inside vlmhub (:attr:`Settings.data_roots`).
* ``wordnet_dir`` (``VLMHUB_WORDNET``): an nltk data folder holding ``corpora/wordnet``.
  Default ``<home>/nltk_data``; filled from Debian's ``wordnet-base`` on first use.
* ``ray_address`` (``VLMHUB_RAY_ADDRESS``): the Ray cluster ``vlmhub label --ray`` and ``vlmhub predict --ray``
  use when no address is given (``auto``, ``ray://head:10001``); unset: a local Ray started for the command.
* ``database_url`` (``VLMHUB_DATABASE_URL``): the hub database (SQLAlchemy URL). Default a SQLite file
  ``<home>/hub.db``; a shared hub uses ``postgresql+psycopg://user@host/dbname`` (docs/hub.md).

Hub layout under ``home`` (documented in docs/storage.md)::

    graphs/<graph_version>.json          semantic graph snapshots
    labels/<model_id>/manifest.json      model label (Eq. 2-4): shards of image/caption embeddings
    cache/text/<embedder>/               caption embeddings of the selection text embedder
    cache/features/<trunk>/<dataset>/    cached image features of target datasets
    nltk_data/corpora/wordnet/           WordNet 3.0 for nltk
    hub.db                               the hub database (SQLite default; see docs/hub.md)
    artifacts/sha256/<ab>/<sha256>.npy   content-addressed arrays the database points at
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import ConfigError

__all__ = ["Settings", "get_settings", "default_data_dir", "default_mirror_dir", "default_user_data_dir"]


def _source_root() -> Path | None:
    """The checkout vlmhub was installed from (editable installs), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "vlmhub").is_dir():
            return parent
    return None


def default_mirror_dir() -> Path | None:
    """``VLMHUB_MIRROR`` (empty or ``none``: no mirror) or ``shared/data`` beside the source checkout, if present."""
    env = os.environ.get("VLMHUB_MIRROR")
    if env is not None:
        if env.strip().lower() in ("", "none", "off", "0"):
            return None
        return Path(env).expanduser().resolve()
    root = _source_root()
    if root is not None:
        for cand in (root.parent / "shared" / "data", root / "shared" / "data"):
            if cand.is_dir():
                return cand.resolve()
    return None


def default_data_dir() -> Path | None:
    """``VLMHUB_DATA``, else the local mirror (:func:`default_mirror_dir`), else ``None``."""
    env = os.environ.get("VLMHUB_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return default_mirror_dir()


def default_user_data_dir() -> Path:
    """``VLMHUB_USER_DATA``, else platformdirs' user data dir for vlmhub (XDG layout when platformdirs is absent)."""
    env = os.environ.get("VLMHUB_USER_DATA")
    if env:
        return Path(env).expanduser().resolve()
    try:
        import platformdirs
    except ImportError:  # the [data] extra is absent: the XDG convention platformdirs follows on Linux
        xdg = os.environ.get("XDG_DATA_HOME")
        base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
        return (base / "vlmhub").resolve()
    return Path(platformdirs.user_data_dir("vlmhub", appauthor=False)).resolve()


def _default_home() -> Path:
    env = os.environ.get("VLMHUB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "vlmhub").resolve()


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """A whole number >= ``minimum`` from the environment variable ``name`` (``default`` when unset or empty)."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        what = "a positive integer" if minimum == 1 else f"a whole number >= {minimum}"
        off = " (0 turns it off)" if minimum == 0 else ""
        raise ConfigError(f"{name}={raw!r} is not {what}. Set it to a whole number such as {default}{off}.")
    return value


#: Settings fields that must be whole numbers >= 1 (checked at construction)
_POSITIVE_INT_FIELDS = ("max_image_pixels", "max_request_bytes", "max_upload_bytes", "max_task_classes", "max_text_chars",
                        "max_class_captions", "max_request_images", "service_threads", "rate_burst")


@dataclass(frozen=True)
class Settings:
    """Every path vlmhub uses. Construct with explicit paths in tests for a hermetic hub."""

    home: Path = field(default_factory=_default_home)
    data_dir: Path | None = field(default_factory=default_data_dir)
    user_data_dir: Path = field(default_factory=default_user_data_dir)
    mirror_dir: Path | None = field(default_factory=default_mirror_dir)
    data_url: str | None = field(default_factory=lambda: os.environ.get("VLMHUB_DATA_URL") or None)
    wordnet_dir: Path | None = None
    device: str = field(default_factory=lambda: os.environ.get("VLMHUB_DEVICE", "cpu"))
    batch_size: int = 64
    num_workers: int = field(default_factory=lambda: int(os.environ.get("VLMHUB_WORKERS", "2")))
    #: largest image (width x height) any path decodes; a larger one is refused before its pixels are read
    max_image_pixels: int = field(default_factory=lambda: _env_int("VLMHUB_MAX_IMAGE_PIXELS", 40_000_000))
    #: SQLAlchemy URL of the hub database; ``None`` means the SQLite file ``<home>/hub.db`` (see :attr:`db_url`)
    database_url: str | None = field(default_factory=lambda: os.environ.get("VLMHUB_DATABASE_URL") or None)
    #: Ray cluster of ``--ray`` without an address (``VLMHUB_RAY_ADDRESS``); ``None``: a local Ray per command
    ray_address: str | None = field(default_factory=lambda: os.environ.get("VLMHUB_RAY_ADDRESS") or None)
    # -- limits of the HTTP service (docs/service.md); each refusal is a 413 / 422 problem body -----------
    #: bytes of one request body (checked from Content-Length and while the body streams in)
    max_request_bytes: int = field(default_factory=lambda: _env_int("VLMHUB_MAX_REQUEST_BYTES", 32 * 1024 * 1024))
    #: bytes of one upload to an upload route (``/v1/submissions``: model packages), counted the same way
    max_upload_bytes: int = field(default_factory=lambda: _env_int("VLMHUB_MAX_UPLOAD_BYTES", 2 * 1024**3))
    #: classes of one task (ImageNet's 1,000 fit)
    max_task_classes: int = field(default_factory=lambda: _env_int("VLMHUB_MAX_TASK_CLASSES", 1000))
    #: characters of one class name, caption, task name, domain or image name
    max_text_chars: int = field(default_factory=lambda: _env_int("VLMHUB_MAX_TEXT_CHARS", 256))
    #: user captions of one class
    max_class_captions: int = field(default_factory=lambda: _env_int("VLMHUB_MAX_CLASS_CAPTIONS", 32))
    #: uploaded images of one /v1/predict request
    max_request_images: int = field(default_factory=lambda: _env_int("VLMHUB_MAX_REQUEST_IMAGES", 256))
    #: threads running the service's heavy work (caption encoding, selection, prediction) off the event loop
    service_threads: int = field(default_factory=lambda: _env_int("VLMHUB_SERVICE_THREADS", 2))
    #: requests a minute per bearer token (per client address when anonymous); 0 turns the limit off
    rate_limit: int = field(default_factory=lambda: _env_int("VLMHUB_RATE_LIMIT", 600, minimum=0))
    #: requests a client may send at once before :attr:`rate_limit` paces it
    rate_burst: int = field(default_factory=lambda: _env_int("VLMHUB_RATE_BURST", 120))

    def __post_init__(self) -> None:
        if isinstance(self.rate_limit, bool) or not isinstance(self.rate_limit, int) or self.rate_limit < 0:
            raise ConfigError(f"Settings.rate_limit must be a whole number >= 0 (got {self.rate_limit!r}); "
                              "set VLMHUB_RATE_LIMIT (0 turns the limit off).")
        for name in _POSITIVE_INT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"Settings.{name} must be a whole number >= 1 (got {v!r}); "
                                  f"set VLMHUB_{name.upper()} or pass a positive {name}.")
        object.__setattr__(self, "home", Path(self.home).expanduser().resolve())
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        object.__setattr__(self, "user_data_dir", Path(self.user_data_dir).expanduser().resolve())
        if self.mirror_dir is not None:
            object.__setattr__(self, "mirror_dir", Path(self.mirror_dir).expanduser().resolve())
        wn = self.wordnet_dir or os.environ.get("VLMHUB_WORDNET")
        wn = Path(wn).expanduser().resolve() if wn else self.home / "nltk_data"
        object.__setattr__(self, "wordnet_dir", wn)

    # -- derived locations -------------------------------------------------------------------
    @property
    def labels_dir(self) -> Path:
        return self.home / "labels"

    @property
    def graphs_dir(self) -> Path:
        return self.home / "graphs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def data_roots(self) -> tuple[tuple[str, Path], ...]:
        """The folders data assets are looked up in, in order, each with its source label.

        ``data-dir`` (``VLMHUB_DATA`` / ``--data-dir``, when it is not simply the mirror), ``user`` (the user
        data dir ``vlmhub data fetch`` writes to), ``mirror``. The tables packaged inside vlmhub come after
        these (:func:`vlmhub.assets.locate`).
        """
        roots: list[tuple[str, Path]] = []
        if self.data_dir is not None and self.data_dir != self.mirror_dir:
            roots.append(("data-dir", self.data_dir))
        roots.append(("user", self.user_data_dir))
        if self.mirror_dir is not None:
            roots.append(("mirror", self.mirror_dir))
        return tuple(roots)

    @property
    def db_url(self) -> str:
        """The hub database URL: :attr:`database_url`, else the SQLite file ``<home>/hub.db``."""
        return self.database_url or f"sqlite:///{self.home / 'hub.db'}"

    @property
    def artifacts_dir(self) -> Path:
        """Content-addressed arrays the hub database points at (``<home>/artifacts``)."""
        return self.home / "artifacts"

    def require_data_dir(self) -> Path:
        """The shared data folder, or a :class:`ConfigError` that says how to point vlmhub at it.

        Prefer :func:`vlmhub.assets.locate`, which also finds assets fetched into the user data dir.
        """
        if self.data_dir is None or not self.data_dir.is_dir():
            raise ConfigError(
                f"the shared data folder was not found (looked at {self.data_dir or 'shared/data beside the checkout'}). "
                "Set VLMHUB_DATA=/path/to/shared/data or pass --data-dir, or fetch what is needed with "
                "`vlmhub data fetch NAME` (`vlmhub data list` shows the names)."
            )
        return self.data_dir

    @property
    def images_dir(self) -> Path:
        return self.require_data_dir() / "images"

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed."""
        return replace(self, **changes)


def get_settings() -> Settings:
    """The default settings, read from the environment at each call (nothing is cached process-wide, so a
    changed ``VLMHUB_HOME`` takes effect at once and two hubs never share hidden state)."""
    return Settings()
