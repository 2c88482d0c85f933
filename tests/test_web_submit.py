"""The submit pages: sign in with a token, upload a package, see the submission and its state; bad tokens
and bad packages give an error page with the fix and write nothing."""

from __future__ import annotations

import pytest

from vlmhub.submission import pack_folder


@pytest.fixture
def web(toy_hub, monkeypatch):
    from fastapi.testclient import TestClient

    from vlmhub.service import VlmhubService, create_app

    monkeypatch.delenv("VLMHUB_DATABASE_URL", raising=False)
    with TestClient(create_app(VlmhubService(toy_hub, embedder="hashing256"))) as c:
        yield c


def _token(settings, user, role):
    from vlmhub.hubdb import HubDB
    from vlmhub.hubdb.auth import create_token

    with HubDB(settings) as db:
        return create_token(db, user, role).token


def test_sign_in_submit_and_watch(web, toy_hub, tiny_clip_dir):
    s = toy_hub.settings
    r = web.get("/submit", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    r = web.post("/signin", data={"token": "vlmhub_bad_token"})
    assert r.status_code == 401 and "token" in r.text.lower()
    tok = _token(s, "alice", "submitter")
    r = web.post("/signin", data={"token": tok}, follow_redirects=False)
    assert r.status_code == 303 and "httponly" in r.headers["set-cookie"].lower()
    assert "samesite=strict" in r.headers["set-cookie"].lower()
    page = web.get("/submit")
    assert page.status_code == 200 and 'name="package"' in page.text and "alice" in page.text

    r = web.post("/submit", files={"package": ("bad.zip", b"not an archive", "application/zip")})
    assert r.status_code == 422 and "neither a zip nor a tar" in r.text
    assert not (s.home / "packages").exists() or not any((s.home / "packages").iterdir())

    r = web.post("/submit", files={"package": ("tiny.zip", pack_folder(tiny_clip_dir), "application/zip")},
                 data={"model_id": "tiny-web"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/submissions/")
    sub = web.get(r.headers["location"])
    assert sub.status_code == 200 and "tiny-web" in sub.text and 'data-state="submitted"' in sub.text
    assert 'http-equiv="refresh"' in sub.text  # refreshes itself while checking / labeling
    listing = web.get("/submit")
    assert 'class="submission" data-state="submitted"' in listing.text

    # another submitter sees neither the submission page nor it in their list
    web.post("/signin", data={"token": _token(s, "bob", "submitter")})
    assert web.get(r.headers["location"]).status_code == 403
    assert "tiny-web" not in web.get("/submit").text
    web.post("/signout")
    assert web.get("/submit", follow_redirects=False).status_code == 303
