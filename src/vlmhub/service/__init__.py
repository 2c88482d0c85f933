"""vlmhub as a long-running service: warm models and selectors behind HTTP.

* :class:`VlmhubService` -- framework-free request handling (importable without the extra);
* :func:`create_app` / :func:`serve` -- the FastAPI app and its uvicorn runner (``pip install 'vlmhub[service]'``).

Run it with ``vlmhub serve [--host 127.0.0.1] [--port 8000]``; see docs/service.md.
"""

from __future__ import annotations

from .core import BUILTIN_TABLES, ServiceLimits, VlmhubService

__all__ = ["VlmhubService", "ServiceLimits", "BUILTIN_TABLES", "create_app", "serve"]


def create_app(*args, **kwargs):
    """See :func:`vlmhub.service.app.create_app` (imports FastAPI on first use)."""
    from .app import create_app as _create

    return _create(*args, **kwargs)


def serve(*args, **kwargs) -> None:
    """See :func:`vlmhub.service.app.serve` (imports uvicorn on first use)."""
    from .app import serve as _serve

    _serve(*args, **kwargs)
