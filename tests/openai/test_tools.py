"""Client tools of either API parse into neutral specs, or a 400 names the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.schemas import ChatMessage
from trio_codex.openai.tools import (
    EMPTY_PARAMETERS,
    chat_tools,
    check_chat_tool_messages,
    choice_instruction,
    refuse_tools,
    responses_tools,
    trailing_tool_outputs,
)
from trio_codex.run.tools import ToolChoice, ToolChoiceMode, ToolOutput, ToolSet, ToolSpec

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
CHAT_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather.", "parameters": SCHEMA},
}
RESP_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather.",
    "parameters": SCHEMA,
}
SPEC = ToolSpec("get_weather", "Weather.", SCHEMA)


def _param(call: Any, *args: Any) -> tuple[str | None, str | None]:
    with pytest.raises(InvalidRequestError) as refused:
        call(*args)
    return refused.value.param, refused.value.code


def test_chat_and_responses_tools_give_the_same_spec() -> None:
    """Both wire shapes become one neutral ToolSpec; tool_choice auto is the default."""
    assert chat_tools([CHAT_TOOL], None) == ToolSet((SPEC,))
    assert responses_tools([RESP_TOOL], "auto") == ToolSet((SPEC,))


def test_missing_description_and_parameters_get_defaults() -> None:
    """No parameters means a function without arguments (an empty object schema)."""
    tools = chat_tools([{"type": "function", "function": {"name": "ping"}}], None)
    assert tools.tools == (ToolSpec("ping", "", EMPTY_PARAMETERS),)
    tools = responses_tools([{"type": "function", "name": "ping", "parameters": {}}], None)
    assert tools.tools == (ToolSpec("ping", "", EMPTY_PARAMETERS),)
    typeless = {"properties": {"a": {"type": "string"}}}
    tools = responses_tools([{"type": "function", "name": "p", "parameters": typeless}], None)
    assert tools.tools[0].parameters == {"type": "object", **typeless}


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ("x", "tools"),
        ([1], "tools[0]"),
        ([{"type": "web_search"}], "tools[0].type"),
        ([{"function": {"name": "f"}}], "tools[0].type"),
        ([{"type": "function"}], "tools[0].function"),
        ([{"type": "function", "function": {}}], "tools[0].function.name"),
        ([{"type": "function", "function": {"name": "a b"}}], "tools[0].function.name"),
        ([{"type": "function", "function": {"name": "x" * 65}}], "tools[0].function.name"),
        ([{"type": "function", "function": {"name": "exec_command"}}], "tools[0].function.name"),
        ([{"type": "function", "function": {"name": "f", "description": 3}}], "tools[0].function.description"),
        ([{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}], "tools[0].function.parameters"),
        ([{"type": "function", "function": {"name": "f", "parameters": []}}], "tools[0].function.parameters"),
        ([CHAT_TOOL, CHAT_TOOL], "tools[1].function.name"),
    ],
)  # fmt: skip
def test_bad_chat_tools_are_a_400_naming_the_field(tools: Any, param: str) -> None:
    """Every malformed tool is refused with a param that points at it."""
    assert _param(chat_tools, tools, None)[0] == param


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "file_search"}], "tools[0].type"),
        ([{"type": "function"}], "tools[0].name"),
        ([{"type": "function", "name": "apply_patch"}], "tools[0].name"),
        ([{"type": "function", "name": "f", "parameters": {"type": "object", "properties": 1}}], "tools[0].parameters.properties"),
        ([RESP_TOOL, RESP_TOOL], "tools[1].name"),
    ],
)  # fmt: skip
def test_bad_responses_tools_are_a_400_naming_the_field(tools: Any, param: str) -> None:
    assert _param(responses_tools, tools, None)[0] == param


def test_a_codex_tool_name_is_refused_with_a_clear_message() -> None:
    """Codex's own tools stay offered, so a client tool may not shadow one."""
    with pytest.raises(InvalidRequestError, match="Codex's own tools"):
        responses_tools([{"type": "function", "name": "shell"}], None)


