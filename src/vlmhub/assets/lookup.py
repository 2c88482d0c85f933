"""Asset lookups the rest of vlmhub uses: shared image sets by name, the data root of a named table.

These keep today's behaviour where the mirror (or ``VLMHUB_DATA``) holds everything, and turn an absent
registered asset into a :class:`~vlmhub.errors.MissingAssetError` that names ``vlmhub data fetch ...``.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ..errors import MissingAssetError
from ..settings import Settings, get_settings
from .registry import Registry, load_registry, locate, package_root, require

__all__ = ["TABLE_ASSETS", "find_image_set", "table_root", "data_root_for"]

#: short table name -> (assets it cannot do without, assets it reads when present)
TABLE_ASSETS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType({
    "openclip": (("openclip-classification-results",), ("lovm-classnames", "mll-classnames")),
    "lovm": (("lovm-eval-table", "lovm-modelgpt-features", "lovm-dataset-domains", "lovm-dataset-tasks"),
             ("lovm-classnames", "openclip-classification-results")),
})


def find_image_set(name: str, settings: Settings | None = None, *, registry: Registry | None = None) -> Path | None:
    """The folder of the shared image set ``name`` (a registered set, or any ``images/<name>`` of a data root).

    ``None`` when ``name`` is neither registered nor present; :class:`MissingAssetError` (naming the fetch
    command) when it is a registered set that no data location holds.
    """
    settings = settings or get_settings()
    registry = registry or load_registry()
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        return None
    asset = registry.by_layout(f"images/{name}")
    if asset is not None:
        return require(asset, settings).path
    for _source, root in settings.data_roots:  # unregistered sets of a user's own data folder
        cand = root / "images" / name
        if cand.is_dir():
            return cand
    return None


def data_root_for(name: str, settings: Settings | None = None, *, registry: Registry | None = None) -> Path:
    """The data root holding asset ``name`` (for APIs that take a ``data_dir``); raises when it is missing."""
    loc = require(name, settings or get_settings(), registry=registry)
    assert loc.root is not None
    return loc.root


def table_root(spec: str, settings: Settings | None = None, *, registry: Registry | None = None) -> Path | None:
    """The data root to read the named table ``spec`` (``openclip``, ``lovm``) from; other specs: ``data_dir``.

    The first root (``VLMHUB_DATA`` -> user data dir -> mirror -> package) holding the table and everything
    it reads is chosen, else the first holding what it cannot do without.
    """
    settings = settings or get_settings()
    if spec not in TABLE_ASSETS:
        return settings.data_dir
    registry = registry or load_registry()
    required, optional = ([registry.get(n) for n in group] for group in TABLE_ASSETS[spec])
    roots = [r for _s, r in settings.data_roots] + [package_root()]
    fallback = None
    for root in roots:
        if all(a.present_in(root) for a in required):
            if all(a.present_in(root) for a in optional):
                return root
            fallback = fallback or root
    if fallback is not None:
        return fallback
    missing = [a.name for a in required if not locate(a, settings).found]
    if missing:
        raise MissingAssetError(f"the {spec!r} table needs data assets that were not found: {', '.join(missing)}. "
                                f"Get them with `vlmhub data fetch {' '.join(missing)}`, or point VLMHUB_DATA at a "
                                "folder laid out like the mirror that holds them.")
    names = " ".join(a.name for a in required)
    raise MissingAssetError(f"the files of the {spec!r} table lie in different data folders; fetch them into one "
                            f"with `vlmhub data fetch --force {names}`.")
