"""HTTP front of :class:`~vlmhub.service.core.VlmhubService` (FastAPI; ``pip install 'vlmhub[service]'``).

Endpoints (JSON in, JSON out; the interactive schema is at ``/docs``):

====== ============================ ===========================================================
GET    ``/v1/health``               status, version, hub home, model and labeled-model counts
GET    ``/v1/models``               the hub's models with their specs and whether they are labeled
GET    ``/v1/models/{model_id}``    one model of this hub (404 problem body for a model of no catalog here)
POST   ``/v1/select``               ``{"task", "k", "config"}`` -> per-class top-k models (Eq. 5-7)
POST   ``/v1/predict``              ``{"task", "images": [{"name", "data": base64}], "k", "weighting"}``
GET    ``/v1/tables``               performance tables and selectors this server offers
POST   ``/v1/tables/{table}/rank``  ``{"task", "selector", "top"}`` -> ``{"models": [{"id", "score"}]}``
====== ============================ ===========================================================

Errors are ``{"error": {"type": <exception class>, "message": <what is wrong and how to fix it>}}`` with
status 404 (unknown model), 409 (hub not labeled), 501 (missing optional extra) or 422 (any other bad
input; malformed JSON bodies get FastAPI's usual 422 detail).
"""

# no `from __future__ import annotations`: FastAPI must see the request models defined in create_app
from contextlib import asynccontextmanager
from typing import Any, Literal, Optional

from ..errors import LabelError, MissingExtraError, UnknownModelError, VlmhubError, missing_extra
from .core import VlmhubService

__all__ = ["create_app", "serve", "status_for"]


def status_for(exc: VlmhubError) -> int:
    """HTTP status of a library error."""
    if isinstance(exc, UnknownModelError):
        return 404
    if isinstance(exc, LabelError):
        return 409
    if isinstance(exc, MissingExtraError):
        return 501
    return 422


def _fastapi():
    try:
        import fastapi
        import pydantic
    except ImportError:
        raise missing_extra("fastapi", "service", "the HTTP service (vlmhub serve)") from None
    return fastapi, pydantic


def create_app(service: VlmhubService | None = None, *, preload: bool = False, **service_kwargs):
    """The FastAPI application over ``service`` (default: ``VlmhubService(**service_kwargs)``, built lazily).

    With ``preload=True`` one throw-away selection runs at startup (when the hub is labeled), so the first
    request does not pay for loading labels, the text model and WordNet.
    """
    fastapi, pydantic = _fastapi()
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field

    class TaskIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: str
        classes: list[str]
        domain: Optional[str] = None
        task: Optional[str] = None
        captions: Optional[dict[str, list[str]]] = None

        def as_dict(self) -> dict:
            return self.model_dump(exclude_none=True)

    class SelectIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        task: TaskIn
        k: int = Field(3, ge=1)
        config: Optional[dict[str, Any]] = None

    class ImageIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        name: Optional[str] = None
        data: str = Field(..., description="the image file's bytes, base64-encoded")

    class PredictIn(SelectIn):
        images: list[ImageIn]
        weighting: Optional[Literal["inverse_entropy", "entropy", "uniform"]] = None

    class RankIn(BaseModel):
        model_config = ConfigDict(extra="forbid")
        task: TaskIn
        selector: Optional[str] = None
        top: Optional[int] = Field(None, ge=1)

    state: dict[str, VlmhubService] = {}

    def svc() -> VlmhubService:
        if "svc" not in state:
            state["svc"] = service if service is not None else VlmhubService(**service_kwargs)
        return state["svc"]

    @asynccontextmanager
    async def lifespan(app):
        if preload:
            try:  # a throw-away selection loads labels, the text model and WordNet before the first request
                svc().select({"name": "warm-up", "classes": ["cat", "dog"]}, k=1)
            except VlmhubError:
                pass  # e.g. not labeled yet: /v1/select answers 409 with the fix
        yield

    app = fastapi.FastAPI(title="vlmhub", version=_version(), lifespan=lifespan,
                          description="Select and reuse vision-language models with Model Label Learning.")

    @app.exception_handler(VlmhubError)
    async def _vlmhub_error(request, exc: VlmhubError):
        return JSONResponse(status_code=status_for(exc), content={"error": {"type": type(exc).__name__, "message": str(exc)}})

    @app.get("/v1/health")
    def health() -> dict:
        return svc().health()

    @app.get("/v1/models")
    def models() -> dict:
        return svc().models()

    @app.get("/v1/models/{model_id}")
    def model(model_id: str) -> dict:
        return svc().model(model_id)

    @app.post("/v1/select")
    def select(req: SelectIn) -> dict:
        return svc().select(req.task.as_dict(), k=req.k, config=req.config)

    @app.post("/v1/predict")
    def predict(req: PredictIn) -> dict:
        images = [im.model_dump() for im in req.images]
        return svc().predict(req.task.as_dict(), images, k=req.k, weighting=req.weighting, config=req.config)

    @app.get("/v1/tables")
    def tables() -> dict:
        return svc().list_tables()

    @app.post("/v1/tables/{table}/rank")
    def rank(table: str, req: RankIn) -> dict:
        return svc().rank_models(table, req.task.as_dict(), selector=req.selector, top=req.top)

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
