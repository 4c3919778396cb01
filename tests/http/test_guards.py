"""Layer 1: ``trio_codex.http.guards``: the API-key check and the per-key rate limit, as plain
calls."""

from __future__ import annotations

import pytest

from trio_codex import errors
from trio_codex.http.guards import RateLimiter, check_api_key, presented_key


def test_api_key_from_bearer_or_x_api_key() -> None:
    """Both header forms are read; a wrong or missing key is a 401."""
    assert presented_key({"authorization": "Bearer k1"}) == "k1"
    assert presented_key({"x-api-key": "k2"}) == "k2"
    assert presented_key({"authorization": "Basic xyz"}) is None
    assert check_api_key(("k1", "k2"), "k2") == "k2"
    assert check_api_key((), None) is None
    with pytest.raises(errors.AuthenticationError):
        check_api_key(("k1",), "k3")
    with pytest.raises(errors.AuthenticationError):
        check_api_key(("k1",), None)


def test_rate_limiter_sliding_window() -> None:
    """N requests per 60 s per bucket; the next one waits for the oldest to age out."""
    limiter = RateLimiter(2)
    limiter.check("a", 0.0)
    limiter.check("a", 10.0)
    limiter.check("b", 10.0)
    with pytest.raises(errors.RateLimitError) as info:
        limiter.check("a", 20.0)
    assert info.value.retry_after == pytest.approx(40.0)
    limiter.check("a", 60.5)
    RateLimiter(0).check("a", 0.0)  # 0 = off
