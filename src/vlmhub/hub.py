"""The front door: a :class:`Hub` ties settings, the home's model catalog, the semantic graph and the labels.

>>> from vlmhub import Hub, load_task
>>> hub = Hub()                              # ~/.cache/vlmhub, or VLMHUB_HOME
>>> hub.label()                              # once per model (Eq. 2-4)
>>> sel = hub.select(load_task("cifar10-test/dataset.json"), k=3)   # Eq. 5-7, no model runs
>>> print(sel.format())
>>> hub.predict(task, ["img1.png", "img2.png"])                     # Eq. 8-10
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Sequence


from .concepts.graph import SemanticGraph, build_graph, current_graph, current_graph_version, save_graph
from .concepts.samples import DEFAULT_SAMPLE_SETS, resolve_sample_set, scan_sample_set
from .errors import DataError, NotLabeledError
from .labeling import LabelReport, LabelStore, label_models
from .models.catalog import Catalog
from .models.base import ZeroShotModel
from .reuse.ensemble import DEFAULT_WEIGHTING, MLLEnsemble, Weighting
from .selection.config import SelectionConfig
from .selection.mll import MLLConfig, MLLSelector, Selection
from .settings import Settings, get_settings
from .storage import FileMemo, file_key
from .tasks import Task

if TYPE_CHECKING:
    from .labeling.ray_backend import RayOptions

__all__ = ["Hub", "hub_model_ids", "CatalogEntry", "CatalogQuery", "catalog_entries", "CATALOG_STATES",
           "CATALOG_SORT_KEYS"]


def hub_model_ids(tags: Sequence[str] = ("default", "user"), *, catalog: Catalog | None = None) -> list[str]:
    """Ids in ``catalog`` (the default home's when omitted) carrying any of ``tags`` (the offline default hub
    plus the home's own models)."""
    catalog = catalog if catalog is not None else Catalog()
    ids: dict[str, None] = {}
    for t in tags:
        for i in catalog.ids(tag=t):
            ids.setdefault(i, None)
    return list(ids)


class Hub:
    """A model hub on disk (see :mod:`vlmhub.settings` for its layout).

    ``catalog`` is the home's :class:`~vlmhub.models.catalog.Catalog` (built-ins + the home's own models);
    one is made for ``settings`` when omitted. ``model_ids`` pins the hub's models; otherwise every catalog
    model tagged with one of ``tags``.
    """

    def __init__(self, settings: Settings | None = None, *, catalog: Catalog | None = None,
                 model_ids: Sequence[str] | None = None, tags: Sequence[str] = ("default", "user")):
        if settings is None:
            settings = catalog.settings if catalog is not None else get_settings()
        self.settings = settings
        if catalog is not None and Path(catalog.settings.home).resolve() != Path(settings.home).resolve():
            from .errors import ConfigError

            raise ConfigError(f"the catalog is for the hub at {catalog.settings.home}, not {settings.home}; "
                              "pass the catalog of this hub's home (or omit it).")
        self.catalog = catalog if catalog is not None else Catalog(settings)
        self._model_ids = list(model_ids) if model_ids is not None else None
        self.tags = tuple(tags)
        self._models: dict[str, ZeroShotModel] = {}
        self._selectors: dict[tuple, MLLSelector] = {}  # fitted selectors by MLLConfig.fit_key()
        # graphs/current.json and label manifests, parsed once per change of the file (health, catalog and
        # every selection's cache key read them; a stat per file when nothing changed)
        self._files = FileMemo()

    # -- models ------------------------------------------------------------------------------
    @property
    def model_ids(self) -> list[str]:
        ids = self._model_ids if self._model_ids is not None else hub_model_ids(self.tags, catalog=self.catalog)
        known = self.catalog.entries()  # one snapshot (a stat of models.json), not one per id
        for i in ids:
            if i not in known:
                self.catalog.spec(i)  # an unknown id fails here with the list of known ones
        return list(ids)

    def model(self, model_id: str) -> ZeroShotModel:
        if model_id not in self._models:
            self._models[model_id] = self.catalog.create(model_id)
        return self._models[model_id]

    def models(self, ids: Sequence[str] | None = None) -> list[ZeroShotModel]:
        return [self.model(i) for i in (ids if ids is not None else self.model_ids)]

    # -- graph and labels -------------------------------------------------------------------------
    def resolve_sample_set(self, name_or_path: str | Path) -> Path:
        return resolve_sample_set(name_or_path, self.settings)

    def build_graph(self, sample_sets: Sequence[str | Path] | None = None, *, max_images: int = 75,
                    max_per_concept: int | None = None) -> SemanticGraph:
        if max_per_concept is not None and (isinstance(max_per_concept, bool) or not isinstance(max_per_concept, int)
                                            or max_per_concept < 1):
            raise DataError(f"max_per_concept must be a whole number >= 1 (got {max_per_concept!r}); omit it to use every image.")
        sets = [scan_sample_set(self.resolve_sample_set(s), max_per_concept) for s in (sample_sets or DEFAULT_SAMPLE_SETS)]
        return build_graph(sets, self.settings, max_images=max_images)

    def graph(self) -> SemanticGraph:
        return current_graph(self.settings)

    def label(self, model_ids: Sequence[str] | None = None, *, sample_sets: Sequence[str | Path] | None = None,
              max_images: int = 75, max_per_concept: int | None = None, force: bool = False, progress: bool = True,
              graph: SemanticGraph | None = None, renditions: Sequence[str] = ("original",),
              ray: "RayOptions | None" = None) -> LabelReport:
        """Label every model not yet labeled on the graph of ``sample_sets`` (built and made current).

        Rows that already exist (images, captions, renditions) are reused, so re-running is cheap and growing
        the graph only embeds what is new. With ``ray`` (:class:`~vlmhub.labeling.ray_backend.RayOptions`) the
        caption and image embeddings are computed on a Ray cluster (``pip install 'vlmhub[ray]'``), none in this
        process; the labels are byte for byte the same.
        """
        if graph is None:
            graph = self.build_graph(sample_sets, max_images=max_images, max_per_concept=max_per_concept)
        models = self.models(model_ids)
        if ray is not None:
            from .labeling.ray_backend import label_models_ray

            report = label_models_ray(models, graph, self.settings, address=ray.resolved_address(self.settings),
                                      concurrency=ray.workers, num_cpus=ray.num_cpus, max_retries=ray.max_retries,
                                      force=force, progress=progress, renditions=renditions)
        else:
            report = label_models(models, graph, self.settings, force=force, progress=progress, renditions=renditions)
        save_graph(graph, self.settings)
        self._selectors.clear()
        return report

    def graph_version(self) -> str:
        """The current graph's version (``graphs/current.json``, re-read only when that file changes), or a
        :class:`~vlmhub.errors.NotLabeledError` when the hub has no graph yet."""
        return self._files.get(self.settings.graphs_dir / "current.json",
                               lambda _p: current_graph_version(self.settings))

    def labeled_model_ids(self) -> list[str]:
        """Hub models labeled on the current graph (reads the graph pointer and the manifests, not the graph;
        each file only when it changed since the last call, so a model labeled, relabeled or removed by any
        process shows on the next call)."""
        version = self.graph_version()
        return [m for m in self.model_ids if self.label_complete(m, version)]

    def label_complete(self, model_id: str, graph_version: str) -> bool:
        """Whether ``model_id``'s label manifest says it is complete for ``graph_version`` (the manifest is
        parsed once per change of the file)."""
        lab = LabelStore(self.settings).label(model_id)
        graphs = self._files.get(lab.manifest_path, lambda _p: lab.manifest().get("graphs", {}))
        return bool(graphs.get(graph_version, {}).get("complete"))

    # -- selection and reuse -------------------------------------------------------------------
    def selector(self, config: MLLConfig | None = None, **overrides) -> MLLSelector:
        """A fitted :class:`MLLSelector` over every labeled hub model.

        Fits are cached per fit-time configuration (:meth:`MLLConfig.fit_key`); query-time options
        (``alpha``, ``k_nodes``, ``metric``, ``normalize_z``, ``k_models``) are applied to the cached fit
        with :meth:`MLLSelector.with_query`, so overriding them per request never refits."""
        from dataclasses import replace

        fit_cfg, query_opts = self._split_config(config, overrides)
        key = self._selector_key(fit_cfg)
        cached = self._selectors.get(key)
        if cached is None:
            ids = self.labeled_model_ids()
            missing = [m for m in self.model_ids if m not in ids]
            if not ids:
                raise NotLabeledError(f"no model of this hub is labeled yet. Run `vlmhub label` first (home: {self.settings.home}).")
            if missing:
                raise NotLabeledError(f"models {', '.join(missing)} are not labeled for the current graph. Run `vlmhub label`.")
            cached = MLLSelector(self.settings, replace(fit_cfg, **{f: getattr(MLLConfig(), f) for f in MLLConfig.QUERY_TIME})).fit(ids, self.graph())
            if len(self._selectors) >= 8:  # a few fit-time variants at most; drop the oldest
                self._selectors.pop(next(iter(self._selectors)))
            self._selectors[key] = cached
        query = {f: getattr(fit_cfg, f) for f in MLLConfig.QUERY_TIME}
        query.update(query_opts)
        return cached.with_query(**{f: v for f, v in query.items() if v != getattr(cached.config, f)})

    @staticmethod
    def _split_config(config: MLLConfig | None, overrides: dict) -> tuple[MLLConfig, dict]:
        from dataclasses import replace

        base = config or MLLConfig()
        fit_opts = {k: v for k, v in overrides.items() if k not in MLLConfig.QUERY_TIME}
        return (replace(base, **fit_opts) if fit_opts else base), {k: v for k, v in overrides.items() if k in MLLConfig.QUERY_TIME}

    def _selector_key(self, fit_cfg: MLLConfig) -> tuple:
        """Key of the cached fit: the fit-time options, the model set, the graph version and the models' label
        manifests as files (a published, removed or relabeled model, a deleted label or a new graph makes a new
        fit, once, whichever process made the change)."""
        ids = tuple(self.model_ids)
        store = LabelStore(self.settings)
        return (fit_cfg.fit_key(), ids, self.graph_version(), tuple(file_key(store.label(m).manifest_path) for m in ids))

    def fitted_selector(self, config: MLLConfig | None = None, **overrides) -> MLLSelector | None:
        """The cached fit that :meth:`selector` would use now for these options (this hub's models, the current
        graph), or ``None`` when there is none; never fits. Two calls give the same object exactly when the
        same fit answers both (callers that cache answers per fit compare them with ``is``)."""
        fit_cfg, _ = self._split_config(config, {k: v for k, v in overrides.items() if k != "k"})
        return self._selectors.get(self._selector_key(fit_cfg))

    def knows_task(self, task: Task, config: MLLConfig | None = None, **overrides) -> bool:
        """Whether a selection of ``task`` under these options is cheap: its selector is fitted and remembers
        the task's class embeddings (:meth:`MLLSelector.task_embeddings`). Never fits or embeds anything."""
        cached = self.fitted_selector(config, **overrides)
        return cached is not None and cached.knows_task(task)

    def select(self, task: Task, k: int | SelectionConfig = 3, **config) -> Selection:
        """Select the top-``k`` models per class of ``task`` (Eq. 5-7) from labels only.

        ``k`` is a number or a :class:`~vlmhub.selection.config.SelectionConfig`; its range is checked before
        any label is read (1 .. number of labeled models)."""
        sc = k if isinstance(k, SelectionConfig) else SelectionConfig(
            k=k, alpha=config.get("alpha"), k_nodes=config.get("k_nodes"), metric=config.get("metric"))
        config = {**config, **sc.overrides()}
        return self.selector(**config).select(task, k=sc.k)

    def ensemble(self, selection: Selection, weighting: Weighting = DEFAULT_WEIGHTING) -> MLLEnsemble:
        return MLLEnsemble(selection, {m: self.model(m) for m in selection.used_models()}, weighting)

    def predict(self, task: Task, images: Sequence[str | Path], *, k: int = 3, weighting: Weighting = DEFAULT_WEIGHTING,
                **config) -> list[dict]:
        """Classify image files with the MLL ensemble; one ``{image, class, confidence}`` per image."""
        from .imaging import image_files

        files = image_files(images)
        return self.classify(task, [(str(f), f) for f in files], k=k, weighting=weighting, **config)

    def classify(self, task: Task, refs: Sequence[tuple[str, object]], *, k: int = 3,
                 weighting: Weighting = DEFAULT_WEIGHTING, **config) -> list[dict]:
        """Classify ``(id, image)`` refs (image: a path or an :class:`~vlmhub.imaging.InMemoryImage`).

        Selects from labels (Eq. 5-7), then runs each used model once per image (Eq. 8-10); one
        ``{image, class, confidence}`` per ref, ``confidence`` being the class's share of Eq. 8's scores.
        """
        from .reuse.batch import BatchPredictor

        if not refs:
            raise DataError("no images to classify. Pass at least one image.")
        out = BatchPredictor(task, hub=self, k=k, weighting=weighting, selection=config).predict_refs(refs)
        return [{"image": i, "class": c, "confidence": float(p)}
                for i, c, p in zip(out["image"].tolist(), out["class"].tolist(), out["confidence"])]


# -- the catalog every face shows (web page `/`, `GET /v1/hub/models`) ------------------------------------------------
#: the catalog's model states, in the order of the submission stage (``hubdb.schema.ModelState``)
CATALOG_STATES = ("submitted", "checking", "queued", "labeling", "ready", "rejected")
#: ``sort`` values of :class:`CatalogQuery` (prefix ``-`` for descending); entry field of each
CATALOG_SORT_KEYS = MappingProxyType({"id": "id", "source": "source", "state": "state", "origin": "origin",
                                      "params": "params_m", "gflops": "gflops", "top1": "imagenet_top1",
                                      "coverage": "coverage", "labeled": "labeled", "licence": "licence"})


@dataclass(frozen=True)
class CatalogEntry:
    """One model of the hub's catalog as the faces show it.

    ``source`` is the kind of source (``builtin``, ``hf``, ``open_clip``, ``runtime``, ...); ``state`` one of
    :data:`CATALOG_STATES` (from the hub database when there is one; a built-in or JSON-home model is ``ready``
    when labeled on the current graph, else ``queued``); ``coverage`` the fraction of the current graph's nodes
    the model is labeled on (``None`` when the hub has no graph yet)."""

    id: str
    source: str
    state: str
    params_m: float | None
    gflops: float | None
    licence: str | None
    coverage: float | None
    labeled: bool
    origin: str
    family: str = ""
    backbone: str = ""
    imagenet_top1: float | None = None
    description: str = ""
    tags: tuple[str, ...] = ()
    owner: str | None = None
    reasons: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["tags"], d["reasons"] = list(self.tags), list(self.reasons)
        return d

    def haystack(self) -> str:
        """The text ``CatalogQuery.q`` searches (lower case)."""
        return " ".join([self.id, self.family, self.backbone, self.description, self.source, self.origin,
                         self.licence or "", *self.tags]).lower()


def _source_kind(source: str | None) -> str:
    s = str(source or "")
    return s.split(":", 1)[0] if ":" in s else (s or "unknown")


def catalog_entries(hub: Hub, db=None, *, ids: "Sequence[str] | None" = None) -> list[CatalogEntry]:
    """Every model of ``hub`` (its catalog's hub models) plus the hub database's submissions (``db``, a
    :class:`~vlmhub.hubdb.HubDB`, optional), by id; ``ids`` keeps only those models (one model's page reads
    one model's rows). Reads manifests, the graph pointer and two grouped queries; no graph, no weights."""
    try:
        version: str | None = hub.graph_version()
    except NotLabeledError:
        version = None
    wanted = None if ids is None else set(ids)
    rows: dict = {}
    node_cover: dict[str, tuple[int, int]] = {}
    if db is not None:
        from .hubdb.catalog import get_model, list_models
        from .hubdb.jobs import node_coverage

        if wanted is None:
            rows = {m.id: m for m in list_models(db)}
        else:
            from .errors import UnknownModelError

            for mid in wanted:
                try:
                    rows[mid] = get_model(db, mid)
                except UnknownModelError:
                    pass
        if version is not None:
            node_cover = node_coverage(db, version, model_ids=None if wanted is None else sorted(wanted))

    served = hub.model_ids if wanted is None else [m for m in hub.model_ids if m in wanted]
    done = {m for m in {*served, *rows} if version is not None and hub.label_complete(m, version)}

    def coverage(model_id: str) -> float | None:
        if version is None:
            return None
        if model_id in done:
            return 1.0
        d, t = node_cover.get(model_id, (0, 0))
        return d / t if t else 0.0

    out: dict[str, CatalogEntry] = {}
    catalog = hub.catalog
    for mid in hub.model_ids:
        if wanted is not None and mid not in wanted:
            continue
        spec, origin = catalog.spec(mid), catalog.origin(mid)
        row = rows.get(mid)
        labeled = mid in done
        if origin == "builtin":
            source = "builtin"
        elif origin == "runtime":
            source = "runtime"
        else:
            source = _source_kind(spec.cfg("source") or (row.source if row else None))
        if row is not None and not row.source.startswith("builtin:"):
            state, licence, owner, reasons = row.state.value, row.licence, row.owner, row.reasons
        else:
            state, licence, owner, reasons = ("ready" if labeled else "queued"), None, None, ()
        out[mid] = CatalogEntry(mid, source, state, spec.params_m, spec.gflops, licence, coverage(mid), labeled, origin,
                                spec.family, spec.backbone, spec.imagenet_top1, spec.description, tuple(spec.tags),
                                owner, tuple(reasons))
    for mid, row in rows.items():
        if mid in out or row.source.startswith("builtin:"):
            continue  # an imported built-in this hub does not serve
        spec = row.spec or {}
        out[mid] = CatalogEntry(mid, _source_kind(row.source), row.state.value, row.params_m, row.gflops, row.licence,
                                coverage(mid), mid in done, "submission", str(spec.get("family") or ""),
                                str(spec.get("backbone") or row.architecture or ""), spec.get("imagenet_top1"),
                                str(spec.get("description") or ""), tuple(spec.get("tags") or ()), row.owner,
                                tuple(row.reasons))
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True)
class CatalogQuery:
    """Search, filters and order of the catalog (the web page's and ``GET /v1/hub/models``' query string).

    ``q``: every word must occur in the id, family, backbone, description, source or tags; ``source``,
    ``state``, ``origin``: exact values; ``min_params`` / ``max_params``: parameter range in millions
    (inclusive; a model of unknown size is left out by either bound); ``sort``: a :data:`CATALOG_SORT_KEYS`
    key, ``-`` prefix for descending (unknown values last either way)."""

    q: str = ""
    source: str = ""
    state: str = ""
    origin: str = ""
    min_params: float | None = None
    max_params: float | None = None
    sort: str = "id"

    @classmethod
    def from_params(cls, params, entries: Sequence[CatalogEntry] = ()) -> "CatalogQuery":
        """Parse a query string mapping; a bad value is a :class:`~vlmhub.errors.ConfigError` naming the fix
        (``entries``: the catalog, whose sources and origins the filters must name)."""
        from .errors import ConfigError

        get = {k: str(params.get(k) or "").strip() for k in ("q", "source", "state", "origin", "min_params",
                                                           "max_params", "sort")}
        sort = get["sort"] or "id"
        if sort.lstrip("-") not in CATALOG_SORT_KEYS:
            raise ConfigError(f"unknown sort {sort!r}. Use one of {', '.join(CATALOG_SORT_KEYS)} (prefix - for descending).")
        if get["state"] and get["state"] not in CATALOG_STATES:
            raise ConfigError(f"unknown state {get['state']!r}. Use one of {', '.join(CATALOG_STATES)}.")
        for key, what in (("source", "sources"), ("origin", "origins")):
            known = sorted({getattr(e, key) for e in entries})
            if get[key] and entries and get[key] not in known:
                raise ConfigError(f"unknown {key} {get[key]!r}. This hub's {what}: {', '.join(known)}.")
        bounds: dict[str, float | None] = {}
        for key in ("min_params", "max_params"):
            if not get[key]:
                bounds[key] = None
                continue
            try:
                v = float(get[key])
            except ValueError:
                v = float("nan")
            if not v >= 0 or v == float("inf"):
                raise ConfigError(f"{key} must be a number of millions of parameters >= 0, e.g. {key}=150 "
                                  f"(got {get[key]!r}).")
            bounds[key] = v
        if bounds["min_params"] is not None and bounds["max_params"] is not None and bounds["min_params"] > bounds["max_params"]:
            raise ConfigError(f"min_params ({get['min_params']}) is above max_params ({get['max_params']}); "
                              "swap them or leave one empty.")
        return cls(get["q"], get["source"], get["state"], get["origin"], bounds["min_params"], bounds["max_params"], sort)

    def apply(self, entries: Sequence[CatalogEntry]) -> list[CatalogEntry]:
        """The entries that match, in this query's order."""
        words = self.q.lower().split()
        lo, hi = self.min_params, self.max_params
        rows = [e for e in entries
                if (not self.source or e.source == self.source) and (not self.state or e.state == self.state)
                and (not self.origin or e.origin == self.origin)
                and (lo is None or (e.params_m is not None and e.params_m >= lo))
                and (hi is None or (e.params_m is not None and e.params_m <= hi))
                and all(w in e.haystack() for w in words)]
        f = CATALOG_SORT_KEYS[self.sort.lstrip("-")]
        known = sorted((e for e in rows if getattr(e, f) is not None), key=lambda e: (getattr(e, f), e.id))
        if self.sort.startswith("-"):
            known = sorted(known, key=lambda e: e.id)
            known = sorted(known, key=lambda e: getattr(e, f), reverse=True)
        return known + [e for e in rows if getattr(e, f) is None]
