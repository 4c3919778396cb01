"""Client-defined tools, neutral between the wire formats and the backends. Pure.

The OpenAI layer parses ``tools`` / ``tool_choice`` / tool results of either API into these
values; a backend that can offer tools to the model (``codex app-server`` dynamic tools) reads
them from the run's spec, reports each call the model makes as a ``ToolCall`` and gets the
client's answer through a ``ToolResults`` bridge the runner provides. Nothing here does I/O or
imports an async library, so both sides can use it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True)
class ToolSpec:
    """One function tool the client offers: a valid name and a JSON-Schema object."""

    name: str
    description: str
    #: A JSON Schema whose ``type`` is ``"object"`` (the function's arguments).
    parameters: Mapping[str, Any]


class ToolChoiceMode(enum.Enum):
    """What the client asked of the model (``tool_choice``)."""

    AUTO = "auto"
    REQUIRED = "required"
    NAMED = "named"


@dataclasses.dataclass(frozen=True)
class ToolChoice:
    """``tool_choice`` other than ``none`` (``none`` means: no tools are registered at all).

    Codex cannot force a call: ``required`` and ``named`` register the tools and add an
    instruction to the prompt; the model may still answer without calling.
    """

    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    #: The tool the client names (``NAMED`` only).
    name: str | None = None


@dataclasses.dataclass(frozen=True)
class ToolSet:
    """The tools of one request and the choice among them; empty means no tools offered."""

    tools: tuple[ToolSpec, ...] = ()
    choice: ToolChoice = ToolChoice()

    def __bool__(self) -> bool:
        return bool(self.tools)


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """A call the model made to a client tool."""

    call_id: str
    name: str
    #: The arguments as a JSON text (what both OpenAI APIs put on the wire).
    arguments: str


@dataclasses.dataclass(frozen=True)
class ToolOutput:
    """The client's result for one call: text, and image URLs (``data:`` or ``https:``)."""

    call_id: str
    text: str
    images: tuple[str, ...] = ()


class ToolResults(Protocol):
    """Where a backend waits for the client's result of a call (provided by the runner).

    ``get`` returns the output for ``call_id`` once the client sends it; it raises
    ``TimeoutError`` when none arrives within the run's tool-result bound.
    """

    async def get(self, call_id: str) -> ToolOutput: ...
