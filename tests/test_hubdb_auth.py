"""Tokens and roles on both backends: plaintext shown once, salted hash stored, 401 vs 403 causes, audit entries."""

from __future__ import annotations

from datetime import timedelta

import pytest

sa = pytest.importorskip("sqlalchemy")


@pytest.fixture
def db(settings, db_url):
    from vlmhub.hubdb import HubDB

    with HubDB(settings.with_(database_url=db_url)) as hub_db:
        yield hub_db


def test_token_round_trip_and_only_a_salted_hash_is_stored(db):
    from vlmhub.hubdb.auth import authenticate, create_token
    from vlmhub.hubdb.schema import Role, TokenRow

    a = create_token(db, "alice", "submitter", actor="root")
    b = create_token(db, "alice", Role.SUBMITTER)
    assert a.token != b.token and a.token.startswith("vlmhub_" + a.info.token_id + "_")
    p = authenticate(db, a.token)
    assert (p.user, p.role, p.token_id) == ("alice", Role.SUBMITTER, a.info.token_id)
    with db.session() as s:
        rows = s.scalars(sa.select(TokenRow)).all()
        dump = " ".join(str(v) for r in rows for v in vars(r).values())
    secret = a.token.rsplit("_", 1)[1]
    assert secret not in dump and a.token not in dump
    assert len({r.salt for r in rows}) == 2 and all(len(r.hash) == 64 and r.scheme.startswith("scrypt") for r in rows)


@pytest.mark.parametrize("mangle", [
    lambda t: "", lambda t: "Bearer " + t, lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
    lambda t: t.replace(t.split("_")[1], "0" * 12), lambda t: t + "x", lambda t: None,
])
def test_wrong_tokens_are_authentication_errors(db, mangle):
    from vlmhub.errors import AuthenticationError
    from vlmhub.hubdb.auth import authenticate, create_token

    tok = create_token(db, "bob", "reader").token
    with pytest.raises(AuthenticationError) as info:
        authenticate(db, mangle(tok))
    assert "token" in str(info.value)
    assert isinstance(info.value, PermissionError)


def test_revoked_and_expired_tokens_are_refused(db):
    from vlmhub.errors import AuthenticationError, NotFoundError
    from vlmhub.hubdb.auth import authenticate, create_token, list_tokens, revoke_token
    from vlmhub.hubdb.schema import TokenRow, utcnow

    t = create_token(db, "carol", "admin")
    first = revoke_token(db, t.info.token_id, actor="root")
    again = revoke_token(db, t.token)  # the full token works as an id too; revoking twice keeps the first time
    assert first.revoked_at == again.revoked_at and not again.active()
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(db, t.token)
    e = create_token(db, "carol", "reader", expires_in=timedelta(hours=1))
    assert authenticate(db, e.token).user == "carol"
    with db.write() as s:  # the clock moves on: the token's lifetime is over
        s.get(TokenRow, e.info.token_id).expires_at = utcnow() - timedelta(seconds=1)
    with pytest.raises(AuthenticationError, match="expired"):
        authenticate(db, e.token)
    assert [(i.token_id, i.active()) for i in list_tokens(db, "carol")] == [(t.info.token_id, False), (e.info.token_id, False)]
    assert list_tokens(db, "nobody") == []
    with pytest.raises(NotFoundError, match="token list"):
        revoke_token(db, "0123456789ab")


def test_roles_are_ordered_and_checked(db):
    from vlmhub.errors import AuthenticationError, ConfigError, PermissionDenied
    from vlmhub.hubdb.auth import authenticate, create_token, require_role
    from vlmhub.hubdb.schema import Role

    reader = authenticate(db, create_token(db, "r", "reader").token)
    sub = authenticate(db, create_token(db, "s", "submitter").token)
    admin = authenticate(db, create_token(db, "a", "admin").token)
    assert reader.require("reader") is reader and admin.require(Role.SUBMITTER) is admin
    with pytest.raises(PermissionDenied, match="needs submitter"):
        reader.require("submitter")
    with pytest.raises(PermissionDenied, match="needs admin"):
        sub.require(Role.ADMIN)
    with pytest.raises(AuthenticationError, match="needs a reader token"):
        require_role(None, "reader")
    with pytest.raises(ConfigError, match="unknown role"):
        create_token(db, "x", "superuser")
    with pytest.raises(ConfigError, match="invalid user name"):
        create_token(db, "../etc", "reader")
    with pytest.raises(ConfigError, match="positive"):
        create_token(db, "x", "reader", expires_in=timedelta(0))


def test_token_changes_are_audited(db):
    from vlmhub.hubdb.auth import create_token, revoke_token
    from vlmhub.hubdb.schema import AuditRow

    t = create_token(db, "dave", "submitter", actor="admin1")
    revoke_token(db, t.info.token_id, actor="admin2")
    with db.session() as s:
        log = [(r.actor, r.action, r.target, r.detail["token_id"]) for r in s.scalars(sa.select(AuditRow).order_by(AuditRow.id))]
    assert log == [("admin1", "token.create", "dave", t.info.token_id), ("admin2", "token.revoke", "dave", t.info.token_id)]


def test_disabled_user_cannot_authenticate(db):
    from vlmhub.errors import AuthenticationError
    from vlmhub.hubdb.auth import authenticate, create_token
    from vlmhub.hubdb.schema import UserRow

    t = create_token(db, "eve", "submitter")
    with db.write() as s:
        s.scalars(sa.select(UserRow).where(UserRow.name == "eve")).one().disabled = True
    with pytest.raises(AuthenticationError, match="disabled"):
        authenticate(db, t.token)


def test_a_verified_secret_skips_scrypt_but_never_revocation(db, settings, db_url, monkeypatch):
    """A repeated request with the same token pays no second scrypt (hubdb/tokencache.py); a wrong secret for a
    known token id still runs scrypt and fails; a revocation made by another process (another HubDB on the same
    database) is refused at once, cached or not."""
    from vlmhub.errors import AuthenticationError
    from vlmhub.hubdb import HubDB, auth

    tok = auth.create_token(db, "dana", "submitter").token
    calls = []
    real = auth._hash
    monkeypatch.setattr(auth, "_hash", lambda secret, salt: calls.append(1) or real(secret, salt))
    assert auth.authenticate(db, tok).user == "dana" and len(calls) == 1
    assert auth.authenticate(db, tok).user == "dana" and len(calls) == 1  # remembered
    assert tok.rsplit("_", 1)[1] not in repr(vars(db.verified_tokens))  # the secret itself is not kept
    wrong = tok[:-1] + ("A" if tok[-1] != "A" else "B")
    with pytest.raises(AuthenticationError):
        auth.authenticate(db, wrong)
    assert len(calls) == 2
    with HubDB(settings.with_(database_url=db_url)) as other:  # e.g. `vlmhub token revoke` in another process
        auth.revoke_token(other, tok)
    with pytest.raises(AuthenticationError, match="revoked"):
        auth.authenticate(db, tok)
