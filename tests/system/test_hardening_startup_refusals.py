"""Every startup refusal exits non-zero with one clear line, under the documented command
(``hypercorn trio_codex.app:app -k trio``, whose master used to exit 0) and under
``python -m trio_codex``: a refused configuration, a ``CODEX_PATH`` that is not Codex
(``/bin/true`` used to start and fail every request with 502), a port already in use (a
65-line traceback under ``python -m trio_codex``)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import trio

from .hardening_server import (
    hypercorn_argv,
    module_argv,
    running,
    server_env,
    write_fake_codex,
)

pytestmark = pytest.mark.slow

LAUNCHERS = ["module", "hypercorn"]


def argv(launcher: str, bind: str = "127.0.0.1:0") -> list[str]:
    if launcher == "module":
        return module_argv("--bind", bind)
    return hypercorn_argv("--bind", bind)


async def exit_of(
    launcher: str, env: dict[str, str], cwd: Path, bind: str = "127.0.0.1:0"
) -> tuple[int | None, str]:
    """(exit status, stderr) of a server that must refuse to start."""
    with trio.fail_after(60):
        async with running(argv(launcher, bind), env, cwd=cwd) as server:
            await server.proc.wait()
            await server.wait_eof()
            return server.proc.returncode, server.text


def our_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("trio_codex: ")]


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"CODEX_SANDBOX_MODE": "danger-full-access"}, "CODEX_SANDBOX_MODE"),
        ({"CODEX_TIMEOUT": "soon"}, "CODEX_TIMEOUT"),
        ({"TRIO_CODEX_RESPONSE_ID_SECRET": "short"}, "TRIO_CODEX_RESPONSE_ID_SECRET"),
        ({"CODEX_PATH": "/bin/true"}, "CODEX_PATH"),
        ({"CODEX_PATH": "/bin/false"}, "CODEX_PATH"),
    ],
)
async def test_refused_configuration_exits_non_zero(
    tmp_path: Path, launcher: str, setting: dict[str, str], named: str
) -> None:
    env = {**server_env(tmp_path, write_fake_codex(tmp_path)), **setting}
    status, text = await exit_of(launcher, env, tmp_path)
    assert status != 0, text
    lines = our_lines(text)
    assert lines, text
    assert named in lines[0]
    assert "Traceback" not in text, text


@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_port_in_use_exits_non_zero(tmp_path: Path, launcher: str) -> None:
    env = server_env(tmp_path, write_fake_codex(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        status, text = await exit_of(launcher, env, tmp_path, bind)
    assert status != 0, text
    if launcher == "module":
        # Hypercorn's own master binds under the documented command (its traceback, exit 1).
        assert our_lines(text) == [
            f"trio_codex: cannot listen on {bind}: Address already in use"
        ], text
        assert "Traceback" not in text


@pytest.mark.parametrize("launcher", LAUNCHERS)
async def test_a_real_codex_starts(tmp_path: Path, launcher: str) -> None:
    """The check accepts what answers like Codex (the stand-in prints codex-cli 0.169.0)."""
    env = server_env(tmp_path, write_fake_codex(tmp_path))
    with trio.fail_after(30):
        async with running(argv(launcher), env, cwd=tmp_path) as server:
            await server.wait_for(r"Codex CLI: codex-cli 0\.169\.0")
