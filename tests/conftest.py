"""The fixtures every test folder shares: the scripted backend, the fake codex executable, a
real Hypercorn on port 0, the fake Responses upstream, sync ``openai`` clients closed after the
test, and a guard against HTTP requests. Plain helpers live in ``tests.support``."""

from __future__ import annotations

import stat
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import openai
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from tests.support.codex_cli import FakeUpstream
from tests.support.fakes import ScriptedBackend
from tests.support.paths import FAKE_APP_SERVER_SCRIPT, FAKE_CODEX_SCRIPT
from tests.support.servers import SdkClientFactory, ServerFactory, sdk
from trio_codex.settings import BACKENDS, BackendName


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture(scope="session")
def fake_codex(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake codex as an executable whose interpreter is this test run's Python; it speaks
    ``exec`` and, through the fake app-server beside it, ``app-server``."""
    bin_dir = tmp_path_factory.mktemp("bin")
    path = bin_dir / "codex"
    source = FAKE_CODEX_SCRIPT.read_text()
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    (bin_dir / "fake_app_server.py").write_text(FAKE_APP_SERVER_SCRIPT.read_text())
    return path


@pytest.fixture(params=[b for b in BACKENDS if b != "auto"])
def codex_backend(request: pytest.FixtureRequest) -> BackendName:
    """Each ``CODEX_BACKEND`` in turn (ids ``exec`` and ``app-server``), for a test that runs
    the fake codex (or the real CLI) and holds for both (``auto`` is one of them once resolved:
    ``tests/test_backend_choice.py``)."""
    name: BackendName = request.param
    return name


@pytest.fixture
async def start_server(nursery: trio.Nursery) -> ServerFactory:
    """Start a real Hypercorn (trio worker) for an app on 127.0.0.1:0; returns its base URL."""

    async def start(app: object) -> str:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1.0
        binds: list[str] = await nursery.start(partial(serve, app, config))  # type: ignore[arg-type]
        return binds[0]

    return start


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A fake Responses upstream (``tests/support/fake_upstream.py``) on 127.0.0.1, stopped
    after the test."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def sdk_client() -> Iterator[SdkClientFactory]:
    """``sdk_client(base_url, key="sk-test")``: a sync SDK client (20 s timeout, no retries),
    closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(base_url: str, key: str = "sk-test") -> openai.OpenAI:
        client = sdk(base_url, key, timeout=20)
        clients.append(client)
        return client

    yield make
    while clients:
        clients.pop().close()


@pytest.fixture
def no_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[httpx.Request]]:
    """Fail the test if anything (an image fetch) sends an HTTP request through httpx."""
    attempts: list[httpx.Request] = []

    async def refuse(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> None:
        attempts.append(request)
        raise AssertionError(f"a request was sent to {request.url}")

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", refuse)
    yield attempts
    assert attempts == []
