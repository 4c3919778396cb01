"""The operator's endpoints: ``GET /readyz`` (and ``/v1/readyz``), ``GET /metrics``, and the
status page ``GET /status`` with its data, ``GET /status.json``.

``/readyz`` answers 200 with the readiness facts (``readiness.Readiness``) when a request would
get a run, else 503 with the same body, whose ``reasons`` say what is wrong. It is public, like
``/healthz`` (the cheap liveness check), and never starts a process.

``/metrics`` is the app's Prometheus registry (``http.metrics``). ``/status`` is one static
page (``status.html``: HTML and a little JavaScript, no build step) that reads ``/status.json``
every second (``http.live``: slots, queue, requests in flight with their age and model, recent
outcomes, tokens per key since start, readiness). Its Content-Security-Policy allows only its
own inline script and style (by hash) and requests to this origin; every value is inserted as
text. These three are open by default; with ``METRICS_REQUIRE_KEY=1`` they need an API key like
the API (``OPS_ROUTES``, checked by the app's guard), which may also come as the password of HTTP
Basic auth (``basic_password``), the one way a browser and every Prometheus can send it; a 401
there asks for Basic auth, so a browser prompts for it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.resources
import re
from collections.abc import Mapping
from typing import Final

import trio
from quart import Response, jsonify
from quart_trio import QuartTrio

from ..readiness import Readiness
from .live import LiveRequests
from .metrics import CONTENT_TYPE, Metrics

#: Endpoints behind ``METRICS_REQUIRE_KEY``.
OPS_ROUTES: Final = frozenset({"/metrics", "/status", "/status.json"})
#: The status page.
STATUS_PAGE: Final = importlib.resources.files(__package__).joinpath("status.html").read_bytes()
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


def _csp(page: bytes) -> str:
    """A policy that allows the page's own inline script and style (by hash), nothing else."""

    def hashes(tag: str) -> str:
        bodies = re.findall(rb"<%s>(.*?)</%s>" % (tag.encode(), tag.encode()), page, re.DOTALL)
        digests = (base64.b64encode(hashlib.sha256(body).digest()).decode() for body in bodies)
        return " ".join(f"'sha256-{digest}'" for digest in digests)

    return (
        f"default-src 'none'; script-src {hashes('script')}; style-src {hashes('style')}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


STATUS_CSP: Final = _csp(STATUS_PAGE)


def register_ops(
    app: QuartTrio, readiness: Readiness, metrics: Metrics, live: LiveRequests
) -> None:
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

    @app.get("/status")
    async def status_page() -> Response:
        response = Response(STATUS_PAGE, content_type="text/html; charset=utf-8")
        response.headers["Content-Security-Policy"] = STATUS_CSP
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.get("/status.json")
    async def status_json() -> Response:
        report = readiness.report()
        snapshot = live.snapshot(readiness.runner, trio.current_time())
        snapshot["server"] = {
            "ready": report.ready,
            "reasons": list(report.reasons),
            "backend": readiness.backend,
            "codex_version": readiness.version,
        }
        response = jsonify(snapshot)
        response.headers["Cache-Control"] = "no-store"
        return response
