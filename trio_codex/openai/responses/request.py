"""The Responses API request: validation, and its translation to one Codex run. Pure.

``parse_responses_request`` validates a body (400 naming the field, never 422/500);
``plan_run`` turns it into the prompt, the output schema and whether the answer is the last
message only; ``echo_fields`` gives the request fields the response object repeats.

Input: ``input`` is a string (one user message) or a list of items. Message items (``type``
``"message"`` or absent) have a ``role`` (``user``, ``assistant``, ``system``, ``developer``)
and ``content`` as a string or a list of ``input_text`` / ``output_text`` / ``refusal`` /
``input_image`` parts. ``reasoning`` items (a previous response's output passed back) are
accepted and skipped: the thread, or the messages, carry what they led to. ``function_call``
items (``call_id``, ``name``, ``arguments``: a call the model made, echoed back by a client that
keeps the history) become the assistant's turn; ``function_call_output`` items (``call_id``,
``output`` as a string or ``input_text`` parts) become ``tool`` turns, and those after the last
message are the plan's ``outputs`` (what a waiting turn takes). A call answered twice, or an
output that is not text, is a 400 naming it; an output whose call is not in the input is an
``orphan``, refused by the route unless a previous response or a waiting turn made the call.
Every other item is refused with a 400 whose ``param`` names it (``input[3]``).
``instructions`` become a developer message ahead of the input; an input with no text (empty or
whitespace only), no image and no tool result is refused (``input``, or ``input[i].content``
for a lone message item). Fields the server cannot honour at all (``background``,
``conversation``, ``prompt`` templates) are refused; every other field is accepted, and echoed
where the ``Response`` object has it.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Final, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr, field_validator

from ...errors import InvalidRequestError
from ...run.tools import ToolOutput
from ..formats import OutputFormat, text_format
from ..prompt import ImagePart, Prompt, Turn, check_not_empty, render
from ..schemas import Open, ReasoningEffort, XCodex, parse_model

MESSAGE_ROLES: Final = frozenset({"user", "assistant", "system", "developer"})
MAX_METADATA_KEYS: Final = 16


class ReasoningParam(Open):
    effort: ReasoningEffort | None = None
    summary: StrictStr | None = None


class TextParam(Open):
    format: dict[str, Any] | None = None
    verbosity: StrictStr | None = None


class ResponsesRequest(Open):
    """``POST /v1/responses``; unknown fields are accepted (and ignored)."""

    model: StrictStr
    input: StrictStr | list[Any]
    instructions: StrictStr | None = None
    stream: StrictBool | None = False
    previous_response_id: StrictStr | None = None
    store: StrictBool | None = None
    reasoning: ReasoningParam | None = None
    text: TextParam | None = None
    x_codex: XCodex | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    temperature: Annotated[float, Field(strict=True, ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(strict=True, ge=0, le=1)] | None = None
    max_output_tokens: Annotated[StrictInt, Field(ge=1)] | None = None
    max_tool_calls: Annotated[StrictInt, Field(ge=0)] | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    metadata: dict[StrictStr, StrictStr] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: StrictStr | None = None
    safety_identifier: StrictStr | None = None
    prompt_cache_key: StrictStr | None = None
    service_tier: StrictStr | None = None
    include: list[StrictStr] | None = None
    background: StrictBool | None = None
    conversation: Any = None
    prompt: Any = None

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys are allowed")
        for key, item in value.items():
            if len(key) > 64:
                raise ValueError(f"key {key[:20]!r}... is longer than 64 characters")
            if len(item) > 512:
                raise ValueError(f"the value of {key!r} is longer than 512 characters")
        return value


def parse_responses_request(body: object) -> ResponsesRequest:
    """Validate ``body``; refuse the features this server cannot provide (400 naming them)."""
    req = parse_model(ResponsesRequest, body)
    if req.background:
        raise _unsupported("background", "Background responses are not supported")
    if req.conversation is not None:
        raise _unsupported(
            "conversation",
            "The Conversations API is not supported; continue with previous_response_id",
        )
    if req.prompt is not None:
        raise _unsupported("prompt", "Prompt templates are not supported")
    return req


def _unsupported(param: str, what: str) -> InvalidRequestError:
    return InvalidRequestError(f"{what} by this server.", param=param, code="unsupported_parameter")


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What one request asks of Codex."""

    prompt: Prompt
    output: OutputFormat
    #: The ``function_call_output`` items after the input's last message, in order: the
    #: results a waiting turn may take (``openai.tools.ToolOutput``).
    outputs: tuple[ToolOutput, ...] = ()
    #: Outputs answering no ``function_call`` item of the input: ``(param, call_id)``. They
    #: may answer a call of the previous response (its thread) or of a waiting turn; with
    #: neither they are refused (``check_orphan_outputs``).
    orphans: tuple[tuple[str, str], ...] = ()


