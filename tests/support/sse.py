"""The one parser of server-sent events in the tests, for chat chunks and Responses events alike.

A stream is split into frames at blank lines (``\\r\\n`` and ``\\r`` count as line ends, as in the
SSE spec). A frame keeps its ``event:`` name, its ``data:`` lines joined with ``\\n``, its comment
lines (``: keep-alive``) and its text as sent, so callers can check the exact framing too. Only
complete frames (followed by a blank line) are frames; what comes after the last blank line is
the tail, empty for a stream that ended properly. Fields other than ``event`` and ``data``
(``id:``, ``retry:``, or the chunk sizes of a raw chunked HTTP body) are ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DONE = "[DONE]"
"""The data of the last frame of a chat completions stream."""


@dataclass(frozen=True)
class Frame:
    """One complete frame of an SSE stream."""

    event: str | None
    """The ``event:`` field (the last one), None when the frame has none."""
    data: str | None
    """The ``data:`` lines joined with ``\\n``, None when the frame has none."""
    comments: tuple[str, ...]
    """The comment lines, without the ``:`` and the one space after it."""
    raw: str
    """The frame's text without the blank line that ends it (line ends normalised to ``\\n``)."""

    @property
    def is_comment(self) -> bool:
        """A frame of comments only (a keep-alive), which an SSE client dispatches nothing for."""
        return self.event is None and self.data is None

    def json(self) -> Any:
        """The data parsed as JSON."""
        assert self.data is not None, self.raw
        return json.loads(self.data)


def _text(body: bytes | str) -> str:
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _frame(block: str) -> Frame:
    event: str | None = None
    data: list[str] = []
    comments: list[str] = []
    for line in block.split("\n"):
        if not line:
            continue
        if line.startswith(":"):
            comments.append(line[1:].removeprefix(" "))
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    return Frame(event, "\n".join(data) if data else None, tuple(comments), block)


def split(body: bytes | str) -> tuple[list[Frame], str]:
    """The complete frames of ``body`` (bytes are decoded as UTF-8, strictly), and the tail
    after the last blank line (``""`` when the stream ended on a frame boundary)."""
    *blocks, tail = _text(body).split("\n\n")
    return [_frame(block) for block in blocks if block], tail


def frames(body: bytes | str) -> list[Frame]:
    """The complete frames of ``body``, comments included."""
    return split(body)[0]


def events(body: bytes | str) -> list[tuple[str | None, str]]:
    """``(event name, data)`` of every frame that has either; comment frames are skipped."""
    return [(f.event, f.data or "") for f in frames(body) if not f.is_comment]


def payloads(body: bytes | str, *, comment: str | None = None) -> list[Any]:
    """The data of every frame, in order, parsed as JSON; ``[DONE]`` stays the string
    ``"[DONE]"``. A comment frame appears as ``comment`` when that is given, else is skipped."""
    out: list[Any] = []
    for frame in frames(body):
        if frame.is_comment:
            if comment is not None:
                out.append(comment)
        elif frame.data == DONE:
            out.append(DONE)
        else:
            out.append(frame.json())
    return out
