"""HTTP front of :class:`~vlmhub.service.core.VlmhubService` (FastAPI; ``pip install 'vlmhub[service]'``).

Endpoints (JSON in, JSON out; the interactive schema is at ``/docs``):

====== ============================ ===========================================================
GET    ``/v1/health``               status, version, hub home, model and labeled-model counts
GET    ``/v1/models``               the hub's models with their specs and whether they are labeled
GET    ``/v1/models/{model_id}``    one model of this hub (404 problem body for a model of no catalog here)
POST   ``/v1/select``               ``{"task", "k", "config"}`` -> per-class top-k models (Eq. 5-7)
POST   ``/v1/predict``              ``{"task", "images": [{"name", "data": base64}], "k", "weighting"}``
GET    ``/v1/tables``               performance tables and selectors this server offers
POST   ``/v1/submissions``          upload a model package (submitter token); GET/DELETE ``/v1/submissions[/{id}]``
GET    ``/v1/hub/models``           the catalog: state, source, size, licence, label coverage (service/submissions.py)
POST   ``/v1/tables/{table}/rank``  ``{"task", "selector", "top"}`` -> ``{"models": [{"id", "score"}]}``
====== ============================ ===========================================================

Every error is an RFC 9457 problem body (``application/problem+json``, :mod:`vlmhub.service.problems`):
``{"type", "title", "status", "detail"}`` with status 400 (malformed JSON), 404 (unknown route or model), 409
(hub not labeled), 413 (body too large), 422 (schema, limits, task or image refused), 429 (too many requests
from one token or address: ``VLMHUB_RATE_LIMIT`` a minute, bursts of ``VLMHUB_RATE_BURST``), 501 (missing extra)
or 500 (a bug: logged, answered without internals). Heavy work (selection, prediction, ranking) runs in a
bounded thread pool (``Settings.service_threads``), so health and catalog answer while it runs; they and a
repeated selection (its answer's bytes, remembered per fit: ``VlmhubService.select_json``, header
``X-Vlmhub-Cache: hit``) are answered on the event loop from memoised data.
"""

# no `from __future__ import annotations`: FastAPI must see the request models defined in create_app
import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Literal, Optional

from ..errors import VlmhubError, missing_extra
from .core import ServiceLimits, VlmhubService
from .problems import BodyLimitMiddleware, install_problem_handlers, problem_responses, status_for
from .ratelimit import RateLimitMiddleware

__all__ = ["create_app", "serve", "status_for"]


def _fastapi():
    try:
        import fastapi
        import pydantic
    except ImportError:
        raise missing_extra("fastapi", "service", "the HTTP service (vlmhub serve)") from None
    return fastapi, pydantic


def _limits_for(service: VlmhubService | None, service_kwargs: dict) -> ServiceLimits:
    if service is not None:
        return service.limits
    if service_kwargs.get("limits") is not None:
        return service_kwargs["limits"]
    from ..settings import get_settings

    return ServiceLimits.from_settings(service_kwargs.get("settings") or get_settings())


