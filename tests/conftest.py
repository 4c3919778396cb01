"""Shared fixtures and helpers: settings for tests, a scripted in-process backend, the fake codex
executable, a real Hypercorn server on port 0, the app on it with the fake codex or with the real
Codex CLI against the fake upstream, sync ``openai`` clients run in worker threads, and the FIFO
the fake codex reports its pids on."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

import httpx
import openai
import pytest
import trio
from codex_cli import (
    FAKE_API_KEY,
    FakeUpstream,
    find_codex_cli,
    native_codex_binary,
    private_home,
    write_codex_home,
)
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from trio_codex import create_app
from trio_codex.api import components
from trio_codex.codex.models import ModelCatalog
from trio_codex.run.events import (
    CodexEvent,
    ErrorEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ThreadStarted,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
)
from trio_codex.run.runner import CodexRunner, ExitInfo, RunSpec
from trio_codex.service import Service
from trio_codex.settings import Settings

TESTS = Path(__file__).parent
DIRECTIVE = re.compile(r"\[\[run:([^\]]*)\]\]")
T = TypeVar("T")


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test: private workdir and CODEX_HOME under ``tmp_path``."""
    workdir = tmp_path / "work"
    home = tmp_path / "codex-home"
    workdir.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "workdir": workdir,
        "codex_home": home,
        "codex_path": Path(sys.executable),
        "kill_grace": 0.5,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


TEST_CATALOG = ModelCatalog.from_slugs(
    {"gpt-test": ("low", "medium", "high"), "org/gpt-test-2": ("low",)}, created=1_700_000_000
)


@dataclasses.dataclass
class RunRecord:
    spec: RunSpec
    started_at: float
    ended_at: float | None = None
    cancelled: bool = False


class ScriptedBackend:
    """An in-process backend driven by a ``[[run:key=value;...]]`` directive in the prompt.

    Keys: ``sleep`` (virtual seconds before answering), ``linger`` (seconds between
    ``turn.completed`` and exit), ``reply``, ``fail`` (a failure
    message), ``crash`` (raise inside the backend), ``chunks`` (messages). Records every run
    so tests can assert exact virtual times.

    More keys: ``silent`` (virtual seconds before the first event), ``thread`` (the thread
    id; default the resumed thread, else ``thread-1``), ``reasoning`` (a reasoning item
    first), ``replies`` (messages separated by ``|``, instead of ``chunks`` x ``reply``),
    ``deltas`` (stream each message as that many ``TextDelta`` pieces before it completes),
    ``usage`` (``input,cached,output,reasoning`` of ``turn.completed``) and ``fail_late``
    (fail with this message after the messages).
    """

    def __init__(self) -> None:
        self.runs: list[RunRecord] = []
        self.running = 0
        self.max_running = 0

    async def run(self, spec: RunSpec, emit: Callable[[CodexEvent], Awaitable[None]]) -> ExitInfo:
        record = RunRecord(spec, trio.current_time())
        self.runs.append(record)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        found = DIRECTIVE.findall(spec.prompt)
        opts = dict(p.split("=", 1) for p in found[-1].split(";") if "=" in p) if found else {}
        try:
            if "silent" in opts:
                await trio.sleep(float(opts["silent"]))
            await emit(ThreadStarted(opts.get("thread", spec.resume_thread_id or "thread-1")))
            await emit(TurnStarted())
            await trio.sleep(float(opts.get("sleep", 0)))
            if "crash" in opts:
                raise RuntimeError("backend crashed")
            if "fail" in opts:
                await emit(ErrorEvent(opts["fail"]))
                await emit(TurnFailed(opts["fail"]))
                return ExitInfo(1, "")
            if "reasoning" in opts:
                await emit(ReasoningCompleted("item_r", opts["reasoning"]))
            replies = (
                opts["replies"].split("|")
                if "replies" in opts
                else [opts.get("reply", "hello")] * int(opts.get("chunks", 1))
            )
            for n, reply in enumerate(replies):
                pieces = int(opts.get("deltas", 0))
                if pieces:
                    size = max(1, -(-len(reply) // pieces))
                    for start in range(0, len(reply), size):
                        await emit(TextDelta(f"item_{n}", reply[start : start + size]))
                await emit(MessageCompleted(f"item_{n}", reply))
            if "fail_late" in opts:
                await emit(ErrorEvent(opts["fail_late"]))
                await emit(TurnFailed(opts["fail_late"]))
                return ExitInfo(1, "")
            counts = [int(c) for c in opts.get("usage", "10,2,5,1").split(",")]
            await emit(TurnCompleted(Usage(*counts)))
            await trio.sleep(float(opts.get("linger", 0)))  # Codex still exiting
            await emit(ItemEvent("completed", "error", {"message": "printed after the turn"}))
            return ExitInfo(0, "")
        except trio.Cancelled:
            record.cancelled = True
            raise
        finally:
            self.running -= 1
            record.ended_at = trio.current_time()


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@asynccontextmanager
async def running_app(
    tmp_path: Path,
    backend: Any,
    *,
    environ: Mapping[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[QuartTrio]:
    """The app in process (``app.test_app()``) with ``backend`` and the test catalog."""
    app = create_app(
        make_settings(tmp_path, **settings), backend=backend, catalog=TEST_CATALOG, environ=environ
    )
    async with app.test_app():
        yield app


def service_of(app: QuartTrio) -> Service:
    return components(app).service


def runner_of(app: QuartTrio) -> CodexRunner:
    return service_of(app).runner


def scratch_root(app: QuartTrio, tmp_path: Path) -> Path:
    """Make the app create its request scratch directories under a fresh test directory."""
    root = tmp_path / "scratch"
    root.mkdir()
    service_of(app).scratch_root = root
    return root


@pytest.fixture(scope="session")
def fake_codex(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake codex as an executable whose interpreter is this test run's Python."""
    path = tmp_path_factory.mktemp("bin") / "codex"
    source = (TESTS / "fake_codex.py").read_text()
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


ServerFactory = Callable[[object], Awaitable[str]]


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


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A fake Responses upstream (``tests/fake_upstream.py``) on 127.0.0.1, stopped after the
    test."""
    with FakeUpstream() as fake:
        yield fake


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


# --------------------------------------------------------------------------- images


def tiny_png(pixel: bytes = b"\xff\x00\x00") -> bytes:
    """A valid 2x2 RGB PNG whose pixels are all ``pixel`` (default red), built with the stdlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + pixel * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


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


# --------------------------------------------------------------------------- processes


def make_fifo(tmp_path: Path, name: str = "notify") -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


async def read_notify(fifo: Path) -> list[int]:
    """Wait (without polling) for the fake codex's ``pids ...`` line on ``fifo``."""
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # RDWR: never EOF while we hold it
    stream = trio.lowlevel.FdStream(fd)
    try:
        buf = b""
        while b"\n" not in buf:
            buf += await stream.receive_some(4096)
    finally:
        await stream.aclose()
    words = buf.split(b"\n", 1)[0].decode().split()
    assert words[0] == "pids"
    return [int(w) for w in words[1:]]
