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
* no failure of a run escapes into the lifespan nursery: it becomes ``RunHandle.error``;
* the run folds its own events (``RunHandle.transcript``) and answers how it ended
  (``RunHandle.failure()``), so every consumer reads one outcome;
* the run owns its resources (``start(..., resources=)``: scratch directory, conversation
  lease): they are released once, when the run is over (or was never granted a slot), before
  ``RunHandle.done`` is set;
* a detached run (its answer is complete) may outlive that moment by at most
  ``DETACHED_EXIT_LIMIT`` seconds: then it is cancelled like any other.

The backend (``ExecBackend`` runs ``codex exec``; tests use fakes; a token-streaming
``codex app-server`` backend fits the same ``Backend`` protocol) only executes: the slot, the
deadlines and the event channel live here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Protocol

import trio
from trio_util import AsyncValue

from ..errors import (
    ExecTimeoutError,
    QueueTimeoutError,
    ServiceError,
    UpstreamError,
    UpstreamUnreachableError,
)
from ..settings import SandboxMode
from .events import (
    CodexEvent,
    ErrorEvent,
    ItemEvent,
    Transcript,
    is_answer_text,
    is_network_wait,
    is_retry_notice,
)
from .tool_bridge import ToolBridge
from .tools import ToolOutput, ToolResults, ToolSet

log = logging.getLogger("trio_codex.run.runner")

#: How long a started run waits for its consumer before giving up (see module docstring).
ATTACH_TIMEOUT: Final = 10.0
#: How long a detached run may take to exit once its answer is complete (then it is cancelled).
DETACHED_EXIT_LIMIT: Final = 10.0
#: Events buffered between a run and its consumer.
CHANNEL_SIZE: Final = 256

