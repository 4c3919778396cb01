"""The operator's endpoints: ``GET /readyz`` (and ``/v1/readyz``) and ``GET /metrics``.

``/readyz`` answers 200 with the readiness facts (``readiness.Readiness``) when a request would
get a run, else 503 with the same body, whose ``reasons`` say what is wrong. It is public, like
``/healthz`` (the cheap liveness check), and never starts a process.

``/metrics`` is the app's Prometheus registry (``http.metrics``). It is open by default; with
``METRICS_REQUIRE_KEY=1`` it needs an API key like the API (``OPS_ROUTES``, checked by the app's
guard), which may also come as the password of HTTP Basic auth (``basic_password``), the one way
a browser and every Prometheus can send it; a 401 there asks for Basic auth.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Final

from quart import Response, jsonify
from quart_trio import QuartTrio

from ..readiness import Readiness
from .metrics import CONTENT_TYPE, Metrics

#: Endpoints behind ``METRICS_REQUIRE_KEY``.
OPS_ROUTES: Final = frozenset({"/metrics"})
#: The challenge a 401 on an operator's endpoint carries.
BASIC_CHALLENGE: Final = 'Basic realm="trio_codex", charset="UTF-8"'


def basic_password(headers: Mapping[str, str]) -> str | None:
    """The password of ``Authorization: Basic`` (the user name is ignored), or None."""
    auth = headers.get("authorization") or headers.get("Authorization") or ""
    scheme, _, value = auth.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    _user, sep, password = decoded.partition(":")
    return password if sep and password else None


def register_ops(app: QuartTrio, readiness: Readiness, metrics: Metrics) -> None:
    """Add the operator's endpoints to ``app``."""

    @app.get("/readyz")
    @app.get("/v1/readyz")
    async def readyz() -> Response:
        report = readiness.report()
        response = jsonify(report.body)
        response.status_code = 200 if report.ready else 503
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/metrics")
    async def metrics_text() -> Response:
        return Response(metrics.exposition(), content_type=CONTENT_TYPE)
