"""Secrets this process has already verified, so a repeated request does not pay for scrypt again.

A token's check is a salted scrypt hash (about 16 MiB and tens of milliseconds, on purpose: a stolen table
of hashes is slow to attack). Paying it on every request of a busy client made token-authenticated routes the
slowest under load. :class:`VerifiedTokens` remembers, per token id, an HMAC-SHA256 of (token id, secret,
stored hash) under a random key made when the process starts: the secret itself is never kept, and a
different secret or a changed stored hash simply misses. The token's row is still read on every request, so
revocation, expiry and a disabled user take effect at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict

__all__ = ["VerifiedTokens"]


class VerifiedTokens:
    """A bounded, thread-safe memo of verified (token id, secret) pairs (least recently used dropped)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = int(max_entries)
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._tags: OrderedDict[str, bytes] = OrderedDict()

    def _tag(self, token_id: str, secret: str, stored_hash: str) -> bytes:
        msg = "\0".join((token_id, secret, stored_hash)).encode("utf-8", "replace")
        return hmac.new(self._key, msg, hashlib.sha256).digest()

    def known(self, token_id: str, secret: str, stored_hash: str) -> bool:
        """Whether this process verified exactly this secret for this token (and stored hash) before."""
        tag = self._tag(token_id, secret, stored_hash)
        with self._lock:
            have = self._tags.get(token_id)
            if have is None or not hmac.compare_digest(have, tag):
                return False
            self._tags.move_to_end(token_id)
            return True

    def remember(self, token_id: str, secret: str, stored_hash: str) -> None:
        """Record a secret that scrypt has just verified."""
        tag = self._tag(token_id, secret, stored_hash)
        with self._lock:
            self._tags[token_id] = tag
            self._tags.move_to_end(token_id)
            while len(self._tags) > self.max_entries:
                self._tags.popitem(last=False)

    def forget(self, token_id: str) -> None:
        with self._lock:
            self._tags.pop(token_id, None)

    def __len__(self) -> int:
        return len(self._tags)