def plan_run(req: ResponsesRequest) -> RunPlan:
    """The prompt (roles and order kept), the output format and the tool results. The prompt's
    length and encoding are checked once, when the run is prepared (``Service.prepare``)."""
    output = text_format(req.text.format if req.text is not None else None)
    items = _InputItems()
    turns, images = input_turns(req.input, req.instructions, items)
    return RunPlan(
        Prompt(render(turns) + output.instruction, tuple(images)),
        output,
        tuple(items.trailing),
        tuple(items.orphans),
    )


@dataclasses.dataclass
class _InputItems:
    """What ``input_turns`` learns of the tool items while it flattens the input."""

    calls: set[str] = dataclasses.field(default_factory=set)
    answered: set[str] = dataclasses.field(default_factory=set)
    trailing: list[ToolOutput] = dataclasses.field(default_factory=list)
    orphans: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def check_orphan_outputs(plan: RunPlan) -> None:
    """Refuse an output for a call that nothing this request can reach made: no
    ``function_call`` item of the input, no previous response, no waiting turn (400 naming
    ``input[i].call_id``)."""
    if not plan.orphans:
        return
    param, call_id = plan.orphans[0]
    raise InvalidRequestError(
        f"Invalid value for '{param}': no function_call with call_id {call_id!r} precedes it in "
        "the input, and no response of yours waits for it. Send previous_response_id (the "
        "response that made the call) or the function_call items themselves.",
        param=param,
        code="invalid_value",
    )


def input_turns(
    items: str | list[Any],
    instructions: str | None = None,
    tool_items: _InputItems | None = None,
) -> tuple[list[Turn], list[ImagePart]]:
    """Flatten ``instructions`` and ``input`` into turns; images become refs (see module doc)."""
    turns: list[Turn] = []
    images: list[ImagePart] = []
    seen = tool_items if tool_items is not None else _InputItems()
    if instructions:
        turns.append(Turn("developer", instructions))
    ahead = len(turns)
    if isinstance(items, str):
        turns.append(Turn("user", items))
        check_not_empty(turns[ahead:], images, param="input")
        return turns, images
    messages: list[int] = []
    results = 0
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(
                f"{where} must be an object (an input item).", param=where, code="invalid_value"
            )
        kind = item.get("type")
        if kind is None:  # absent or null: a message item
            kind = "message"
        if not isinstance(kind, str):
            raise InvalidRequestError(
                f"{where}.type must be a string (an input item type).",
                param=f"{where}.type",
                code="invalid_value",
            )
        if kind == "message":
            turns.append(_message_turn(item, where, images))
            messages.append(i)
            seen.trailing.clear()
        elif kind == "reasoning":
            continue
        elif kind == "function_call":
            turns.append(_call_turn(item, where, seen))
        elif kind == "function_call_output":
            turns.append(_output_turn(item, where, seen))
            results += 1
        else:
            raise InvalidRequestError(
                f"{where} has type {kind!r}, which this server cannot honour; send message, "
                "function_call and function_call_output items (and reasoning items from "
                "earlier responses).",
                param=where,
                code="invalid_value",
            )
    if not messages and not results:
        raise InvalidRequestError(
            "input must contain at least one message or function_call_output.",
            param="input",
            code="invalid_value",
        )
    if results:
        return turns, images  # a tool result is something to answer, even an empty one
    # Instructions alone are not a prompt: the input must say something.
    check_not_empty(
        turns[ahead:],
        images,
        param=f"input[{messages[0]}].content" if len(messages) == 1 else "input",
    )
    return turns, images


def _call_turn(item: dict[str, Any], where: str, seen: _InputItems) -> Turn:
    """A ``function_call`` item (a call the model made, echoed back): the assistant's turn."""
    call_id = _string(item, "call_id", where)
    name = _string(item, "name", where)
    arguments = _string(item, "arguments", where)
    seen.calls.add(call_id)
    return Turn("assistant", f"[called tool {name} with arguments {arguments or '{}'}]")


def _output_turn(item: dict[str, Any], where: str, seen: _InputItems) -> Turn:
    """A ``function_call_output`` item: the client's result of a call, as a ``tool`` turn."""
    call_id = _string(item, "call_id", where)
    if call_id in seen.answered:
        raise InvalidRequestError(
            f"Invalid value for '{where}.call_id': the call {call_id!r} is answered twice.",
            param=f"{where}.call_id",
            code="invalid_value",
        )
    seen.answered.add(call_id)
    if call_id not in seen.calls:
        seen.orphans.append((f"{where}.call_id", call_id))
    output = item.get("output")
    if isinstance(output, str):
        text = output
    elif isinstance(output, list):
        pieces = []
        for j, part in enumerate(output):
            at = f"{where}.output[{j}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if not isinstance(part, dict) or kind != "input_text":
                raise InvalidRequestError(
                    f"Invalid value for '{at}': a tool result carries input_text parts only; "
                    f"got {kind!r}.",
                    param=at,
                    code="invalid_value",
                )
            pieces.append(_string(part, "text", at))
        text = "".join(pieces)
    else:
        raise InvalidRequestError(
            f"{where}.output must be a string or a list of input_text parts.",
            param=f"{where}.output",
            code="missing_required_parameter" if output is None else "invalid_value",
        )
    seen.trailing.append(ToolOutput(call_id, text))
    return Turn("tool", text, name=f"call_id={call_id}")


