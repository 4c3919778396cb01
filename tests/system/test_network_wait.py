"""The real Codex CLI pointed at a closed port ends early with a 503 that names the cause
(``CODEX_NETWORK_WAIT_SECONDS``); the same rule on virtual time is
``tests/http/test_network_wait.py``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from tests.support.harness import chat_body
from tests.support.servers import ServerFactory, serve_real_codex


@pytest.mark.slow
@pytest.mark.realcodex
async def test_real_codex_with_no_route_to_its_provider_fails_fast(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    """The real CLI pointed at a closed port: a 503 naming Codex's own notice within seconds,
    not a silent wait until CODEX_TIMEOUT (600 s)."""
    server = await serve_real_codex(
        tmp_path, "http://127.0.0.1:9", start_server, timeout=600.0, network_wait=2.0
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        with trio.fail_after(30):
            r = await client.post("/v1/chat/completions", json=chat_body(model="fake-model"))
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "upstream_unreachable"
    assert "waiting for network" in error["message"]
