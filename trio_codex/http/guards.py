"""Who may call, and how often: the API-key check and the per-key rate limit.

Both are pure apart from the clock value passed in, so they are tested without a server.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from ..errors import AuthenticationError, RateLimitError


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: ``Authorization: Bearer <key>`` or ``x-api-key: <key>``."""
    auth = headers.get("authorization") or headers.get("Authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key") or headers.get("X-Api-Key")
    return key.strip() if key and key.strip() else None


def check_api_key(keys: Sequence[str], presented: str | None) -> str | None:
    """Return the matching key (None when auth is off); raise ``AuthenticationError`` otherwise.

    Every configured key is compared in constant time, whether or not an earlier one matched.
    """
    if not keys:
        return None
    if presented is None:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer <key>' "
            "or in the 'x-api-key' header.",
            code="missing_api_key",
        )
    given = presented.encode()
    match: str | None = None
    for key in keys:
        if hmac.compare_digest(key.encode(), given):
            match = key
    if match is None:
        raise AuthenticationError("Incorrect API key provided.")
    return match


def key_fingerprint(key: str) -> str:
    """A short stable name for a key, safe to log and to use as a rate-limit bucket."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:16]


class RateLimiter:
    """At most ``per_minute`` requests per bucket in any sliding 60-second window.

    Memory is bounded by the number of buckets active in the last minute times ``per_minute``.
    """

    WINDOW = 60.0

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[str, collections.deque[float]] = {}
        self._last_sweep = float("-inf")

    def check(self, bucket: str, now: float) -> None:
        """Count one request at ``now``; raise ``RateLimitError`` with ``retry_after`` if over."""
        if self.per_minute <= 0:
            return
        self._sweep(now)
        hits = self._hits.setdefault(bucket, collections.deque())
        while hits and hits[0] <= now - self.WINDOW:
            hits.popleft()
        if len(hits) >= self.per_minute:
            retry_after = hits[0] + self.WINDOW - now
            raise RateLimitError(
                f"Rate limit reached: {self.per_minute} requests per minute. "
                f"Please try again in {retry_after:.1f}s.",
                retry_after=retry_after,
            )
        hits.append(now)

    def _sweep(self, now: float) -> None:
        if now - self._last_sweep < self.WINDOW:
            return
        self._last_sweep = now
        stale = [b for b, h in self._hits.items() if not h or h[-1] <= now - self.WINDOW]
        for bucket in stale:
            del self._hits[bucket]
