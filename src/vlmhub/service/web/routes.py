"""The hub's web pages (server-rendered HTML, no JavaScript needed): catalog, model, compare, task, predict.

Every number a page shows comes from the functions the JSON API calls -- :class:`~vlmhub.service.core.
VlmhubService` (``models``, ``model``, ``select``, ``predict``) and :mod:`vlmhub.evaluation.profile` -- so a
page and ``/v1/...`` agree for the same request (tests/test_web.py checks it). Bad input renders an error page
with the library's message (what is wrong and how to fix it) and the status the API would give; nothing is
written. Profiles are computed once per graph version and set of labeled models, and kept on the router's own
state object.
"""

# no `from __future__ import annotations`: FastAPI must see the Request annotations of the local endpoints

import base64
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

from ...errors import ConfigError, NotLabeledError, TaskError, UnknownModelError, VlmhubError

__all__ = ["web_router", "PAGE_SIZE", "SORT_KEYS"]

PAGE_SIZE = 50
#: ?sort= values the catalog's form offers (prefix "-" for descending; every key of vlmhub.hub.CATALOG_SORT_KEYS works)
SORT_KEYS = ("id", "source", "state", "params", "gflops", "coverage", "licence", "top1")
MAX_COMPARE = 5


@dataclass
class _State:
    """Per-router memo: hub profiles of the current graph version (recomputed when the graph or the set of
    labeled models changes)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    profiles: Any = None
    graph: Any = None
    version: tuple = ()


def _templates():
    try:
        import jinja2
    except ImportError:
        from ...errors import missing_extra

        raise missing_extra("jinja2", "service", "the web pages") from None
    env = jinja2.Environment(loader=jinja2.PackageLoader("vlmhub.service.web", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda v: "—" if v is None else f"{100 * float(v):.1f}%"
    env.filters["num"] = lambda v, d=3: "—" if v is None else f"{float(v):.{d}f}"
    return env


def web_router(get_service: Callable[[], Any], status_for: Callable[[VlmhubError], int]):
    """A FastAPI ``APIRouter`` with the pages; ``get_service()`` returns the app's :class:`VlmhubService` and
    ``status_for`` maps a library error to the HTTP status the JSON API gives it (the app's own mapping)."""
    from fastapi import APIRouter, Request
    from fastapi.responses import HTMLResponse, Response

    from . import svg

    env = _templates()
    state = _State()
    router = APIRouter(include_in_schema=False)

    def render(name: str, http_status: int = 200, **ctx) -> HTMLResponse:
        t0 = time.perf_counter()
        html = env.get_template(name).render(**ctx)
        return HTMLResponse(html, status_code=http_status, headers={"Server-Timing": f"render;dur={1000 * (time.perf_counter() - t0):.1f}"})

    def error(exc: Exception, status: int | None = None, **ctx) -> HTMLResponse:
        code = status or (status_for(exc) if isinstance(exc, VlmhubError) else 422)
        return render("error.html", code, title=f"Error {code}", status=code, kind=type(exc).__name__, message=str(exc), **ctx)

    def profiles():
        from ...concepts.graph import current_graph_version
        from ...evaluation.profile import hub_profiles

        svc = get_service()
        # a model published while the server runs changes the labeled set, not the graph: both key the profiles
        version = (current_graph_version(svc.hub.settings), tuple(svc.hub.labeled_model_ids()))
        with state.lock:
            if state.profiles is None or state.version != version:
                with svc._lock:
                    state.profiles, state.graph, state.version = hub_profiles(svc.hub), svc.hub.graph(), version
            return state.profiles

    from .submit import add_submit_pages

    add_submit_pages(router, render, error)  # /signin, /submit, /submissions/{id}

    @router.get("/concepts/{wnid}/images/{index}")
    def concept_image(wnid: str, index: int) -> Response:
        """A sample image of a graph concept (only files the hub's graph lists; never a client-given path)."""
        import mimetypes
        from pathlib import Path

        try:
            profiles()
        except VlmhubError as exc:
            return error(exc)
        node = next((n for n in state.graph.nodes if n.id == wnid), None)
        if node is None or not 0 <= index < len(node.images):
            return error(TaskError(f"concept {wnid} has no sample image {index}. Open a model page for its concepts."), 404)
        path = Path(state.graph.image_paths.get(node.images[index], ""))
        if not path.is_file():
            return error(TaskError(f"the sample image file of {wnid} is gone ({path.name}). Relabel the hub with `vlmhub label`."), 404)
        return Response(path.read_bytes(), media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream", headers={"Cache-Control": "public, max-age=3600"})

    @router.get("/static/web.css")
    def css() -> Response:
        from importlib.resources import files

        return Response((files("vlmhub.service.web") / "static" / "web.css").read_bytes(), media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})

    @router.get("/", response_class=HTMLResponse)
    def catalog(request: Request):
        from ...hub import CATALOG_STATES, CatalogQuery, catalog_entries

        params = request.query_params
        page_arg = params.get("page") or "1"
        try:
            entries = catalog_entries(get_service().hub, _db_if_any(request))
            query = CatalogQuery.from_params(params, entries)
            jobs = _job_progress(request)
        except VlmhubError as exc:
            return error(exc, 400 if isinstance(exc, ConfigError) else None)
        try:
            page_n = int(page_arg)
            if page_n < 1:
                raise ValueError
        except ValueError:
            return error(TaskError(f"page must be a whole number >= 1 (got {page_arg!r}). Use ?page=1 for the first page."), 400)
        rows = query.apply(entries)
        pages = max(1, -(-len(rows) // PAGE_SIZE))
        if page_n > pages:
            return error(TaskError(f"page {page_n} is past the last page ({pages}). Use ?page=1 .. {pages}."), 404)
        shown = rows[(page_n - 1) * PAGE_SIZE: page_n * PAGE_SIZE]
        form = {k: params.get(k, "") for k in ("q", "source", "state", "origin", "min_params", "max_params")}
        form["sort"] = query.sort

        def link(**kw) -> str:
            p = {**form, "page": page_n, **kw}
            return "/?" + urlencode({k: v for k, v in p.items() if v not in ("", None)})

        return render("catalog.html", title="Models", models=shown, total=len(entries), matched=len(rows), form=form,
                      sources=sorted({e.source for e in entries}), states=CATALOG_STATES, sort=query.sort,
                      sort_keys=SORT_KEYS, page=page_n, pages=pages, link=link, jobs=jobs)

    def _profile_or_none(model_id: str):
        try:
            hp = profiles()
        except NotLabeledError:
            return None, None
        ids = {p.model_id for p in hp.profiles}
        return hp, (hp.get(model_id) if model_id in ids else None)

    @router.get("/models/{model_id:path}", response_class=HTMLResponse)
    def model(request: Request, model_id: str):
        svc = get_service()
        try:
            m = svc.model(model_id)
            hp, prof = _profile_or_none(model_id)
        except UnknownModelError as exc:  # a submission still on its way (checking, labeling) or rejected
            entry = _submission_entry(svc, request, model_id)
            if entry is None:
                return error(exc)
            live = entry.state in ("submitted", "checking", "queued", "labeling")
            return render("model_pending.html", title=model_id, e=entry, live=live)
        except VlmhubError as exc:
            return error(exc)
        chart = None
        if prof is not None:
            chart = svg.radar_chart(hp.categories, [(model_id, prof.scores)], reference=("hub median", hp.median()),
                                    title=f"{model_id}: label accuracy per WordNet category")
        return render("model.html", title=model_id, m=m, prof=prof, hp=hp, chart=chart,
                    median=dict(zip(hp.categories, hp.median())) if hp else {})

    @router.get("/compare", response_class=HTMLResponse)
    def compare(ids: str = ""):
        svc = get_service()
        chosen = [i.strip() for i in ids.split(",") if i.strip()]
        chosen = list(dict.fromkeys(chosen))
        all_ids = [m["id"] for m in svc.models()["models"]]
        if not 2 <= len(chosen) <= MAX_COMPARE:
            if not chosen:
                return render("compare.html", title="Compare", chart=None, ids=ids, all_ids=all_ids, rows=[], profs=[])
            return error(TaskError(f"compare needs 2 to {MAX_COMPARE} model ids, comma-separated "
                                   f"(got {len(chosen)}), e.g. /compare?ids={','.join(all_ids[:2])}."), 400)
        try:
            for i in chosen:
                svc.model(i)
            hp = profiles()
            profs = [hp.get(i) for i in chosen]
        except VlmhubError as exc:
            return error(exc)
        from ...evaluation.profile import largest_differences

        chart = svg.radar_chart(hp.categories, [(p.model_id, p.scores) for p in profs],
                                reference=("hub median", hp.median()), title="Label accuracy per WordNet category: " + ", ".join(chosen))
        rows = largest_differences(profs, n=15)
        return render("compare.html", title="Compare " + ", ".join(chosen), chart=chart, ids=",".join(chosen),
                    all_ids=all_ids, rows=rows, profs=profs, hp=hp)

    def _task_from(params) -> tuple[dict | None, int, dict]:
        """The task and k of a form (``classes`` one per line), or None when the form is empty."""
        form = {k: (params.get(k) or "") for k in ("name", "classes", "domain", "task", "k")}
        classes = [c.strip() for c in form["classes"].replace("\r", "").split("\n") if c.strip()]
        if not classes and not form["name"] and not form["domain"] and not form["k"]:
            return None, 3, form
        if not classes:
            raise TaskError("the task has no classes. Type the class names, one per line, e.g. cat and dog.")
        try:
            k = int(form["k"] or 3)
        except ValueError:
            raise TaskError(f"k must be a whole number (how many models per class), got {form['k']!r}.") from None
        task = {"name": form["name"].strip() or "web-task", "classes": classes}
        if form["domain"].strip():
            task["domain"] = form["domain"].strip()
        if form["task"].strip():
            task["task"] = form["task"].strip()
        return task, k, form

    @router.get("/task", response_class=HTMLResponse)
    def task_page(request: Request):
        try:
            task, k, form = _task_from(request.query_params)
        except VlmhubError as exc:
            return error(exc, 400, form=dict(request.query_params))
        if task is None:
            return render("task.html", title="Task", form=form, result=None)
        return _task_result(task, k, form)

    @router.post("/task", response_class=HTMLResponse)
    async def task_upload(request: Request):
        """A task JSON file (the CLI's schema, :func:`vlmhub.tasks.task_from_json`) instead of typed class names."""
        from starlette.datastructures import UploadFile

        from ...tasks import task_from_json

        data = await request.form()
        upload = data.get("task_file")
        k_arg = str(data.get("k") or "3").strip()
        try:
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise TaskError("no task file was uploaded. Choose a task JSON file (the one `vlmhub select` reads), "
                                "or type the class names in the form above.")
            cap = get_service().limits.max_body_bytes
            raw = await upload.read(cap + 1)
            if len(raw) > cap:
                raise TaskError(f"the task file {upload.filename} is over {cap} bytes. A task file lists class names; "
                                "remove large fields (captions) or type the classes instead.")
            task = task_from_json(raw, what=f"the task file {upload.filename!r}").to_dict()
            try:
                k = int(k_arg)
            except ValueError:
                raise TaskError(f"k must be a whole number (how many models per class), got {k_arg!r}.") from None
        except VlmhubError as exc:
            return error(exc, 400, back="/task")
        form = {"name": task["name"], "classes": "\n".join(task["classes"]), "domain": task["domain"],
                "task": task["task"], "k": str(k)}
        note = (f"Selected with the {sum(len(v) for v in task['captions'].values())} captions of {upload.filename}; "
                "the shareable link holds the class names, domain and task type but not the captions.") \
            if task.get("captions") else None
        return _task_result(task, k, form, note=note)

    def _task_result(task: dict, k: int, form: dict, *, note: str | None = None):
        svc = get_service()
        try:
            result = svc.select(task, k=k)
            n_models = len(svc.hub.labeled_model_ids())
            full = svc.select(task, k=n_models)
        except VlmhubError as exc:
            return error(exc, form=form)
        models = list(dict.fromkeys(m["id"] for c in full["classes"] for m in c["models"]))
        models.sort(key=svc.hub.model_ids.index)
        score = {(m["id"], c["name"]): m["score"] for c in full["classes"] for m in c["models"]}
        top = {(m["id"], c["name"]) for c in result["classes"] for m in c["models"]}
        names = [c["name"] for c in full["classes"]]
        hm = svg.heatmap(models, names, [[score[(m, c)] for c in names] for m in models],
                         marked=[[(m, c) in top for c in names] for m in models],
                         title=f"Reuse score r (Eq. 7) of every model for every class of {task['name']}")
        top_models = list(dict.fromkeys(m["id"] for c in result["classes"] for m in c["models"]))[:6]
        hi = max([score[(m, c)] for m in top_models for c in names] + [1e-9])
        spider = svg.radar_chart(names, [(m, [score[(m, c)] for c in names]) for m in top_models], scale=hi,
                                 title=f"Reuse score r per class of {task['name']}: the models selected for any class")
        share = "/task?" + urlencode({k2: v for k2, v in form.items() if v})
        predict_link = "/predict?" + urlencode({k2: v for k2, v in form.items() if v})
        return render("task.html", title=f"Task {task['name']}", form=form, result=result, heatmap=hm, spider=spider,
                      spider_models=top_models, share=share, predict_link=predict_link, note=note)

    @router.get("/predict", response_class=HTMLResponse)
    def predict_form(request: Request):
        form = {k: request.query_params.get(k, "") for k in ("name", "classes", "domain", "task", "k")}
        return render("predict.html", title="Predict", form=form, rows=None)

    @router.post("/predict", response_class=HTMLResponse)
    async def predict(request: Request):
        from starlette.datastructures import UploadFile

        svc = get_service()
        data = await request.form()
        form = {k: str(data.get(k) or "") for k in ("name", "classes", "domain", "task", "k")}
        try:
            task, k, _ = _task_from(form)
            if task is None:
                raise TaskError("the task has no classes. Type the class names, one per line, then choose images.")
            files = [f for f in data.getlist("images") if isinstance(f, UploadFile) and f.filename]
            if not files:
                raise TaskError("no images were uploaded. Choose one or more image files in the images field.")
            images = [{"name": f.filename, "data": base64.b64encode(await f.read()).decode()} for f in files]
            result = await _run(lambda: _predict(svc, task, images, k))
        except VlmhubError as exc:
            return error(exc, 400 if isinstance(exc, TaskError) and not isinstance(exc, NotLabeledError) else None, form=form)
        return render("predict.html", title="Predictions", form=form, rows=result)

    return router


def _submission_entry(svc, request, model_id: str):
    """The catalog entry of a hub-database submission not (yet) in the hub's catalog, or None."""
    from ...hub import catalog_entries

    db = _db_if_any(request)
    if db is None:
        return None
    return next((e for e in catalog_entries(svc.hub, db, ids=[model_id]) if e.origin == "submission"), None)


def _job_progress(request):
    """The label-job progress ``GET /v1/jobs`` shows (the app's one call), or None in an app without it."""
    get = getattr(request.app.state, "hub_jobs", None)
    return get() if get is not None else None


def _db_if_any(request):
    """The app's hub database when it has one that exists (never creates one for a page view), else None."""
    get = getattr(request.app.state, "hub_db_if_any", None)
    return get() if get is not None else None


async def _run(fn):
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn)


def _predict(svc, task: dict, images: list[dict], k: int) -> list[dict]:
    """``svc.predict`` (the JSON API's numbers) plus each selected model's vote on every image."""
    from ...reuse.votes import member_votes

    pred = svc.predict(task, images, k=k)["predictions"]
    refs = svc.decode_images(images)
    with svc._lock:
        votes = member_votes(svc.hub, task, refs, k=k)
    return [{**p, "votes": v.votes} for p, v in zip(pred, votes)]
