"""The data registry: every data asset vlmhub uses, where it is found, how it is fetched and checked.

Lookup order (:func:`locate`): ``VLMHUB_DATA`` (a folder laid out like the shared mirror) -> the user data
dir (``VLMHUB_USER_DATA``, default platformdirs' ``~/.local/share/vlmhub``; what ``vlmhub data fetch``
fills) -> a local mirror (``VLMHUB_MIRROR``, default ``shared/data`` beside a source checkout) -> the
tables packaged inside vlmhub. A missing asset is a :class:`~vlmhub.errors.MissingAssetError` naming
``vlmhub data fetch NAME`` (:func:`require`). See docs/data.md.
"""

from __future__ import annotations

from .fetch import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, Verification, fetch, fetch_many, pack, verify
from .registry import (
    KINDS,
    SOURCES,
    Asset,
    Location,
    Registry,
    asset_digest,
    fetch_hint,
    file_sha256,
    load_registry,
    locate,
    package_root,
    require,
    tree_digest,
)
from .lookup import data_root_for, find_image_set, table_root

__all__ = [
    "Asset",
    "Location",
    "Registry",
    "Verification",
    "KINDS",
    "SOURCES",
    "DEFAULT_RETRIES",
    "DEFAULT_TIMEOUT_S",
    "load_registry",
    "locate",
    "require",
    "fetch",
    "fetch_many",
    "verify",
    "pack",
    "package_root",
    "file_sha256",
    "tree_digest",
    "asset_digest",
    "fetch_hint",
    "find_image_set",
    "table_root",
    "data_root_for",
]
