"""The OpenAI wire formats the server reads, validated with pydantic.

Unknown fields are accepted and ignored everywhere OpenAI clients may add their own (top level,
messages, parts); the fields the server acts on are validated, and ``validation_error`` turns a
pydantic error into a 400 whose ``param`` names the field (``messages[1].content``).
``x_codex`` is the exception: it is ours, so an unknown key there is a typo and a 400.
Every string of a body must be valid Unicode (``check_unicode``): a lone surrogate (the JSON
escape ``"\\ud800"``) anywhere is a 400 naming the field, since an echoed field holding one
could not be sent back as UTF-8.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from ..errors import InvalidRequestError
from ..settings import REASONING_EFFORTS, ReasoningDisplay, SandboxMode

M = TypeVar("M", bound="BaseModel")

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max", "ultra"]
if set(REASONING_EFFORTS) != set(get_args(ReasoningEffort)):  # pragma: no cover
    raise RuntimeError("ReasoningEffort and settings.REASONING_EFFORTS disagree")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class XCodex(BaseModel):
    """Per-request Codex options; every value is an enum or a boolean, never free text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sandbox: SandboxMode | None = None
    reasoning_effort: ReasoningEffort | None = None
    network_access: StrictBool | None = None
    #: Chat completions only: where the reasoning summary goes (``CODEX_REASONING_DISPLAY``).
    reasoning_display: ReasoningDisplay | None = None
    #: Show the commands Codex runs and the files it changes (``CODEX_PROGRESS``).
    progress: StrictBool | None = None


class ImageURL(Open):
    url: StrictStr
    detail: StrictStr | None = None


class ContentPart(Open):
    type: StrictStr
    text: StrictStr | None = None
    image_url: ImageURL | StrictStr | None = None
    refusal: StrictStr | None = None


class FunctionCall(Open):
    name: StrictStr | None = None
    arguments: StrictStr | None = None


class ToolCall(Open):
    id: StrictStr | None = None
    type: StrictStr | None = None
    function: FunctionCall | None = None


class ChatMessage(Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None


class StreamOptions(Open):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(Open):
    model: StrictStr
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    reasoning_effort: ReasoningEffort | None = None
    response_format: dict[str, Any] | None = None
    stop: StrictStr | list[StrictStr] | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    x_codex: XCodex | None = None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    # Drop pydantic's union-branch labels ("str", "list[ContentPart]", "ImageURL", ...).
    return tuple(
        p
        for p in loc
        if isinstance(p, int) or not (p[:1].isupper() or p in {"str", "list", "dict"} or "[" in p)
    )


def validation_error(exc: pydantic.ValidationError) -> InvalidRequestError:
    """The first problem of ``exc`` as a 400 naming the field."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    param = _loc(_clean_loc(tuple(first["loc"]))) or None
    message = first["msg"]
    if first["type"] == "missing":
        text = f"Missing required parameter: '{param}'."
    elif first["type"] == "extra_forbidden":
        text = f"Unrecognized parameter: '{param}'."
    else:
        text = f"Invalid value for '{param}': {message}."
    code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
    return InvalidRequestError(text, param=param, code=code)


def _lone_surrogate(value: object, path: str) -> tuple[str, str] | None:
    """(path, offending text) of the first string in ``value`` that is not valid Unicode."""
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where, item
        elif isinstance(item, dict):
            children: list[tuple[object, str]] = []
            for key, child in item.items():
                key_path = f"{where}.{key}" if where else str(key)
                if _lone_surrogate(key, "") is not None:
                    return where, str(key)
                children.append((child, key_path))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def check_unicode(body: object) -> None:
    """Refuse a body holding a lone surrogate anywhere (a key or a value) with a 400 naming
    the field (the object, for a key). One C-speed pass when the body is clean."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        found = _lone_surrogate(body, "")
        if found is None:  # pragma: no cover - the walk finds what the encoder found
            raise
        param, text = found
        bad = next(c for c in text if "\ud800" <= c <= "\udfff")
        raise InvalidRequestError(
            f"Invalid value for '{param or 'body'}': it contains a lone surrogate "
            f"(U+{ord(bad):04X}), which is not valid Unicode text.",
            param=param or None,
            code="invalid_value",
        ) from None


def parse_model(cls: type[M], body: object) -> M:
    """Validate ``body`` as ``cls`` or raise a 400 naming the first bad field."""
    if not isinstance(body, dict):
        raise InvalidRequestError(
            "The request body must be a JSON object.", param=None, code="invalid_json"
        )
    check_unicode(body)
    try:
        return cls.model_validate(body)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
