"""A client that sends its headers and then nothing no longer holds a handler and a socket for
ever: the body must arrive within ``CODEX_BODY_TIMEOUT_SECONDS`` (408 ``request_timeout``, then
the connection is closed). Real Hypercorn, both documented entry points, raw sockets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from .hardening_server import (
    HYPERCORN_READY,
    MODULE_READY,
    hypercorn_argv,
    module_argv,
    running,
    server_env,
    write_fake_codex,
)

pytestmark = pytest.mark.slow


async def read_until_closed(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


@pytest.mark.parametrize("launcher", ["module", "hypercorn"])
@pytest.mark.parametrize("sent", [b"", b'{"model": "gpt-'])
async def test_headers_then_silence_is_a_408_and_a_closed_socket(
    tmp_path: Path, launcher: str, sent: bytes
) -> None:
    env = server_env(tmp_path, write_fake_codex(tmp_path), CODEX_BODY_TIMEOUT_SECONDS="0.5")
    if launcher == "module":
        argv, ready = module_argv("--bind", "127.0.0.1:0"), MODULE_READY
    else:
        argv, ready = hypercorn_argv("--bind", "127.0.0.1:0"), HYPERCORN_READY
    with trio.fail_after(30):
        async with running(argv, env, cwd=tmp_path) as server:
            host, port = (await server.wait_for(ready)).group(1)[7:].rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            async with stream:
                await stream.send_all(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + sent
                )
                began = trio.current_time()
                with trio.fail_after(10):
                    answer = await read_until_closed(stream)
                waited = trio.current_time() - began
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 408"), answer
            assert b"x-request-id" in head.lower()
            error = json.loads(body)["error"]
            assert (error["code"], error["type"]) == ("request_timeout", "invalid_request_error")
            assert 0.4 <= waited < 5, waited
            await server.wait_for(r"status=408")
