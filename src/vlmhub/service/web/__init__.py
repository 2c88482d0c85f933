"""The hub's web face: server-rendered pages over the same service functions as the JSON API.

``web_router(get_service, status_for)`` returns a FastAPI router; :func:`vlmhub.service.app.create_app` mounts it, so
``vlmhub serve`` answers both ``/v1/...`` (JSON) and the pages:

==========================  =================================================================================
``/``                       catalog: state, source, size, licence, label coverage; ``?q= source= state=
                            min_params= max_params= sort=-params``, 50 per page (= ``GET /v1/hub/models``)
``/models/{id}``            metadata, spider chart of the label per WordNet category vs the hub median,
                            strongest and weakest concepts
``/compare?ids=a,b``        2-5 models on one spider chart, the concepts where they differ most
``/task?classes=...``       per class the top-k models with scores, matched nodes and captions; heatmap
                            (or ``POST /task`` with a task JSON file)
``/predict``                upload images for a task: class, confidence, each selected model's vote
==========================  =================================================================================

Templates, CSS and charts live in this package (no CDN, no external font or script; no JavaScript needed).
"""

from __future__ import annotations

__all__ = ["web_router"]


def web_router(get_service, status_for):
    """See :func:`vlmhub.service.web.routes.web_router` (imports FastAPI and Jinja2 on first use)."""
    from .routes import web_router as _router

    return _router(get_service, status_for)
