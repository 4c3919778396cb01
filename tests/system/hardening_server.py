"""The server as a child process, for the hardening tests of this folder: started with the
documented command (``hypercorn trio_codex.app:app -k trio``) or ``python -m trio_codex``, its
stderr collected and searchable, the whole session SIGKILLed at the end. Every wait is for an
event (output, a pidfd), bounded by the caller's ``trio.fail_after``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import trio

#: A Codex stand-in that answers ``--version`` and ``debug models`` like the CLI, and ``exec``
#: with one message (or, for a prompt holding ``hang``, with nothing, after printing its pid to
#: the FIFO named after ``notify=``, until killed).
FAKE_CODEX = r"""
import json, os, re, sys, time
args = sys.argv[1:]
if args == ["--version"]:
    print("codex-cli 0.169.0")
    sys.exit(0)
if args[:2] == ["debug", "models"]:
    print(json.dumps({"models": [{"slug": "gpt-test", "visibility": "list",
                                  "supported_reasoning_levels": [{"effort": "low"}]}]}))
    sys.exit(0)
prompt = sys.stdin.read()
def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
out({"type": "thread.started", "thread_id": "th"})
out({"type": "turn.started"})
found = re.search(r"notify=(\S+)", prompt)
if found:
    with open(found.group(1), "w") as f:
        f.write(f"pids {os.getpid()}\n")
if "hang" in prompt:
    while True:
        time.sleep(3600)
out({"type": "item.completed", "item": {"id": "m", "type": "agent_message", "text": "ok"}})
out({"type": "turn.completed", "usage": {"input_tokens": 1, "output_tokens": 1}})
"""

HYPERCORN_READY = r"Running on (http://\S+)"
MODULE_READY = r"listening on (http://\S+)"


def write_fake_codex(directory: Path, python: str = sys.executable) -> Path:
    path = directory / "codex"
    path.write_text(f"#!{python}\n{FAKE_CODEX}")
    path.chmod(0o755)
    return path


def server_env(directory: Path, codex: Path, **settings: str) -> dict[str, str]:
    """A minimal server environment with its work directory and CODEX_HOME in ``directory``;
    ``CODEX_BACKEND=exec``, the only thing the fake codex above speaks (these tests are about
    the server process; both backends run the fake codex in ``test_processes.py`` and
    ``test_shutdown.py``)."""
    for name in ("work", "home"):
        (directory / name).mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.fspath(directory),
        "LANG": "C.UTF-8",
        "CODEX_PATH": os.fspath(codex),
        "CODEX_HOME": os.fspath(directory / "home"),
        "CODEX_WORKDIR": os.fspath(directory / "work"),
        "CODEX_KILL_GRACE_SECONDS": "0.5",
        "CODEX_BACKEND": "exec",
    }
    env.update(settings)
    return env


def hypercorn_argv(*extra: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "hypercorn", "trio_codex.app:app", "-k", "trio", *extra]


def module_argv(*extra: str, python: str = sys.executable) -> list[str]:
    return [python, "-m", "trio_codex", *extra]


@dataclass
class Server:
    proc: trio.Process
    log: bytearray = field(default_factory=bytearray)
    _changed: trio.Event = field(default_factory=trio.Event)
    eof: bool = False

    @property
    def text(self) -> str:
        return self.log.decode("utf-8", "replace")

    async def pump(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.receive_some(65536):
            self.log += chunk
            self._changed.set()
            self._changed = trio.Event()
        self.eof = True
        self._changed.set()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` in stderr, once it appears."""
        while (match := re.search(pattern, self.text)) is None:
            assert not self.eof, f"server output ended without {pattern!r}:\n{self.text}"
            await self._changed.wait()
        return match

    async def wait_eof(self) -> None:
        while not self.eof:
            await self._changed.wait()


@contextlib.asynccontextmanager
async def running(
    argv: Sequence[str], env: Mapping[str, str], *, cwd: Path, prefix: Sequence[str] = ()
) -> AsyncIterator[Server]:
    """Start ``argv`` (in a session of its own); on the way out SIGKILL the whole session."""
    proc = await trio.lowlevel.open_process(
        [*prefix, *argv],
        env=dict(env),
        cwd=os.fspath(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    server = Server(proc)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.pump)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            if proc.stderr is not None:
                await proc.stderr.aclose()


# --------------------------------------------------------------------------- /proc


async def stop_with(server: Server, signum: signal.Signals) -> tuple[int, float]:
    """Send ``signum`` to the server; its exit code and the seconds it took to exit."""
    start = time.monotonic()
    os.kill(server.proc.pid, signum)
    code = await server.proc.wait()
    return code, time.monotonic() - start


async def read_fifo_line(path: Path) -> str:
    """Wait (without polling) for one line on the FIFO ``path``."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # RDWR: never EOF while we hold it
    stream = trio.lowlevel.FdStream(fd)
    try:
        buf = b""
        while b"\n" not in buf:
            buf += await stream.receive_some(4096)
    finally:
        await stream.aclose()
    return buf.split(b"\n", 1)[0].decode()


def world_accessible(path: Path) -> None:
    """Let another user (the tests' ``nobody``) traverse and write ``path``."""
    path.chmod(path.stat().st_mode | stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
