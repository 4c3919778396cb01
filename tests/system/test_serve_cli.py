"""``trio-codex serve``, the installed console script, as a real process: it starts on a free
port (``--port 0``, the port read from its ``listening on`` line), answers, and stops on SIGTERM
with exit 0 and nothing left running; a ``.env`` file's setting takes effect and an option wins
over it; bad options are one line and exit 2. Codex is the fake of tests/support/fake_codex.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import trio

from tests.support.harness import (
    ServerProcess,
    chat_body,
    check_completion,
    check_error,
    children_of,
    http_request,
    open_server,
    processes_in,
    raw_exchange,
    server_env,
    wait_all_gone,
)
from trio_codex.startup import REFUSED

pytestmark = pytest.mark.slow

#: The console script pip installed next to this interpreter.
TRIO_CODEX = Path(sys.executable).parent / "trio-codex"
#: The exit must come within graceful timeout + kill grace + 1 s (``trio_codex.__main__``).
GRACEFUL = 2.0
KILL_GRACE = 0.5


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the reaper sidecar and Codex groups run in sessions
    of their own, so a session does not hold them)."""
    found = [pid]
    for child in children_of(pid):
        found += descendants(child)
    return found


@contextlib.asynccontextmanager
async def serving(
    args: list[str], env: Mapping[str, str], cwd: Path
) -> AsyncIterator[ServerProcess]:
    """``trio-codex serve --port 0 ARGS`` in its own session; yields once it listens. On the way
    out a session still running is SIGKILLed."""
    argv = [os.fspath(TRIO_CODEX), "serve", "--port", "0", *args]
    async with open_server(argv, env, cwd=cwd, ready=r"listening on (http://\S+)") as server:
        yield server


async def chat(server: ServerProcess, prompt: str, key: str | None = None) -> tuple[int, object]:
    host, port = server.hostport
    request = http_request(host, port, chat_body(prompt))
    if key is not None:
        request = request.replace(
            b"\r\n\r\n", f"\r\nAuthorization: Bearer {key}\r\n\r\n".encode(), 1
        )
    with trio.fail_after(30):
        response = await raw_exchange(host, port, request)
    assert response is not None
    return response.status, json.loads(response.body)


async def test_serve_starts_on_a_free_port_answers_and_stops_on_sigterm(
    tmp_path: Path, fake_codex: Path
) -> None:
    env, workdir = server_env(tmp_path, fake_codex)
    args = ["--graceful-timeout", str(GRACEFUL), "--kill-grace", str(KILL_GRACE)]
    async with serving(args, env, tmp_path) as server:
        host, port = server.hostport
        assert host == "127.0.0.1"
        assert port > 0
        status, body = await chat(server, "[[codex:reply=served]] hi")
        assert status == 200, body
        assert check_completion(body) == "served"
        running = descendants(server.proc.pid)
        assert len(running) >= 2, running  # the server and its reaper sidecar at least
        started = trio.current_time()
        server.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(GRACEFUL + KILL_GRACE + 5):
            code = await server.proc.wait()
        took = trio.current_time() - started
        assert code == 0, server.text
        assert took < GRACEFUL + KILL_GRACE + 1.0, (took, server.text)
        with trio.fail_after(5):
            await wait_all_gone(running)
        assert processes_in(workdir) == []
        assert "Traceback" not in server.text


async def test_a_dotenv_setting_takes_effect_and_an_option_wins_over_it(
    tmp_path: Path, fake_codex: Path
) -> None:
    """``PROXY_API_KEY`` from ``./.env`` guards the API; ``--api-key`` replaces it; an
    ``--env-file`` elsewhere is read as well; ``--no-env-file`` skips ``./.env``."""
    env, _ = server_env(tmp_path, fake_codex)
    (tmp_path / ".env").write_text('# the server key\nPROXY_API_KEY="from-dotenv"\n')

    async with serving([], env, tmp_path) as server:
        status, body = await chat(server, "hi")
        assert status == 401, body
        assert check_error(body)["code"] == "missing_api_key"
        status, body = await chat(server, "hi", key="from-dotenv")
        assert status == 200, body

    async with serving(["--api-key", "from-option"], env, tmp_path) as server:
        status, _ = await chat(server, "hi", key="from-dotenv")
        assert status == 401
        status, body = await chat(server, "hi", key="from-option")
        assert status == 200, body

    other = tmp_path / "elsewhere.env"
    other.write_text("PROXY_API_KEY=from-elsewhere\n")
    async with serving(["--env-file", os.fspath(other)], env, tmp_path) as server:
        status, body = await chat(server, "hi", key="from-elsewhere")
        assert status == 200, body

    async with serving(["--no-env-file"], env, tmp_path) as server:
        status, body = await chat(server, "hi")
        assert status == 200, body


async def test_the_environment_wins_over_dotenv(tmp_path: Path, fake_codex: Path) -> None:
    env, _ = server_env(tmp_path, fake_codex, PROXY_API_KEY="from-env")
    (tmp_path / ".env").write_text("PROXY_API_KEY=from-dotenv\n")
    async with serving([], env, tmp_path) as server:
        status, _ = await chat(server, "hi", key="from-dotenv")
        assert status == 401
        status, body = await chat(server, "hi", key="from-env")
        assert status == 200, body


async def _refusal(args: list[str], env: Mapping[str, str], cwd: Path) -> tuple[int, str]:
    with trio.fail_after(30):
        done = await trio.run_process(
            [os.fspath(TRIO_CODEX), "serve", "--port", "0", *args],
            env=dict(env),
            cwd=os.fspath(cwd),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return done.returncode, done.stderr.decode()


@pytest.mark.parametrize(
    ("args", "dotenv", "named"),
    [
        (["--timeout", "soon"], "", "CODEX_TIMEOUT: 'soon' is not a number of seconds"),
        (["--sandbox-mode", "open"], "", "CODEX_SANDBOX_MODE: 'open' is not one of"),
        ([], "CODEX_MAX_IMAGES=-1\n", "CODEX_MAX_IMAGES: -1 is below the minimum"),
        (["--workers", "2"], "", "--workers 2: --workers above 1 is not supported"),
        (["--env-file", "nowhere.env"], "", "--env-file: 'nowhere.env' is not a readable"),
        (["--bind", "127.0.0.1:0", "--host", "::1"], "", "--bind: give either"),
    ],
)
async def test_bad_values_are_one_line_and_exit_2(
    tmp_path: Path, fake_codex: Path, args: list[str], dotenv: str, named: str
) -> None:
    env, _ = server_env(tmp_path, fake_codex)
    (tmp_path / ".env").write_text(dotenv)
    code, stderr = await _refusal(args, env, tmp_path)
    assert code == REFUSED, stderr
    (line,) = stderr.splitlines()
    assert line.startswith(f"trio_codex: configuration error: {named}"), stderr


async def test_help_of_the_installed_script_names_every_variable(tmp_path: Path) -> None:
    from trio_codex.settings import SETTINGS

    done = await trio.run_process(
        [os.fspath(TRIO_CODEX), "serve", "--help"],
        env={**os.environ, "COLUMNS": "100"},
        capture_stdout=True,
        check=True,
    )
    text = " ".join(done.stdout.decode().split())
    for doc in SETTINGS:
        assert re.search(rf"{re.escape(doc.option)} \S+ .*?\[env {doc.env}; default", text), doc
