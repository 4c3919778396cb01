"""The security boundary (issue 5) end to end, with real processes and sockets.

With the fake codex (``[[codex:mode=argv]]``, ``[[codex:mode=env]]``) where the argv or
environment Codex really gets is the point, over a real Hypercorn where the socket matters
(chunked uploads, a client that leaves mid-stream), and with the real Codex CLI against
``tests/support/fake_upstream.py`` for the image round trip. The same boundary through the app
in process is ``tests/http/test_security.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from tests.support.codex_cli import FakeUpstream, codex_env, private_home
from tests.support.fakes import TEST_CATALOG, ScriptedBackend, make_fifo, make_settings, read_notify
from tests.support.harness import chat_body, wait_gone
from tests.support.security import (
    LOOPBACK,
    OVERRIDES,
    PNG,
    VALID_SERVERS,
    assert_error,
    expected_sandbox,
    flag_value,
    image_body,
    post,
    provider_config,
    write_config,
)
from tests.support.servers import (
    ServerFactory,
    require_codex_cli,
    runner_of,
    scratch_root,
    serve_real_codex,
)
from trio_codex import create_app
from trio_codex.codex.backends import make_backend
from trio_codex.codex.localonly import LOCAL_ONLY_CODEX_ARGS
from trio_codex.openai.prompt import MAX_PROMPT_CHARS
from trio_codex.settings import BackendName, Settings


def fake_codex_app(tmp_path: Path, fake_codex: Path, **settings: Any) -> QuartTrio:
    """The app with the real backend (``backend=``) running the fake codex, in a minimal
    environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return create_app(
        make_settings(tmp_path, codex_path=fake_codex, **settings),
        catalog=TEST_CATALOG,
        environ=env,
    )


