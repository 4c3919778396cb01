"""Layer 1: ``trio_codex.errors``: the OpenAI error envelopes, their statuses and headers."""

from __future__ import annotations

import pytest

from trio_codex import errors


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (errors.InvalidRequestError("m", param="messages"), 400, "invalid_request_error", None),
        (errors.ContextLengthError("m"), 400, "invalid_request_error", "context_length_exceeded"),
        (errors.AuthenticationError("m"), 401, "invalid_request_error", "invalid_api_key"),
        (
            errors.NotFoundError("m", code="model_not_found"),
            404,
            "invalid_request_error",
            "model_not_found",
        ),
        (errors.RateLimitError("m", retry_after=2.2), 429, "requests", "rate_limit_exceeded"),
        (
            errors.UpstreamError("m", status=401, code="invalid_api_key"),
            401,
            "invalid_request_error",
            "invalid_api_key",
        ),
        (errors.UpstreamError("m"), 502, "server_error", "upstream_error"),
        (errors.QueueTimeoutError("m", retry_after=5), 503, "server_error", "queue_timeout"),
        (errors.ExecTimeoutError("m"), 504, "server_error", "timeout"),
    ],
)
def test_error_envelopes(
    error: errors.ServiceError, status: int, type_: str, code: str | None
) -> None:
    """Every error has the four OpenAI keys and its status."""
    assert error.status_code == status
    body = error.envelope()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_
    assert body["error"]["code"] == code


def test_retry_after_header_rounds_up() -> None:
    """Retry-After is whole seconds, at least 1."""
    assert errors.RateLimitError("m", retry_after=2.2).headers() == {"Retry-After": "3"}
    assert errors.QueueTimeoutError("m", retry_after=0.01).headers() == {"Retry-After": "1"}
    assert errors.ExecTimeoutError("m").headers() == {}
