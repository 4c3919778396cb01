"""A Codex turn parked on a client's tool results dies with the server, whatever way it ends.

After a chat answer with ``tool_calls`` the app-server child stays alive, waiting for the
client's next request (the waiting path). That child is still one of the server's process
groups: a graceful stop (SIGTERM) must kill it within the graceful timeout + the kill grace,
and a SIGKILL of the server process must not leave it running either (the reaper sidecar kills
every announced group). Checked through ``/proc`` with real processes: the server started as
``python -m trio_codex`` and the fake app-server of ``tests/support/fake_app_server.py``."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.support.harness import alive, wait_gone
from tests.support.paths import FAKE_APP_SERVER_SCRIPT

from .hardening_server import MODULE_READY, Server, module_argv, running, server_env, stop_with

pytestmark = pytest.mark.slow

GRACEFUL = 1.0
KILL_GRACE = 0.5
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]


def fake_app_server(directory: Path) -> Path:
    path = directory / "codex"
    path.write_text(f"#!{sys.executable}\n" + FAKE_APP_SERVER_SCRIPT.read_text())
    path.chmod(0o755)
    return path


async def park_a_turn(server: Server, notify: Path) -> int:
    """Ask for a tool call; return the pid of the app-server child left waiting for its
    result once the answer with ``tool_calls`` has arrived."""
    url = (await server.wait_for(MODULE_READY)).group(1)
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={
                "model": "gpt-test",
                "messages": [{"role": "user", "content": "[[codex:mode=tools]]"}],
                "tools": TOOLS,
            },
        )
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    child = int(notify.read_text().split()[1])  # the fake wrote its pid when it started
    assert alive(child)  # parked: waiting for the tool result
    return child


def parked_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    notify = tmp_path / "pids"
    env = server_env(
        tmp_path,
        fake_app_server(tmp_path),
        CODEX_BACKEND="app-server",
        CODEX_WARM_SPARES="0",  # one child only: the parked one
        CODEX_KILL_GRACE_SECONDS=str(KILL_GRACE),
        CODEX_TOOL_RESULT_TIMEOUT="600",  # far longer than the test: only the stop may end it
    )
    (tmp_path / "home" / "fake-app-server").write_text(f"notify={notify}")
    return env, notify


async def test_sigterm_kills_a_parked_turn_within_the_graceful_bound(tmp_path: Path) -> None:
    env, notify = parked_env(tmp_path)
    argv = module_argv("--bind", "127.0.0.1:0", "--graceful-timeout", str(GRACEFUL))
    with trio.fail_after(30):
        async with running(argv, env, cwd=tmp_path) as server:
            child = await park_a_turn(server, notify)
            code, took = await stop_with(server, signal.SIGTERM)
            await wait_gone(child)
    assert code == 0, server.text
    assert took < GRACEFUL + KILL_GRACE + 1.0, took
    assert not alive(child)


async def test_sigkill_of_the_server_kills_a_parked_turn(tmp_path: Path) -> None:
    env, notify = parked_env(tmp_path)
    with trio.fail_after(30):
        async with running(module_argv("--bind", "127.0.0.1:0"), env, cwd=tmp_path) as server:
            child = await park_a_turn(server, notify)
            await stop_with(server, signal.SIGKILL)
            # The reaper sidecar outlives the server by design; waiting for the child must not
            # depend on `running`'s own clean-up (a SIGKILL of the whole session).
            await wait_gone(child)
    assert not alive(child)
