"""Warm spares die with the server, whatever way it ends.

With ``CODEX_WARM_SPARES=1`` the app-server backend keeps a child spawned and initialized before
any request exists. No request holds it, so nothing but the server's own shutdown and the reaper
sidecar can end it: a graceful stop (SIGTERM) must kill it within the graceful timeout + the
kill grace, and a SIGKILL of the server process must not leave it running either. Real
processes, checked through ``/proc``: the server as ``python -m trio_codex`` and the fake
app-server of ``tests/support/fake_app_server.py``, which writes its pid to a FIFO when it
starts (the startup check's child first, then the spare)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import trio

from tests.support.harness import alive, wait_gone
from tests.support.paths import FAKE_APP_SERVER_SCRIPT

from .hardening_server import MODULE_READY, Server, module_argv, running, server_env, stop_with

pytestmark = pytest.mark.slow

GRACEFUL = 1.0
KILL_GRACE = 0.5


async def read_pids(fifo: Path, count: int) -> list[int]:
    """The first pid of each of the next ``count`` ``pids ...`` lines on ``fifo`` (no polling)."""
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # RDWR: never EOF while we hold it
    stream = trio.lowlevel.FdStream(fd)
    buf = b""
    try:
        while buf.count(b"\n") < count:
            buf += await stream.receive_some(4096)
    finally:
        await stream.aclose()
    return [int(line.split()[1]) for line in buf.decode().splitlines()[:count]]


async def start_with_a_spare(server: Server, fifo: Path) -> int:
    """The pid of the warm spare, once it runs (the startup check's child came first)."""
    check, spare = await read_pids(fifo, 2)  # a writer blocks until the FIFO has a reader
    await server.wait_for(MODULE_READY)
    await wait_gone(check)  # the check's child ends by itself
    assert alive(spare)
    return spare


def spare_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    codex = tmp_path / "codex"
    codex.write_text(f"#!{sys.executable}\n" + FAKE_APP_SERVER_SCRIPT.read_text())
    codex.chmod(0o755)
    env = server_env(
        tmp_path,
        codex,
        CODEX_BACKEND="app-server",
        CODEX_WARM_SPARES="1",
        CODEX_KILL_GRACE_SECONDS=str(KILL_GRACE),
    )
    fifo = tmp_path / "notify"
    os.mkfifo(fifo)
    (tmp_path / "home" / "fake-app-server").write_text(f"notify={fifo}")
    return env, fifo


async def test_sigterm_kills_the_warm_spare_within_the_graceful_bound(tmp_path: Path) -> None:
    env, fifo = spare_env(tmp_path)
    argv = module_argv("--bind", "127.0.0.1:0", "--graceful-timeout", str(GRACEFUL))
    with trio.fail_after(30):
        async with running(argv, env, cwd=tmp_path) as server:
            spare = await start_with_a_spare(server, fifo)
            code, took = await stop_with(server, signal.SIGTERM)
            await wait_gone(spare)
    assert code == 0, server.text
    assert took < GRACEFUL + KILL_GRACE + 1.0, took
    assert not alive(spare)


async def test_sigkill_of_the_server_kills_the_warm_spare(tmp_path: Path) -> None:
    env, fifo = spare_env(tmp_path)
    with trio.fail_after(30):
        async with running(module_argv("--bind", "127.0.0.1:0"), env, cwd=tmp_path) as server:
            spare = await start_with_a_spare(server, fifo)
            await stop_with(server, signal.SIGKILL)
            await wait_gone(spare)  # the reaper sidecar's doing: the spare is in its own group
    assert not alive(spare)