def test_tool_choice_values() -> None:
    """none registers nothing; required and named keep the tools and remember the choice."""
    assert chat_tools([CHAT_TOOL], "none") == ToolSet()
    assert not chat_tools([CHAT_TOOL], "none")
    assert chat_tools([CHAT_TOOL], "required").choice == ToolChoice(ToolChoiceMode.REQUIRED)
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert chat_tools([CHAT_TOOL], named).choice == ToolChoice(ToolChoiceMode.NAMED, "get_weather")
    assert responses_tools([RESP_TOOL], {"type": "function", "name": "get_weather"}).choice == (
        ToolChoice(ToolChoiceMode.NAMED, "get_weather")
    )


@pytest.mark.parametrize(
    ("choice", "param"),
    [
        ("always", "tool_choice"),
        (3, "tool_choice"),
        ({"type": "allowed_tools"}, "tool_choice"),
        ({"type": "function"}, "tool_choice.function.name"),
        ({"type": "function", "function": {"name": "other"}}, "tool_choice.function.name"),
    ],
)
def test_bad_tool_choice_is_a_400_naming_it(choice: Any, param: str) -> None:
    assert _param(chat_tools, [CHAT_TOOL], choice)[0] == param


def test_required_without_tools_is_a_400() -> None:
    assert _param(responses_tools, [], "required") == ("tool_choice", "invalid_value")


def test_choice_instruction_asks_for_the_call() -> None:
    """auto adds nothing; required and named add a sentence the model can follow."""
    assert choice_instruction(chat_tools([CHAT_TOOL], "auto")) == ""
    assert "at least one" in choice_instruction(chat_tools([CHAT_TOOL], "required"))
    named = chat_tools([CHAT_TOOL], {"type": "function", "function": {"name": "get_weather"}})
    assert "get_weather" in choice_instruction(named)


def _messages(*raw: dict[str, Any]) -> list[ChatMessage]:
    return [ChatMessage.model_validate(m) for m in raw]


CALL = {
    "role": "assistant",
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
}


def test_tool_messages_answering_earlier_calls_pass() -> None:
    check_chat_tool_messages(
        _messages({"role": "user", "content": "hi"}, CALL, {"role": "tool", "tool_call_id": "c1"})
    )


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "c1"}],
        [CALL, {"role": "tool", "tool_call_id": "c2"}],
        [CALL, {"role": "tool", "tool_call_id": "c1"}, {"role": "tool", "tool_call_id": "c1"}],
        [CALL, {"role": "tool", "content": "x"}],
    ],
)
def test_orphan_or_repeated_tool_messages_are_a_400(messages: list[dict[str, Any]]) -> None:
    """A result for no call, or a second result for one call, names the tool message."""
    param = _param(check_chat_tool_messages, _messages(*messages))[0]
    assert param == f"messages[{len(messages) - 1}].tool_call_id"


def test_refuse_tools_only_when_tools_are_offered() -> None:
    """The exec backend's 400 names tools; an empty set (none, no tools) passes."""
    refuse_tools(ToolSet())
    assert _param(refuse_tools, ToolSet((SPEC,))) == ("tools", "unsupported_parameter")


def test_a_tool_result_with_an_image_part_is_a_400_naming_it() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}
    messages = _messages(CALL, {"role": "tool", "tool_call_id": "c1", "content": [image]})
    assert _param(check_chat_tool_messages, messages)[0] == "messages[1].content[0]"


def test_trailing_tool_outputs_are_the_last_results_in_order() -> None:
    """Only the tool messages that end the conversation count; text parts are joined."""
    messages = _messages(
        {"role": "user", "content": "hi"},
        CALL,
        {"role": "tool", "tool_call_id": "c1", "content": "old"},
        {"role": "user", "content": "again"},
        {
            "role": "tool",
            "tool_call_id": "c2",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "tool", "tool_call_id": "c3", "content": None},
    )
    assert trailing_tool_outputs(messages) == [ToolOutput("c2", "ab"), ToolOutput("c3", "")]
    assert trailing_tool_outputs(messages[:4]) == []
