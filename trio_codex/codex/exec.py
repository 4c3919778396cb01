"""The ``codex exec`` backend: runs ``codex exec --json`` per request and parses its JSONL.

``ExecBackend.run`` spawns Codex in its own process group (``process.open_process_group``), feeds
the prompt on stdin, drains stderr (capped), and turns each stdout line into a ``CodexEvent``
with ``parse_event`` (pure, never raises: unknown or malformed lines are ``UnknownEvent``; a
``turn.completed`` without a usage object or an ``agent_message`` without text is malformed, so
junk never ends a turn or stands for an answer). The group is dead when ``run`` returns or is
cancelled.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import signal
from collections.abc import Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Final, TypeVar

import trio

from ..errors import CodexUnavailableError
from ..run.events import (
    CodexEvent,
    ErrorEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    ThreadStarted,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UnknownEvent,
    Usage,
)
from ..run.runner import Emit, ExitInfo, RunSpec
from ..settings import Settings
from . import process
from .command import build_command, resolve_codex_binary
from .process import read_lines

#: After stdout closes (or the leader exits), how long to wait for the rest before killing.
EXIT_DRAIN: Final = 0.5
#: Bytes of stderr kept per run (the rest is read and dropped).
STDERR_CAP: Final = 64 * 1024

T = TypeVar("T")

log = logging.getLogger("trio_codex.codex.exec")

#: Why a spawn failed, by errno: (cause, whether it is likely to pass so a retry makes sense).
_SPAWN_CAUSES: Final[dict[int, tuple[str, bool]]] = {
    errno.ENOENT: ("is missing (removed or moved by an upgrade?)", False),
    errno.ENOTDIR: ("is missing (removed or moved by an upgrade?)", False),
    errno.EACCES: ("is not executable (permission denied)", False),
    errno.EPERM: ("is not executable (operation not permitted)", False),
    errno.ENOEXEC: ("is not an executable this system can run", False),
    errno.E2BIG: ("cannot be started: its command line and environment are too long", False),
    errno.EMFILE: ("cannot be started: the server is out of file descriptors", True),
    errno.ENFILE: ("cannot be started: the system is out of file descriptors", True),
    errno.EAGAIN: ("cannot be started: out of processes (fork failed)", True),
    errno.ENOMEM: ("cannot be started: out of memory", True),
}


def unavailable_error(binary: Path, exc: OSError) -> CodexUnavailableError:
    """The 503 a client gets when Codex (``binary``) cannot be started, naming the cause."""
    cause, transient = _SPAWN_CAUSES.get(
        exc.errno or 0, (f"cannot be started: {exc.strerror or exc}", False)
    )
    return CodexUnavailableError(
        f"The Codex CLI at {binary} {cause}.", retry_after=5.0 if transient else None
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def parse_usage(data: object) -> Usage:
    """``turn.completed.usage`` to ``Usage``; missing or malformed counts read as 0."""
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=_int(data.get("input_tokens")),
        cached_input_tokens=_int(data.get("cached_input_tokens")),
        output_tokens=_int(data.get("output_tokens")),
        reasoning_output_tokens=_int(data.get("reasoning_output_tokens")),
        cache_write_input_tokens=_int(data.get("cache_write_input_tokens")),
    )


def parse_event(line: bytes | str) -> CodexEvent:
    """Parse one line of ``codex exec --json`` output. Never raises."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return UnknownEvent(text)
    if not isinstance(data, dict):
        return UnknownEvent(text)
    kind = data.get("type")
    if kind == "thread.started":
        return ThreadStarted(_str(data.get("thread_id")))
    if kind == "turn.started":
        return TurnStarted()
    if kind == "turn.completed":
        # A malformed completion is not a completion: the answer may still be on its way.
        usage = data.get("usage")
        return TurnCompleted(parse_usage(usage)) if isinstance(usage, dict) else UnknownEvent(text)
    if kind == "turn.failed":
        error = data.get("error")
        message = _str(error.get("message")) if isinstance(error, dict) else ""
        return TurnFailed(message or "Codex reported a failed turn without a message")
    if kind == "error":
        return ErrorEvent(_str(data.get("message")))
    if isinstance(kind, str) and kind.startswith("item."):
        item = data.get("item")
        if not isinstance(item, dict):
            return UnknownEvent(text)
        phase = kind.removeprefix("item.")
        item_type = _str(item.get("type"))
        item_id = _str(item.get("id"))
        if phase == "completed" and item_type == "agent_message":
            answer = item.get("text")
            if not isinstance(answer, str):
                return UnknownEvent(text)
            return MessageCompleted(item_id, answer)
        if phase == "completed" and item_type == "reasoning":
            return ReasoningCompleted(item_id, _str(item.get("text")))
        return ItemEvent(phase, item_type, item)
    return UnknownEvent(text)


