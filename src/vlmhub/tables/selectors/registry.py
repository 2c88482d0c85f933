"""The built-in table selectors by name: a read-only table collected from the selector modules.

>>> from vlmhub.tables import get_selector, list_selectors
>>> list_selectors()                                   # ['inb', 'best-mean', ...]
>>> sel = get_selector("mll", embedder="hashing256", alpha=0.6)

:func:`get_selector` rejects hyper-parameters a selector does not have, naming the valid ones. ``embedder``
(the text embedder, a resource rather than a hyper-parameter) is passed only to selectors that take one, so a
loop over every selector can pass it to all.
"""

from __future__ import annotations

import functools
import inspect
from types import MappingProxyType
from typing import Any, Mapping

from ...errors import TableError
from . import baselines, ensemble, fennec, learned, mll, safe, vlmhub_selector
from .base import TableSelector, is_registered

__all__ = ["selector_info", "list_selectors", "get_selector", "selector_params"]

#: the modules whose @register_selector classes are the built-in selectors, in listing order
_MODULES = (baselines, fennec, learned, mll, vlmhub_selector, ensemble, safe)


@functools.lru_cache(maxsize=1)
def _table() -> Mapping[str, type[TableSelector]]:
    out: dict[str, type[TableSelector]] = {}
    for mod in _MODULES:
        for obj in vars(mod).values():
            if is_registered(obj) and obj.__module__ == mod.__name__:
                if obj.name in out:  # pragma: no cover - a programming error
                    raise RuntimeError(f"two selectors are named {obj.name!r}")
                out[obj.name] = obj
    return MappingProxyType(out)


def selector_info() -> Mapping[str, type[TableSelector]]:
    """Every built-in selector class by name (read-only)."""
    return _table()


def list_selectors() -> list[str]:
    """Names of the built-in selectors."""
    return list(_table())


def selector_params(name: str) -> tuple[str, ...]:
    """The constructor's hyper-parameters of selector ``name``."""
    return tuple(p for p in inspect.signature(_cls(name).__init__).parameters if p != "self")


def _cls(name: str) -> type[TableSelector]:
    table = _table()
    if not isinstance(name, str) or name not in table:
        raise TableError(f"unknown selector {name!r}; choose one of: {', '.join(table)}")
    return table[name]


def get_selector(name: str, *, embedder: Any = None, **params: Any) -> TableSelector:
    """A new selector by name, e.g. ``get_selector("mll", embedder="hashing256")``.

    An unknown name or hyper-parameter raises :class:`~vlmhub.errors.TableError` listing the valid ones.
    """
    cls = _cls(name)
    valid = selector_params(name)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise TableError(f"selector {name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(v for v in valid if v != 'embedder') or 'none'}")
    if embedder is not None and "embedder" in valid:
        params["embedder"] = embedder
    return cls(**params)
