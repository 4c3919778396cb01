"""Client-defined tools (``tools``, ``tool_choice``) and their results, in either API. Pure.

``chat_tools`` and ``responses_tools`` read a request's ``tools`` and ``tool_choice`` into a
neutral ``ToolSet`` (``run.tools``) or raise a 400 whose ``param`` names the field:

* a tool is ``{"type": "function", "function": {"name", "description", "parameters"}}`` (chat)
  or ``{"type": "function", "name", "description", "parameters"}`` (Responses); any other type
  is refused (the server offers function tools only);
* a name matches ``^[a-zA-Z0-9_-]+$`` (Codex's rule, at most 64 characters like OpenAI's), is
  unique in the request, and is not one of Codex's own tools (``exec_command``, ``apply_patch``,
  ...), which stay offered beside the client's: a client tool of that name would be ambiguous;
* ``parameters`` is a JSON-Schema object (``"type": "object"``, added when absent); absent or
  ``{}`` means no arguments;
* ``tool_choice`` ``none`` gives an empty set (no tool is offered at all); ``auto``,
  ``required`` or a named function keep the tools. Codex cannot force a call, so ``required``
  and a named tool only add an instruction to the prompt (``choice_instruction``).

``check_chat_tool_messages`` guarantees that every ``tool`` message answers a call an earlier
assistant message made, that no call is answered twice, and that a result holds text parts
only (as OpenAI's tool messages do: an image URL would reach the model provider unchecked). ``refuse_tools`` is the 400 for a
backend that cannot offer tools (``codex exec``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final

from ..errors import InvalidRequestError
from ..run.tools import ToolChoice, ToolChoiceMode, ToolOutput, ToolSet, ToolSpec
from .schemas import ChatMessage

#: Response header naming how a request carrying tool results was continued: ``waiting`` (the
#: turn that made the calls resumed) or ``replay`` (a new turn with the whole history).
TOOL_PATH_HEADER: Final = "x-trio-codex-tool-path"

NAME_RE: Final = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

#: Tools Codex offers the model itself (seen in its upstream requests, across models and
#: versions); a client tool must not shadow one.
CODEX_TOOL_NAMES: Final = frozenset(
    {
        "apply_patch",
        "close_agent",
        "container.exec",
        "create_goal",
        "exec",
        "exec_command",
        "get_goal",
        "local_shell",
        "request_user_input",
        "resume_agent",
        "send_input",
        "shell",
        "spawn_agent",
        "tool_search",
        "update_goal",
        "update_plan",
        "view_image",
        "wait_agent",
        "web_search",
        "write_stdin",
    }
)

EMPTY_PARAMETERS: Final = {"type": "object", "properties": {}}


def _bad(message: str, param: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code=code)


def _spec(name: object, description: object, parameters: object, prefix: str) -> ToolSpec:
    if name is None:
        raise _bad(
            f"Missing required parameter: '{prefix}name'.",
            prefix + "name",
            "missing_required_parameter",
        )
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise _bad(
            f"Invalid value for '{prefix}name': a tool name must match ^[a-zA-Z0-9_-]+$ "
            f"(at most 64 characters); got {name!r}.",
            prefix + "name",
        )
    if name in CODEX_TOOL_NAMES:
        raise _bad(
            f"Invalid value for '{prefix}name': {name!r} is the name of one of Codex's own "
            "tools, which stay offered to the model beside yours; rename your tool.",
            prefix + "name",
        )
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise _bad(
            f"Invalid value for '{prefix}description': must be a string.", prefix + "description"
        )
    if parameters is None or parameters == {}:
        parameters = dict(EMPTY_PARAMETERS)
    if isinstance(parameters, dict) and "type" not in parameters:
        parameters = {"type": "object", **parameters}
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise _bad(
            f"Invalid value for '{prefix}parameters': must be a JSON Schema object with "
            '"type": "object".',
            prefix + "parameters",
        )
    if "properties" in parameters and not isinstance(parameters["properties"], dict):
        raise _bad(
            f"Invalid value for '{prefix}parameters.properties': must be an object.",
            prefix + "parameters.properties",
        )
    return ToolSpec(name, description, parameters)


def _unique(specs: Sequence[ToolSpec], name_param: str) -> tuple[ToolSpec, ...]:
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise _bad(
                f"Invalid value for '{name_param.format(i)}': the tool name {spec.name!r} is "
                "given twice.",
                name_param.format(i),
            )
        seen.add(spec.name)
    return tuple(specs)


def _tool_list(tools: object) -> list[Any]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("Invalid value for 'tools': must be an array of tools.", "tools")
    return tools


def _tool_object(tool: object, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise _bad(f"Invalid value for '{where}': must be an object (a tool).", where)
    kind = tool.get("type")
    if kind != "function":
        raise _bad(
            f"Invalid value for '{where}.type': this server offers function tools only "
            f"(type 'function'); got {kind!r}.",
            f"{where}.type",
            "missing_required_parameter" if kind is None else "unsupported_value",
        )
    return tool


def chat_tools(tools: object, tool_choice: object) -> ToolSet:
    """The chat completions ``tools`` and ``tool_choice`` (see module doc)."""
    specs: list[ToolSpec] = []
    for i, tool in enumerate(_tool_list(tools)):
        where = f"tools[{i}]"
        obj = _tool_object(tool, where)
        function = obj.get("function")
        if not isinstance(function, dict):
            raise _bad(
                f"Missing required parameter: '{where}.function'."
                if function is None
                else f"Invalid value for '{where}.function': must be an object.",
                f"{where}.function",
                "missing_required_parameter" if function is None else "invalid_value",
            )
        prefix = f"{where}.function."
        specs.append(
            _spec(
                function.get("name"),
                function.get("description"),
                function.get("parameters"),
                prefix,
            )
        )
    unique = _unique(specs, "tools[{}].function.name")
    return _choose(unique, tool_choice, chat=True)


def responses_tools(tools: object, tool_choice: object) -> ToolSet:
    """The Responses ``tools`` and ``tool_choice`` (see module doc)."""
    specs: list[ToolSpec] = []
    for i, tool in enumerate(_tool_list(tools)):
        where = f"tools[{i}]"
        obj = _tool_object(tool, where)
        specs.append(
            _spec(obj.get("name"), obj.get("description"), obj.get("parameters"), where + ".")
        )
    unique = _unique(specs, "tools[{}].name")
    return _choose(unique, tool_choice, chat=False)


def _choose(specs: tuple[ToolSpec, ...], tool_choice: object, *, chat: bool) -> ToolSet:
    if tool_choice is None or tool_choice == "auto":
        return ToolSet(specs)
    if tool_choice == "none":
        return ToolSet()
    if tool_choice == "required":
        if not specs:
            raise _bad(
                "Invalid value for 'tool_choice': 'required' needs at least one tool in 'tools'.",
                "tool_choice",
            )
        return ToolSet(specs, ToolChoice(ToolChoiceMode.REQUIRED))
    shape = (
        '{"type": "function", "function": {"name": ...}}'
        if chat
        else '{"type": "function", "name": ...}'
    )
    if not isinstance(tool_choice, dict) or tool_choice.get("type") != "function":
        raise _bad(
            f"Invalid value for 'tool_choice': must be 'none', 'auto', 'required' or {shape}.",
            "tool_choice",
        )
    holder: object = tool_choice.get("function") if chat else tool_choice
    name = holder.get("name") if isinstance(holder, dict) else None
    param = "tool_choice.function.name" if chat else "tool_choice.name"
    if not isinstance(name, str):
        raise _bad(f"Missing required parameter: '{param}'.", param, "missing_required_parameter")
    if name not in {spec.name for spec in specs}:
        raise _bad(
            f"Invalid value for '{param}': {name!r} is not one of the tools in 'tools'.", param
        )
    return ToolSet(specs, ToolChoice(ToolChoiceMode.NAMED, name))


def choice_instruction(tools: ToolSet) -> str:
    """Prompt text asking for what ``tool_choice`` wants ("" for ``auto``).

    Codex offers no way to force a tool call, so this is a request to the model, not a
    guarantee: the model may still answer in text.
    """
    choice = tools.choice
    if not tools or choice.mode is ToolChoiceMode.AUTO:
        return ""
    if choice.mode is ToolChoiceMode.REQUIRED:
        return "\n\nYou must call at least one of the client's tools before answering."
    return f"\n\nYou must call the tool {choice.name} before answering."


def check_chat_tool_messages(messages: Sequence[ChatMessage]) -> None:
    """Raise a 400 for a ``tool`` message that answers no earlier call, or a repeated answer."""
    pending: set[str] = set()
    answered: set[str] = set()
    for i, message in enumerate(messages):
        for call in message.tool_calls or ():
            if call.id is not None:
                pending.add(call.id)
        if message.role != "tool":
            continue
        where = f"messages[{i}].tool_call_id"
        call_id = message.tool_call_id
        if call_id is None:
            raise _bad(
                f"Missing required parameter: '{where}'.", where, "missing_required_parameter"
            )
        if call_id in answered:
            raise _bad(
                f"Invalid value for '{where}': the tool call {call_id!r} is answered twice.",
                where,
            )
        if call_id not in pending:
            raise _bad(
                f"Invalid value for '{where}': {call_id!r} answers no tool call of an "
                "earlier assistant message.",
                where,
            )
        for j, part in enumerate(message.content if isinstance(message.content, list) else ()):
            if part.type != "text":
                at = f"messages[{i}].content[{j}]"
                raise _bad(
                    f"Invalid value for '{at}': a tool result carries text parts only; "
                    f"got {part.type!r}.",
                    at,
                )
        pending.discard(call_id)
        answered.add(call_id)


def trailing_tool_outputs(messages: Sequence[ChatMessage]) -> list[ToolOutput]:
    """The results of the ``tool`` messages that end ``messages``, in order (text parts
    joined: ``check_chat_tool_messages`` refuses any other part). Empty unless the last
    message is a tool result."""
    outputs: list[ToolOutput] = []
    for message in reversed(messages):
        if message.role != "tool" or message.tool_call_id is None:
            break
        content = message.content
        if content is None or isinstance(content, str):
            outputs.append(ToolOutput(message.tool_call_id, content or ""))
            continue
        texts = [p.text for p in content if p.text is not None]
        outputs.append(ToolOutput(message.tool_call_id, "".join(texts)))
    return outputs[::-1]


EXEC_CANNOT: Final = (
    "Function calling (tools) is not supported by this server's Codex backend: "
    "'codex exec' cannot offer your tools to the model (CODEX_BACKEND=app-server can)."
)


def refuse_tools(tools: ToolSet, why: str = EXEC_CANNOT) -> None:
    """Raise the 400 (``unsupported_parameter`` on ``tools``) for a request that offers tools
    where they cannot be run; ``why`` says where they can."""
    if not tools:
        return
    raise InvalidRequestError(
        why + " Send the request without tools, or with tool_choice 'none'.",
        param="tools",
        code="unsupported_parameter",
    )


def refuse_offered_tools(tools: object, tool_choice: object, why: str = EXEC_CANNOT) -> None:
    """The same 400 before the tools are validated: where tools cannot run at all, a client
    learns that first (Codex as a client, say, offers tools named like Codex's own)."""
    if isinstance(tools, list) and tools and tool_choice != "none":
        raise InvalidRequestError(
            why + " Send the request without tools, or with tool_choice 'none'.",
            param="tools",
            code="unsupported_parameter",
        )
