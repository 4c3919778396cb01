"""The real Codex CLI when its upstream misbehaves: it never gives up by itself (CODEX_FACTS
section 4), so the server's deadlines must end the run.

* the upstream never sends response headers (``[[fake:mode=hang]]``);
* the upstream is unreachable (the provider's ``base_url`` is a closed port on 127.0.0.1): Codex
  prints "Reconnecting... waiting for network" now and then and waits for ever;
* the upstream stalls after ``response.created`` (``[[fake:mode=stall]]``).

Each ends at ``CODEX_TIMEOUT`` with 504 ``timeout`` and a message naming the setting (an error
frame on a stream), with every Codex process dead; ``CODEX_IDLE_TIMEOUT`` ends the same runs as
soon as Codex has printed nothing for that long. Real CLI: skipped outside CI when it is not
installed (``npm ci --prefix tests/node``), failed in CI.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.codex_cli import FakeUpstream
from tests.support.harness import (
    assert_no_process_in,
    check_error,
    check_stream,
    http_request,
    kill_all_in,
    raw_exchange,
)
from tests.support.servers import ServerFactory, serve_real_codex

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]

TIMEOUT = 3.0
IDLE = 1.5
GRACE = 0.5


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def serve_codex(
    tmp_path: Path, base_url: str, start_server: ServerFactory, **overrides: Any
) -> tuple[str, Path]:
    """The app running the real CLI against the upstream at ``base_url`` with a short kill
    grace; returns the server's URL and Codex's workdir."""
    server = await serve_real_codex(tmp_path, base_url, start_server, kill_grace=GRACE, **overrides)
    return server.url, server.settings.workdir


async def ask(url: str, prompt: str, *, stream: bool) -> tuple[float, int, dict[str, Any]]:
    """One chat request; returns (seconds, status, error) where the error is the response's
    or the stream's final error frame."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    body: dict[str, Any] = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": prompt}],
    }
    if stream:
        body["stream"] = True
    started = trio.current_time()
    response = await raw_exchange(host, int(port), http_request(host, int(port), body))
    seconds = trio.current_time() - started
    assert response is not None
    if stream:
        assert response.status == 200
        outcome = check_stream(response.body)
        assert outcome.error is not None, outcome
        return seconds, response.status, outcome.error
    return seconds, response.status, check_error(json.loads(response.body))


SCENARIOS = {
    "headers never come": "[[fake:mode=hang]]",
    "upstream unreachable": "",
    "stall after response.created": "[[fake:mode=stall]]",
}


def base_url_for(scenario: str, upstream: FakeUpstream) -> str:
    if scenario == "upstream unreachable":
        return f"http://127.0.0.1:{closed_port()}"
    return upstream.base_url


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_codex_timeout_ends_a_run_codex_never_ends(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, scenario: str
) -> None:
    """504 ``timeout`` at CODEX_TIMEOUT (not before, at most grace + 1 s after); Codex dead."""
    url, workdir = await serve_codex(
        tmp_path, base_url_for(scenario, upstream), start_server, timeout=TIMEOUT
    )
    try:
        with trio.fail_after(TIMEOUT + 20):
            seconds, status, error = await ask(url, f"Hi. {SCENARIOS[scenario]}", stream=False)
            await assert_no_process_in(workdir)
    finally:
        kill_all_in(workdir)
    assert status == 504
    assert error["code"] == "timeout"
    assert "CODEX_TIMEOUT (3 s)" in error["message"]
    assert TIMEOUT <= seconds <= TIMEOUT + GRACE + 1.0, seconds


async def test_codex_timeout_on_a_stream_is_an_error_frame(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """The same on a stream: the role chunk went out at once, the 504 comes as a final frame."""
    url, workdir = await serve_codex(tmp_path, upstream.base_url, start_server, timeout=TIMEOUT)
    try:
        with trio.fail_after(TIMEOUT + 20):
            seconds, _, error = await ask(url, "Hi. [[fake:mode=hang]]", stream=True)
            await assert_no_process_in(workdir)
    finally:
        kill_all_in(workdir)
    assert error["code"] == "timeout"
    assert "CODEX_TIMEOUT" in error["message"]
    assert TIMEOUT <= seconds <= TIMEOUT + GRACE + 1.0, seconds


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_idle_timeout_ends_it_sooner(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, scenario: str
) -> None:
    """With CODEX_IDLE_TIMEOUT the run ends once Codex has been silent that long, long before
    CODEX_TIMEOUT (30 s here)."""
    url, workdir = await serve_codex(
        tmp_path, base_url_for(scenario, upstream), start_server, timeout=30.0, idle_timeout=IDLE
    )
    try:
        with trio.fail_after(25):
            seconds, status, error = await ask(url, f"Hi. {SCENARIOS[scenario]}", stream=False)
            await assert_no_process_in(workdir)
    finally:
        kill_all_in(workdir)
    assert status == 504
    assert error["code"] == "timeout"
    assert "CODEX_IDLE_TIMEOUT" in error["message"]
    # Codex prints its last event within about a second of starting, then nothing.
    assert IDLE <= seconds <= IDLE + 1.5 + GRACE + 1.0, seconds
