"""One Codex run per request, bounded in queue time and run time, hosted outside the response task.

``CodexRunner.start(spec)`` returns once the request holds a concurrency slot: it raises
``QueueTimeoutError`` when no slot frees up within the queue timeout (so the handler can still
answer 503 before sending a byte), and a caller cancelled while queued leaves no waiter behind.
The run itself is a task in the server's lifespan nursery (not in the task that sends the
response), so a client that stops reading cannot keep it alive past the execution deadline.

Guarantees, each covered by tests:

* the run starts only once a consumer attaches (``RunHandle.attach``); a response that is
  abandoned before its body is iterated spawns nothing and frees its slot;
* the execution deadline (and the optional idle deadline) end the run with ``ExecTimeoutError``,
  and the backend's process group is dead when ``RunHandle.done`` is set;
* ``RunHandle.cancel()`` (client gone, stream closed) ends the run at once; it is synchronous, so
  it is safe from ``aclose()`` and ``finally`` blocks that may not await;
* the slot is released in every outcome: after any mix of results ``borrowed_tokens == 0``;
* no failure of a run escapes into the lifespan nursery: it becomes ``RunHandle.error``.

The backend (``ExecBackend`` runs ``codex exec``; tests use fakes; a token-streaming
``codex app-server`` backend fits the same ``Backend`` protocol) only executes: the slot, the
deadlines and the event channel live here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import signal
from collections.abc import Awaitable, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Final, Protocol, TypeVar

import trio
from trio_util import AsyncValue

from . import process
from .command import RunSpec, build_command, resolve_codex_binary
from .errors import ExecTimeoutError, QueueTimeoutError, ServiceError
from .events import CodexEvent, parse_event
from .process import read_lines
from .settings import Settings

log = logging.getLogger("trio_codex.runner")

#: How long a started run waits for its consumer before giving up (see module docstring).
ATTACH_TIMEOUT: Final = 10.0
#: After stdout closes (or the leader exits), how long to wait for the rest before killing.
EXIT_DRAIN: Final = 0.5
#: Bytes of stderr kept per run (the rest is read and dropped).
STDERR_CAP: Final = 64 * 1024
#: Events buffered between a run and its consumer.
CHANNEL_SIZE: Final = 256

Emit = Callable[[CodexEvent], Awaitable[None]]
T = TypeVar("T")


@dataclasses.dataclass
class ExitInfo:
    """How the backend's process ended."""

    exit_code: int | None = None
    stderr: str = ""


class Backend(Protocol):
    """Executes one run, emitting events in order; must leave no process behind when it returns
    or is cancelled."""

    async def run(self, spec: RunSpec, emit: Emit) -> ExitInfo: ...


