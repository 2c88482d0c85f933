"""The submit pages: sign in with a token, upload a model package, watch checking and labeling progress.

Works without JavaScript: progress pages refresh themselves (``<meta http-equiv="refresh">``) while a
submission is being checked or labeled. The token is kept in an ``HttpOnly``, ``SameSite=Strict`` cookie
(so other sites cannot submit with it). Every action is the JSON API's library call
(:func:`vlmhub.submission.workflow.submit`, :func:`vlmhub.hubdb.catalog.withdraw_submission`), with the same
checks and errors.
"""

# no `from __future__ import annotations`: FastAPI must see the Request annotations

from typing import Any, Callable

from ...errors import AuthenticationError, VlmhubError

__all__ = ["add_submit_pages", "TOKEN_COOKIE"]

TOKEN_COOKIE = "vlmhub_token"
_ACTIVE = ("submitted", "checking", "queued", "labeling")


def add_submit_pages(router, render: Callable[..., Any], error: Callable[..., Any]) -> None:
    """Add ``/signin``, ``/signout``, ``/submit`` and ``/submissions/{id}`` to the pages' ``router``."""
    from fastapi import Request
    from fastapi.responses import HTMLResponse, RedirectResponse

    def db(request: Request):
        get = getattr(request.app.state, "hub_db", None)
        if get is None:
            raise AuthenticationError("this server has no hub database; submissions are off.")
        return get()

    def principal(request: Request):
        from ...hubdb.auth import authenticate

        token = request.cookies.get(TOKEN_COOKIE)
        return authenticate(db(request), token) if token else None

    @router.get("/signin", response_class=HTMLResponse)
    def signin_form(request: Request):
        return render("signin.html", title="Sign in", message=None)

    @router.post("/signin", response_class=HTMLResponse)
    async def signin(request: Request):
        from ...hubdb.auth import authenticate

        form = await request.form()
        token = str(form.get("token") or "").strip()
        try:
            if not token:
                raise AuthenticationError("paste your token (it starts with vlmhub_). An admin creates one with "
                                          "`vlmhub token create --user NAME --role submitter`.")
            authenticate(db(request), token)
        except VlmhubError as exc:
            return render("signin.html", 401, title="Sign in", message=str(exc))
        resp = RedirectResponse("/submit", status_code=303)
        resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", max_age=7 * 24 * 3600)
        return resp

    @router.post("/signout")
    def signout():
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(TOKEN_COOKIE)
        return resp

    def _mine(request, who):
        from ...hubdb.catalog import list_submissions
        from ..submissions import _submission_view

        subs = list_submissions(db(request), submitter=None if who.allows("admin") else who.user)
        return [_submission_view(db(request), s) for s in subs]

    @router.get("/submit", response_class=HTMLResponse)
    def submit_form(request: Request):
        try:
            who = principal(request)
            if who is None:
                return RedirectResponse("/signin", status_code=303)
            mine = _mine(request, who)
        except VlmhubError as exc:
            return error(exc)
        refresh = any(s["model"]["state"] in _ACTIVE for s in mine)
        return render("submit.html", title="Submit a model", who=who, submissions=mine, refresh=refresh, message=None)

    @router.post("/submit", response_class=HTMLResponse)
    async def submit(request: Request):
        from starlette.datastructures import UploadFile

        from ...errors import PackageError
        from ...submission import PackageLimits
        from ...submission.workflow import WorkflowConfig, submit as _submit

        try:
            who = principal(request)
            if who is None:
                return RedirectResponse("/signin", status_code=303)
            form = await request.form()
            pkg = form.get("package")
            if not isinstance(pkg, UploadFile) or not pkg.filename:
                raise PackageError("choose the model package (.zip or .tar.gz of a save_pretrained folder).")
            cap = getattr(request.app.state, "max_package_bytes", None) or PackageLimits().max_bytes
            data = await pkg.read(cap + 1)
            if len(data) > cap:
                raise PackageError(f"the package is over the hub's upload limit of {cap} bytes.")
            model_id = str(form.get("model_id") or "").strip() or None
            sub = _submit(db(request), request.app.state.hub_settings(), who, data, model_id=model_id,
                          config=WorkflowConfig(package=PackageLimits(max_bytes=cap)))
        except VlmhubError as exc:
            mine = []
            try:
                who = principal(request)
                mine = _mine(request, who) if who else []
            except VlmhubError:
                who = None
            from ..problems import status_for

            return render("submit.html", status_for(exc), title="Submit a model", who=who, submissions=mine,
                          refresh=False, message=str(exc))
        return RedirectResponse(f"/submissions/{sub.id}", status_code=303)

    @router.get("/submissions/{sub_id}", response_class=HTMLResponse)
    def submission_page(request: Request, sub_id: int):
        from ...errors import PermissionDenied
        from ...hubdb.catalog import get_submission
        from ..submissions import _submission_view

        try:
            who = principal(request)
            if who is None:
                return RedirectResponse("/signin", status_code=303)
            sub = get_submission(db(request), sub_id)
            if not who.allows("admin") and sub.submitter != who.user:
                raise PermissionDenied(f"submission {sub_id} belongs to another user.")
            view = _submission_view(db(request), sub)
        except VlmhubError as exc:
            return error(exc)
        return render("submission.html", title=f"Submission {sub_id}", sub=view,
                      refresh=view["model"]["state"] in _ACTIVE)
