"""The operator's endpoints: ``GET /readyz`` (and ``/v1/readyz``).

``/readyz`` answers 200 with the readiness facts (``readiness.Readiness``) when a request would
get a run, else 503 with the same body, whose ``reasons`` say what is wrong. It is public, like
``/healthz`` (the cheap liveness check), and never starts a process.
"""

from __future__ import annotations

from quart import Response, jsonify
from quart_trio import QuartTrio

from ..readiness import Readiness


def register_ops(app: QuartTrio, readiness: Readiness) -> None:
    """Add the operator's endpoints to ``app``."""

    @app.get("/readyz")
    @app.get("/v1/readyz")
    async def readyz() -> Response:
        report = readiness.report()
        response = jsonify(report.body)
        response.status_code = 200 if report.ready else 503
        response.headers["Cache-Control"] = "no-store"
        return response
