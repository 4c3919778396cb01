"""The app under test: in process (``app.test_app()``, with ``post_stream`` to read a
Responses stream as it arrives), on a real Hypercorn with the fake codex
or with the real Codex CLI against the fake upstream, and the sync ``openai`` client run in a
worker thread against it."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar, cast

import openai
import pytest
import trio
import trio.testing
from quart_trio import QuartTrio
from quart_trio.testing import connections as quart_connections

from tests.support.codex_cli import (
    FAKE_API_KEY,
    find_codex_cli,
    native_codex_binary,
    private_home,
    write_codex_home,
)
from tests.support.fakes import TEST_CATALOG, make_settings
from tests.support.spec import stream_events
from trio_codex import create_app
from trio_codex.api import components
from trio_codex.run.runner import CodexRunner
from trio_codex.service import Service
from trio_codex.settings import Settings

T = TypeVar("T")


@asynccontextmanager
async def running_app(
    tmp_path: Path,
    backend: Any,
    *,
    environ: Mapping[str, str] | None = None,
    backend_name: str | None = None,
    **settings: Any,
) -> AsyncIterator[QuartTrio]:
    """The app in process (``app.test_app()``) with ``backend`` and the test catalog;
    ``backend_name`` is the ``CODEX_BACKEND`` the app believes it runs (``backend`` runs)."""
    if backend_name is not None:
        settings["backend"] = backend_name
    app = create_app(
        make_settings(tmp_path, **settings), backend=backend, catalog=TEST_CATALOG, environ=environ
    )
    async with app.test_app():
        yield app


def service_of(app: QuartTrio) -> Service:
    return components(app).service


def runner_of(app: QuartTrio) -> CodexRunner:
    return service_of(app).runner


async def park_a_tool_turn(app: QuartTrio) -> None:
    """Ask the app (scripted backend, ``backend_name="app-server"``) for a chat answer whose
    model calls ``get_weather``; return once that run is parked on the tool's result."""
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "[[run:call=get_weather]]"}],
        "tools": tools,
    }
    r = await app.test_client().post("/v1/chat/completions", json=body)
    assert (await r.get_json())["choices"][0]["finish_reason"] == "tool_calls"
    await trio.testing.wait_all_tasks_blocked()


def scratch_root(app: QuartTrio, tmp_path: Path) -> Path:
    """Make the app create its request scratch directories under a fresh test directory."""
    root = tmp_path / "scratch"
    root.mkdir()
    service_of(app).scratch_root = root
    return root


# --------------------------------------------------------------------------- Responses streams


@dataclasses.dataclass
class Streamed:
    """A response read chunk by chunk, with the virtual time each chunk arrived."""

    status: int
    chunks: list[tuple[float, bytes]]

    @property
    def text(self) -> str:
        return b"".join(c for _, c in self.chunks).decode()

    @property
    def events(self) -> list[dict[str, Any]]:
        return stream_events(self.text)


