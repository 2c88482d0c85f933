"""Accounts and API tokens: roles ``reader < submitter < admin``, a salted scrypt hash only, expiry and revocation.

>>> issued = create_token(db, "alice", Role.SUBMITTER)       # issued.token is shown once, never stored
>>> authenticate(db, issued.token)
Principal(user='alice', role=<Role.SUBMITTER: 'submitter'>, token_id='...')

A token reads ``vlmhub_<token id>_<secret>``: the 12-hex-digit token id is the public lookup key (it is what
``vlmhub token list`` shows and ``revoke`` takes); the 256-bit secret is checked against
``scrypt(secret, salt, n=2**14, r=8, p=1)`` with a random 16-byte salt per token, compared in constant time,
once per process and token: a repeated request is matched against an HMAC this process keeps
(:mod:`~vlmhub.hubdb.tokencache`), while the token's row (revoked, expired, user disabled) is read every time.
Every failure is an :class:`~vlmhub.errors.AuthenticationError` (HTTP 401) with one message per cause; a missing
role is a :class:`~vlmhub.errors.PermissionDenied` (HTTP 403). Creating and revoking tokens is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from . import _deps  # noqa: F401

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import AuthenticationError, ConfigError, NotFoundError, PermissionDenied
from .schema import Role, TokenRow, UserRow, utcnow

if TYPE_CHECKING:
    from .engine import HubDB

__all__ = ["Principal", "TokenInfo", "IssuedToken", "create_token", "authenticate", "list_tokens", "revoke_token",
           "require_role", "ensure_user", "TOKEN_PREFIX", "USER_RE"]

TOKEN_PREFIX = "vlmhub_"
USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,99}$")
_TOKEN_RE = re.compile(r"^vlmhub_([0-9a-f]{12})_([A-Za-z0-9_\-]{43})$")
_SCHEME = "scrypt:n=16384,r=8,p=1"
_LAST_USED_GRANULARITY = timedelta(seconds=60)  # last_used_at is written at most once a minute per token


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the user name, the token's role and the token id."""

    user: str
    role: Role
    token_id: str | None = None

    def allows(self, role: Role | str) -> bool:
        return self.role.allows(Role(role))

    def require(self, role: Role | str) -> "Principal":
        """Self if this principal has ``role`` (or a higher one), else :class:`PermissionDenied`."""
        return require_role(self, role)


