"""Errors of the HTTP service as RFC 9457 problem details, and the request-body size limit.

Every error answer of the service is ``application/problem+json``::

    {"type": "task-error", "title": "Invalid task", "status": 422,
     "detail": "task 'pets' has a single class 'cat'; classification needs at least two."}

``type`` is a stable slug (the table in docs/service.md lists them), ``title`` a short summary that does not
change between occurrences, ``detail`` what is wrong *and* how to fix it. Validation errors add
``errors: [{"loc", "msg", "type"}]`` with the field path of each problem. Nothing here echoes request input
verbatim beyond what a library message quotes, and no traceback or server path of an unexpected error is
ever sent: those are logged and answered with a bare ``internal-error``.

:class:`BodyLimitMiddleware` (pure ASGI) refuses a body above the limit from its ``Content-Length`` before
reading it, and counts the bytes of a streamed (chunked) body as they arrive, so a client cannot make the
server buffer more than the limit.
"""

from __future__ import annotations

import json
import logging
import re
from types import MappingProxyType
from typing import Any, Mapping

from ..errors import LabelError, MissingExtraError, NotLabeledError, UnknownAssetError, UnknownModelError, VlmhubError

__all__ = ["PROBLEM_JSON", "problem", "problem_bytes", "status_for", "problem_for", "install_problem_handlers",
           "BodyLimitMiddleware", "PROBLEM_STATUSES", "problem_responses"]

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger("vlmhub.service")

#: short, stable titles of the problem types (type slug -> title)
TITLES = MappingProxyType({
    "validation-error": "Request does not match the schema",
    "malformed-json": "Malformed JSON body",
    "body-too-large": "Request body too large",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "unsupported-media-type": "Unsupported media type",
    "unknown-model": "Unknown model",
    "not-labeled": "Hub not labeled",
    "label-error": "Label error",
    "missing-extra": "Optional extra not installed",
    "internal-error": "Internal server error",
})