class RunHandle:
    """The consumer's side of one run.

    Iterate ``events`` until it ends (the channel closes); then ``error`` is set if the run
    did not get to finish (timeout, internal failure), and ``exit`` tells how Codex ended.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[CodexEvent]) -> None:
        self.events = receive
        self.error: ServiceError | None = None
        self.exit = ExitInfo()
        self.queue_wait: float = 0.0
        self.began: float = 0.0
        self.run_time: float = 0.0
        self.started = False
        self.done = trio.Event()
        self.detached = False
        self._attached = trio.Event()
        self._scope = trio.CancelScope()

    def attach(self) -> None:
        """Signal that a consumer is reading; the run starts now (idempotent)."""
        self._attached.set()

    def cancel(self) -> None:
        """End the run now; never blocks, safe to call at any time and more than once.
        A detached run is not cancelled: it is finishing on its own."""
        if not self.detached:
            self._scope.cancel()

    def detach(self) -> None:
        """The consumer has all it needs: let the run finish by itself (it keeps its slot and
        its deadlines until Codex exits) and drop the events it still prints."""
        self.detached = True

    async def consume(
        self,
        on_event: Callable[[CodexEvent], None],
        *,
        until: Callable[[CodexEvent], bool] | None = None,
    ) -> None:
        """Attach and hand every event to ``on_event`` until the run ends, or until
        ``until(event)`` holds (then the run is detached, not cancelled). If this is cancelled
        (the client left), the run is cancelled with it."""
        self.attach()
        try:
            async for event in self.events:
                on_event(event)
                if until is not None and until(event):
                    self.detach()
                    return
        finally:
            self.cancel()


class CodexRunner:
    """Concurrency slots, queue and execution deadlines around a ``Backend``."""

    def __init__(
        self,
        backend: Backend,
        *,
        max_parallel: int,
        queue_timeout: float,
        exec_timeout: float,
        idle_timeout: float | None = None,
    ) -> None:
        self.backend = backend
        self.limiter = trio.CapacityLimiter(max_parallel)
        self.queue_timeout = queue_timeout
        self.exec_timeout = exec_timeout
        self.idle_timeout = idle_timeout
        self._active: set[RunHandle] = set()
        #: Runs holding a slot, and requests waiting for one (awaitable: ``wait_value``).
        self.running = AsyncValue(0)
        self.queued = AsyncValue(0)

    def cancel_all(self) -> None:
        """End every run holding a slot, detached ones included (a stop that cannot wait)."""
        for handle in list(self._active):
            handle._scope.cancel()

    async def start(
        self, nursery: trio.Nursery, spec: RunSpec, *, scratch: Path | None = None
    ) -> RunHandle:
        """Wait for a slot (bounded by the queue timeout), then start the run in ``nursery``.

        ``scratch`` is a directory the run owns: it is removed when the run ends, whatever
        happens, even when no slot was granted.
        """
        handle: RunHandle = await nursery.start(self._serve, spec, scratch)
        return handle

    async def _serve(
        self,
        spec: RunSpec,
        scratch: Path | None,
        task_status: trio.TaskStatus[RunHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        send, receive = trio.open_memory_channel[CodexEvent](CHANNEL_SIZE)
        handle = RunHandle(receive)
        try:
            with send, handle._scope:
                queued_at = trio.current_time()
                await self._acquire(handle)
                try:
                    handle.queue_wait = trio.current_time() - queued_at
                    self._active.add(handle)
                    self.running.value += 1
                    task_status.started(handle)
                    await self._run(spec, handle, send)
                finally:
                    self._active.discard(handle)
                    self.limiter.release_on_behalf_of(handle)
                    self.running.value -= 1
        finally:
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)
            handle.done.set()

    async def _acquire(self, handle: RunHandle) -> None:
        try:
            self.limiter.acquire_on_behalf_of_nowait(handle)
        except trio.WouldBlock:
            pass
        else:
            # A checkpoint (start() always is one) that cannot be cancelled: a cancellation
            # here would leave the slot borrowed for ever, since the caller's release is only
            # armed once this returns (found by tests/test_chaos.py).
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        self.queued.value += 1
        try:
            with trio.fail_after(self.queue_timeout):
                await self.limiter.acquire_on_behalf_of(handle)
        except trio.TooSlowError:
            raise QueueTimeoutError(
                f"All {self.limiter.total_tokens} Codex slots stayed busy for "
                f"{self.queue_timeout:g} s; try again later",
                retry_after=min(max(1.0, self.queue_timeout), 30.0),
            ) from None
        finally:
            self.queued.value -= 1

    async def _run(
        self, spec: RunSpec, handle: RunHandle, send: trio.MemorySendChannel[CodexEvent]
    ) -> None:
        """Run the backend; every outcome but cancellation ends up in ``handle``."""
        began = trio.current_time()
        idle = _IdleWatch(self.idle_timeout)

        async def emit(event: CodexEvent) -> None:
            idle.touch()
            if handle.detached:
                await trio.lowlevel.checkpoint()
                return
            await send.send(event)

        try:
            with trio.move_on_after(self.exec_timeout) as deadline:
                with trio.move_on_after(ATTACH_TIMEOUT) as attach_wait:
                    await handle._attached.wait()
                if attach_wait.cancelled_caught:
                    log.info("run abandoned: nobody attached within %s s", ATTACH_TIMEOUT)
                    handle.error = ServiceError("The request was abandoned before it started")
                    return
                handle.started = True
                began = handle.began = trio.current_time()
                async with trio.open_nursery() as nursery:
                    if self.idle_timeout is not None:
                        nursery.start_soon(idle.watch, nursery.cancel_scope, self.idle_timeout)
                    handle.exit = await self.backend.run(spec, emit)
                    nursery.cancel_scope.cancel()
            if deadline.cancelled_caught:
                handle.error = ExecTimeoutError(
                    f"Codex did not finish within CODEX_TIMEOUT ({self.exec_timeout:g} s); "
                    "the run was stopped"
                )
            elif idle.fired:
                handle.error = ExecTimeoutError(
                    f"Codex printed nothing for {self.idle_timeout:g} s (CODEX_IDLE_TIMEOUT); "
                    "the run was stopped"
                )
        except trio.Cancelled:
            raise
        except BaseException as exc:
            # A group may mix our cancellation with a real error: keep the error, and let
            # trio re-deliver the cancellation at the next checkpoint.
            if _only_cancellation(exc):
                raise
            log.exception("Codex run failed inside the server")
            handle.error = ServiceError("The server failed while running Codex")
        finally:
            handle.run_time = trio.current_time() - began


class _IdleWatch:
    """Cancels a scope when no event arrived for ``timeout`` seconds."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.last = trio.current_time()
        self.fired = False

    def touch(self) -> None:
        self.last = trio.current_time()

    async def watch(self, scope: trio.CancelScope, limit: float) -> None:
        while True:
            await trio.sleep_until(self.last + limit)
            if trio.current_time() >= self.last + limit:
                self.fired = True
                scope.cancel()
                return


def _only_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, trio.Cancelled | KeyboardInterrupt | SystemExit):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancellation(e) for e in exc.exceptions)
    return False


class ExecBackend:
    """Runs ``codex exec --json`` in its own process group; the group is dead when ``run`` ends.

    ``on_spawn(pgid)`` is called as soon as the group exists, before Codex gets its prompt;
    ``on_reap(pgid)`` once the group is dead, on every path out of ``run`` (cancellation and
    errors included). The reaper (``reaper.py``) uses them.
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
