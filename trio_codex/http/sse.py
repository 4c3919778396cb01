"""Server-sent events: framing, keep-alives, and a response body bound to one run.

Frames are what both official SDKs accept (``data: <json>`` with an optional ``event:`` line,
``: keep-alive`` comments, never ``id:``/``retry:`` fields).

``RunBody`` ties a run to the response body: entering the body (Quart does so right before it
iterates) attaches the consumer and so starts Codex; leaving it, for any reason, cancels the run
synchronously. A response that Quart never iterates (the client left right after the headers)
never attaches, and the runner gives up on it by itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Final

import trio
from quart import Response
from quart.wrappers.response import ResponseBody

from ..run.events import CodexEvent
from ..run.runner import RunHandle

KEEPALIVE: Final = b": keep-alive\n\n"
SSE_HEADERS: Final = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def data_frame(obj: Any) -> bytes:
    """``data: <json>`` frame."""
    return b"data: " + _dumps(obj) + b"\n\n"


def event_frame(event_type: str, obj: Any) -> bytes:
    """``event: <type>`` + ``data: <json>`` frame (the Responses API style)."""
    return b"event: " + event_type.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


DONE: Final = b"data: [DONE]\n\n"


class EndOfRun:
    """Marker: the run's event channel is closed (``handle.error``/``handle.exit`` are final)."""


END_OF_RUN: Final = EndOfRun()


async def next_event(handle: RunHandle, interval: float) -> CodexEvent | EndOfRun | None:
    """The run's next event; ``None`` after ``interval`` s of silence (send a keep-alive);
    ``END_OF_RUN`` once the run is over. Cancelling it loses no event."""
    with trio.move_on_after(interval):
        try:
            return await handle.events.receive()
        except trio.EndOfChannel:
            return END_OF_RUN
    return None


def stream_response(handle: RunHandle, frames: AsyncIterator[bytes]) -> Response:
    """An SSE response whose body is ``frames`` and whose lifetime bounds the run.

    Quart's own response timeout is off: the run's deadlines end the stream.
    """
    response = Response(RunBody(handle, frames), headers=SSE_HEADERS)
    response.timeout = None
    return response


class RunBody(ResponseBody):
    """A streaming body whose lifetime bounds its run."""

    def __init__(
        self,
        handle: RunHandle,
        frames: AsyncIterator[bytes],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.handle = handle
        self.frames = frames
        self.on_close = on_close

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
            if self.on_close is not None:
                self.on_close()
        finally:
            aclose = getattr(self.frames, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.frames
