"""Model registry: stable ids -> typed specs and factories (timm's ``@register_model`` pattern).

>>> from vlmhub.models import list_models, create_model
>>> list_models(tag="default")          # the offline default hub
>>> model = create_model("conse-lite0-t10")

A miss raises :class:`~vlmhub.errors.UnknownModelError` listing the known ids.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from ..errors import UnknownModelError
from .base import ModelSpec, ZeroShotModel

__all__ = ["register_model", "register_spec", "unregister_model", "list_models", "get_spec", "create_model", "ModelFactory"]

ModelFactory = Callable[..., ZeroShotModel]


@dataclass(frozen=True)
class _Entry:
    spec: ModelSpec
    factory: ModelFactory


_REGISTRY: dict[str, _Entry] = {}
_LOADED = False


def register_spec(spec: ModelSpec, factory: ModelFactory, *, overwrite: bool = False) -> ModelSpec:
    """Register ``factory(spec, settings)`` under ``spec.id``."""
    if spec.id in _REGISTRY and not overwrite and _REGISTRY[spec.id].spec != spec:
        raise ValueError(f"model id {spec.id!r} is already registered with another spec")
    _REGISTRY[spec.id] = _Entry(spec, factory)
    return spec


def register_model(*specs: ModelSpec) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator registering one factory under one or more specs."""

    def deco(factory: ModelFactory) -> ModelFactory:
        for s in specs:
            register_spec(s, factory)
        return factory

    return deco


def unregister_model(model_id: str) -> None:
    _REGISTRY.pop(model_id, None)


def _ensure_loaded() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        from . import offline, toy  # noqa: F401  (registration side effects, no heavy work)

        try:
            from .user_hub import load_user_models
        except ImportError:  # pragma: no cover - during bootstrap
            return
        load_user_models()


def list_models(tag: str | None = None, family: str | None = None) -> list[str]:
    """Registered ids, optionally only those with ``tag`` (e.g. ``"default"``, ``"test"``) or ``family``."""
    _ensure_loaded()
    return sorted(
        i for i, e in _REGISTRY.items() if (tag is None or tag in e.spec.tags) and (family is None or e.spec.family == family)
    )


def _miss(model_id: str) -> UnknownModelError:
    known = sorted(_REGISTRY)
    close = difflib.get_close_matches(model_id, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UnknownModelError(
        f"unknown model id {model_id!r}.{hint} Known ids: {', '.join(known)}. "
        "Run `vlmhub models` to list them, or register the model first."
    )


def get_spec(model_id: str) -> ModelSpec:
    _ensure_loaded()
    try:
        return _REGISTRY[model_id].spec
    except KeyError:
        raise _miss(model_id) from None


def create_model(model_id: str, settings=None) -> ZeroShotModel:
    """Build the model registered under ``model_id`` (weights load here, never at import)."""
    _ensure_loaded()
    try:
        entry = _REGISTRY[model_id]
    except KeyError:
        raise _miss(model_id) from None
    from ..settings import get_settings

    return entry.factory(entry.spec, settings or get_settings())