def create_app(service: VlmhubService | None = None, *, preload: bool = False, **service_kwargs):
    """The FastAPI application over ``service`` (default: ``VlmhubService(**service_kwargs)``, built lazily).

    With ``preload=True`` one throw-away selection runs at startup (when the hub is labeled), so the first
    request does not pay for loading labels, the text model and WordNet. The request limits
    (:class:`~vlmhub.service.core.ServiceLimits`) are part of the OpenAPI schema.
    """
    fastapi, pydantic = _fastapi()
    from pydantic import BaseModel, ConfigDict, Field

    lim = _limits_for(service, service_kwargs)

    class TaskIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str = Field(..., min_length=1, max_length=lim.max_text_chars, description="the task's name")
        classes: list[str] = Field(..., min_length=2, max_length=lim.max_classes,
                                   description=f"2 to {lim.max_classes} distinct class names, "
                                               f"each at most {lim.max_text_chars} characters")
        domain: Optional[str] = Field(None, max_length=lim.max_text_chars, description="e.g. natural photograph")
        task: Optional[str] = Field(None, max_length=lim.max_text_chars, description="e.g. image classification")
        captions: Optional[dict[str, list[str]]] = Field(
            None, description=f"per class, at most {lim.max_captions} captions of at most {lim.max_text_chars} characters")

        def as_dict(self) -> dict:
            return self.model_dump(exclude_none=True)

    class SelectIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        task: TaskIn
        k: int = Field(3, ge=1, le=1000)
        config: Optional[dict[str, Any]] = Field(None, description="selection options: alpha, k_nodes, metric, "
                                                 "caption_sources, rendition, normalize_z")

    class ImageIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: Optional[str] = Field(None, max_length=lim.max_text_chars,
                                    description="a label echoed in the answer (relative, no '..'); never opened")
        data: str = Field(..., description="the image file's bytes, base64-encoded",
                          max_length=lim.max_image_bytes * 4 // 3 + 4)

    class PredictIn(SelectIn):
        images: list[ImageIn] = Field(..., min_length=1, max_length=lim.max_images)
        weighting: Optional[Literal["inverse_entropy", "entropy", "uniform"]] = None

    class RankIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        task: TaskIn
        selector: Optional[str] = Field(None, max_length=64)
        top: Optional[int] = Field(None, ge=1, le=100_000)

    state: dict[str, Any] = {"lock": threading.Lock()}

    def svc() -> VlmhubService:
        if "svc" not in state:
            with state["lock"]:  # light routes run in several threads: build the service once
                if "svc" not in state:
                    state["svc"] = service if service is not None else VlmhubService(**service_kwargs)
        return state["svc"]

    def pool(lane: str) -> ThreadPoolExecutor:
        if lane not in state:
            state[lane] = ThreadPoolExecutor(max_workers=lim.threads, thread_name_prefix=f"vlmhub-{lane}")
        return state[lane]

    async def heavy(fn, *args, lane: str = "heavy", **kwargs):
        """Run ``fn`` in a bounded pool: the event loop (and light routes) never waits on it. Lane "fast" is
        a second pool of the same size for repeated-task selections, so they never queue behind new tasks."""
        return await asyncio.get_running_loop().run_in_executor(pool(lane), partial(fn, *args, **kwargs))

    @asynccontextmanager
    async def lifespan(app):
        if preload:
            try:  # a throw-away selection loads labels, the text model and WordNet before the first request
                await heavy(lambda: svc().select({"name": "warm-up", "classes": ["cat", "dog"]}, k=1))
            except VlmhubError:
                pass  # e.g. not labeled yet: /v1/select answers 409 with the fix
        try:
            yield
        finally:
            for lane in ("heavy", "fast"):
                if lane in state:
                    state.pop(lane).shutdown(wait=False, cancel_futures=True)

    app = fastapi.FastAPI(title="vlmhub", version=_version(), lifespan=lifespan, responses=problem_responses(),
                          description="Select and reuse vision-language models with Model Label Learning. "
                                      "Errors are RFC 9457 problem bodies (application/problem+json).")
    install_problem_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=lim.max_body_bytes, upload_bytes=lim.max_upload_bytes)
    # outermost: a client past its rate is refused before its body is read (service/ratelimit.py)
    app.add_middleware(RateLimitMiddleware, per_minute=lim.rate_per_minute, burst=lim.rate_burst)

    # light routes: answered on the event loop, never queued behind heavy work. They read memoised data: the hub
    # re-reads models.json, graphs/current.json and a label manifest only when the file changed (a stat each)
    @app.get("/v1/health")
    async def health() -> dict:
        return svc().health()

    @app.get("/v1/models")
    async def models() -> dict:
        return svc().models()

    @app.get("/v1/models/{model_id}")
    async def model(model_id: str = fastapi.Path(..., max_length=200)) -> dict:
        return svc().model(model_id)

    @app.get("/v1/tables")
    def tables() -> dict:
        return svc().list_tables()

    def json_answer(body: bytes, cached: bool):
        return fastapi.Response(body, media_type="application/json",
                                headers={"X-Vlmhub-Cache": "hit" if cached else "miss"})

    # heavy routes: the bounded pool
    @app.post("/v1/select", response_model=dict)
    async def select(req: SelectIn):
        task = req.task.as_dict()
        if "svc" in state:  # the same request answered by the same fit: its bytes, on the event loop
            body = state["svc"].cached_select_json(task, req.k, req.config)
            if body is not None:
                return json_answer(body, True)
        cheap = "svc" in state and state["svc"].select_is_cheap(task, req.config)  # a dict lookup, no work
        # the answer is rendered to JSON in the pool too (100 classes: ~60 KB), not on the event loop
        body, cached = await heavy(lambda: svc().select_json(task, k=req.k, config=req.config),
                                   lane="fast" if cheap else "heavy")
        return json_answer(body, cached)

    @app.post("/v1/predict")
    async def predict(req: PredictIn) -> dict:
        images = [im.model_dump() for im in req.images]
        return await heavy(lambda: svc().predict(req.task.as_dict(), images, k=req.k, weighting=req.weighting,
                                                 config=req.config))

    @app.post("/v1/tables/{table}/rank")
    async def rank(req: RankIn, table: str = fastapi.Path(..., max_length=200)) -> dict:
        return await heavy(lambda: svc().rank_models(table, req.task.as_dict(), selector=req.selector, top=req.top))

    from .submissions import add_submission_routes

    add_submission_routes(app, lambda: svc().hub.settings, max_package_bytes=lim.max_upload_bytes,
                          hub_of=lambda: svc().hub)  # the submission stage (hub database, tokens)

    from .web import web_router  # the HTML pages (/, /models/{id}, /compare, /task, /predict) over the same svc

    app.include_router(web_router(svc, status_for))
    return app


def _version() -> str:
    from .. import __version__

    return __version__


def serve(host: str = "127.0.0.1", port: int = 8000, *, preload: bool = True, log_level: str = "info",
          **service_kwargs: Any) -> None:
    """Run the service with uvicorn (blocking)."""
    try:
        import uvicorn
    except ImportError:
        raise missing_extra("uvicorn", "service", "the HTTP service (vlmhub serve)") from None
    app = create_app(preload=preload, **service_kwargs)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
