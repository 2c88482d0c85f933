"""The user's own models: real CLIP-family checkpoints added to the hub with ``vlmhub models add``.

>>> from vlmhub.models.user_hub import add_model
>>> spec = add_model("open_clip:ViT-B-32/laion2b_s34b_b79k")          # loads, checks, then persists
>>> spec = add_model("hf:/models/my-clip", model_id="my-clip")        # a save_pretrained folder

:func:`add_model` loads the model through its adapter (:mod:`vlmhub.models.adapters`), runs the admission
checks (:func:`vlmhub.models.checker.check_model`) and only if they pass writes the entry to
``<settings.home>/models.json`` (atomically, under ``models.json.lock``); the home's
:class:`~vlmhub.models.catalog.Catalog` reads it from there. A failing model
raises :class:`~vlmhub.errors.ModelCheckError` whose ``report`` is the :class:`CheckReport`, and
models.json is left as it was.

models.json (no pickles; one entry per model)::

    {"format": "vlmhub-user-models", "version": 1,
     "models": [{"id": "...", "source": "open_clip:...", "adapter": "open_clip", "added": "2026-...Z",
                 "checked": true, "check_seconds": 1.2, "spec": {...ModelSpec.to_dict()...}}]}

:class:`~vlmhub.models.catalog.Catalog` turns every persisted entry into a catalog entry whose factory
(:func:`user_model_factory`) rebuilds the model from its source; reading the list loads no weights. Nothing
here keeps state between calls: the file is the only record.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..errors import ConfigError, ModelCheckError, UnknownModelError
from ..storage.atomic import atomic_write_json, file_lock
from .base import ModelSpec, ZeroShotModel

__all__ = [
    "UserModel",
    "add_model",
    "remove_model",
    "list_user_models",
    "read_models_file",
    "user_model_factory",
    "models_file",
    "build_from_source",
    "MODELS_FORMAT",
]

MODELS_FORMAT = "vlmhub-user-models"
_VERSION = 1
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
_FIX = "Fix the JSON by hand, or move the file away and add the models again with `vlmhub models add SOURCE`."


@dataclass(frozen=True)
class UserModel:
    """One persisted entry of models.json."""

    spec: ModelSpec
    source: str
    adapter: str
    added: str
    checked: bool

    @property
    def id(self) -> str:
        return self.spec.id


def _settings(settings):
    if settings is None:
        from ..settings import get_settings

        settings = get_settings()
    return settings


def models_file(settings=None) -> Path:
    """``<home>/models.json`` of ``settings`` (the default settings when omitted)."""
    return Path(_settings(settings).home) / "models.json"


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _spec_from_dict(d: dict) -> ModelSpec:
    d = dict(d)
    config = d.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError("spec.config must be a JSON object of adapter options, e.g. {\"model_dir\": \"...\"}")
    d["tags"] = tuple(d.get("tags") or ())
    d["config"] = tuple(config.items())
    return ModelSpec(**d)


def read_models_file(path: Path) -> list[UserModel]:
    """Entries of models.json; a missing file is an empty hub, a malformed one a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read the user model list {path}: {exc}. Check its permissions.") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"the user model list {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). {_FIX}"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != MODELS_FORMAT or not isinstance(doc.get("models"), list):
        raise ConfigError(
            f"the user model list {path} is not a vlmhub model list (expected an object with "
            f"\"format\": \"{MODELS_FORMAT}\" and a \"models\" list). {_FIX}"
        )
    if doc.get("version") != _VERSION:
        raise ConfigError(f"the user model list {path} has version {doc.get('version')!r}; this vlmhub reads version {_VERSION}. {_FIX}")
    out: list[UserModel] = []
    for i, e in enumerate(doc["models"]):
        try:
            spec = _spec_from_dict(e["spec"])
            um = UserModel(spec=spec, source=str(e["source"]), adapter=str(e["adapter"]), added=str(e.get("added", "")), checked=bool(e.get("checked", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"entry {i} of the user model list {path} is malformed ({type(exc).__name__}: {exc}). {_FIX}") from None
        if um.spec.id != e.get("id", um.spec.id):
            raise ConfigError(f"entry {i} of the user model list {path} has id {e.get('id')!r} but spec id {um.spec.id!r}. {_FIX}")
        out.append(um)
    return out


def _write(path: Path, models: list[UserModel]) -> None:
    atomic_write_json(
        path,
        {
            "format": MODELS_FORMAT,
            "version": _VERSION,
            "models": [
                {
                    "id": m.spec.id,
                    "source": m.source,
                    "adapter": m.adapter,
                    "added": m.added,
                    "checked": m.checked,
                    "spec": m.spec.to_dict(),
                }
                for m in models
            ],
        },
    )


def build_from_source(source: str, *, spec: ModelSpec | None = None, model_id: str | None = None, settings=None) -> ZeroShotModel:
    """Load the model a source string names through its adapter (weights load here)."""
    from .adapters import build_model

    return build_model(source, spec=spec, model_id=model_id, device=_settings(settings).device)


def user_model_factory(spec: ModelSpec, settings=None) -> ZeroShotModel:
    """Catalog factory of a user model: rebuild it from the persisted source with the persisted spec."""
    return build_from_source(str(spec.cfg("source")), spec=spec, settings=settings)


def _is_builtin(model_id: str) -> bool:
    from .registry import builtin_entries

    return model_id in builtin_entries()


def add_model(source: str, *, model_id: str | None = None, settings=None, check: bool = True, budget=None,
              zero_shot_check: bool = True) -> ModelSpec:
    """Load, check and persist the model ``source`` names; return its registered spec.

    ``model_id`` defaults to one derived from the source. With ``check=False`` the admission checks are
    skipped (recorded as ``"checked": false``). A failing check raises :class:`ModelCheckError` carrying the
    report, and nothing is written. ``budget`` is a :class:`~vlmhub.models.checker.CheckBudget`. The checks
    include the zero-shot sanity check (a model that cannot classify colour swatches above chance, e.g. one
    with random weights, is refused) unless ``zero_shot_check=False``.
    """
    from .adapters import parse_source
    from .checker import check_model

    settings = _settings(settings)
    src = parse_source(source)
    mid = model_id if model_id is not None else src.default_id()
    if not isinstance(mid, str) or not _ID_RE.match(mid):
        raise ConfigError(
            f"invalid model id {mid!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit (--id ID)."
        )
    path = models_file(settings)
    if any(m.id == mid for m in read_models_file(path)):
        raise ConfigError(f"a user model with id {mid!r} already exists in {path}. Pick another --id, or `vlmhub models remove {mid}` first.")
    if _is_builtin(mid):
        raise ConfigError(f"model id {mid!r} is already taken by a built-in model. Pick another id with --id.")

    model = build_from_source(src.source, model_id=mid, settings=settings)
    spec = model.spec
    if check:
        from dataclasses import replace

        from .checker import CheckBudget

        budget = replace(budget if budget is not None else CheckBudget(), zero_shot=bool(zero_shot_check))
        report = check_model(model, budget=budget)
        if not report.passed:
            names = ", ".join(f"{r.name} ({r.detail})" for r in report.failures)
            raise ModelCheckError(
                f"model {mid!r} from {src.source!r} failed the admission checks and was not added: {names}. "
                f"Run `vlmhub models check` on a fixed model, or add it with --no-check at your own risk"
                f"{' (--no-zero-shot-check skips only the zero-shot check)' if any(r.name == 'zero_shot_sanity' for r in report.failures) else ''}"
                f".\n{report.format()}",
                report,
            )
    entry = UserModel(
        spec=spec,
        source=src.source,
        adapter=src.adapter,
        added=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        checked=bool(check),
    )
    with file_lock(_lock_path(path)):
        models = read_models_file(path)
        if any(m.id == mid for m in models):  # added concurrently while we were loading/checking
            raise ConfigError(f"a user model with id {mid!r} was added to {path} meanwhile. Pick another --id.")
        _write(path, [*models, entry])
    return spec


def record_model(spec: ModelSpec, source: str, *, settings=None, checked: bool = True) -> ModelSpec:
    """Enter an already checked model (e.g. a submission that passed the sandboxed checks) into models.json
    without loading it again. Idempotent: recording the same id with the same source twice is a no-op; the same
    id with another source is a :class:`ConfigError`."""
    from .adapters import parse_source

    settings = _settings(settings)
    src = parse_source(source)
    if not isinstance(spec.id, str) or not _ID_RE.match(spec.id) or _is_builtin(spec.id):
        raise ConfigError(f"model id {spec.id!r} cannot be recorded: invalid or taken by a built-in model.")
    path = models_file(settings)
    with file_lock(_lock_path(path)):
        models = read_models_file(path)
        same = [m for m in models if m.id == spec.id]
        if same:
            if same[0].source == src.source:
                return same[0].spec
            raise ConfigError(f"a user model with id {spec.id!r} and another source is already in {path}.")
        entry = UserModel(spec=spec, source=src.source, adapter=src.adapter,
                          added=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), checked=bool(checked))
        _write(path, [*models, entry])
    return spec


def remove_model(model_id: str, *, settings=None) -> ModelSpec:
    """Remove a user model from the home's models.json; return its spec."""
    path = models_file(settings)
    with file_lock(_lock_path(path)):
        models = read_models_file(path)
        hit = [m for m in models if m.id == model_id]
        if not hit:
            if _is_builtin(model_id):
                raise ConfigError(f"model {model_id!r} is built in, not a user model; only models added with `vlmhub models add` can be removed.")
            known = ", ".join(m.id for m in models) or "none"
            raise UnknownModelError(f"no user model {model_id!r} in {path} (user models: {known}). Run `vlmhub models list`.")
        _write(path, [m for m in models if m.id != model_id])
    return hit[0].spec


def list_user_models(settings=None) -> list[UserModel]:
    """The persisted user models, in the order they were added (reads models.json; loads nothing)."""
    return read_models_file(models_file(settings))
