"""A Hypercorn worker ends, and its Codex groups with it, when the process that started it dies.

SIGKILL of Hypercorn's master (the process the documented ``hypercorn trio_codex.app:app -k
trio`` creates) used to leave its worker running as an orphan, still serving, with every Codex
group alive. The test kills the master, not the worker, while a request holds a Codex."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import trio

from tests.support.harness import alive, children_of, cmdline, wait_gone

from .hardening_server import (
    HYPERCORN_READY,
    hypercorn_argv,
    read_fifo_line,
    running,
    server_env,
    write_fake_codex,
)

pytestmark = pytest.mark.slow


def request(prompt: str, *, stream: bool) -> bytes:
    body = json.dumps(
        {"model": "gpt-test", "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    ).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


@pytest.mark.parametrize("stream", [False, True])
async def test_sigkill_of_the_master_ends_the_worker_and_its_codex(
    tmp_path: Path, stream: bool
) -> None:
    env = server_env(tmp_path, write_fake_codex(tmp_path))
    fifo = tmp_path / "notify"
    os.mkfifo(fifo)
    with trio.fail_after(30):
        async with running(hypercorn_argv("--bind", "127.0.0.1:0"), env, cwd=tmp_path) as server:
            host, port = (await server.wait_for(HYPERCORN_READY)).group(1)[7:].rsplit(":", 1)
            master = server.proc.pid
            workers = [
                c
                for c in children_of(master)
                if "multiprocessing" in cmdline(c) and "resource_tracker" not in cmdline(c)
            ]
            assert len(workers) == 1, [cmdline(c) for c in children_of(master)]
            worker = workers[0]
            client = await trio.open_tcp_stream(host, int(port))
            async with client:
                await client.send_all(request(f"hang notify={fifo}", stream=stream))
                codex = int((await read_fifo_line(fifo)).split()[1])
                assert alive(codex)
                os.kill(master, signal.SIGKILL)
                await wait_gone(worker)
                await wait_gone(codex)
            assert not alive(worker)
            assert not alive(codex)