async def post_stream(
    app: QuartTrio, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Streamed:
    """POST ``body`` to /v1/responses and read the body as it arrives (the test client's
    ``post`` holds only 10 chunks until the handler returns, so long streams need this)."""
    async with app.test_client().request(
        "/v1/responses",
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    ) as connection:
        await connection.send(json.dumps(body).encode())
        await connection.send_complete()
        chunks: list[tuple[float, bytes]] = []
        while True:
            try:
                chunk = await connection.receive()
            except trio.EndOfChannel:
                break
            chunks.append((trio.current_time(), chunk))
        status = cast(quart_connections.TestHTTPConnection, connection).status_code
    assert status is not None
    return Streamed(status, chunks)


# --------------------------------------------------------------------------- real Hypercorn


ServerFactory = Callable[[object], Awaitable[str]]
"""What the ``start_server`` fixture returns: ``await start_server(app)`` serves ``app`` on a
real Hypercorn (127.0.0.1, port 0) for the rest of the test and returns its base URL."""


async def serve_fake(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory, **overrides: Any
) -> str:
    """The app on real Hypercorn running the fake codex (test catalog, minimal environment);
    returns its ``/v1`` URL."""
    settings = make_settings(tmp_path, codex_path=fake_codex, **overrides)
    app = create_app(
        settings, catalog=TEST_CATALOG, environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    )
    return await start_server(app) + "/v1"


# --------------------------------------------------------------------------- the real Codex CLI


def skip_or_fail(message: str) -> NoReturn:
    """Skip the test with ``message`` (a missing optional tool), or fail it when ``CI`` is set."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require_codex_cli(*, native: bool = True) -> Path:
    """The real Codex CLI to test (``codex_cli.find_codex_cli``).

    With ``native`` (the default) the platform-native binary behind the npm launcher when one is
    found, else the CLI itself.  Skips the test when no CLI is installed; fails it in CI.
    """
    cli = find_codex_cli()
    if cli is None:
        skip_or_fail(
            "Codex CLI not installed: run npm ci --prefix tests/node (or set TRIO_CODEX_TEST_CODEX)"
        )
    return (native_codex_binary(cli) or cli) if native else cli


@dataclasses.dataclass
class RealCodexServer:
    """The app served by ``serve_real_codex``."""

    app: QuartTrio
    settings: Settings
    url: str
    """The server's root, ``http://127.0.0.1:<port>``."""

    @property
    def v1(self) -> str:
        """The OpenAI base URL, ``<url>/v1``."""
        return self.url + "/v1"


async def serve_real_codex(
    tmp_path: Path,
    upstream_url: str,
    start_server: ServerFactory,
    *,
    codex_path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> RealCodexServer:
    """The app on real Hypercorn, running the real Codex CLI against the fake upstream at
    ``upstream_url``.

    ``CODEX_HOME`` is ``tmp_path/codex-home`` with only the fake as provider
    (``codex_cli.write_codex_home``).  ``codex_path`` defaults to ``require_codex_cli()`` (so
    the test skips, or fails in CI, without the CLI); ``environ`` (the server's environment,
    which Codex inherits from) to PATH, an empty ``HOME`` (``tmp_path/home``) and
    ``FAKE_API_KEY``.  ``overrides`` are further settings.
    """
    codex_home = write_codex_home(tmp_path / "codex-home", upstream_url)
    home = private_home(tmp_path)
    settings = make_settings(
        tmp_path,
        codex_path=codex_path or require_codex_cli(),
        codex_home=codex_home,
        **overrides,
    )
    if environ is None:
        environ = {
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": str(home),
            "FAKE_API_KEY": FAKE_API_KEY,
        }
    app = create_app(settings, environ=environ)
    return RealCodexServer(app, settings, await start_server(app))


# --------------------------------------------------------------------------- the openai SDK


async def in_thread(fn: Callable[[], T], *, fail_after: float = 30.0) -> T:
    """Run a blocking call (a sync SDK client) in a worker thread, so the server keeps running
    on the test's trio loop; fail after ``fail_after`` seconds."""
    with trio.fail_after(fail_after):
        return await trio.to_thread.run_sync(fn)


def sdk(base_url: str, key: str = "unused", *, timeout: float = 60.0) -> openai.OpenAI:
    """A sync ``openai`` client that never retries (so a status is observed exactly once)."""
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)


ignore_sdk_stream_gc = pytest.mark.filterwarnings(
    # The SDK leaves its own stream generators to the garbage collector after a stream ends
    # ([DONE] on chat completions).
    r"ignore:Exception ignored in. <async_generator object (PoolByteStream|Response\.aiter|SSEDecoder|AsyncStream)"
    ":pytest.PytestUnraisableExceptionWarning"
)
"""Mark for tests of ``openai.AsyncOpenAI`` streams on trio."""


class SdkClientFactory(Protocol):
    def __call__(self, base_url: str, key: str = "sk-test") -> openai.OpenAI: ...
