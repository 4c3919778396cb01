"""Helpers for the shutdown, chaos, load and misbehaving-Codex tests.

* ``/proc`` probes: the live processes whose working directory is a test's Codex workdir (every
  Codex and every descendant inherits it, so it marks "a process from a request"), parents and
  children, RSS.
* ``ServerProcess``: the server as a child process (``hypercorn trio_codex.app:app -k trio`` or
  ``python -m trio_codex``) on 127.0.0.1 port 0, its stderr collected and searchable.
* ``release_gate``: open a fake codex's ``gate`` FIFO to let a ``gate`` run go on.
* Raw HTTP/1.1 over trio sockets (for clients that stop reading or vanish), and checks that an
  answer is a well-formed chat completion, SSE stream or OpenAI error.

Every wait is for an event and bounded by the caller's ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from tests.support import sse

# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (state first), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[1].split()


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def children_of(pid: int) -> list[int]:
    return [p for p in pids() if parent_of(p) == pid and alive(p)]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def processes_in(workdir: Path) -> list[int]:
    """Live processes whose working directory is ``workdir`` or below it."""
    root = os.fspath(workdir.resolve())
    found = []
    for pid in pids():
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + os.sep)) and alive(pid):
            found.append(pid)
    return found


def rss_kib(pid: int | None = None) -> int:
    """Resident set size of ``pid`` (default: this process) in KiB."""
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def live_rss_kib() -> int:
    """This process's RSS after a garbage collection and ``malloc_trim(0)`` (glibc): the memory
    actually in use, without the freed heap glibc keeps for later."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)
    return rss_kib()


async def wait_gone(pid: int) -> None:
    """Return once ``pid`` has exited (pidfd readability: an event, not a poll)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if alive(pid):
            await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)


async def wait_all_gone(pid_list: list[int]) -> dict[int, float]:
    """Wait for every pid to exit; return when each one was seen gone (``trio.current_time``)."""
    seen: dict[int, float] = {}

    async def one(pid: int) -> None:
        await wait_gone(pid)
        seen[pid] = trio.current_time()

    async with trio.open_nursery() as nursery:
        for pid in pid_list:
            nursery.start_soon(one, pid)
    return seen


async def assert_no_process_in(workdir: Path, within: float = 3.0) -> None:
    """Every process started for a request is gone (SIGKILLed ones may need a moment to go)."""
    with trio.move_on_after(within):
        await wait_all_gone(processes_in(workdir))
    left = processes_in(workdir)
    assert not left, [(p, cmdline(p)) for p in left]


def kill_all_in(workdir: Path) -> list[int]:
    """Test cleanup: SIGKILL whatever a failed test left in ``workdir``."""
    left = processes_in(workdir)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


# --------------------------------------------------------------------------- FIFOs


def _write_line(path: Path, line: bytes) -> None:
    with path.open("wb") as f:  # blocks until the fake has opened the FIFO for reading
        f.write(line)


async def release_gate(path: Path) -> None:
    """Let a fake codex waiting on the ``gate`` FIFO ``path`` go on."""
    await trio.to_thread.run_sync(_write_line, path, b"go\n", abandon_on_cancel=True)


# --------------------------------------------------------------------------- server process


def server_env(
    tmp_path: Path, fake_codex: Path, **settings: str | float | int
) -> tuple[dict[str, str], Path]:
    """A minimal environment for a server child running the fake codex; returns it and the
    Codex workdir. No warm spares unless ``CODEX_WARM_SPARES`` is given."""
    workdir = tmp_path / "work"
    home = tmp_path / "codex-home"
    workdir.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.fspath(tmp_path),
        "LANG": "C.UTF-8",
        "CODEX_PATH": os.fspath(fake_codex),
        "CODEX_HOME": os.fspath(home),
        "CODEX_WORKDIR": os.fspath(workdir),
        "CODEX_WARM_SPARES": "0",
    }
    env.update({key: str(value) for key, value in settings.items()})
    return env, workdir


@dataclass
class ServerProcess:
    """A server running as a child process in its own session (killed as a group at the end)."""

    proc: trio.Process
    log: bytearray = field(default_factory=bytearray)
    url: str = ""
    _changed: trio.Event = field(default_factory=trio.Event)
    _eof: bool = False

    @property
    def text(self) -> str:
        return self.log.decode("utf-8", "replace")

    async def pump(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.receive_some(65536):
            self.log += chunk
            self._changed.set()
            self._changed = trio.Event()
        self._eof = True
        self._changed.set()

    async def wait_for(self, pattern: str) -> re.Match[str]:
        """The first match of ``pattern`` in the server's stderr, once it appears."""
        while (match := re.search(pattern, self.text)) is None:
            assert not self._eof, f"server output ended without {pattern!r}:\n{self.text}"
            await self._changed.wait()
        return match

    @property
    def hostport(self) -> tuple[str, int]:
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)


