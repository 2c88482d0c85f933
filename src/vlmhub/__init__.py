"""vlmhub: select and reuse pretrained vision-language models with Model Label Learning (MLL).

The front door is :class:`Hub`; tasks are loaded with :func:`load_task`. Submodules are imported lazily so
``import vlmhub`` is cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Hub", "Task", "load_task", "Settings", "get_settings", "Catalog", "create_model", "list_models", "MLLSelector",
           "MLLConfig", "MLLEnsemble", "BatchPredictor", "VlmhubError", "__version__"]

from types import MappingProxyType

_LAZY = MappingProxyType({
    "Catalog": "vlmhub.models.catalog",
    "Hub": "vlmhub.hub",
    "Task": "vlmhub.tasks",
    "load_task": "vlmhub.tasks",
    "Settings": "vlmhub.settings",
    "get_settings": "vlmhub.settings",
    "create_model": "vlmhub.models",
    "list_models": "vlmhub.models",
    "MLLSelector": "vlmhub.selection.mll",
    "MLLConfig": "vlmhub.selection.mll",
    "MLLEnsemble": "vlmhub.reuse.ensemble",
    "BatchPredictor": "vlmhub.reuse.batch",
    "VlmhubError": "vlmhub.errors",
})


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vlmhub' has no attribute {name!r}")
