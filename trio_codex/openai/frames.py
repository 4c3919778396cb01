"""Server-sent event framing as both official SDKs accept it. Pure.

``data: <json>`` frames (chat), ``event: <type>`` + ``data: <json>`` frames (Responses), the
``data: [DONE]`` terminator (chat only) and ``: keep-alive`` comments; never ``id:`` or
``retry:`` fields.
"""

from __future__ import annotations

import json
from typing import Any, Final

KEEPALIVE: Final = b": keep-alive\n\n"
DONE: Final = b"data: [DONE]\n\n"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def data_frame(obj: Any) -> bytes:
    """``data: <json>`` frame."""
    return b"data: " + _dumps(obj) + b"\n\n"


def event_frame(event_type: str, obj: Any) -> bytes:
    """``event: <type>`` + ``data: <json>`` frame (the Responses API style)."""
    return b"event: " + event_type.encode() + b"\ndata: " + _dumps(obj) + b"\n\n"


def progress_comment(text: str) -> bytes:
    """An SSE comment carrying a progress notice (one line, at most 300 characters)."""
    line = " ".join(text.split())[:300]
    return b": codex: " + line.encode("utf-8", "replace") + b"\n\n"
