"""Who may call, and how often: the API-key check, the limit on failed key attempts per client
address, and the per-key rate limit.

All are pure apart from the clock value passed in, so they are tested without a server.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import ipaddress
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


def _address_bucket(address: str | None) -> str:
    """The client a failed attempt is charged to: the IPv4 address, or the IPv6 /64 (one host
    commonly owns a whole /64, so rotating the low bits buys nothing)."""
    if address is None:
        return "-"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)


class FailedAuthLimiter:
    """The API-key check, with at most ``max_failures`` wrong keys per client address in any
    sliding 60-second window.

    Past that, every attempt from the address is refused with 429 ``rate_limit_exceeded`` and
    ``Retry-After`` until its oldest failure leaves the window, *before* the key is compared:
    a right guess cannot be told from a wrong one while the address is locked out. A missing
    key and a right key cost nothing. Memory is bounded by ``max_addresses`` addresses of at
    most ``max_failures`` timestamps each (the least recently failing addresses are forgotten
    first).
    """

    WINDOW = 60.0

    def __init__(
        self, keys: Sequence[str], *, max_failures: int = 10, max_addresses: int = 65536
    ) -> None:
        self.keys = tuple(keys)
        self.max_failures = max_failures
        self.max_addresses = max_addresses
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    @property
    def tracked(self) -> int:
        """How many addresses have failures on record."""
        return len(self._failures)

    def check(self, presented: str | None, address: str | None, now: float) -> str | None:
        """``check_api_key`` for a client at ``address``: the matching key (None when auth is
        off); ``RateLimitError`` while the address is locked out; ``AuthenticationError``
        otherwise (a wrong key is recorded against the address)."""
        if not self.keys:
            return None
        bucket = _address_bucket(address)
        failures = self._failures.get(bucket)
        if failures is not None:
            while failures and failures[0] <= now - self.WINDOW:
                failures.popleft()
            if len(failures) >= self.max_failures:
                retry_after = failures[0] + self.WINDOW - now
                raise RateLimitError(
                    f"Too many failed API key attempts from this address; try again in "
                    f"{retry_after:.1f}s.",
                    retry_after=retry_after,
                )
        try:
            return check_api_key(self.keys, presented)
        except AuthenticationError as exc:
            if exc.code == "invalid_api_key":
                self._record(bucket, now)
            raise

    def _record(self, bucket: str, now: float) -> None:
        failures = self._failures.pop(bucket, None) or collections.deque()
        failures.append(now)
        while len(failures) > self.max_failures:
            failures.popleft()
        self._failures[bucket] = failures  # most recent last
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


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