@dataclass(frozen=True)
class TokenInfo:
    """A stored token as listed (never the secret)."""

    token_id: str
    user: str
    role: Role
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    note: str

    def active(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def to_dict(self) -> dict:
        iso = lambda t: t.isoformat() if t else None  # noqa: E731
        return {"token_id": self.token_id, "user": self.user, "role": self.role.value, "created_at": iso(self.created_at),
                "expires_at": iso(self.expires_at), "revoked_at": iso(self.revoked_at),
                "last_used_at": iso(self.last_used_at), "note": self.note, "active": self.active()}


@dataclass(frozen=True)
class IssuedToken:
    """A newly created token: ``token`` is the plaintext, shown to its owner once and stored nowhere."""

    token: str
    info: TokenInfo


def _hash(secret: str, salt: bytes) -> str:
    return hashlib.scrypt(secret.encode("ascii"), salt=salt, n=16384, r=8, p=1, dklen=32, maxmem=64 * 1024 * 1024).hex()


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise ConfigError(f"unknown role {role!r}; use one of {', '.join(r.value for r in Role)}.") from None


def _info(row: TokenRow, user: str) -> TokenInfo:
    return TokenInfo(row.token_id, user, row.role, row.created_at, row.expires_at, row.revoked_at, row.last_used_at, row.note)


def ensure_user(session: Session, name: str) -> UserRow:
    """The user ``name``, created if new (names: 1-100 letters, digits, ``_ . @ -``)."""
    if not isinstance(name, str) or not USER_RE.match(name):
        raise ConfigError(f"invalid user name {name!r}: use 1-100 letters, digits, '_', '.', '@' or '-', "
                          "starting with a letter or digit.")
    row = session.scalars(select(UserRow).where(UserRow.name == name)).one_or_none()
    if row is None:
        row = UserRow(name=name, created_at=utcnow(), disabled=False)
        session.add(row)
        session.flush()
    return row


def create_token(db: "HubDB", user: str, role: Role | str, *, expires_in: timedelta | None = None, note: str = "",
                 actor: str | None = None) -> IssuedToken:
    """Create a token for ``user`` (created if new) with ``role``; return it with its plaintext (shown once).

    ``expires_in``: lifetime (default: until revoked). ``actor`` is recorded in the audit log.
    """
    role = _role(role)
    if expires_in is not None and expires_in <= timedelta(0):
        raise ConfigError(f"a token lifetime must be positive (got {expires_in}); give e.g. 30 days.")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    now = utcnow()
    with db.write() as s:
        u = ensure_user(s, user)
        row = TokenRow(token_id=token_id, user_id=u.id, role=role, scheme=_SCHEME, salt=salt.hex(), hash=_hash(secret, salt),
                       created_at=now, expires_at=now + expires_in if expires_in is not None else None,
                       revoked_at=None, last_used_at=None, note=str(note)[:200])
        s.add(row)
        db.audit(s, actor, "token.create", user, token_id=token_id, role=role.value,
                 expires_at=row.expires_at.isoformat() if row.expires_at else None)
        info = _info(row, u.name)
    return IssuedToken(f"{TOKEN_PREFIX}{token_id}_{secret}", info)


_DUMMY_SALT = bytes(16)


def authenticate(db: "HubDB", token: str | None) -> Principal:
    """The principal a bearer token stands for, or :class:`AuthenticationError` (missing, malformed, unknown,
    revoked, expired, or its user disabled)."""
    if not token:
        raise AuthenticationError("no token given. Send 'Authorization: Bearer <token>' with a token from "
                                  "`vlmhub token create`.")
    m = _TOKEN_RE.match(token.strip()) if isinstance(token, str) else None
    if m is None:
        raise AuthenticationError("the token is malformed (expected vlmhub_<12 hex digits>_<43 characters>). "
                                  "Copy it again, or create a new one with `vlmhub token create`.")
    token_id, secret = m.groups()
    with db.session() as s:
        hit = s.execute(select(TokenRow, UserRow).join(UserRow, TokenRow.user_id == UserRow.id)
                        .where(TokenRow.token_id == token_id)).one_or_none()
    if hit is None:
        _hash(secret, _DUMMY_SALT)  # the same work as a real check: no timing hint that a token id exists
        raise AuthenticationError("the token is not valid. Ask an admin for a token (`vlmhub token create`).")
    row, user = hit
    seen = db.verified_tokens
    if not seen.known(token_id, secret, row.hash):  # scrypt once per process and token (hubdb/tokencache.py)
        if not hmac.compare_digest(_hash(secret, bytes.fromhex(row.salt)), row.hash):
            raise AuthenticationError("the token is not valid. Ask an admin for a token (`vlmhub token create`).")
        seen.remember(token_id, secret, row.hash)
    now = utcnow()
    if row.revoked_at is not None:
        raise AuthenticationError(f"token {token_id} was revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC. "
                                  "Ask an admin for a new one.")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError(f"token {token_id} expired on {row.expires_at:%Y-%m-%d %H:%M} UTC. "
                                  "Ask an admin for a new one.")
    if user.disabled:
        raise AuthenticationError(f"user {user.name!r} is disabled. Ask an admin to enable the account.")
    if row.last_used_at is None or now - row.last_used_at >= _LAST_USED_GRANULARITY:
        with db.write() as s:
            live = s.get(TokenRow, token_id)
            if live is not None:
                live.last_used_at = now
    return Principal(user.name, row.role, token_id)


def require_role(principal: Principal | None, role: Role | str) -> Principal:
    """``principal`` if it has ``role`` or a higher one; :class:`AuthenticationError` when there is none (anonymous),
    :class:`PermissionDenied` when its role is too low."""
    role = _role(role)
    if principal is None:
        raise AuthenticationError(f"this needs a {role.value} token. Send 'Authorization: Bearer <token>'.")
    if not principal.role.allows(role):
        raise PermissionDenied(f"user {principal.user!r} has role {principal.role.value}; this needs {role.value}. "
                               f"Ask an admin for a {role.value} token.")
    return principal


def list_tokens(db: "HubDB", user: str | None = None) -> list[TokenInfo]:
    """Every token (of ``user``, when given), oldest first; secrets are never stored, so none are shown."""
    with db.session() as s:
        q = select(TokenRow, UserRow.name).join(UserRow, TokenRow.user_id == UserRow.id)
        if user is not None:
            q = q.where(UserRow.name == user)
        return [_info(t, name) for t, name in s.execute(q.order_by(TokenRow.created_at, TokenRow.token_id))]


def revoke_token(db: "HubDB", token_id: str, *, actor: str | None = None) -> TokenInfo:
    """Revoke a token by its id (idempotent: a revoked token stays revoked at its first revocation time)."""
    if isinstance(token_id, str) and token_id.startswith(TOKEN_PREFIX):
        m = _TOKEN_RE.match(token_id)
        token_id = m.group(1) if m else token_id
    db.verified_tokens.forget(token_id)
    with db.write() as s:
        row = s.get(TokenRow, token_id)
        if row is None:
            raise NotFoundError(f"no token with id {token_id!r}. Run `vlmhub token list` for the ids.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            user = s.get(UserRow, row.user_id)
            db.audit(s, actor, "token.revoke", user.name if user else "?", token_id=token_id)
        name = s.get(UserRow, row.user_id).name
        return _info(row, name)
