"""The service's request handling, free of any web framework (so it is tested and reused without one).

:class:`VlmhubService` holds what is expensive to build -- the :class:`~vlmhub.hub.Hub` with its loaded
models and fitted MLL selector, fitted table selectors -- and answers plain-dict requests with plain-dict
responses, the same JSON shapes as the CLI's ``--json`` output:

* :meth:`~VlmhubService.select` -- ``vlmhub select --json`` (Eq. 5-7, no model runs);
* :meth:`~VlmhubService.predict` -- ``vlmhub predict --json`` on uploaded image bytes (Eq. 8-10);
* :meth:`~VlmhubService.rank_models` -- ``vlmhub rank-models --json`` for a performance table.

Model inference is serialised by a lock (the CPU is saturated by one forward; concurrent requests queue);
selections take it only while the selector is fitted, then run in parallel (the fitted selector is read-only
apart from its bounded, locked cache of task embeddings); ranking takes it while a table selector is fitted. Bad input raises the
usual :class:`~vlmhub.errors.VlmhubError` subclasses; the web layer maps them to HTTP status codes.
"""

from __future__ import annotations

from types import MappingProxyType

import base64
import binascii
import json
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, DataError, ImageError, TableError, TaskError
from ..settings import Settings, get_settings
from ..tasks import Task

__all__ = ["VlmhubService", "ServiceLimits", "BUILTIN_TABLES", "SELECT_CACHE_BYTES", "json_bytes"]

#: bytes of selection answers a service remembers by default (about 1,000 answers of 100 classes)
SELECT_CACHE_BYTES = 64 * 1024 * 1024


def json_bytes(obj: Any) -> bytes:
    """``obj`` as the service's JSON bytes: exactly what Starlette's ``JSONResponse`` renders (UTF-8, compact,
    no NaN), so an answer rendered here and one rendered by the framework are the same bytes."""
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")

#: tables a client may name; other tables must be registered by whoever starts the server (never a
#: client-supplied path)
BUILTIN_TABLES = ("openclip", "lovm")

