"""``/v1/responses``: the Responses API (filled in by the Responses issue)."""

from __future__ import annotations

from quart_trio import QuartTrio

from .service import Service


def register_responses(app: QuartTrio, service: Service) -> None:
    """Add ``POST /v1/responses`` (and ``/responses``) to ``app``."""
