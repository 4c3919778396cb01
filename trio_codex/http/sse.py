"""One way to answer from a run, for every API: the stream loop and the plain answer.

Both drive a ``Renderer`` (``openai.chat.ChatRenderer``, ``openai.responses.wire.ResponsesRenderer``),
which turns the run's events into one API's frames or body; a new event kind is rendered in one
place per API, and consumed here once.

``stream_response`` ties a run to a streamed response body: entering the body (Quart does so
right before it iterates) attaches the consumer and so starts Codex; leaving it, for any reason,
cancels the run synchronously and reports the end of the response to the request record. A
response that Quart never iterates (the client left right after the headers) never attaches, and
the runner gives up on it by itself.

Guarantees of the stream loop (``stream_run``): the renderer's opening frames (or a keep-alive
comment) leave as soon as the run holds its slot; a keep-alive comment follows every
``keepalive`` seconds of silence; Codex's retry notices ("Reconnecting... waiting for network")
travel as ``: codex: ...`` comments, which clients ignore and people watching a stream can read;
the last frames are the renderer's completion or failure, so a
stream always ends with what its API requires.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Final, Protocol

import trio
from quart import Response
from quart.wrappers.response import ResponseBody

from ..errors import ServiceError
from ..openai.frames import KEEPALIVE, progress_comment
from ..run.events import (
    CodexEvent,
    ErrorEvent,
    Transcript,
    TurnCompleted,
    Usage,
    is_retry_notice,
)
from ..run.runner import RunHandle
from .access import RequestRecord

SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class Renderer(Protocol):
    """One API's view of a run: frames while streaming, a body when not."""

    #: The answer is complete at ``TurnCompleted``: detach there and let Codex exit on its own.
    detach_at_turn_end: bool

    @property
    def done(self) -> bool:
        """The answer is complete before the turn ended (a stop sequence, or tool calls): stop
        the run, or park it when it waits for ``waiting_calls``."""
        ...

    @property
    def waiting_calls(self) -> tuple[str, ...]:
        """The tool calls the answer hands to the client, which the run now waits for."""
        ...

    def open(self) -> bytes:
        """Frames to send once the run holds its slot (may be empty)."""
        ...

    def feed(self, event: CodexEvent) -> bytes:
        """Frames that ``event`` causes (may be empty)."""
        ...

    def complete(self, transcript: Transcript) -> bytes:
        """The closing frames of a successful run."""
        ...

    def fail(self, error: ServiceError) -> bytes:
        """The closing frames of a failed run (``error`` as this API reports it: ``error``)."""
        ...

    def body(self) -> dict[str, Any]:
        """The whole answer, once ``complete`` has run (non-streamed requests)."""
        ...

    @property
    def usage(self) -> Usage | None:
        """The usage the answer reports."""
        ...

    @property
    def error(self) -> ServiceError | None:
        """The error the answer reports (set by ``fail``)."""
        ...


class EndOfRun:
    """Marker: the run's event channel is closed (``handle.error``/``handle.exit`` are final)."""


END_OF_RUN: Final = EndOfRun()

#: Keeps a run whose answer handed tool calls to the client waiting for their results.
Park = Callable[[RunHandle, tuple[str, ...]], None]


def _end_early(
    handle: RunHandle, renderer: Renderer, record: RequestRecord, park: Park | None
) -> None:
    """The answer is complete before the turn: park a run that waits for tool results (when
    the route can resume it), else stop it (the rest is not wanted)."""
    if renderer.waiting_calls and park is not None:
        park(handle, renderer.waiting_calls)
        return
    handle.abort()
    record.stopped_early = True


async def next_event(handle: RunHandle, interval: float) -> CodexEvent | EndOfRun | None:
    """The run's next event; ``None`` after ``interval`` s of silence (send a keep-alive);
    ``END_OF_RUN`` once the run is over. Cancelling it loses no event."""
    with trio.move_on_after(interval):
        try:
            return await handle.events.receive()
        except trio.EndOfChannel:
            return END_OF_RUN
    return None


async def stream_run(
    handle: RunHandle,
    renderer: Renderer,
    record: RequestRecord,
    *,
    keepalive: float,
    park: Park | None = None,
) -> AsyncIterator[bytes]:
    """The whole SSE body of a streamed answer (see the module docstring)."""
    yield renderer.open() or KEEPALIVE
    while not isinstance(event := await next_event(handle, keepalive), EndOfRun):
        if event is None:
            yield KEEPALIVE
            continue
        if isinstance(event, ErrorEvent) and is_retry_notice(event.message):
            yield progress_comment(event.message)
        if frames := renderer.feed(event):
            yield frames
        if renderer.done:
            _end_early(handle, renderer, record, park)
            break
        if renderer.detach_at_turn_end and isinstance(event, TurnCompleted):
            handle.detach()  # everything the client gets is here; Codex exits on its own
            break
    error = None if renderer.done else handle.failure()
    closing = renderer.fail(error) if error is not None else renderer.complete(handle.transcript)
    record.answered(renderer.usage, renderer.error.code if renderer.error else None)
    yield closing


async def answer_run(
    handle: RunHandle, renderer: Renderer, record: RequestRecord, *, park: Park | None = None
) -> dict[str, Any]:
    """Consume the run and return the renderer's body; raise the error the client should get.

    A renderer that does not detach at the turn's end waits for the run (and the release of its
    resources) to be over, so what the answer names (a conversation) is complete on disk.
    """

    def until(event: CodexEvent) -> bool:
        if renderer.done:
            _end_early(handle, renderer, record, park)
            return True
        return renderer.detach_at_turn_end and isinstance(event, TurnCompleted)

    await handle.consume(_drop(renderer), until=until)
    if renderer.done:
        pass  # parked or stopped by until()
    elif not handle.detached:
        await handle.done.wait()
    error = None if renderer.done else handle.failure()
    if error is not None:
        renderer.fail(error)
        record.answered(None)
        raise renderer.error or error
    renderer.complete(handle.transcript)
    record.answered(renderer.usage)
    return renderer.body()


def _drop(renderer: Renderer) -> Callable[[CodexEvent], None]:
    """``renderer.feed`` for a consumer that sends no frames (the answer is the body)."""

    def feed(event: CodexEvent) -> None:
        renderer.feed(event)

    return feed


def stream_response(
    handle: RunHandle,
    renderer: Renderer,
    record: RequestRecord,
    *,
    keepalive: float,
    park: Park | None = None,
) -> Response:
    """An SSE response that streams ``renderer``'s view of the run and bounds its lifetime.

    Quart's own response timeout is off: the run's deadlines end the stream.
    """
    record.stream = record.body_pending = True
    frames = stream_run(handle, renderer, record, keepalive=keepalive, park=park)
    response = Response(RunBody(handle, frames, record), headers=SSE_HEADERS)
    response.timeout = None
    return response


class RunBody(ResponseBody):
    """A streaming body whose lifetime bounds its run."""

    def __init__(
        self, handle: RunHandle, frames: AsyncIterator[bytes], record: RequestRecord
    ) -> None:
        self.handle = handle
        self.frames = frames
        self.record = record

    async def __aenter__(self) -> RunBody:
        self.handle.attach()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Nothing here may await before the run is cancelled: Quart may call this while a
        # cancellation is pending.
        self.handle.cancel()
        try:
            aclose = getattr(self.frames, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        finally:
            self.record.close()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.frames