_SELECTION_KEYS = MappingProxyType({"alpha": float, "k_nodes": int, "metric": str, "caption_sources": tuple,
                                    "rendition": str, "normalize_z": bool})


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request limits; a request beyond one is refused (HTTP 413 for bytes, 422 for counts and lengths).

    The defaults are those of :class:`~vlmhub.settings.Settings` (each overridable with a ``VLMHUB_*``
    variable); :meth:`from_settings` reads them from a settings object.
    """

    max_images: int = 256
    max_image_bytes: int = 10 * 1024 * 1024
    #: uploads decoded at once (each decode holds a full-size bitmap until it is resized)
    max_concurrent_decodes: int = 2
    #: bytes of one request body
    max_body_bytes: int = 32 * 1024 * 1024
    #: bytes of one upload to an upload route (model packages to /v1/submissions)
    max_upload_bytes: int = 2 * 1024**3
    #: classes of one task
    max_classes: int = 1000
    #: characters of one class name, caption, task name, domain or image name
    max_text_chars: int = 256
    #: user captions of one class
    max_captions: int = 32
    #: threads running heavy work (selection, prediction, ranking) off the event loop
    threads: int = 2
    #: requests a minute per token / client address (0: no limit) and the burst allowed at once
    rate_per_minute: int = 600
    rate_burst: int = 120

    def __post_init__(self) -> None:
        bad = {f: getattr(self, f) for f in ("max_images", "max_image_bytes", "max_concurrent_decodes", "max_body_bytes", "max_upload_bytes",
                                             "max_classes", "max_text_chars", "max_captions", "threads", "rate_burst")
               if isinstance(getattr(self, f), bool) or not isinstance(getattr(self, f), int) or getattr(self, f) < 1}
        if isinstance(self.rate_per_minute, bool) or not isinstance(self.rate_per_minute, int) or self.rate_per_minute < 0:
            bad["rate_per_minute"] = self.rate_per_minute
        if bad:
            raise ConfigError(f"service limits must be positive whole numbers (got {', '.join(f'{k}={v!r}' for k, v in bad.items())}). "
                              "Pass values >= 1.")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> "ServiceLimits":
        """The limits of ``settings`` (``max_request_bytes``, ``max_task_classes``, ...), some overridden."""
        base = dict(max_images=settings.max_request_images, max_body_bytes=settings.max_request_bytes,
                    max_upload_bytes=settings.max_upload_bytes,
                    max_classes=settings.max_task_classes, max_text_chars=settings.max_text_chars,
                    max_captions=settings.max_class_captions, threads=settings.service_threads,
                    rate_per_minute=settings.rate_limit, rate_burst=settings.rate_burst)
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)

    def check_task(self, payload: Any) -> None:
        """Refuse a task object beyond the limits before any of it is processed (:class:`TaskError`)."""
        if not isinstance(payload, Mapping):
            return  # Task.from_dict names the problem
        classes = payload.get("classes")
        if isinstance(classes, (list, tuple)) and len(classes) > self.max_classes:
            raise TaskError(f"the task has {len(classes)} classes; this server takes at most {self.max_classes} per task "
                            "(VLMHUB_MAX_TASK_CLASSES). Split the task or ask the operator to raise the limit.")
        check_name("the task name", payload.get("name"), self.max_text_chars)
        texts = [("the domain", payload.get("domain")), ("the task type", payload.get("task"))]
        texts += [(f"class {i}", c) for i, c in enumerate(classes or ()) if isinstance(classes, (list, tuple))]
        captions = payload.get("captions")
        if isinstance(captions, Mapping):
            for c, caps in captions.items():
                texts.append(("a captioned class name", c))
                if isinstance(caps, (list, tuple)):
                    if len(caps) > self.max_captions:
                        raise TaskError(f"class {str(c)[:40]!r} has {len(caps)} captions; the limit is {self.max_captions} "
                                        "(VLMHUB_MAX_CLASS_CAPTIONS). Send fewer captions.")
                    texts += [(f"a caption of class {str(c)[:40]!r}", x) for x in caps]
                else:
                    texts.append((f"the caption of class {str(c)[:40]!r}", caps))
        for what, text in texts:
            check_text(what, text, self.max_text_chars)


def check_text(what: str, text: Any, max_chars: int) -> None:
    """Refuse a request string that is too long, is not valid Unicode (a lone surrogate), holds control
    characters or looks like a server path (absolute, ``..``, ``~``); non-strings are left to the schema."""
    if not isinstance(text, str):
        return
    if len(text) > max_chars:
        raise TaskError(f"{what} has {len(text)} characters; the limit is {max_chars} (VLMHUB_MAX_TEXT_CHARS). "
                        "Shorten it.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TaskError(f"{what} is not valid Unicode text ({exc.reason} at position {exc.start}, e.g. a lone "
                        "UTF-16 surrogate). Send plain UTF-8 text.") from None
    if not text.isprintable() and any(ord(ch) < 32 or ord(ch) == 127 for ch in text):  # printable: no control
        raise TaskError(f"{what} contains control characters (NUL, newline, ...). Send printable text.")


def check_name(what: str, text: Any, max_chars: int) -> None:
    """:func:`check_text` plus: no absolute path, ``..`` segment, ``~`` or backslash (the server never opens a
    client-named path, and answers echoing one are refused too)."""
    check_text(what, text, max_chars)
    if isinstance(text, str) and (text.startswith(("/", "~")) or "\\" in text or ".." in text.split("/")):
        raise TaskError(f"{what} {text[:60]!r} looks like a file path; this server never reads paths. "
                        "Use a plain name such as \"cat/1.jpg\" (relative, no '..').")


class VlmhubService:
    """Warm state plus request handlers (see module doc).

    ``hub`` defaults to ``Hub(settings)``; ``tables`` maps extra table names to generic-format CSV paths the
    server operator allows (clients can only name those and :data:`BUILTIN_TABLES`).
    """

    def __init__(self, hub=None, *, settings: Settings | None = None, tables: Mapping[str, str | Path] | None = None,
                 limits: ServiceLimits | None = None, embedder: str = "minilm",
                 select_cache_bytes: int = SELECT_CACHE_BYTES) -> None:
        if hub is None:
            from ..hub import Hub

            hub = Hub(settings or get_settings())
        self.hub = hub
        self.tables = {str(k): Path(v) for k, v in (tables or {}).items()}
        clash = set(self.tables) & set(BUILTIN_TABLES)
        if clash:
            raise ConfigError(f"table name(s) {sorted(clash)} are built in; register your CSV under another name.")
        self.limits = limits or ServiceLimits.from_settings(self.hub.settings)
        self.embedder = embedder
        self.started = time.time()
        self._lock = threading.RLock()
        self._decodes = threading.BoundedSemaphore(self.limits.max_concurrent_decodes)
        self._tables: dict[str, Any] = {}
        self._selectors: dict[tuple[str, str], Any] = {}
        if isinstance(select_cache_bytes, bool) or not isinstance(select_cache_bytes, int) or select_cache_bytes < 0:
            raise ConfigError(f"select_cache_bytes must be a whole number >= 0 (got {select_cache_bytes!r}); "
                              "0 turns the cache of selection answers off.")
        self.select_cache_bytes = select_cache_bytes
        # answers of repeated selections: request key -> (options, the fit that answered, JSON bytes), LRU
        self._answers: OrderedDict[str, tuple[dict, Any, bytes]] = OrderedDict()
        self._answers_bytes = 0
        self._answers_lock = threading.Lock()

    # -- info ------------------------------------------------------------------------------------
    def health(self) -> dict:
        from .. import __version__

        return {"status": "ok", "version": __version__, "home": str(self.hub.settings.home),
                "models": len(self.hub.model_ids), "labeled": len(self._labeled()),
                "uptime_s": round(time.time() - self.started, 1)}

    def _labeled(self) -> set[str]:
        """Hub models labeled on the current graph (none while the hub has no graph yet)."""
        from ..errors import NotLabeledError

        try:
            return set(self.hub.labeled_model_ids())
        except NotLabeledError:  # no graph yet
            return set()

    @staticmethod
    def _model_json(spec, labeled: bool, origin: str) -> dict:
        return {"id": spec.id, "family": spec.family, "backbone": spec.backbone, "embed_dim": spec.embed_dim,
                "imagenet_top1": spec.imagenet_top1, "tags": list(spec.tags), "labeled": labeled,
                "description": spec.description, "origin": origin, "params_m": spec.params_m,
                "gflops": spec.gflops, "image_size": spec.image_size, "pretrained": spec.pretrained}

    def models(self) -> dict:
        """The hub's models (this home's catalog only) with their specs and whether they are labeled."""
        catalog = self.hub.catalog
        labeled = self._labeled()
        return {"models": [self._model_json(catalog.spec(i), i in labeled, catalog.origin(i)) for i in self.hub.model_ids]}

    def model(self, model_id: str) -> dict:
        """One model of this hub; an id that is not one of this home's hub models is an
        :class:`~vlmhub.errors.UnknownModelError` (404)."""
        from ..models.registry import unknown_model_error

        ids = self.hub.model_ids
        if model_id not in ids:
            raise unknown_model_error(model_id, ids, " in this hub")
        catalog = self.hub.catalog
        return self._model_json(catalog.spec(model_id), model_id in self._labeled(), catalog.origin(model_id))

    def list_tables(self) -> dict:
        from ..tables import DEFAULT_SELECTOR, list_selectors

        return {"tables": list(BUILTIN_TABLES) + sorted(self.tables), "selectors": list_selectors(),
                "default_selector": DEFAULT_SELECTOR}

    # -- MLL -------------------------------------------------------------------------------------
    def task(self, payload: Any) -> Task:
        """Validate a task object (``{"name", "classes", "domain", "task", "captions"}``) within the limits."""
        self.limits.check_task(payload)
        return Task.from_dict(payload)

    def selection_config(self, config: Mapping[str, Any] | None) -> dict:
        """Validate selection options (the CLI's ``--alpha``, ``--nodes``, ``--metric``, ...)."""
        cfg: dict[str, Any] = {}
        if config is not None and not isinstance(config, Mapping):
            raise TaskError("\"config\" must be an object of selection options, e.g. {\"alpha\": 0.5}.")
        for key, value in dict(config or {}).items():
            if key not in _SELECTION_KEYS:
                check_text("a selection option name", key, self.limits.max_text_chars)
                raise TaskError(f"unknown selection option {key[:60]!r}. Allowed: {', '.join(sorted(_SELECTION_KEYS))}.")
            kind = _SELECTION_KEYS[key]
            if kind is tuple:
                if isinstance(value, str):
                    value = [s for s in value.split(",") if s]
                if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value) or len(value) > 8:
                    raise TaskError(f"selection option {key!r} must be a list of at most 8 strings, e.g. [\"user\", \"wordnet\"].")
                for v in value:
                    check_text(f"an entry of selection option {key!r}", v, self.limits.max_text_chars)
                value = tuple(value)
            elif kind is bool:
                if not isinstance(value, bool):
                    raise TaskError(f"selection option {key!r} must be true or false.")
            elif kind in (int, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TaskError(f"selection option {key!r} must be a number{' (whole)' if kind is int else ''}.")
                if not math.isfinite(value) or abs(value) > 1e9:
                    raise TaskError(f"selection option {key!r} must be a finite number of sensible size (got {value!r}).")
                if kind is int and int(value) != value:
                    raise TaskError(f"selection option {key!r} must be a whole number (got {value!r}).")
                value = kind(value)
            elif not isinstance(value, str):
                raise TaskError(f"selection option {key!r} must be a string.")
            else:
                check_text(f"selection option {key!r}", value, self.limits.max_text_chars)
            cfg[key] = value
        return cfg

    def select(self, task: Any, k: int = 3, config: Mapping[str, Any] | None = None) -> dict:
        """Per-class top-``k`` models from labels only; the JSON of ``vlmhub select --json``."""
        t = self.task(task)
        cfg = self.selection_config(config)
        _check_k(k)
        with self._lock:  # the fit (labels, index, node captions) happens once; selections then run in parallel
            self.hub.selector(**cfg)
        return self.hub.select(t, k=k, **cfg).to_dict()

    def select_json(self, task: Any, k: int = 3, config: Mapping[str, Any] | None = None) -> tuple[bytes, bool]:
        """:meth:`select` as the HTTP answer's bytes (``application/json``), and whether they came from the cache.

        Answers are remembered per request (task, ``k``, options) together with the fitted selector that
        computed them, and served again only while :meth:`~vlmhub.hub.Hub.fitted_selector` returns that very
        fit -- i.e. the same hub models (``models.json``), the same current graph and the same labels -- so a
        model labeled, published or removed, or another graph made current, is answered afresh on the next
        request. A served answer is the computed one byte for byte (its ``seconds`` is the computation's).
        At most ``select_cache_bytes`` of answers are kept (least recently used dropped first)."""
        key = self._answer_key(task, k, config)
        hit = self.cached_select_json(task, k, config, key=key)
        if hit is not None:
            return hit, True
        t = self.task(task)
        cfg = self.selection_config(config)
        _check_k(k)
        with self._lock:  # the fit (labels, index, node captions) happens once; selections then run in parallel
            self.hub.selector(**cfg)
        fit = self.hub.fitted_selector(**cfg)
        body = json_bytes(self.hub.select(t, k=k, **cfg).to_dict())
        if key is not None and fit is not None and self.hub.fitted_selector(**cfg) is fit:
            self._remember(key, cfg, fit, body)
        return body, False

    def cached_select_json(self, task: Any, k: int = 3, config: Mapping[str, Any] | None = None, *,
                           key: str | None = None) -> bytes | None:
        """The remembered answer of this exact request while the fit that computed it is still the current one
        (see :meth:`select_json`), else ``None``. No validation, fit or encoding: a dict lookup and a few
        ``stat`` calls (``models.json``, ``graphs/current.json``), cheap enough for the event loop."""
        key = key if key is not None else self._answer_key(task, k, config)
        if key is None:
            return None
        with self._answers_lock:
            entry = self._answers.get(key)
            if entry is None:
                return None
            self._answers.move_to_end(key)
        cfg, fit, body = entry
        try:
            current = self.hub.fitted_selector(**cfg)
        except Exception:  # noqa: BLE001 -- e.g. the graph pointer removed: the normal path reports it
            current = None
        if current is fit:
            return body
        with self._answers_lock:  # computed by a fit that is no longer current: never served again
            if self._answers.get(key) is entry:
                del self._answers[key]
                self._answers_bytes -= len(body)
        return None

    def _answer_key(self, task: Any, k: Any, config: Any) -> str | None:
        if not self.select_cache_bytes:
            return None
        try:
            return json.dumps([task, k, config], sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        except (TypeError, ValueError):  # not plain JSON data: never cached (select() refuses or answers it)
            return None

    def _remember(self, key: str, cfg: dict, fit: Any, body: bytes) -> None:
        if len(body) > self.select_cache_bytes:
            return
        with self._answers_lock:
            old = self._answers.pop(key, None)
            if old is not None:
                self._answers_bytes -= len(old[2])
            self._answers[key] = (cfg, fit, body)
            self._answers_bytes += len(body)
            while self._answers_bytes > self.select_cache_bytes:
                _, (_, _, dropped) = self._answers.popitem(last=False)
                self._answers_bytes -= len(dropped)

    def select_is_cheap(self, task: Any, config: Mapping[str, Any] | None = None) -> bool:
        """Whether :meth:`select` of this task needs no fit and no text encoding (a repeated task), so the
        web layer may answer it in its fast lane. Invalid input is "not cheap" (the normal path refuses it)."""
        try:
            return self.hub.knows_task(self.task(task), **self.selection_config(config))
        except Exception:  # noqa: BLE001 -- only a routing hint; select() reports the actual problem
            return False

    def decode_images(self, images: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
        """``[{"name", "data": base64}]`` -> ``(id, InMemoryImage)`` refs, each decoded once to validate it."""
        from ..imaging import InMemoryImage, load_image

        if not isinstance(images, (list, tuple)) or not images:
            raise DataError("no images to classify. Send \"images\": [{\"name\": ..., \"data\": <base64>}, ...].")
        if len(images) > self.limits.max_images:
            raise DataError(f"{len(images)} images in one request; the limit is {self.limits.max_images}. Split the request.")
        refs, seen = [], set()
        for i, item in enumerate(images):
            if not isinstance(item, Mapping) or not isinstance(item.get("data"), str):
                raise ImageError(f"image {i} must be an object {{\"name\": ..., \"data\": <base64 string>}}.")
            name = item.get("name") or f"image-{i}"
            if not isinstance(name, str):
                raise ImageError(f"image {i}: \"name\" must be a string such as \"cat/1.jpg\".")
            try:
                check_name(f"the name of image {i}", name, self.limits.max_text_chars)
            except TaskError as exc:
                raise ImageError(str(exc)) from None
            if name in seen:
                raise ImageError(f"image name {name!r} is used twice in one request. Give every image its own name.")
            seen.add(name)
            if len(item["data"]) > self.limits.max_image_bytes * 4 // 3 + 4:
                raise ImageError(f"image {name!r} is larger than {self.limits.max_image_bytes} bytes. Send a smaller image.")
            try:
                raw = base64.b64decode(item["data"], validate=True)
            except (binascii.Error, ValueError):
                raise ImageError(f"image {name!r} is not valid base64. Encode the file's bytes with base64.") from None
            im = InMemoryImage(name, raw)
            with self._decodes:  # bounded: concurrent uploads never hold more than a few full bitmaps
                load_image(im, max_pixels=self.hub.settings.max_image_pixels)  # fail fast, before any model runs
            refs.append((name, im))
        return refs

    def predict(self, task: Any, images: Sequence[Mapping[str, Any]], k: int = 3, weighting: str | None = None,
                config: Mapping[str, Any] | None = None) -> dict:
        """Classify uploaded images with the MLL ensemble; the JSON of ``vlmhub predict --json``."""
        from ..reuse.ensemble import DEFAULT_WEIGHTING

        t = self.task(task)
        cfg = self.selection_config(config)
        _check_k(k)
        w = weighting or DEFAULT_WEIGHTING
        if w not in ("entropy", "inverse_entropy", "uniform"):
            raise TaskError(f"unknown weighting {w!r}; use inverse_entropy (default), entropy or uniform.")
        refs = self.decode_images(images)
        with self._lock:
            rows = self.hub.classify(t, refs, k=k, weighting=w, **cfg)
        return {"task": t.name, "weighting": w, "predictions": rows}

    # -- performance tables -------------------------------------------------------------------------
    def table(self, name: str):
        from ..tables import load_table

        if name not in BUILTIN_TABLES and name not in self.tables:
            raise TableError(f"unknown table {name!r}. This server offers: {', '.join(list(BUILTIN_TABLES) + sorted(self.tables))}.")
        with self._lock:
            if name not in self._tables:
                spec = self.tables.get(name, name)
                self._tables[name] = load_table(spec, data_dir=self.hub.settings.data_dir)
            return self._tables[name]

    def rank_models(self, table: str, task: Any, selector: str | None = None, top: int | None = None) -> dict:
        """Rank a table's models for a task described only by text; the JSON of ``vlmhub rank-models --json``
        (:func:`vlmhub.tables.rank_table_models`, with the fitted selector kept per table and name)."""
        from ..tables import DEFAULT_SELECTOR, TaskDescription, get_selector, rank_table_models

        t = self.task(task)
        name = selector or DEFAULT_SELECTOR
        if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
            raise TaskError(f"top must be a whole number >= 1 (got {top!r}).")
        tab = self.table(table)
        with self._lock:
            key = (table, name)
            if key not in self._selectors:
                # selectors refuse what they cannot do (INB without ImageNet, ModelGPT without target features)
                self._selectors[key] = get_selector(name, embedder=self.embedder).fit(tab)
            ranking = rank_table_models(tab, TaskDescription.from_task(t), self._selectors[key], top=top)
        return {**ranking.to_dict(), "table": table, "selector": name}


def _check_k(k: Any) -> None:
    from ..selection.config import SelectionConfig

    SelectionConfig(k=k)  # the library's one range check (the hub's size is checked at selection)
