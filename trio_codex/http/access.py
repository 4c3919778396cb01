"""One record per request, finished exactly once, and the hooks that receive it.

``RequestRecord`` collects what happened to a request while it is served (the caller's key
label, the model, the status and error code, the run it started, the usage its answer reported).
It is finished exactly once, when both of these hold:

* the response is over: sent in full, failed, or abandoned by a client that left (a streamed
  body reports its own end; every other response ends at Quart's teardown, which also runs for a
  handler cancelled by a disconnect); a stream whose body was never iterated counts as over once
  its run gave up waiting for it;
* the request's run, if it started one, has ended (a detached run may still be exiting when the
  answer is complete: the record waits for it, so the outcome has Codex's exit code).

Then a frozen ``RequestOutcome`` goes to every hook (the log line, the metrics, the status
page). A request whose client left has ``status`` None and ``code`` ``client_closed``. Its
``killed`` names why the server killed the run's process group, when it did: ``timeout``
(``CODEX_TIMEOUT`` or ``CODEX_IDLE_TIMEOUT``), ``network_wait`` (``CODEX_NETWORK_WAIT_SECONDS``),
``disconnect`` (the request was cancelled: its client left), ``stop_sequence`` (the answer
ended at a stop sequence: the rest was not wanted), ``exit_limit`` (a complete answer whose Codex
did not exit within ``DETACHED_EXIT_LIMIT``) or ``shutdown`` (the server stopped every run).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio
from quart import g

from ..errors import ExecTimeoutError, UpstreamUnreachableError
from ..run.events import Usage
from ..run.runner import RunHandle

log = logging.getLogger("trio_codex")


@dataclasses.dataclass(frozen=True)
class RequestOutcome:
    """What one request came to; handed to every hook once."""

    request_id: str
    method: str
    path: str
    #: A label for the caller's API key (a fingerprint, never the key); None without auth.
    key: str | None
    model: str | None
    stream: bool
    #: The HTTP status sent; None when the client left before an answer.
    status: int | None
    code: str | None
    queue_wait: float | None
    run_time: float | None
    exit_code: int | None
    #: The usage the answer reported to the client.
    usage: Usage | None
    duration: float
    #: The URL rule that served the request (``/v1/chat/completions``); None when none matched.
    route: str | None = None
    #: Seconds from the request's start to its response head (status and headers).
    first_byte: float | None = None
    #: Seconds from the request's start to the first answer text Codex produced.
    first_content: float | None = None
    #: Why the server killed the run's process group, if it did (see the module docstring).
    killed: str | None = None


RequestHook = Callable[[RequestOutcome], None]


class RequestRecord:
    """The facts of one request in flight (see the module docstring)."""

    def __init__(
        self,
        request_id: str,
        method: str,
        path: str,
        *,
        started: float,
        hooks: Sequence[RequestHook],
        nursery: trio.Nursery,
    ) -> None:
        self.request_id = request_id
        self.method = method
        self.path = path
        self.route: str | None = None
        self.started = started
        #: When the response head was ready to send (``responded``).
        self.responded_at: float | None = None
        self.key: str | None = None
        self.model: str | None = None
        self.stream = False
        self.status: int | None = None
        self.code: str | None = None
        self.usage: Usage | None = None
        #: The answer ended at a stop sequence and its run was stopped there.
        self.stopped_early = False
        #: The response body is a stream that reports its own end (``close``).
        self.body_pending = False
        self._hooks = tuple(hooks)
        self._nursery = nursery
        self._handle: RunHandle | None = None
        self._closed = False
        self._answered = False

    @property
    def run(self) -> RunHandle | None:
        """The request's run, once it holds a slot (``bind``)."""
        return self._handle

    def bind(self, handle: RunHandle) -> None:
        """The request's run. If the run ends without ever being attached (a streamed body
        that was never iterated), the response is over then."""
        self._handle = handle
        self._nursery.start_soon(self._close_if_abandoned, handle)

    async def _close_if_abandoned(self, handle: RunHandle) -> None:
        await handle.done.wait()
        if not handle.attached:
            self.close()

    def responded(self) -> None:
        """The response head is about to be sent (the first byte; once)."""
        if self.responded_at is None:
            self.responded_at = trio.current_time()

    def answered(self, usage: Usage | None, code: str | None = None) -> None:
        """What the answer told the client (the usage; the error code of a failed stream)."""
        self._answered = True
        self.usage = usage
        if code is not None:
            self.code = code

    def close(self) -> None:
        """The response is over. Idempotent; the outcome goes out once the run has ended."""
        if self._closed:
            return
        self._closed = True
        if self.code is None and (self.status is None or (self.stream and not self._answered)):
            self.code = "client_closed"
        handle = self._handle
        if handle is not None and not handle.done.is_set():
            self._nursery.start_soon(self._finish_when_done, handle)
        else:
            self._finish()

    async def _finish_when_done(self, handle: RunHandle) -> None:
        await handle.done.wait()
        self._finish()

    def _finish(self) -> None:
        outcome = self._outcome()
        for hook in self._hooks:
            try:
                hook(outcome)
            except Exception:
                log.exception("a request hook failed for %s", self.request_id)

    def _outcome(self) -> RequestOutcome:
        handle = self._handle
        queue_wait = run_time = first_content = None
        exit_code = None
        killed = None
        if handle is not None:
            queue_wait = handle.queue_wait
            run_time = handle.run_time if handle.started else None
            exit_code = handle.exit.exit_code
            if handle.first_content is not None:
                first_content = handle.first_content - self.started
            killed = _killed(handle, self.code, stopped_early=self.stopped_early)
        return RequestOutcome(
            request_id=self.request_id,
            method=self.method,
            path=self.path,
            key=self.key,
            model=self.model,
            stream=self.stream,
            status=self.status,
            code=self.code,
            queue_wait=queue_wait,
            run_time=run_time,
            exit_code=exit_code,
            usage=self.usage,
            duration=trio.current_time() - self.started,
            route=self.route,
            first_byte=None if self.responded_at is None else self.responded_at - self.started,
            first_content=first_content,
            killed=killed,
        )


