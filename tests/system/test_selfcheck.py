"""``codex/selfcheck.py`` against small stand-in programs: a chatty app-server whose answer is
found among notifications and server requests, one that never answers (bounded, then killed),
one that exits, a command that hangs, a command that cannot start."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import trio

from trio_codex import doctor
from trio_codex.codex import selfcheck


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


APP_SERVER = """\
import json, sys, os
open(sys.argv[0] + ".pid", "w").write(str(os.getpid()))
MODE = {mode!r}
line = sys.stdin.readline()
if MODE == "exit":
    sys.exit(3)
if MODE == "hang":
    import time; time.sleep(60)
request = json.loads(line)
print(json.dumps({{"method": "configWarning", "params": {{}}}}), flush=True)
print(json.dumps({{"id": 7, "method": "server/request", "params": {{}}}}), flush=True)
print(json.dumps({{"id": request["id"], "result": {{"userAgent": "fake"}}}}), flush=True)
sys.stdin.read()
"""


@pytest.mark.slow
async def test_the_handshake_skips_notifications_and_server_requests(tmp_path: Path) -> None:
    fake = _script(tmp_path, "codex", APP_SERVER.format(mode="answer"))
    probe = await selfcheck.app_server_handshake(fake, env=dict(os.environ), cwd=tmp_path)
    assert probe.error is None
    assert probe.answer == {"id": 0, "result": {"userAgent": "fake"}}
    assert probe.returncode == 0  # it exited by itself once stdin closed
    assert doctor.check_app_server(probe).status == "ok"


@pytest.mark.slow
async def test_a_silent_app_server_times_out_and_is_killed(tmp_path: Path) -> None:
    fake = _script(tmp_path, "codex", APP_SERVER.format(mode="hang"))
    with trio.fail_after(10):
        probe = await selfcheck.app_server_handshake(
            fake, env=dict(os.environ), cwd=tmp_path, timeout=1.0
        )
    assert probe.error == "no answer to initialize within 1 s"
    assert _gone(int(Path(f"{fake}.pid").read_text()))


@pytest.mark.slow
async def test_an_app_server_that_exits_is_reported(tmp_path: Path) -> None:
    fake = _script(tmp_path, "codex", APP_SERVER.format(mode="exit"))
    probe = await selfcheck.app_server_handshake(fake, env=dict(os.environ), cwd=tmp_path)
    assert probe.error == "app-server closed its output without answering initialize"
    assert doctor.check_app_server(probe).status == "fail"


@pytest.mark.slow
async def test_a_command_that_hangs_is_bounded_and_killed(tmp_path: Path) -> None:
    fake = _script(
        tmp_path,
        "codex",
        'import os, sys, time\nopen(sys.argv[0] + ".pid", "w").write(str(os.getpid()))\n'
        'print("partial", flush=True)\ntime.sleep(60)\n',
    )
    with trio.fail_after(10):
        probe = await selfcheck.run_command(
            [str(fake), "--version"], env=dict(os.environ), cwd=tmp_path, timeout=1.0
        )
    assert probe.error == "no answer within 1 s"
    assert probe.stdout == "partial\n"
    assert _gone(int(Path(f"{fake}.pid").read_text()))


@pytest.mark.slow
async def test_a_command_that_cannot_start_is_a_result(tmp_path: Path) -> None:
    probe = await selfcheck.run_command(
        [str(tmp_path / "missing")], env={}, cwd=tmp_path, timeout=5
    )
    assert probe.error is not None
    assert probe.error.startswith("cannot run")
