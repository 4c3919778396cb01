"""The errors the service answers with, each carrying its OpenAI envelope and HTTP status.

Every failure a client can see is one of these, raised anywhere and turned into
``{"error": {"message", "type", "param", "code"}}`` at the HTTP edge (or into an in-stream error
frame once a stream has started)::

    ServiceError                      500 server_error
    ├── InvalidRequestError           400 invalid_request_error   (param names the field)
    │   ├── ContextLengthError        400 code context_length_exceeded
    │   └── LocalOnlyViolationError   400 code local_only_violation
    ├── AuthenticationError           401 code invalid_api_key
    ├── PermissionDeniedError         403 (code sandbox_not_allowed, ...)
    ├── NotFoundError                 404 (code model_not_found, ...)
    ├── MethodNotAllowedError         405
    ├── RequestTimeoutError           408 code request_timeout (the body did not arrive in time)
    ├── ConflictError                 409
    ├── PayloadTooLargeError          413
    ├── RateLimitError                429 code rate_limit_exceeded, Retry-After
    ├── UpstreamError                 502 (or the status Codex's failure maps to)
    ├── QueueTimeoutError             503 code queue_timeout, Retry-After
    ├── UpstreamUnreachableError      503 code upstream_unreachable
    ├── CodexUnavailableError         503 code codex_unavailable (Codex cannot be started)
    └── ExecTimeoutError              504 code timeout

Nothing here imports trio or Quart: the tree is plain data plus ``envelope()``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class ServiceError(Exception):
    """An error with an HTTP status and an OpenAI error envelope."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    default_code: ClassVar[str | None] = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code if code is not None else self.default_code
        self.retry_after = retry_after
        self.status_code = status if status is not None else self.status

    def envelope(self) -> dict[str, Any]:
        """The body OpenAI clients expect: all four keys present."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    @property
    def error_type(self) -> str:
        return self.type

    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` in whole seconds, never 0)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class InvalidRequestError(ServiceError):
    status = 400
    type = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    default_code = "context_length_exceeded"


class LocalOnlyViolationError(InvalidRequestError):
    default_code = "local_only_violation"


class AuthenticationError(ServiceError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(ServiceError):
    status = 403
    type = "invalid_request_error"


class NotFoundError(ServiceError):
    status = 404
    type = "invalid_request_error"


class MethodNotAllowedError(ServiceError):
    status = 405
    type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestTimeoutError(ServiceError):
    """The request body did not arrive in time; the connection is closed after the answer (the
    rest of the body may never come, so it cannot carry another request)."""

    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Connection": "close"}


class ConflictError(ServiceError):
    status = 409
    type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLargeError(ServiceError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimitError(ServiceError):
    status = 429
    type = "requests"
    default_code = "rate_limit_exceeded"


class UpstreamError(ServiceError):
    """Codex ran but its turn failed; ``status`` is what the failure maps to (502 by default)."""

    status = 502
    type = "server_error"
    default_code = "upstream_error"

    @property
    def error_type(self) -> str:
        # A mapped client-side failure (401/404/400) reads as a request error, like OpenAI's.
        if self.status_code == 429:
            return "insufficient_quota" if self.code == "insufficient_quota" else "requests"
        if 400 <= self.status_code < 500:
            return "invalid_request_error"
        return "server_error"


class QueueTimeoutError(ServiceError):
    status = 503
    type = "server_error"
    default_code = "queue_timeout"


class UpstreamUnreachableError(ServiceError):
    """Codex cannot reach its model provider (it waits for the network without end)."""

    status = 503
    type = "server_error"
    default_code = "upstream_unreachable"


class CodexUnavailableError(ServiceError):
    """Codex could not be started at all (binary missing, out of descriptors, ...); the
    message names the cause. ``Retry-After`` when the cause is likely to pass."""

    status = 503
    type = "server_error"
    default_code = "codex_unavailable"


class ExecTimeoutError(ServiceError):
    status = 504
    type = "server_error"
    default_code = "timeout"