def _killed(handle: RunHandle, code: str | None, *, stopped_early: bool) -> str | None:
    """Why the server killed the process group of a run that ended, if it did (see the module
    docstring)."""
    if not handle.started:
        return None
    if isinstance(handle.error, ExecTimeoutError):
        return "timeout"
    if isinstance(handle.error, UpstreamUnreachableError):
        return "network_wait"
    if not handle.cancelled:
        return None
    if stopped_early:
        return "stop_sequence"
    if handle.over_exit_limit:
        return "exit_limit"
    return "disconnect" if code == "client_closed" else "shutdown"


def _value(text: str | None) -> str:
    """A log field value that cannot forge a line: control characters, quotes, spaces and
    non-ASCII text are escaped (JSON string syntax); plain tokens are left as they are."""
    if text is None or text == "":
        return "-"
    if text.isascii() and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text[:512])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def request_fields(outcome: RequestOutcome) -> dict[str, Any]:
    """The structured fields of a request's log record (``extra``: the keys of a JSON log line).

    ``request_id``, ``method``, ``path``, ``route``, ``key`` (the key's fingerprint), ``model``,
    ``stream``, ``status`` (None: the client left), ``code``, ``queue_wait``, ``run_time``,
    ``first_byte``, ``first_content``, ``duration`` (seconds), ``exit_code``, ``killed`` and
    ``tokens`` (``input``, ``output``, ``cached``, ``reasoning``, ``total``; None without usage).
    """
    usage = outcome.usage
    return {
        "request_id": outcome.request_id,
        "method": outcome.method,
        "path": outcome.path,
        "route": outcome.route,
        "key": outcome.key,
        "model": outcome.model,
        "stream": outcome.stream,
        "status": outcome.status,
        "code": outcome.code,
        "queue_wait": outcome.queue_wait,
        "run_time": outcome.run_time,
        "first_byte": outcome.first_byte,
        "first_content": outcome.first_content,
        "duration": outcome.duration,
        "exit_code": outcome.exit_code,
        "killed": outcome.killed,
        "tokens": None
        if usage is None
        else {
            "input": usage.input_tokens,
            "output": usage.output_tokens,
            "cached": usage.cached_input_tokens,
            "reasoning": usage.reasoning_output_tokens,
            "total": usage.total_tokens,
        },
    }


def log_request(outcome: RequestOutcome) -> None:
    """The one log record of a request (a ``RequestHook``): today's text line as its message,
    and ``request_fields`` as its structured fields (what ``LOG_FORMAT=json`` prints)."""
    log.info(
        "request id=%s method=%s path=%s key=%s model=%s status=%s%s stream=%d queue_wait=%s "
        "run_time=%s exit=%s tokens=%s duration=%.3f",
        outcome.request_id,
        _value(outcome.method),
        _value(outcome.path),
        outcome.key or "-",
        _value(outcome.model),
        "-" if outcome.status is None else outcome.status,
        f" code={_value(outcome.code)}" if outcome.code else "",
        outcome.stream,
        _seconds(outcome.queue_wait),
        _seconds(outcome.run_time),
        "-" if outcome.exit_code is None else outcome.exit_code,
        "-" if outcome.usage is None else outcome.usage.total_tokens,
        outcome.duration,
        extra=request_fields(outcome),
    )


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is calling, worked out once per request by the guard."""

    #: The API key presented and accepted; None when auth is off.
    api_key: str | None
    #: The bucket of the per-key rate limit (the key's fingerprint, else the client address).
    bucket: str

    @property
    def label(self) -> str | None:
        """A loggable name for the key (its fingerprint), never the key itself."""
        return self.bucket if self.api_key is not None else None


def current_record() -> RequestRecord:
    """The record of the request being served (set by the app's guard)."""
    record: RequestRecord = g.record
    return record


def current_caller() -> Caller:
    """The caller of the request being served (set by the app's guard)."""
    caller: Caller = g.caller
    return caller