def _message_turn(item: dict[str, Any], where: str, images: list[ImagePart]) -> Turn:
    role = item.get("role")
    # A role of the wrong type (an object, a list) must not reach the set lookup: unhashable.
    if not isinstance(role, str) or role not in MESSAGE_ROLES:
        raise InvalidRequestError(
            f"{where}.role must be one of {', '.join(sorted(MESSAGE_ROLES))}; got {role!r}.",
            param=f"{where}.role",
            code="missing_required_parameter" if role is None else "invalid_value",
        )
    content = item.get("content")
    if isinstance(content, str):
        return Turn(role, content)
    if not isinstance(content, list):
        raise InvalidRequestError(
            f"{where}.content must be a string or a list of content parts.",
            param=f"{where}.content",
            code="missing_required_parameter" if content is None else "invalid_value",
        )
    pieces: list[str] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise InvalidRequestError(
                f"{at} must be an object (a content part).", param=at, code="invalid_value"
            )
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            pieces.append(_string(part, "text", at))
        elif kind == "refusal":
            pieces.append(_string(part, "refusal", at))
        elif kind == "input_image":
            if part.get("file_id") is not None and part.get("image_url") is None:
                raise InvalidRequestError(
                    f"{at}.file_id is not supported (there is no Files API here); "
                    "send the image as image_url (a data: URL).",
                    param=f"{at}.file_id",
                    code="unsupported_parameter",
                )
            url = _string(part, "image_url", at)
            images.append(ImagePart(url=url, param=f"{at}.image_url"))
            pieces.append(f"[image {len(images)}]")
        else:
            raise InvalidRequestError(
                f"{at} has type {kind!r}, which is not supported; "
                "use input_text, output_text or input_image.",
                param=f"{at}.type",
                code="invalid_value",
            )
    return Turn(role, "\n".join(pieces))


def _string(part: dict[str, Any], key: str, at: str) -> str:
    value = part.get(key)
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{at}.{key} must be a string.",
            param=f"{at}.{key}",
            code="missing_required_parameter" if value is None else "invalid_value",
        )
    return value


def echo_fields(req: ResponsesRequest, effort: str | None) -> dict[str, Any]:
    """The fields of the ``Response`` object that repeat the request (spec defaults when
    absent); ``effort`` is the effective reasoning effort of the run."""
    fields: dict[str, Any] = {
        "instructions": req.instructions,
        "model": req.model,
        "tools": [_echo_tool(t) for t in req.tools] if req.tools is not None else [],
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "parallel_tool_calls": (
            req.parallel_tool_calls if req.parallel_tool_calls is not None else True
        ),
        "metadata": dict(req.metadata) if req.metadata is not None else {},
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": req.max_tool_calls,
        "previous_response_id": req.previous_response_id,
        "reasoning": {
            "effort": effort,
            "summary": req.reasoning.summary if req.reasoning is not None else None,
        },
        "store": req.store if req.store is not None else True,
        "text": _echo_text(req.text),
        "truncation": req.truncation or "disabled",
        "top_logprobs": req.top_logprobs if req.top_logprobs is not None else 0,
        "background": False,
    }
    for name in ("user", "safety_identifier", "prompt_cache_key", "service_tier"):
        value = getattr(req, name)
        if value is not None:
            fields[name] = value
    retention = (req.model_extra or {}).get("prompt_cache_retention")
    if isinstance(retention, str):
        fields["prompt_cache_retention"] = retention
    return fields


def _echo_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A function tool as the ``Response`` object lists it: every field the spec's
    ``FunctionTool`` requires (``strict`` as the client sent it, null when absent: the server
    does not enforce it)."""
    if tool.get("type") != "function":
        return dict(tool)
    return {
        **tool,
        "description": tool.get("description"),
        "parameters": tool.get("parameters"),
        "strict": tool.get("strict"),
    }


def _echo_text(text: TextParam | None) -> dict[str, Any]:
    out: dict[str, Any] = {"format": {"type": "text"}}
    if text is not None and text.format is not None:
        out["format"] = dict(text.format)
    if text is not None and text.verbosity is not None:
        out["verbosity"] = text.verbosity
    return out