def _problem_schema() -> dict:
    return {"type": "object", "required": ["type", "title", "status", "detail"],
            "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                           "detail": {"type": "string"}, "errors": {"type": "array", "items": {"type": "object"}}}}


#: (status, description) of the problem answers every route may give; :func:`problem_responses` makes
#: FastAPI's ``responses=`` of them
PROBLEM_STATUSES = ((400, "malformed request"), (401, "missing or bad token"), (403, "wrong role"),
                    (404, "unknown route or model"), (405, "method not allowed"), (409, "conflict, or the hub is not labeled"),
                    (413, "request body too large"), (415, "unsupported media type"),
                    (422, "invalid request (schema, limits, task, images)"),
                    (429, "too many requests from this token or address"), (500, "internal error (logged; no details sent)"),
                    (501, "an optional extra is missing"))


def problem_responses() -> dict:
    """OpenAPI ``responses`` entries (problem+json schema) for :data:`PROBLEM_STATUSES`; a fresh dict."""
    return {code: {"description": why, "content": {PROBLEM_JSON: {"schema": _problem_schema()}}}
            for code, why in PROBLEM_STATUSES}


def _clean(text: str) -> str:
    """Text safe to put in a UTF-8 body (a lone surrogate from the request becomes ``?``)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _slug(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def problem(status: int, type_: str, detail: str, title: str | None = None, **extra: Any) -> dict:
    """A problem-details object (``type``, ``title``, ``status``, ``detail`` plus extension members)."""
    return {"type": type_, "title": title or TITLES.get(type_, type_.replace("-", " ").capitalize()),
            "status": int(status), "detail": _clean(str(detail)), **extra}


def problem_bytes(body: dict) -> bytes:
    """The JSON bytes of a problem body (UTF-8; never fails on odd characters)."""
    return json.dumps(body, ensure_ascii=False, default=str).encode("utf-8", "replace")


#: status of the hub database's errors, by class name (they live in vlmhub.errors beside the others)
_STATUS_BY_NAME = MappingProxyType({"AuthenticationError": 401, "PermissionDenied": 403, "NotFoundError": 404,
                                    "ConflictError": 409})


def status_for(exc: VlmhubError) -> int:
    """HTTP status of a library error: 401 missing or bad token, 403 wrong role, 404 unknown model, asset or
    id, 409 conflict or not labeled, 501 missing extra, 422 anything else a client can cause."""
    for cls in type(exc).__mro__:
        if cls.__name__ in _STATUS_BY_NAME:
            return _STATUS_BY_NAME[cls.__name__]
    if isinstance(exc, (UnknownModelError, UnknownAssetError)):
        return 404
    if isinstance(exc, LabelError):
        return 409
    if isinstance(exc, MissingExtraError):
        return 501
    return 422


def problem_for(exc: VlmhubError) -> dict:
    """The problem body of a library error (its class name as the type slug, its message as the detail)."""
    if isinstance(exc, NotLabeledError):
        type_ = "not-labeled"
    elif isinstance(exc, UnknownModelError):
        type_ = "unknown-model"
    else:
        type_ = _slug(type(exc).__name__)
    title = TITLES.get(type_) or _slug(type(exc).__name__).replace("-", " ").capitalize()
    return problem(status_for(exc), type_, str(exc), title=title)


def _loc(loc: Any) -> str:
    parts = [str(p) for p in (loc or ())]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(_clean(p)[:40] for p in parts) or "body"


def _validation_problem(errors: list[dict]) -> dict:
    """422 for a body that does not match the schema; FastAPI's error list reduced to loc/msg/type."""
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        where = (e.get("ctx") or {}).get("error", "")
        return problem(400, "malformed-json", f"the request body is not valid JSON ({_clean(str(where))[:120]}). "
                       "Send a JSON object with Content-Type: application/json.")
    items = [{"loc": _loc(e.get("loc")), "msg": _clean(str(e.get("msg", "")))[:200], "type": str(e.get("type", ""))}
             for e in errors[:20]]
    listed = "; ".join(f"{i['loc']}: {i['msg']}" for i in items)
    more = f" (and {len(errors) - 20} more)" if len(errors) > 20 else ""
    return problem(422, "validation-error", f"the request does not match the API schema: {listed}{more}. "
                   "Fix these fields (the schema is at /openapi.json, the docs at /docs).", errors=items)


def install_problem_handlers(app) -> None:
    """Answer every error of ``app`` with a problem body: library errors, FastAPI's validation errors,
    Starlette's HTTP errors (404 route, 405, 400 body parse) and, as a last resort, anything else (500,
    logged with its traceback, answered without internals)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(body: dict, headers: dict | None = None) -> Response:
        return Response(problem_bytes(body), status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)

    @app.exception_handler(VlmhubError)
    async def _vlmhub_error(request, exc: VlmhubError):
        body = problem_for(exc)
        return respond(body, headers={"WWW-Authenticate": "Bearer"} if body["status"] == 401 else None)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc: RequestValidationError):
        return respond(_validation_problem(list(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = exc.status_code
        if code == 404:
            body = problem(404, "not-found", f"no route {request.method} {_clean(request.url.path)[:200]}. "
                           "The routes are listed at /docs.")
        elif code == 405:
            body = problem(405, "method-not-allowed", f"{request.method} is not allowed on {_clean(request.url.path)[:200]}. "
                           "See /docs for the methods of each route.")
        elif code == 413:
            body = problem(413, "body-too-large", str(exc.detail))
        elif code == 400:
            body = problem(400, "malformed-json", "the request body could not be parsed (not JSON, or nested too "
                           "deeply). Send a JSON object with Content-Type: application/json.")
        else:
            body = problem(code, _slug(type(exc).__name__) if code >= 500 else "http-error", str(exc.detail),
                           title=TITLES.get("internal-error") if code >= 500 else "HTTP error")
        return respond(body, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request, exc: Exception):
        _log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return respond(problem(500, "internal-error", "the server failed on this request; the error is logged. "
                               "Retry later, or report it to the operator with the time of the request."))


class BodyLimitMiddleware:
    """Pure ASGI middleware: refuse request bodies above ``max_bytes`` with a 413 problem.

    A ``Content-Length`` above the limit is refused before any body byte is read; a body without one (or
    lying about it) is counted as it streams, and the request fails at the first byte past the limit.
    """

    def __init__(self, app, max_bytes: int, *, upload_bytes: int | None = None,
                 upload_prefixes: tuple[str, ...] = ("/v1/submissions",)) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.upload_bytes = int(upload_bytes) if upload_bytes is not None else self.max_bytes
        self.upload_prefixes = tuple(upload_prefixes)

    def limit_for(self, path: str) -> tuple[int, str]:
        """The byte limit of a request path and the variable that sets it (uploads have their own)."""
        if path.startswith(self.upload_prefixes):
            return self.upload_bytes, "VLMHUB_MAX_UPLOAD_BYTES"
        return self.max_bytes, "VLMHUB_MAX_REQUEST_BYTES"

    @staticmethod
    def _detail(size: str, limit: int, var: str) -> str:
        return (f"the request body is {size} bytes; this server takes at most {limit:,} ({var}). "
                "Send fewer or smaller images, or split the request.")

    async def _refuse(self, send, size: str, limit: int, var: str) -> None:
        body = problem_bytes(problem(413, "body-too-large", self._detail(size, limit, var)))
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, var = self.limit_for(scope.get("path") or "")
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await self._refuse(send, f"{declared:,}", limit, var)
                    return
        from starlette.exceptions import HTTPException

        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # FastAPI re-raises an HTTPException met while reading the body
                    raise HTTPException(413, self._detail(f"more than {limit:,}", limit, var))
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except HTTPException as exc:  # raised where no exception handler sees it (e.g. by another middleware)
            if exc.status_code != 413 or started:
                raise
            await self._refuse(send, f"more than {limit:,}", limit, var)