class ExecBackend:
    """Runs ``codex exec --json`` in its own process group; the group is dead when ``run`` ends.

    A Codex that cannot be started raises ``CodexUnavailableError`` (503 ``codex_unavailable``,
    naming the cause: missing binary, E2BIG, EMFILE, ...). ``on_spawn(pgid)`` is called as soon
    as the group exists, before Codex gets its prompt; ``on_reap(pgid)`` once the group is dead,
    on every path out of ``run`` (cancellation and errors included). The reaper uses them.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        extra_env_names: tuple[str, ...] = (),
        on_spawn: Callable[[int], None] | None = None,
        on_reap: Callable[[int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.binary, self.binary_env = resolve_codex_binary(settings.codex_path)
        self.environ = environ
        self.extra_env_names = extra_env_names
        self.on_spawn = on_spawn
        self.on_reap = on_reap

    async def run(self, spec: RunSpec, emit: Emit) -> ExitInfo:
        cmd = build_command(
            self.settings,
            spec,
            binary=self.binary,
            binary_env=self.binary_env,
            environ=self.environ,
            extra_env_names=self.extra_env_names,
        )
        stderr = bytearray()
        info = ExitInfo()
        exited = trio.Event()
        stderr_closed = trio.Event()
        spawned: int | None = None
        try:
            async with process.open_process_group(
                cmd.argv, env=cmd.env, cwd=cmd.cwd, grace=self.settings.kill_grace
            ) as proc:
                # Announced before stdin is written: a Codex that has read its prompt is known.
                spawned = proc.pid
                if self.on_spawn is not None:
                    self.on_spawn(proc.pid)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_feed_stdin, proc, cmd.stdin)
                        nursery.start_soon(_drain_stderr, proc, stderr, stderr_closed)
                        nursery.start_soon(_watch_exit, proc, exited)
                        async with aclosing(read_lines(_pipe(proc.stdout))) as lines:
                            async for line in lines:
                                if line.strip():
                                    await emit(parse_event(line))
                        # stdout is closed: Codex is done or dying. Give it a moment, then the
                        # group is killed on the way out either way.
                        with trio.move_on_after(EXIT_DRAIN):
                            await exited.wait()
                            await stderr_closed.wait()
                        nursery.cancel_scope.cancel()
                finally:
                    info.exit_code = proc.returncode if proc.returncode is not None else proc.poll()
                    info.stderr = stderr.decode("utf-8", "replace")
        except process.SpawnError as exc:
            # Only the spawn raises this (nothing ran): a 503 naming the cause, not a 500.
            error = unavailable_error(self.binary, exc)
            log.error("cannot start Codex: %s", error.message)  # noqa: TRY400 - one clear line
            raise error from exc
        finally:
            # The group is dead here whatever happened (cancellation included).
            if spawned is not None and self.on_reap is not None:
                self.on_reap(spawned)
        info.exit_code = proc.returncode
        return info


def _pipe(stream: T | None) -> T:
    if stream is None:  # pragma: no cover - open_process_group always pipes all three
        raise RuntimeError("the Codex process has no pipe")
    return stream


async def _feed_stdin(proc: trio.Process, data: bytes) -> None:
    stdin = _pipe(proc.stdin)
    # Codex may stop reading early (it failed at startup): its output says why.
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        if data:
            await stdin.send_all(data)
        await stdin.aclose()


async def _drain_stderr(proc: trio.Process, sink: bytearray, closed: trio.Event) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await process.drain_capped(_pipe(proc.stderr), sink, STDERR_CAP)
    closed.set()


async def _watch_exit(proc: trio.Process, exited: trio.Event) -> None:
    """When the leader exits, wait briefly, then kill what is left of its group, so that a
    descendant holding stdout open cannot keep the run alive."""
    await proc.wait()
    exited.set()
    await trio.sleep(EXIT_DRAIN)
    process.killpg_quiet(proc.pid, signal.SIGKILL)
