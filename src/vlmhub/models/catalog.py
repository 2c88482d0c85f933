"""A hub home's model catalog: the built-in models plus that home's own models, and nothing else.

Every :class:`~vlmhub.hub.Hub`, CLI command and service instance works through one :class:`Catalog` for its
hub home, so two homes in one process never see each other's models::

    >>> from vlmhub.models import Catalog
    >>> a, b = Catalog(Settings(home="/srv/hub-a")), Catalog(Settings(home="/srv/hub-b"))
    >>> "my-clip" in a, "my-clip" in b          # added to hub-a with `vlmhub models add`
    (True, False)

A catalog reads ``<home>/models.json`` lazily and again whenever the file changes (by size, mtime and inode),
so a model added by another process is visible to a long-running service without a restart. A user model
whose id is taken by a built-in model is skipped with a warning. :meth:`Catalog.register` adds a model to
this catalog object only (for experiments and tests); it is never persisted and no other catalog sees it.
Persisted user models are added with :func:`vlmhub.models.user_hub.add_model`.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Iterator, Mapping

from ..errors import ConfigError
from .base import ModelEntry, ModelFactory, ModelOrigin, ModelSpec, ZeroShotModel
from .registry import builtin_entries, unknown_model_error

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings

__all__ = ["Catalog", "list_models", "get_spec", "create_model"]


class Catalog:
    """The models of one hub home: built-ins, then the home's models.json, then run-time registrations.

    Parameters
    ----------
    settings:
        The hub home's settings (the default settings when omitted).
    user_models:
        Read ``<home>/models.json`` (default). ``False`` gives the built-ins alone.
    """

    def __init__(self, settings: "Settings | None" = None, *, user_models: bool = True):
        if settings is None:
            from ..settings import get_settings

            settings = get_settings()
        self.settings = settings
        self._user_models = bool(user_models)
        self._runtime: dict[str, ModelEntry] = {}
        self._user: tuple[tuple[int, int, int] | None, Mapping[str, ModelEntry]] = (None, MappingProxyType({}))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Catalog(home={str(self.settings.home)!r}, models={len(self)})"

    # -- the three sources ---------------------------------------------------------------------------
    @property
    def models_file(self) -> Path:
        """``<home>/models.json``: this home's own models."""
        return Path(self.settings.home) / "models.json"

    def _user_entries(self) -> Mapping[str, ModelEntry]:
        if not self._user_models:
            return MappingProxyType({})
        path = self.models_file
        try:
            st = os.stat(path)
            key: tuple[int, int, int] | None = (st.st_size, st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            key = None
        except OSError as exc:
            raise ConfigError(f"cannot read the user model list {path}: {exc}. Check its permissions.") from None
        with self._lock:
            cached_key, cached = self._user
            if key == cached_key:
                return cached
            entries = MappingProxyType(self._read_user(path) if key is not None else {})
            self._user = (key, entries)
            return entries

    @staticmethod
    def _read_user(path: Path) -> dict[str, ModelEntry]:
        from .user_hub import read_models_file, user_model_factory

        builtins = builtin_entries()
        out: dict[str, ModelEntry] = {}
        for m in read_models_file(path):
            if m.id in builtins:
                warnings.warn(f"user model {m.id!r} in {path} is shadowed by a built-in model of that id and is "
                              "skipped; re-add it with another --id", stacklevel=4)
                continue
            out[m.id] = ModelEntry(m.spec, user_model_factory, "user")
        return out

    def entries(self) -> Mapping[str, ModelEntry]:
        """Every entry by id (read-only snapshot): built-ins, the home's models, run-time registrations."""
        out = dict(builtin_entries())
        out.update(self._user_entries())
        out.update(self._runtime)
        return MappingProxyType(out)

    # -- queries -------------------------------------------------------------------------------------------
    def ids(self, tag: str | None = None, family: str | None = None) -> list[str]:
        """Sorted ids, optionally only those tagged ``tag`` (``"default"``, ``"test"``, ``"user"``) or of ``family``."""
        return sorted(i for i, e in self.entries().items()
                      if (tag is None or tag in e.spec.tags) and (family is None or e.spec.family == family))

    def entry(self, model_id: str) -> ModelEntry:
        """The entry of ``model_id``; an unknown id raises :class:`~vlmhub.errors.UnknownModelError` with close matches."""
        entries = self.entries()
        try:
            return entries[model_id]
        except (KeyError, TypeError):
            raise unknown_model_error(model_id, list(entries), f" in the hub at {self.settings.home}") from None

    def spec(self, model_id: str) -> ModelSpec:
        """The spec of ``model_id`` (see :meth:`entry`)."""
        return self.entry(model_id).spec

    def origin(self, model_id: str) -> ModelOrigin:
        """``"builtin"``, ``"user"`` or ``"runtime"``."""
        return self.entry(model_id).origin

    def create(self, model_id: str) -> ZeroShotModel:
        """Build ``model_id`` with this home's settings (weights load here)."""
        e = self.entry(model_id)
        return e.factory(e.spec, self.settings)

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and model_id in self.entries()

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def __len__(self) -> int:
        return len(self.entries())

    # -- run-time registration (this object only) ----------------------------------------------------------
    def register(self, spec: ModelSpec, factory: ModelFactory, *, overwrite: bool = False) -> ModelSpec:
        """Add ``factory(spec, settings)`` under ``spec.id`` to this catalog object only (not persisted).

        An id already in the catalog raises :class:`~vlmhub.errors.ConfigError` unless ``overwrite`` (which
        never hides a built-in model).
        """
        if not isinstance(spec, ModelSpec):
            raise ConfigError(f"register needs a ModelSpec, got {type(spec).__name__}")
        if not callable(factory):
            raise ConfigError(f"the factory of {spec.id!r} is not callable (got {type(factory).__name__})")
        if spec.id in builtin_entries():
            raise ConfigError(f"model id {spec.id!r} is a built-in model; register the model under another id.")
        if spec.id in self and not overwrite:
            raise ConfigError(f"model id {spec.id!r} is already in this catalog; pass overwrite=True or pick another id.")
        self._runtime[spec.id] = ModelEntry(spec, factory, "runtime")
        return spec

    def unregister(self, model_id: str) -> None:
        """Remove a run-time registration (built-in and persisted models are left alone)."""
        self._runtime.pop(model_id, None)


def list_models(tag: str | None = None, family: str | None = None, *, settings: "Settings | None" = None) -> list[str]:
    """Ids in the catalog of ``settings``' home (built-ins + its own models), optionally filtered."""
    return Catalog(settings).ids(tag=tag, family=family)


def get_spec(model_id: str, *, settings: "Settings | None" = None) -> ModelSpec:
    """The spec of ``model_id`` in the catalog of ``settings``' home."""
    return Catalog(settings).spec(model_id)


def create_model(model_id: str, settings: "Settings | None" = None) -> ZeroShotModel:
    """Build ``model_id`` from the catalog of ``settings``' home (weights load here, never at import)."""
    return Catalog(settings).create(model_id)