async def codex_argv(url: str, **extra: Any) -> tuple[int, list[str]]:
    """One request over HTTP: (status, the argv the fake codex was started with or [])."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body("[[codex:mode=argv]]", **extra)
        )
    if response.status_code != 200:
        return response.status_code, []
    argv: list[str] = json.loads(response.json()["choices"][0]["message"]["content"])
    return 200, argv


async def codex_sandbox(url: str, backend: BackendName, **extra: Any) -> str | int:
    """One request over HTTP: the sandbox Codex was given (exec: ``-s``; app-server:
    ``thread/start.sandbox``), or the status of a refusal."""
    mode = "argv" if backend == "exec" else "params"
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body(f"[[codex:mode={mode}]]", **extra)
        )
    if response.status_code != 200:
        return response.status_code
    seen = json.loads(response.json()["choices"][0]["message"]["content"])
    if backend == "exec":
        return flag_value(seen, "-s")
    (thread,) = [r["params"] for r in seen["requests"] if r.get("method") == "thread/start"]
    sandbox: str = thread["sandbox"]
    return sandbox


# --- 1. local-only through the server -------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("local_only", [False, True])
async def test_local_only_switches_reach_codex_argv(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    local_only: bool,
) -> None:
    """In local-only mode Codex's argv carries LOCAL_ONLY_CODEX_ARGS before the stdin marker
    (exec) or the subcommand (app-server)."""
    write_config(tmp_path / "codex-home", LOOPBACK)
    app = fake_codex_app(tmp_path, fake_codex, local_only=local_only, backend=codex_backend)
    url = await start_server(app)
    with trio.fail_after(20):
        status, argv = await codex_argv(url)
    assert status == 200
    assert argv[-1] == ("-" if codex_backend == "exec" else "app-server")
    window = len(LOCAL_ONLY_CODEX_ARGS)
    found = any(
        tuple(argv[i : i + window]) == LOCAL_ONLY_CODEX_ARGS for i in range(len(argv) - window)
    )
    assert found is local_only
    assert ('web_search="disabled"' in argv) is local_only


# --- 2. the danger double switch ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("default", "allow"), VALID_SERVERS)
async def test_double_switch_matrix_reaches_the_real_argv(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    default: str,
    allow: bool,
) -> None:
    """For each server setting and request override, the fake codex gets the expected sandbox
    (exec: ``-s``; app-server: ``thread/start.sandbox``)."""
    app = fake_codex_app(
        tmp_path,
        fake_codex,
        sandbox_mode=default,
        allow_danger_full_access=allow,
        backend=codex_backend,
    )
    url = await start_server(app)
    seen: dict[str | None, str | int] = {}
    with trio.fail_after(30):
        for override in OVERRIDES:
            extra = {} if override is None else {"x_codex": {"sandbox": override}}
            seen[override] = await codex_sandbox(url, codex_backend, **extra)
    assert seen == {o: expected_sandbox(default, allow, o) or 403 for o in OVERRIDES}


# --- 3. images ------------------------------------------------------------------------------------


@pytest.mark.slow
async def test_abandoned_stream_over_http_leaves_no_temp_file(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName, start_server: ServerFactory
) -> None:
    """The image exists while Codex runs; after the client leaves mid-stream it is gone."""
    app = fake_codex_app(tmp_path, fake_codex, backend=codex_backend)
    url = await start_server(app)
    root = scratch_root(app, tmp_path)
    fifo = make_fifo(tmp_path)
    body = image_body(f"[[codex:mode=hang;notify={fifo}]]", stream=True)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                async with (
                    httpx.AsyncClient(base_url=url, timeout=30) as http,
                    http.stream("POST", "/v1/chat/completions", json=body) as response,
                ):
                    async for _ in response.aiter_raw():
                        pass

            nursery.start_soon(client)
            pids = await read_notify(fifo)
            (scratch,) = root.iterdir()
            assert [p.name for p in scratch.iterdir()] == ["image-1.png"]
            assert (scratch / "image-1.png").read_bytes() == PNG
            nursery.cancel_scope.cancel(reason="test: client leaves mid-stream")
        for pid in pids:
            await wait_gone(pid)
        await runner_of(app).running.wait_value(0)
    assert list(root.iterdir()) == []


# --- 3b. images with the real Codex CLI -----------------------------------------------------------


@pytest.fixture(scope="session")
def codex_cli() -> Path:
    """The real Codex CLI as found, not its native binary (skipped with an install hint when
    missing; failing in CI). A fixture, so a skip is reported with its message."""
    return require_codex_cli(native=False)


@pytest.mark.slow
@pytest.mark.realcodex
@pytest.mark.parametrize(("stream", "local_only"), [(False, True), (True, False)])
async def test_data_url_image_reaches_the_upstream_with_real_codex(
    tmp_path: Path,
    codex_cli: Path,
    upstream: FakeUpstream,
    start_server: ServerFactory,
    stream: bool,
    local_only: bool,
) -> None:
    """A data: URL image reaches the upstream byte for byte through real Codex, streaming too."""
    server = await serve_real_codex(
        tmp_path,
        upstream.base_url,
        start_server,
        codex_path=codex_cli,
        environ=codex_env(private_home(tmp_path), tmp_path / "codex-home"),
        local_only=local_only,
    )
    app, url = server.app, server.url
    root = scratch_root(app, tmp_path)
    body = image_body("What colour is it? [[fake:reply=Teal.]]", stream=stream)
    body["model"] = "fake-model"
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            response = await http.post("/v1/chat/completions", json=body)
        await runner_of(app).running.wait_value(0)
        requests = await trio.to_thread.run_sync(upstream.responses_requests)
    assert response.status_code == 200, response.text
    if stream:
        assert '"content":"Teal."' in response.text
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["content"] == "Teal."
    (request,) = requests
    (image,) = request["input_images"]
    header, _, data = image["image_url"].partition(",")
    assert header == "data:image/png;base64"
    assert base64.b64decode(data) == PNG
    tools = [tool.get("type") for tool in request["body"].get("tools", [])]
    assert ("web_search" in tools) is not local_only
    assert list(root.iterdir()) == []


# --- 4. the child's environment -------------------------------------------------------------------


#: Every variable Settings.from_env reads, with a valid value.
SERVER_SETTINGS = {
    "PROXY_API_KEY": "sk-proxy-secret-one,sk-proxy-secret-two",
    "RATE_LIMIT_PER_MINUTE": "100",
    "CODEX_SANDBOX_MODE": "read-only",
    "CODEX_REASONING_EFFORT": "low",
    "CODEX_LOCAL_ONLY": "1",
    "CODEX_ALLOW_DANGER_FULL_ACCESS": "0",
    "CODEX_TIMEOUT": "30",
    "CODEX_MAX_PARALLEL_REQUESTS": "2",
    "CODEX_QUEUE_TIMEOUT_SECONDS": "5",
    "CODEX_IDLE_TIMEOUT": "30",
    "CODEX_SSE_KEEPALIVE_SECONDS": "5",
    "CODEX_KILL_GRACE_SECONDS": "1",
    "MAX_REQUEST_BYTES": "100000",
    "CODEX_MAX_IMAGE_BYTES": "50000",
    "CODEX_ALLOW_IMAGE_FETCH": "0",
    "CODEX_ENV_PASSTHROUGH": "MY_TOOL_TOKEN",
    "TRIO_CODEX_RESPONSE_ID_SECRET": "response-id-secret-at-least-32-bytes",
}


@pytest.mark.slow
async def test_child_environment_through_the_server(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName, start_server: ServerFactory
) -> None:
    """Codex's env has no server setting (PROXY_API_KEY) but the passthrough and env_key names
    (and, on app-server, the two that keep its stderr quiet)."""
    home = tmp_path / "codex-home"
    write_config(
        home, provider_config("http://127.0.0.1:9/v1", pid="mine", env_key="MY_PROVIDER_KEY")
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    environ = {
        **SERVER_SETTINGS,
        "CODEX_BACKEND": codex_backend,
        "CODEX_PATH": str(fake_codex),
        "CODEX_HOME": str(home),
        "CODEX_WORKDIR": str(workdir),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "MY_TOOL_TOKEN": "tool-token",
        "MY_PROVIDER_KEY": "provider-key",
        "CODEX_API_KEY": "codex-key",
        "OPENAI_API_KEY": "sk-openai-not-for-codex",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    app = create_app(Settings.from_env(environ), catalog=TEST_CATALOG, environ=environ)
    url = await start_server(app)
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            response = await http.post(
                "/v1/chat/completions",
                json=chat_body("[[codex:mode=env]]"),
                headers={"Authorization": "Bearer sk-proxy-secret-two"},
            )
    assert response.status_code == 200, response.text
    child = json.loads(response.json()["choices"][0]["message"]["content"])
    assert "sk-proxy-secret" not in response.text
    assert "response-id-secret" not in response.text
    assert not set(child) & {*SERVER_SETTINGS, "CODEX_PATH", "CODEX_WORKDIR", "CODEX_BACKEND"}
    quiet = {"RUST_LOG", "NO_COLOR"} if codex_backend == "app-server" else set()
    assert set(child) - {"LC_CTYPE"} == quiet | {
        "PATH",
        "HOME",
        "LANG",
        "CODEX_HOME",
        "CODEX_API_KEY",
        "MY_TOOL_TOKEN",
        "MY_PROVIDER_KEY",
    }
    assert (child["MY_TOOL_TOKEN"], child["MY_PROVIDER_KEY"]) == ("tool-token", "provider-key")
    assert child["CODEX_HOME"] == str(home)


# --- 5. input limits ------------------------------------------------------------------------------


async def read_response(stream: trio.SocketStream) -> tuple[bytes, Any]:
    """Read one HTTP/1.1 response with a Content-Length: (status line and headers, JSON body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        assert chunk, data
        body += chunk
    return head, json.loads(body)


@pytest.mark.slow
async def test_chunked_body_over_the_limit_is_refused_while_it_arrives(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    """A chunked body gets 413 once past the limit, before the (never finished) body ends."""
    limit = 64 * 1024
    backend = ScriptedBackend()
    app = create_app(
        make_settings(tmp_path, max_body_bytes=limit), backend=backend, catalog=TEST_CATALOG
    )
    url = await start_server(app)
    host, port = url.removeprefix("http://").split(":")
    piece = b" " * 4096
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        while sent <= limit + 3 * len(piece):  # never the terminating zero-length chunk
            await stream.send_all(b"%x\r\n%b\r\n" % (len(piece), piece))
            sent += len(piece)
        with trio.fail_after(10):
            head, body = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert body["error"]["code"] == "request_too_large"
    assert backend.runs == []


@pytest.mark.slow
async def test_declared_length_over_the_limit_is_refused_before_the_body(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    """A Content-Length over the limit gets 413 without a single body byte sent."""
    app = create_app(
        make_settings(tmp_path, max_body_bytes=4096),
        backend=ScriptedBackend(),
        catalog=TEST_CATALOG,
    )
    url = await start_server(app)
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        with trio.fail_after(10):
            head, body = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert body["error"]["code"] == "request_too_large"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("messages", "code"),
    [
        pytest.param(
            [{"role": "user", "content": "e" * (MAX_PROMPT_CHARS + 1)}],
            "context_length_exceeded",
            id="one-message",
        ),
        pytest.param(
            [
                {"role": "system", "content": "s" * (MAX_PROMPT_CHARS // 2)},
                {"role": "user", "content": "u" * (MAX_PROMPT_CHARS // 2)},
            ],
            "context_length_exceeded",
            id="rendered-transcript",
        ),
        pytest.param(
            [{"role": "user", "content": "a lone surrogate \ud800 here"}],
            "invalid_value",
            id="lone-surrogate",
        ),
    ],
)
async def test_unsendable_prompt_is_refused_before_any_process(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    messages: list[dict[str, str]],
    code: str,
) -> None:
    """A prompt over 1,048,576 chars (or not UTF-8) is a 400; the fake codex never starts."""
    settings = make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend)
    spawned: list[int] = []
    backend = make_backend(
        settings, environ={"PATH": "/usr/bin:/bin"}, extra_env_names=(), on_spawn=spawned.append
    )
    app = create_app(settings, backend=backend, catalog=TEST_CATALOG)
    with trio.fail_after(20):
        async with app.test_app():
            status, body = await post(app, {"model": "gpt-test", "messages": messages})
    # A lone surrogate is refused where it is (the whole body is checked for valid Unicode).
    param = "messages[0].content" if code == "invalid_value" else "messages"
    assert_error(status, body, 400, code, param)
    assert spawned == []
