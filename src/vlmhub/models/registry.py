"""The built-in model table: stable ids -> typed specs and factories, declarative and import-time free.

Built-in models (the offline default hub of :mod:`vlmhub.models.offline`, the colour test models of
:mod:`vlmhub.models.toy`) are declared as tuples of :class:`ModelEntry` by their modules; this module only
reads those tuples, once, into a read-only mapping. Nothing here can be mutated: a hub home's own models and
models registered at run time live in that home's :class:`~vlmhub.models.catalog.Catalog`.

>>> from vlmhub.models import Catalog
>>> catalog = Catalog(settings)              # built-ins + <home>/models.json
>>> catalog.ids(tag="default")               # the offline default hub
>>> model = catalog.create("conse-lite0")

The shortcuts :func:`~vlmhub.models.catalog.list_models`, ``get_spec`` and ``create_model`` of
:mod:`vlmhub.models.catalog` build ``Catalog(settings)`` (the default settings when omitted).
"""

from __future__ import annotations

import difflib
import functools
from types import MappingProxyType
from typing import Mapping, Sequence

from ..errors import UnknownModelError
from .base import ModelEntry, ModelFactory, ModelSpec

__all__ = ["ModelEntry", "ModelFactory", "builtin_entries", "builtin_specs", "unknown_model_error"]


@functools.lru_cache(maxsize=1)
def builtin_entries() -> Mapping[str, ModelEntry]:
    """Every built-in model, by id (read-only; the declaring modules are imported on first call, cheaply)."""
    from . import offline, toy

    out: dict[str, ModelEntry] = {}
    for entry in (*offline.builtin_models(), *toy.builtin_models()):
        if entry.spec.id in out:  # pragma: no cover - a programming error in the built-in tables
            raise RuntimeError(f"built-in model id {entry.spec.id!r} is declared twice")
        out[entry.spec.id] = entry
    return MappingProxyType(out)


def builtin_specs(tag: str | None = None) -> tuple[ModelSpec, ...]:
    """Specs of the built-in models, optionally only those tagged ``tag``, sorted by id."""
    return tuple(e.spec for i, e in sorted(builtin_entries().items()) if tag is None or tag in e.spec.tags)


def unknown_model_error(model_id: str, known: Sequence[str], where: str = "") -> UnknownModelError:
    """The error for an id that is not in a catalog: close matches and the known ids."""
    close = difflib.get_close_matches(str(model_id), list(known), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UnknownModelError(
        f"unknown model id {model_id!r}{where}.{hint} Known ids: {', '.join(sorted(known))}. "
        "Run `vlmhub models list` to see them, or add the model with `vlmhub models add SOURCE`."
    )
