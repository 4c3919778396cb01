"""The ``codex app-server`` backend: one app-server child per request, token deltas as they come.

``AppServerBackend.run`` spawns the native Codex binary as ``codex <fast flags> app-server`` in
its own process group (``process.open_process_group``), speaks JSON-RPC to it over stdin/stdout
(``jsonrpc.RpcConnection``) and maps the turn's notifications to events
(``app_protocol.TurnMapper``): initialize, ``thread/start`` (or ``thread/resume``, or
``thread/fork`` for a branch), one
``turn/start``, every notification of that turn, then stdin is closed, which ends app-server.

Warm spares (``CODEX_WARM_SPARES``): while ``serve`` runs, that many children are kept spawned and
initialized (``warm.WarmPool``); a run claims one when it can and skips the spawn and the
``initialize`` round trip (APP_SERVER.md section 3.7). Each spare also starts a thread ahead with
the parameters the next request most likely asks for: the server's sandbox and workdir, no
network, ephemeral, and the model of the last request (Codex's default before the first one);
a run whose ``thread/start`` would be exactly that uses it and skips that round trip too
(measured: the upstream request is the same as after a fresh ``thread/start``, timestamps
aside), any other run starts its own thread on the spare. A thread started on an earlier day is
not used (Codex puts the date in its context). The replacement spare is started once the adopted
turn has ended, or ``REPLACE_AFTER`` seconds after the adoption if it takes longer: starting a
Codex costs about as much CPU as a trivial turn, and on a small machine the two slow each other.

Guarantees:

* the group is announced (``on_spawn``) before anything is written to the child, and
  ``on_reap`` runs once it is dead, on every path out of ``run`` (spares: out of their keeper);
  when ``run`` returns or is cancelled the whole group is dead (SIGTERM, which app-server handles
  by aborting the turn cleanly, then SIGKILL after ``kill_grace``), an adopted spare included;
* a spare is adopted only while it is alive and its output open, and by one run only; an adopted
  spare is never given to another run;
* it never hangs on the child: every answer is awaited under ``rpc_timeout``; a line that is not
  JSON-RPC, the child's death or the end of its output before the turn completed, a refused
  request, or a configuration Codex could not load end the run with one ``TurnFailed`` whose
  message names the problem (the HTTP layer answers 502, or an error event mid-stream); the turn
  itself is bounded by the runner's deadlines;
* every request of the server is answered (approvals declined, the rest refused), so no turn
  waits for a client decision; threads are always started with ``approvalPolicy: "never"``;
* a run with client tools starts a fresh child (spares are initialized without the
  experimental API that ``dynamicTools`` need); each ``item/tool/call`` is announced
  (``ToolCallWaiting``) and answered with the result from ``spec.tool_results``, and a result
  that does not come in time ends the run with a ``TurnFailed`` naming the call;
* the prompt travels in a JSON-RPC message on stdin, never in argv; the child's environment is
  the same allowlist as ``codex exec`` gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib.metadata
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

import trio

from ..run.events import ThreadStarted, ToolCallWaiting, TurnFailed, TurnStarted
from ..run.runner import Emit, ExitInfo, RunSpec
from ..run.tools import ToolResults
from ..settings import Settings
from . import process, warm
from .app_protocol import (
    TOOL_CALL,
    TurnMapper,
    fatal_config_warning,
    initialize_params,
    server_request_reply,
    thread_id_of,
    thread_request,
    tool_call_id,
    tool_call_reply,
    turn_id_of,
    turn_start_params,
)
from .command import FAST_FLAGS, child_environment, resolve_codex_binary
from .exec import unavailable_error
from .jsonrpc import (
    Notification,
    Pending,
    ProtocolError,
    RpcConnection,
    RpcError,
    ServerRequest,
)
from .localonly import LOCAL_ONLY_CODEX_ARGS
from .warm import Report, SpareStats, WarmPool

log = logging.getLogger("trio_codex.codex.app_server")

#: Longest wait for any answer of app-server (initialize, thread/start|resume, turn/start).
RPC_TIMEOUT: Final = 30.0
#: After ``turn/completed`` and the close of stdin: how long app-server may take to exit
#: (it takes 14-47 ms) before the group is terminated.
EXIT_WAIT: Final = 2.0
#: After the leader exits or its output ends: how long to wait for the rest (exit status,
#: stderr) before the group is killed.
EXIT_DRAIN: Final = 0.5
#: Bytes of stderr kept per run (the rest is read and dropped).
STDERR_CAP: Final = 64 * 1024
#: Longest stdout line kept (a longer one is dropped whole, so memory stays bounded; a dropped
#: answer then runs into ``rpc_timeout``).
MAX_LINE: Final = 16 * 1024 * 1024
PEER: Final = "codex app-server"
#: How long after a spare's adoption its replacement starts at the latest (it starts earlier
#: when the adopted turn ends sooner): a trivial turn takes ~50 ms of CPU after its start, a
#: model's answer usually seconds of waiting.
REPLACE_AFTER: Final = 0.5
#: After the first ``item/tool/call`` of a model response: how long its other calls have to be
#: announced before the calls are reported complete (they come within milliseconds).
TOOL_SETTLE: Final = 0.2

T = TypeVar("T")


def app_server_argv(binary: Path, *, local_only: bool) -> tuple[str, ...]:
    """``codex <FAST_FLAGS> [<LOCAL_ONLY_CODEX_ARGS>] app-server`` (stdio transport)."""
    return (
        os.fspath(binary),
        *FAST_FLAGS,
        *(LOCAL_ONLY_CODEX_ARGS if local_only else ()),
        "app-server",
    )


class _RunFailed(Exception):
    """The run cannot go on; the message is what the client is told."""


class _Child:
    """A running app-server: its connection, its stderr, and events for how it ends. Its reader
    tasks run in the nursery of whoever owns the process (a run, or a warm spare's keeper)."""

    def __init__(self, proc: trio.Process, timeout: float, nursery: trio.Nursery) -> None:
        self.proc = proc
        self.conn = RpcConnection(_pipe(proc.stdin), peer=PEER, timeout=timeout)
        self.stderr = bytearray()
        self.exited = trio.Event()
        self.stderr_closed = trio.Event()
        #: Set when a warm spare is claimed, exits, or its output ends (wakes its keeper).
        self.wake = trio.Event()
        nursery.start_soon(self._drain_stderr)
        nursery.start_soon(self._watch_exit)
        nursery.start_soon(self._serve)

    async def _serve(self) -> None:
        lines = process.read_lines(_pipe(self.proc.stdout), max_line=MAX_LINE)
        async with aclosing(lines) as lines:
            await self.conn.serve(lines)
        self.wake.set()

    async def _drain_stderr(self) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await process.drain_capped(_pipe(self.proc.stderr), self.stderr, STDERR_CAP)
        self.stderr_closed.set()

    async def _watch_exit(self) -> None:
        """When the leader exits, wait briefly, then kill what is left of its group, so that a
        descendant holding stdout open cannot keep a run waiting for the end of the output."""
        await self.proc.wait()
        self.exited.set()
        self.wake.set()
        await trio.sleep(EXIT_DRAIN)
        process.killpg_quiet(self.proc.pid, signal.SIGKILL)

    async def finish(self) -> None:
        """After the turn: close stdin (app-server exits with rc 0 within ~50 ms) and wait
        ``EXIT_WAIT`` at most; what it still prints is dropped."""
        self.conn.incoming.close()
        with contextlib.suppress(ProtocolError, trio.BrokenResourceError):
            await self.conn.close_input()
        with trio.move_on_after(EXIT_WAIT):
            await self.exited.wait()
            await self.stderr_closed.wait()

    def exit_info(self) -> ExitInfo:
        return ExitInfo(self.proc.returncode, self.stderr.decode("utf-8", "replace"))


@dataclasses.dataclass(frozen=True)
class ThreadAhead:
    """A thread a warm spare started before any request asked for it."""

    id: str
    #: The ``thread/start`` params it was started with.
    params: dict[str, Any]
    #: The model Codex chose, when ``params`` name none (its default).
    model: str | None
    day: datetime.date

    def serves(self, method: str, params: Mapping[str, Any], today: datetime.date) -> bool:
        """It is what ``method``/``params`` would start, today."""
        if method != "thread/start" or today != self.day:
            return False
        if params == self.params:
            return True
        return "model" not in self.params and params == {**self.params, "model": self.model}


class WarmChild(_Child):
    """A spare app-server, initialized ahead, owned by its keeper task (``_keep_spare``)."""

    def __init__(self, proc: trio.Process, timeout: float, nursery: trio.Nursery) -> None:
        super().__init__(proc, timeout, nursery)
        #: The thread started ahead, if any (see ``AppServerBackend._start_thread_ahead``).
        self.thread: ThreadAhead | None = None
        self.claimed = False
        self.completed = False
        self.released = trio.Event()
        #: The group is dead and reaped (set by the keeper, whatever happened).
        self.dead = trio.Event()

    def claim(self) -> bool:
        usable = not (self.claimed or self.exited.is_set() or self.conn.closed)
        if usable:
            self.claimed = True
            self.wake.set()
        return usable

    def release(self, *, completed: bool) -> None:
        """The run is done with it: end it gracefully after a completed turn, else at once."""
        self.completed = completed
        self.released.set()


class AppServerBackend:
    """Runs one ``codex app-server`` per request; see the module docstring for the guarantees.

    ``on_spawn(pgid)`` / ``on_reap(pgid)`` as for ``ExecBackend`` (the reaper uses them).
    ``rpc_timeout`` bounds every wait for an answer. ``warm_spares`` children are kept
    initialized ahead while ``serve`` runs, and a run adopts one when it can; an adopted one is
    replaced once its turn is over, or ``warm_replace_after`` seconds after its adoption.
    ``today`` is the date a thread started ahead is stamped with and checked against.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        extra_env_names: tuple[str, ...] = (),
        on_spawn: Callable[[int], None] | None = None,
        on_reap: Callable[[int], None] | None = None,
        rpc_timeout: float = RPC_TIMEOUT,
        warm_spares: int | None = None,
        warm_backoff_base: float = warm.BACKOFF_BASE,
        warm_replace_after: float = REPLACE_AFTER,
        today: Callable[[], datetime.date] = datetime.date.today,
    ) -> None:
        self.settings = settings
        self.binary, self.binary_env = resolve_codex_binary(settings.codex_path)
        self.environ = environ
        self.extra_env_names = extra_env_names
        self.on_spawn = on_spawn
        self.on_reap = on_reap
        self.rpc_timeout = rpc_timeout
        self.client_version = _client_version()
        spares = settings.warm_spares if warm_spares is None else warm_spares
        self.pool: WarmPool[WarmChild] = WarmPool(
            spares, self._keep_spare, backoff_base=warm_backoff_base
        )
        self.replace_after = warm_replace_after
        self.today = today
        #: The model of the last request: the one spares start their thread ahead with.
        self.expected_model: str | None = None

    def spares(self) -> SpareStats:
        """The warm pool now (``CODEX_WARM_SPARES``): wanted, ready, adopted, failed."""
        return self.pool.stats()

    def argv(self) -> tuple[str, ...]:
        return app_server_argv(self.binary, local_only=self.settings.local_only)

    def env(self) -> dict[str, str]:
        """The allowlisted environment, quiet: no tracing (unless the server's environment sets
        ``RUST_LOG``) and no colours on stderr."""
        env = child_environment(
            os.environ if self.environ is None else self.environ,
            codex_home=self.settings.codex_home,
            passthrough=(*self.settings.env_passthrough, *self.extra_env_names),
            extra=self.binary_env,
        )
        env.setdefault("RUST_LOG", "off")
        env["NO_COLOR"] = "1"
        return env

    @asynccontextmanager
    async def _spawn(self) -> AsyncIterator[trio.Process]:
        """A new app-server process group, announced before anything is written to it and
        reaped (``on_reap``) once it is dead, on every way out."""
        spawned: int | None = None
        try:
            async with process.open_process_group(
                self.argv(),
                env=self.env(),
                cwd=self.settings.workdir,
                grace=self.settings.kill_grace,
            ) as proc:
                spawned = proc.pid
                if self.on_spawn is not None:
                    self.on_spawn(proc.pid)
                yield proc
        finally:
            if spawned is not None and self.on_reap is not None:
                self.on_reap(spawned)

    # ------------------------------------------------------------------ runs

    async def run(self, spec: RunSpec, emit: Emit) -> ExitInfo:
        output_schema = await _load_schema(spec.output_schema)
        if spec.model is not None:
            self.expected_model = spec.model
        spare = None if spec.tools else self.pool.take()
        if spare is not None:
            info, failure = await self._run_adopted(spare, spec, emit, output_schema)
        else:
            info, failure = await self._run_fresh(spec, emit, output_schema)
        if failure is not None:
            await emit(TurnFailed(failure))
        return info

    async def _run_fresh(
        self, spec: RunSpec, emit: Emit, output_schema: dict[str, Any] | None
    ) -> tuple[ExitInfo, str | None]:
        try:
            async with self._spawn() as proc, trio.open_nursery() as nursery:
                child = _Child(proc, self.rpc_timeout, nursery)
                failure = await self._talk(child, spec, emit, output_schema, initialized=False)
                if failure is None:
                    await child.finish()
                nursery.cancel_scope.cancel()
        except process.SpawnError as exc:
            # Only the spawn raises this (nothing ran): a 503 naming the cause, not a 500.
            error = unavailable_error(self.binary, exc)
            log.error("cannot start Codex: %s", error.message)  # noqa: TRY400 - one clear line
            raise error from exc
        # The group is dead here whatever happened (cancellation included).
        return child.exit_info(), failure

    async def _run_adopted(
        self, spare: WarmChild, spec: RunSpec, emit: Emit, output_schema: dict[str, Any] | None
    ) -> tuple[ExitInfo, str | None]:
        """Drive a claimed spare; its keeper ends it once released (at once when this run is
        cancelled or failed), and this returns only when its group is dead."""
        completed = False
        try:
            failure = await self._talk(
                spare, spec, emit, output_schema, initialized=True, thread=spare.thread
            )
            completed = failure is None
        finally:
            spare.release(completed=completed)
            with trio.CancelScope(shield=True):
                await spare.dead.wait()  # bounded: EXIT_WAIT, then kill_grace + 1 s
        return spare.exit_info(), failure

    async def _talk(
        self,
        child: _Child,
        spec: RunSpec,
        emit: Emit,
        output_schema: dict[str, Any] | None,
        *,
        initialized: bool,
        thread: ThreadAhead | None = None,
    ) -> str | None:
        """The conversation of one run; returns a failure message, or None once the turn
        completed."""
        try:
            await self._converse(
                child.conn, spec, emit, output_schema, initialized=initialized, thread=thread
            )
        except (ProtocolError, RpcError, _RunFailed) as exc:
            failure = str(exc)
            if child.conn.closed and child.conn.error is None:
                # The output ended: the child is dying; say how, once it has.
                with trio.move_on_after(EXIT_DRAIN):
                    await child.exited.wait()
                    await child.stderr_closed.wait()
                failure += _exit_detail(child.proc.returncode, child.stderr)
            return failure
        return None

    async def _converse(
        self,
        conn: RpcConnection,
        spec: RunSpec,
        emit: Emit,
        output_schema: dict[str, Any] | None,
        *,
        initialized: bool,
        thread: ThreadAhead | None = None,
    ) -> None:
        # initialize, initialized and the thread request go out together (answers come back
        # in order); the prompt waits until the configuration is known to be Codex's own.
        method, params = thread_request(spec, workdir=self.settings.workdir)
        if thread is not None and thread.serves(method, params, self.today()):
            thread_id = thread.id
        else:
            init = None
            if not initialized:
                init = await conn.send_request(
                    "initialize",
                    initialize_params(self.client_version, experimental=bool(spec.tools)),
                )
                await conn.notify("initialized")
            thread_req = await conn.send_request(method, params)
            if init is not None:
                await _answer_of(conn, init)
            started = thread_id_of(await _answer_of(conn, thread_req))
            if started is None:
                raise _RunFailed(f"{PEER} answered {method} without a thread id")
            thread_id = started
        await emit(ThreadStarted(thread_id))
        await self._before_turn(conn)

        turn_req = await conn.send_request(
            "turn/start", turn_start_params(spec, thread_id, output_schema=output_schema)
        )
        turn_id = turn_id_of(await _answer_of(conn, turn_req))
        if turn_id is None:
            raise _RunFailed(f"{PEER} answered turn/start without a turn id")
        await emit(TurnStarted(turn_id))

        resumed = spec.resume_thread_id is not None and spec.fork_at_turn is None
        mapper = TurnMapper(turn_id, cumulative=resumed)
        async for message in conn.incoming:
            if (
                isinstance(message, ServerRequest)
                and message.method == TOOL_CALL
                and spec.tool_results is not None
            ):
                for call in [message, *await self._settle(conn, mapper, emit)]:
                    await self._tool_call(conn, call, spec.tool_results, emit)
                continue
            await self._check(conn, message)
            if isinstance(message, Notification):
                for event in mapper.feed(message.method, message.params):
                    await emit(event)
                if mapper.done:
                    return
        raise conn.error or ProtocolError(f"{PEER} closed its output before the turn completed")

    async def _settle(
        self, conn: RpcConnection, mapper: TurnMapper, emit: Emit
    ) -> list[ServerRequest]:
        """Let the other calls of the same model response be announced: app-server asks for the
        first result while it may still be starting the next ``dynamicToolCall`` items
        (APP_SERVER.md 7.3), and may ask for several results at once. Messages of the next
        ``TOOL_SETTLE`` seconds are handled as usual, except further ``item/tool/call``
        requests, which are returned (in order) to be answered after the first."""
        calls: list[ServerRequest] = []
        with trio.move_on_after(TOOL_SETTLE):
            async for message in conn.incoming:
                if isinstance(message, ServerRequest) and message.method == TOOL_CALL:
                    calls.append(message)
                    continue
                await self._check(conn, message)
                if isinstance(message, Notification):
                    for event in mapper.feed(message.method, message.params):
                        await emit(event)
        return calls

    async def _tool_call(
        self, conn: RpcConnection, message: ServerRequest, results: ToolResults, emit: Emit
    ) -> None:
        """Wait for the client's result of one call, then answer app-server with it."""
        call_id = tool_call_id(message.params)
        await emit(ToolCallWaiting(call_id))
        try:
            output = await results.get(call_id)
        except TimeoutError as exc:
            raise _RunFailed(f"The client sent no result for tool call {call_id}: {exc}") from None
        await conn.respond(message.id, tool_call_reply(output))

    async def _before_turn(self, conn: RpcConnection) -> None:
        """Handle what arrived before the thread was ready (warnings, a replayed usage)."""
        while True:
            try:
                message = conn.incoming.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                return
            await self._check(conn, message)

    async def _check(self, conn: RpcConnection, message: Notification | ServerRequest) -> None:
        """Answer a server request; stop the run on a configuration Codex could not load."""
        if isinstance(message, ServerRequest):
            reply = server_request_reply(message.method)
            log.info("%s asked %s; answering %s", PEER, message.method, reply.result or "an error")
            if reply.result is not None:
                await conn.respond(message.id, reply.result)
            else:
                await conn.respond_error(message.id, reply.error_code, reply.error_message)
            return
        fatal = fatal_config_warning(message.method, message.params)
        if fatal is not None:
            raise _RunFailed(fatal)
        if message.method in ("warning", "configWarning", "deprecationNotice"):
            log.debug("%s: %s %s", PEER, message.method, message.params)

    # ------------------------------------------------------------------ warm spares

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep ``warm_spares`` app-servers spawned and initialized until cancelled (run it in
        the app's lifespan nursery; with no spares it returns at once). Cancelling it kills the
        idle spares, and the adopted ones too: stop it after the runs have ended."""
        if self.pool.size <= 0:
            task_status.started()
            return
        await self.pool.serve(task_status=task_status)

    async def _keep_spare(self, pool: WarmPool[WarmChild], report: Report) -> None:
        """One spare, from spawn to death: initialize, offer, and once claimed keep owning its
        process until the run releases it."""
        spare: WarmChild | None = None
        try:
            async with self._spawn() as proc, trio.open_nursery() as nursery:
                spare = WarmChild(proc, self.rpc_timeout, nursery)
                await self._hold_spare(spare, pool, report)
                nursery.cancel_scope.cancel()
        finally:
            if spare is not None:
                spare.dead.set()

    async def _hold_spare(
        self, spare: WarmChild, pool: WarmPool[WarmChild], report: Report
    ) -> None:
        """Initialize ``spare``, start a thread on it ahead, and offer it; once a run claimed
        it, wait for its release (reporting the adoption, so that the replacement starts, once
        the turn is over or ``REPLACE_AFTER`` has passed)."""
        try:
            await spare.conn.request("initialize", initialize_params(self.client_version))
            await spare.conn.notify("initialized")
            spare.thread = await self._start_thread_ahead(spare.conn)
        except (ProtocolError, RpcError) as exc:
            log.warning("a warm %s did not start: %s", PEER, exc)
            return
        pool.offer(spare)
        try:
            await spare.wake.wait()
        finally:
            pool.withdraw(spare)
        if not spare.claimed:
            detail = _exit_detail(spare.proc.returncode, spare.stderr)
            log.warning("a warm %s ended before use%s", PEER, detail)
            return
        with trio.move_on_after(self.replace_after):
            await spare.released.wait()
        report(True)
        await spare.released.wait()
        if spare.completed:
            await spare.finish()

    async def _start_thread_ahead(self, conn: RpcConnection) -> ThreadAhead | None:
        """Start the thread the next plain request most likely needs (see the module
        docstring); None when app-server refuses it (the spare is still worth offering)."""
        day = self.today()
        spec = RunSpec(prompt="", model=self.expected_model, sandbox=self.settings.sandbox_mode)
        method, params = thread_request(spec, workdir=self.settings.workdir)
        try:
            result = await conn.request(method, params)
        except RpcError as exc:
            log.info("a warm %s refused to start a thread ahead: %s", PEER, exc)
            return None
        thread_id = thread_id_of(result)
        if thread_id is None:
            return None
        model = result.get("model")
        return ThreadAhead(thread_id, params, model if isinstance(model, str) else None, day)


async def _answer_of(conn: RpcConnection, pending: Pending) -> dict[str, Any]:
    try:
        return await conn.wait(pending)
    except RpcError as exc:
        raise _RunFailed(f"{PEER} refused {exc.method}: {exc.message}") from None


def _client_version() -> str:
    try:
        return importlib.metadata.version("trio-codex")
    except importlib.metadata.PackageNotFoundError:
        return "0"


async def _load_schema(path: Path | None) -> dict[str, Any] | None:
    """The output schema the server wrote for this request (a JSON object), or None."""
    if path is None:
        return None
    data = json.loads(await trio.Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise TypeError(f"output schema {path} is not a JSON object")
    return data


def _exit_detail(returncode: int | None, stderr: bytearray) -> str:
    detail = ""
    if returncode is not None:
        detail = f" (exit status {returncode})"
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("Error", "error:")) or " ERROR " in ln]
    if errors:
        detail += f": {errors[-1][:500]}"
    return detail


def _pipe(stream: T | None) -> T:
    if stream is None:  # pragma: no cover - open_process_group always pipes all three
        raise RuntimeError("the Codex process has no pipe")
    return stream
