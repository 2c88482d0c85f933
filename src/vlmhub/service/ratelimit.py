"""Request rates per client: a token bucket per bearer token (or per client address when anonymous).

Every client gets ``burst`` requests at once and then ``per_minute`` requests a minute, refilled
continuously. A request past that is answered ``429 Too Many Requests`` with an RFC 9457 problem body and a
``Retry-After`` header (whole seconds), before any of its body is read, so a flood costs the server a
dictionary lookup per request. ``per_minute=0`` turns the limit off (``VLMHUB_RATE_LIMIT=0``).

The key of a request with ``Authorization: Bearer <token>`` is a hash of the token (the token itself is
never kept), so each token has its own budget whatever address it comes from; a request without one is
keyed by its client address (behind a reverse proxy, run uvicorn with ``--proxy-headers`` so that address
is the real client's). ``/v1/health`` is never limited: monitors poll it.

:class:`RateLimiter` is the pure part (no I/O, an injectable clock, tests step time by hand);
:class:`RateLimitMiddleware` is the ASGI layer over it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from ..errors import ConfigError
from .problems import PROBLEM_JSON, problem, problem_bytes

__all__ = ["RateLimiter", "RateLimitMiddleware", "RateDecision", "client_key"]


@dataclass(frozen=True)
class RateDecision:
    """What the limiter said of one request: allowed or not, requests left now, seconds until one more."""

    allowed: bool
    remaining: int
    retry_after_s: float


class RateLimiter:
    """Token buckets, one per client key, of ``burst`` requests refilled at ``per_minute`` a minute.

    At most ``max_clients`` buckets are kept; past that the least recently seen client is forgotten (a
    forgotten client starts again with a full bucket, which only ever errs towards serving it).
    """

    def __init__(self, per_minute: int, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 100_000) -> None:
        for name, v, low in (("per_minute", per_minute, 0), ("burst", burst, 1), ("max_clients", max_clients, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"rate limit {name} must be a whole number >= {low} (got {v!r}); "
                                  f"set VLMHUB_RATE_LIMIT / VLMHUB_RATE_BURST to such a number.")
        self.per_minute = per_minute
        self.burst = burst
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    @property
    def enabled(self) -> bool:
        """False when ``per_minute`` is 0: every request is allowed."""
        return self.per_minute > 0

    def hit(self, key: str) -> RateDecision:
        """Count one request of ``key``; say whether it may go on."""
        if not self.enabled:
            return RateDecision(True, self.burst, 0.0)
        now = self._clock()
        rate = self.per_minute / 60.0
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + max(0.0, now - at) * rate)
        if tokens >= 1.0:
            tokens -= 1.0
            decision = RateDecision(True, int(tokens), 0.0)
        else:
            decision = RateDecision(False, 0, (1.0 - tokens) / rate)
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return decision

    def __len__(self) -> int:
        return len(self._buckets)


def client_key(scope: dict) -> tuple[str, str]:
    """(bucket key, words for the client) of an ASGI request: a hash of its bearer token, else its address."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                digest = hashlib.sha256(token.strip().encode("utf-8", "replace")).hexdigest()[:32]
                return f"token:{digest}", "this token"
    client = scope.get("client")
    host = client[0] if client else "unknown"
    return f"addr:{host}", f"the client at {host}"


class RateLimitMiddleware:
    """Pure ASGI middleware: a 429 problem (with ``Retry-After``) for a client past its :class:`RateLimiter`."""

    def __init__(self, app, per_minute: int, burst: int, *, exempt: tuple[str, ...] = ("/v1/health",),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.limiter = RateLimiter(per_minute, burst, clock=clock)
        self.exempt = tuple(exempt)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not self.limiter.enabled or (scope.get("path") or "") in self.exempt:
            await self.app(scope, receive, send)
            return
        key, who = client_key(scope)
        d = self.limiter.hit(key)
        if d.allowed:
            await self.app(scope, receive, send)
            return
        wait = max(1, math.ceil(d.retry_after_s))
        lim = self.limiter
        body = problem_bytes(problem(
            429, "rate-limited",
            f"{who} sent more than {lim.per_minute} requests a minute (bursts of up to {lim.burst}); "
            f"retry after {wait} s. An operator can raise the limit with VLMHUB_RATE_LIMIT and VLMHUB_RATE_BURST.",
            title="Too many requests", retry_after=wait))
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(wait).encode())]})
        await send({"type": "http.response.body", "body": body})