Emit = Callable[[CodexEvent], Awaitable[None]]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunSpec:
    """What one request asks Codex to do, after validation."""

    prompt: str
    model: str | None = None
    reasoning_effort: str | None = None
    sandbox: SandboxMode = "read-only"
    network_access: bool = False
    images: tuple[Path, ...] = ()
    output_schema: Path | None = None
    #: Continue this Codex thread (``codex exec resume``) instead of starting one.
    resume_thread_id: str | None = None
    #: With ``resume_thread_id``: branch instead, into a new thread holding that thread's
    #: history up to this turn (app-server ``thread/fork``; ``run.threads``).
    fork_at_turn: str | None = None
    #: Keep the thread on disk so a later request can resume it.
    persist: bool = False
    #: Client tools offered to the model (backends that cannot offer them refuse earlier).
    tools: ToolSet = dataclasses.field(default_factory=ToolSet)
    #: Where the backend gets the client's tool results (set by ``CodexRunner`` when
    #: ``tools`` is not empty).
    tool_results: ToolResults | None = None


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
    did not get to finish (timeout, internal failure), ``exit`` tells how Codex ended, and
    ``failure()`` combines both with what Codex reported. ``transcript`` folds every event the
    run produced, in order (also those a detached consumer no longer reads).
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[CodexEvent]) -> None:
        self.events = receive
        self.transcript = Transcript()
        self.error: ServiceError | None = None
        self.exit = ExitInfo()
        self.queue_wait: float = 0.0
        self.began: float = 0.0
        self.run_time: float = 0.0
        #: When the first answer text arrived (``trio.current_time()``); None until then.
        self.first_content: float | None = None
        self.started = False
        self.done = trio.Event()
        self.detached = False
        #: The client's tool results go in here (runs with tools only).
        self.tools: ToolBridge | None = None
        #: Answered with tool calls, the run waits for the client's results (see ``park``).
        self.parked = False
        #: The calls the client was given and must answer to resume the run.
        self.pending_calls: tuple[str, ...] = ()
        self._attached = trio.Event()
        self._scope = trio.CancelScope()

    def attach(self) -> None:
        """Signal that a consumer is reading; the run starts now (idempotent)."""
        self._attached.set()

    @property
    def cancelled(self) -> bool:
        """The run was ended by ``cancel``, ``abort`` or a detached run's exit limit (its
        process group was killed), not by a deadline or by Codex itself."""
        return self._scope.cancelled_caught

    @property
    def over_exit_limit(self) -> bool:
        """The run was detached and cancelled because Codex did not exit within
        ``DETACHED_EXIT_LIMIT`` (not by ``abort``)."""
        return self.cancelled and self.detached and trio.current_time() >= self._scope.deadline

    @property
    def attached(self) -> bool:
        """A consumer has attached (the run was, or is being, started for it)."""
        return self._attached.is_set()

    def cancel(self) -> None:
        """End the run now; never blocks, safe to call at any time and more than once.
        A detached run is not cancelled: it is finishing on its own; nor is a parked one."""
        if not (self.detached or self.parked):
            self._scope.cancel()

    def park(self, call_ids: tuple[str, ...]) -> None:
        """The answer handed ``call_ids`` to the client: the run stays alive, holding its slot,
        until a later request resumes it (``resume``) or the tool-result bound ends it; its
        consumer leaving does not cancel it. Shutdown still aborts it."""
        self.parked = True
        self.pending_calls = call_ids

    def resume(self, outputs: list[ToolOutput]) -> None:
        """Hand the client's results in; the next consumer reads the rest of the turn, and the
        transcript starts afresh so its answer holds only what follows."""
        if self.tools is None or not self.parked:
            raise RuntimeError("resume() on a run that is not waiting for tool results")
        self.parked = False
        self.pending_calls = ()
        self.transcript = Transcript(thread_id=self.transcript.thread_id)
        for output in outputs:
            self.tools.put(output)

    def abort(self) -> None:
        """End the run now, detached or not (server shutdown); never blocks."""
        self._scope.cancel()

    def detach(self) -> None:
        """The consumer has all it needs: let the run finish by itself (it keeps its slot until
        Codex exits, at most ``DETACHED_EXIT_LIMIT`` s from now) and drop the events it still
        prints."""
        if self.detached:
            return
        self.detached = True
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + DETACHED_EXIT_LIMIT)

    def failure(self) -> ServiceError | None:
        """Why the run failed, as the error a client should get; None on success."""
        if self.error is not None:
            return self.error
        failure = self.transcript.failure(self.exit.exit_code, self.exit.stderr)
        if failure is None:
            return None
        return UpstreamError(failure.message, status=failure.status, code=failure.code)

    async def consume(
        self,
        on_event: Callable[[CodexEvent], None],
        *,
        until: Callable[[CodexEvent], bool] | None = None,
    ) -> None:
        """Attach and hand every event to ``on_event`` until the run ends, or until
        ``until(event)`` holds (then the run is detached, not cancelled; a run ``until`` parked
        stays parked). If this is cancelled
        (the client left), the run is cancelled with it."""
        self.attach()
        try:
            async for event in self.events:
                on_event(event)
                if until is not None and until(event):
                    if not self.parked:
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
        network_wait: float | None = None,
        tool_result_timeout: float = 300.0,
    ) -> None:
        self.backend = backend
        self.tool_result_timeout = tool_result_timeout
        self.network_wait = network_wait
        self.limiter = trio.CapacityLimiter(max_parallel)
        self.queue_timeout = queue_timeout
        self.exec_timeout = exec_timeout
        self.idle_timeout = idle_timeout
        self._active: set[RunHandle] = set()
        #: Parked runs by (owner, call id): the owner is who may resume them.
        self._parked: dict[tuple[str, str], RunHandle] = {}
        #: Called once for each run whose group was killed because the client's tool results
        #: never came (``CODEX_TOOL_RESULT_TIMEOUT``): the metrics count it.
        self.on_tool_timeout: list[Callable[[], None]] = []
        #: Runs holding a slot, and requests waiting for one (awaitable: ``wait_value``).
        self.running = AsyncValue(0)
        self.queued = AsyncValue(0)

    def park(self, handle: RunHandle, owner: str, call_ids: tuple[str, ...]) -> None:
        """Keep ``handle`` waiting for the results of ``call_ids``, resumable by ``owner``."""
        if handle.done.is_set() or handle.tools is None or not call_ids:
            handle.cancel()
            return
        handle.park(call_ids)
        for call_id in call_ids:
            self._parked[(owner, call_id)] = handle

    @property
    def waiting_for_tools(self) -> int:
        """Runs parked on the client's tool results now."""
        return sum(1 for h in set(self._parked.values()) if h.parked and not h.done.is_set())

    def claim(self, owner: str, call_ids: list[str]) -> RunHandle | None:
        """The parked run of ``owner`` that waits for exactly ``call_ids`` (any order), taken
        out of the registry; None when there is none (expired, another process, a restart)."""
        if not call_ids:
            return None
        handle = self._parked.get((owner, call_ids[0]))
        if (
            handle is None
            or not handle.parked
            or handle.done.is_set()
            or sorted(handle.pending_calls) != sorted(call_ids)
        ):
            return None
        for call_id in handle.pending_calls:
            self._parked.pop((owner, call_id), None)
        return handle

    def _unpark(self, handle: RunHandle) -> None:
        for key in [k for k, h in self._parked.items() if h is handle]:
            del self._parked[key]

    def abort_parked(self) -> None:
        """End every run parked for tool results (shutdown: no request can resume them)."""
        for handle in set(self._parked.values()):
            handle.abort()

    def cancel_all(self) -> None:
        """End every run holding a slot, detached ones included (a stop that cannot wait)."""
        for handle in list(self._active):
            handle.abort()

    async def start(
        self,
        nursery: trio.Nursery,
        spec: RunSpec,
        *,
        resources: contextlib.AsyncExitStack | None = None,
    ) -> RunHandle:
        """Wait for a slot (bounded by the queue timeout), then start the run in ``nursery``.

        ``resources`` belong to the run from now on: they are released once the run is over,
        whatever happens, even when no slot was granted, before ``RunHandle.done`` is set.
        """
        handle: RunHandle = await nursery.start(self._serve, spec, resources)
        return handle

    async def _serve(
        self,
        spec: RunSpec,
        resources: contextlib.AsyncExitStack | None,
        task_status: trio.TaskStatus[RunHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        send, receive = trio.open_memory_channel[CodexEvent](CHANNEL_SIZE)
        handle = RunHandle(receive)
        if spec.tools:
            handle.tools = ToolBridge(self.tool_result_timeout)
            spec = dataclasses.replace(spec, tool_results=handle.tools)
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
                    self._unpark(handle)
                    if handle.tools is not None and handle.tools.timed_out:
                        for hook in self.on_tool_timeout:
                            hook()
                    self.limiter.release_on_behalf_of(handle)
                    self.running.value -= 1
        finally:
            try:
                if resources is not None:
                    with trio.CancelScope(shield=True):
                        await resources.aclose()
            finally:
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
        idle = _IdleWatch(
            self.idle_timeout,
            lambda: handle.tools is not None and handle.tools.waiting is not None,
        )
        network = _NetworkWatch()

        async def emit(event: CodexEvent) -> None:
            idle.touch()
            network.see(event)
            if handle.first_content is None and is_answer_text(event):
                handle.first_content = trio.current_time()
            handle.transcript.feed(event)
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
                    if self.network_wait is not None:
                        nursery.start_soon(network.watch, nursery.cancel_scope, self.network_wait)
                    handle.exit = await self.backend.run(spec, emit)
                    nursery.cancel_scope.cancel()
            if network.fired:
                handle.error = UpstreamUnreachableError(
                    f"Codex cannot reach its model provider: it waited {self.network_wait:g} s "
                    f"for the network (CODEX_NETWORK_WAIT_SECONDS); Codex said: {network.notice}. "
                    "Check the network, DNS and proxy settings, the provider's base_url and "
                    "the login (codex login status); the run was stopped"
                )
            elif deadline.cancelled_caught:
                handle.error = ExecTimeoutError(
                    f"Codex did not finish within CODEX_TIMEOUT ({self.exec_timeout:g} s); "
                    f"the run was stopped{network.last_said()}"
                )
            elif idle.fired:
                handle.error = ExecTimeoutError(
                    f"Codex printed nothing for {self.idle_timeout:g} s (CODEX_IDLE_TIMEOUT); "
                    f"the run was stopped{network.last_said()}"
                )
        except trio.Cancelled:
            raise
        except BaseException as exc:
            # A group may mix our cancellation with a real error: keep the error, and let
            # trio re-deliver the cancellation at the next checkpoint.
            if isinstance(exc, BaseExceptionGroup):
                _, real = exc.split((trio.Cancelled, KeyboardInterrupt, SystemExit))
                if real is None:
                    raise
            elif isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            # A ServiceError from the backend is its answer (e.g. 503 codex_unavailable).
            refused = exc.split(ServiceError)[0] if isinstance(exc, BaseExceptionGroup) else exc
            while isinstance(refused, BaseExceptionGroup):
                refused = refused.exceptions[0]
            if isinstance(refused, ServiceError):
                handle.error = refused
                return
            log.exception("Codex run failed inside the server")
            handle.error = ServiceError("The server failed while running Codex")
        finally:
            handle.run_time = trio.current_time() - began


class _IdleWatch:
    """Cancels a scope when no event arrived for ``timeout`` seconds, not counting time spent
    waiting for the client's tool results (``paused``): that wait has its own bound."""

    def __init__(self, timeout: float | None, paused: Callable[[], bool] = lambda: False) -> None:
        self.timeout = timeout
        self.last = trio.current_time()
        self.fired = False
        self.paused = paused

    def touch(self) -> None:
        self.last = trio.current_time()

    async def watch(self, scope: trio.CancelScope, limit: float) -> None:
        while True:
            await trio.sleep_until(self.last + limit)
            if self.paused():
                self.touch()
                continue
            if trio.current_time() >= self.last + limit:
                self.fired = True
                scope.cancel()
                return


class _NetworkWatch:
    """Ends a run whose Codex waits for the network without end (no network, DNS, proxy or
    firewall trouble: Codex retries for ever, CODEX_FACTS section 4): once it has waited
    ``limit`` seconds since its first such notice with no progress in between. Every retry
    notice is logged, and the last one is kept for the error message."""

    def __init__(self) -> None:
        self.notice: str | None = None
        self.since: float | None = None
        self.fired = False
        self._armed = trio.Event()

    def see(self, event: CodexEvent) -> None:
        if isinstance(event, ErrorEvent) and is_retry_notice(event.message):
            log.warning("Codex: %s", event.message[:500])
            self.notice = event.message[:500]
            if is_network_wait(event.message) and self.since is None:
                self.since = trio.current_time()
                self._armed.set()
        elif not (isinstance(event, ItemEvent) and event.item_type == "error"):
            self.since = None  # progress: Codex got through

    def last_said(self) -> str:
        return f"; Codex last said: {self.notice}" if self.notice else ""

    async def watch(self, scope: trio.CancelScope, limit: float) -> None:
        while True:
            if self.since is None:
                await self._armed.wait()
                self._armed = trio.Event()
                continue
            since = self.since
            await trio.sleep_until(since + limit)
            if self.since == since:
                self.fired = True
                scope.cancel()
                return
