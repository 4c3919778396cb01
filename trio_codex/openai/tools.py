"""Client-defined tools (``tools``, ``tool_choice``) in either API. Pure.

Function calling is not offered yet: the Codex backends cannot hand the model a client's tools
and wait for the client's results. Silently dropping ``tools`` would let a client believe the
model chose not to call them, so a request that offers tools is refused with a 400
``unsupported_parameter`` naming ``tools``, before any process starts. ``tool_choice: "none"``
(the client asks for no tool call) and an empty list are accepted.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequestError


def refuse_tools(tools: list[Any] | None, tool_choice: object) -> None:
    """Raise the 400 for a request that offers tools the model could call."""
    if not tools or tool_choice == "none":
        return
    raise InvalidRequestError(
        "Function calling (tools) is not supported by this server yet: Codex cannot offer "
        "your tools to the model. Send the request without tools, or with tool_choice "
        "'none'.",
        param="tools",
        code="unsupported_parameter",
    )
