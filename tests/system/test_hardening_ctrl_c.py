"""Stopping by hand: with a request in flight, the first Ctrl-C (SIGINT) says what the server
waits for and how long; a second one stops now, still killing every Codex group. It used to
wait the whole graceful timeout in silence and ignore the second Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from tests.support.harness import alive, wait_gone

from .hardening_server import (
    MODULE_READY,
    module_argv,
    read_fifo_line,
    running,
    server_env,
    write_fake_codex,
)

pytestmark = pytest.mark.slow

GRACEFUL = 60  # far longer than the test may take: only the second Ctrl-C can end it in time


def request(prompt: str) -> bytes:
    body = json.dumps(
        {"model": "gpt-test", "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
async def test_second_ctrl_c_stops_now(tmp_path: Path, second: signal.Signals) -> None:
    env = server_env(tmp_path, write_fake_codex(tmp_path))
    fifo = tmp_path / "notify"
    os.mkfifo(fifo)
    argv = module_argv("--bind", "127.0.0.1:0", "--graceful-timeout", str(GRACEFUL))
    with trio.fail_after(30):
        async with running(argv, env, cwd=tmp_path) as server:
            host, port = (await server.wait_for(MODULE_READY)).group(1)[7:].rsplit(":", 1)
            client = await trio.open_tcp_stream(host, int(port))
            async with client:
                await client.send_all(request(f"hang notify={fifo}"))
                codex = int((await read_fifo_line(fifo)).split()[1])
                os.kill(server.proc.pid, signal.SIGINT)
                said = await server.wait_for(r"SIGINT received: .*")
                assert f"up to {GRACEFUL} s" in said.group(0)
                assert "1 running request" in said.group(0)
                assert "again" in said.group(0)  # how to stop now
                os.kill(server.proc.pid, second)
                await server.wait_for(rf"{second.name} received again: stopping now")
                await server.proc.wait()
                await wait_gone(codex)
            assert not alive(codex)
            assert server.proc.returncode != 0


async def test_first_ctrl_c_when_idle_exits_at_once(tmp_path: Path) -> None:
    env = server_env(tmp_path, write_fake_codex(tmp_path))
    argv = module_argv("--bind", "127.0.0.1:0", "--graceful-timeout", str(GRACEFUL))
    with trio.fail_after(30):
        async with running(argv, env, cwd=tmp_path) as server:
            await server.wait_for(MODULE_READY)
            os.kill(server.proc.pid, signal.SIGINT)
            said = await server.wait_for(r"SIGINT received: .*")
            assert "0 running request" in said.group(0)
            await server.proc.wait()
            assert server.proc.returncode == 0