@contextlib.asynccontextmanager
async def run_server(
    launcher: str, env: Mapping[str, str], *, graceful: int, cwd: Path
) -> AsyncIterator[ServerProcess]:
    """Start ``launcher`` (``hypercorn`` or ``module``) on 127.0.0.1:0; yields once it listens.

    On the way out the whole server session is SIGKILLed if it is still running.
    """
    if launcher == "hypercorn":
        argv = [sys.executable, "-m", "hypercorn", "trio_codex.app:app", "-k", "trio"]
        argv += ["--bind", "127.0.0.1:0", "--graceful-timeout", str(graceful)]
        argv += ["--keep-alive", "60"]
        ready = r"Running on (http://\S+)"
    else:
        argv = [sys.executable, "-m", "trio_codex", "--bind", "127.0.0.1:0"]
        argv += ["--graceful-timeout", str(graceful)]
        ready = r"listening on (http://\S+)"
    async with open_server(argv, env, cwd=cwd, ready=ready) as server:
        yield server


@contextlib.asynccontextmanager
async def open_server(
    argv: list[str], env: Mapping[str, str], *, cwd: Path, ready: str
) -> AsyncIterator[ServerProcess]:
    """Start ``argv`` in a session of its own; yields once its stderr matches ``ready``, whose
    first group is the server's URL (within 30 s). On the way out a session still running is
    SIGKILLed."""
    proc = await trio.lowlevel.open_process(
        argv,
        env=dict(env),
        cwd=os.fspath(cwd),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    server = ServerProcess(proc)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.pump)
            with trio.fail_after(30):
                server.url = (await server.wait_for(ready)).group(1)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            if proc.stderr is not None:
                await proc.stderr.aclose()


# --------------------------------------------------------------------------- raw HTTP


def chat_body(prompt: str = "hi", **extra: Any) -> dict[str, Any]:
    """A chat completions request for ``gpt-test`` with one user message."""
    return {"model": "gpt-test", "messages": [{"role": "user", "content": prompt}], **extra}


def http_request(
    host: str, port: int, body: dict[str, Any], path: str = "/v1/chat/completions"
) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def _dechunk(data: bytes) -> bytes | None:
    """The payload of a complete chunked body, or None when it is incomplete."""
    out = bytearray()
    pos = 0
    for _ in range(len(data) + 1):
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        start = eol + 2
        if len(data) < start + size + 2:
            return None
        out += data[start : start + size]
        pos = start + size + 2
    return None


def parse_response(data: bytes) -> RawResponse | None:
    """A complete HTTP/1.1 response from ``data`` (Content-Length or chunked), else None."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(rest)
        return None if body is None else RawResponse(status, headers, body)
    length = int(headers.get("content-length", "0"))
    if len(rest) < length:
        return None
    return RawResponse(status, headers, rest[:length])


async def raw_exchange(host: str, port: int, request: bytes) -> RawResponse | None:
    """Send ``request`` and read until the response is complete or the server closes."""
    sock = await trio.open_tcp_stream(host, port)
    async with sock:
        await sock.send_all(request)
        data = bytearray()
        while chunk := await sock.receive_some(65536):
            data += chunk
            if (response := parse_response(bytes(data))) is not None:
                return response
    return parse_response(bytes(data))


# --------------------------------------------------------------------------- shape checks


def check_error(obj: Any) -> dict[str, Any]:
    """``obj`` is an OpenAI error envelope; returns its ``error``."""
    assert isinstance(obj, dict), obj
    assert set(obj) == {"error"}, obj
    error = obj["error"]
    assert isinstance(error, dict), obj
    assert set(error) >= {"message", "type", "param", "code"}, obj
    assert isinstance(error["message"], str), obj
    assert error["message"], obj
    assert isinstance(error["type"], str), obj
    return error


def check_completion(obj: Any) -> str:
    """``obj`` is a ``chat.completion``; returns the answer text."""
    assert isinstance(obj, dict), obj
    assert obj["object"] == "chat.completion", obj
    assert obj["id"].startswith("chatcmpl-"), obj
    (choice,) = obj["choices"]
    assert choice["finish_reason"] == "stop", obj
    assert choice["message"]["role"] == "assistant", obj
    content = choice["message"]["content"]
    assert isinstance(content, str), obj
    return content


@dataclass
class StreamOutcome:
    """A parsed SSE body: the content, or the in-stream error, and whether it ended properly."""

    text: str
    error: dict[str, Any] | None
    done: bool
    frames: int


def check_stream(body: bytes, *, complete: bool = True) -> StreamOutcome:
    """Parse an SSE body of chat chunks.

    With ``complete`` the stream must have ended properly: role chunk first, then ``[DONE]``
    after a finish chunk or after an error frame (nothing else may follow an error).
    """
    text: list[str] = []
    error = None
    done = False
    frames = 0
    events, tail = sse.split(body)  # tail: after the last blank line, empty for a complete stream
    for event in events:
        if event.raw.startswith(":"):
            assert event.raw == ": keep-alive", event.raw
            continue
        assert event.raw.startswith("data: "), event.raw
        assert not done, f"an event after [DONE]: {event.raw!r}"
        assert error is None or event.data == sse.DONE, f"an event after the error: {event.raw!r}"
        frames += 1
        if event.data == sse.DONE:
            done = True
            continue
        obj = event.json()
        if "error" in obj:
            error = check_error(obj)
            continue
        assert obj["object"] == "chat.completion.chunk", obj
        if frames == 1:
            assert obj["choices"][0]["delta"]["role"] == "assistant", obj
        text.extend(choice["delta"].get("content") or "" for choice in obj["choices"])
    if complete:
        assert tail == "", f"truncated stream: {tail!r}"
        assert done, body[-200:]
    return StreamOutcome("".join(text), error, done, frames)
