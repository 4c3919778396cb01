"""The only module that touches OS processes: spawn Codex in its own process group, end the group.

``open_process_group`` starts a child in a new session (so its pid is also its process group id)
and guarantees that when the ``async with`` block is left, for any reason, cancellation included,
the whole group is dead: SIGTERM to the group, up to ``grace`` seconds for the leader to exit,
SIGKILL to the group, and always a final SIGKILL sweep after the leader is gone (descendants
that ignore SIGTERM, or that outlive a leader which exited by itself). The cleanup is shielded
and bounded: it blocks at most ``grace + 1`` seconds.

Descendants that leave the group on purpose (``setsid``) are out of reach of a group kill; Codex
puts its own sandboxed commands in a PID namespace that dies with it (CODEX_FACTS section 7).

``read_lines`` splits a byte stream into lines with a cap on the line length, so a child that
prints a 10 MB line costs at most the cap in memory.

Knows nothing about HTTP, OpenAI or Codex's event format.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio


class SpawnError(OSError):
    """The child could not be started (``execve``/``fork`` failed); ``errno`` says why."""


def signal_process(pid: int, sig: signal.Signals) -> bool:
    """Send ``sig`` to one process (not a group); False when it is gone or not ours."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def killpg_quiet(pgid: int, sig: signal.Signals) -> bool:
    """Signal a process group; False when no process of the group is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        # The pgid was recycled by a process we do not own: ours are all gone.
        return False
    return True


async def terminate_group(proc: trio.Process, grace: float) -> None:
    """TERM the group, wait up to ``grace`` for the leader, KILL the group, reap the leader.

    Call it shielded. Returns once the leader is reaped; every other member has been sent
    SIGKILL (the kernel completes that without our help).
    """
    if proc.returncode is None:
        killpg_quiet(proc.pid, signal.SIGTERM)
        with trio.move_on_after(grace):
            await proc.wait()
    # Always sweep: members that ignore SIGTERM, or that outlive a leader that already exited.
    killpg_quiet(proc.pid, signal.SIGKILL)
    with trio.move_on_after(1.0):
        await proc.wait()


@asynccontextmanager
async def open_process_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    grace: float,
) -> AsyncIterator[trio.Process]:
    """Run ``argv`` (no shell) with piped stdin, stdout and stderr in a new session.

    ``SpawnError`` (an ``OSError`` with the original ``errno``) when it cannot be started. On exit the whole process group has been signalled with SIGKILL and the leader reaped;
    the exit blocks at most ``grace + 1`` seconds, whatever cancellation is pending.
    """
    try:
        proc = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=os.fspath(cwd),
            start_new_session=True,
        )
    except OSError as exc:
        raise SpawnError(exc.errno, exc.strerror, exc.filename) from exc
    try:
        yield proc
    finally:
        with trio.CancelScope(shield=True):
            await terminate_group(proc, grace)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    await stream.aclose()


async def read_lines(
    stream: trio.abc.ReceiveStream, *, max_line: int = 8 * 1024 * 1024
) -> AsyncGenerator[bytes, None]:
    """Yield each line (without the newline) until EOF; a last unterminated line is yielded too.

    A line longer than ``max_line`` bytes is dropped whole (its head and the rest up to the
    next newline), so memory stays bounded by ``max_line`` plus one read.
    """
    buf = bytearray()
    skipping = False
    while True:
        chunk = await stream.receive_some(65536)
        if not chunk:
            if buf and not skipping:
                yield bytes(buf)
            return
        start = 0
        while (nl := chunk.find(b"\n", start)) >= 0:
            if skipping:
                skipping = False
                buf.clear()
            else:
                buf += chunk[start:nl]
                if len(buf) <= max_line:
                    yield bytes(buf)
                buf.clear()
            start = nl + 1
        if not skipping:
            buf += chunk[start:]
            if len(buf) > max_line:
                buf.clear()
                skipping = True


async def drain_capped(stream: trio.abc.ReceiveStream, sink: bytearray, cap: int) -> None:
    """Read ``stream`` to EOF, keeping the first ``cap`` bytes in ``sink`` (the rest is dropped).

    Reading everything keeps the child from blocking on a full pipe (64 KiB on Linux).
    """
    while chunk := await stream.receive_some(65536):
        room = cap - len(sink)
        if room > 0:
            sink += chunk[:room]
