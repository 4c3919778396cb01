"""Layer 1: ``trio_codex.openai.responses.request``: a Responses request translated into a run."""

from __future__ import annotations

from typing import Any

import pytest

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.responses.request import (
    echo_fields,
    input_turns,
    parse_responses_request,
    plan_run,
)


def _req(**fields: Any) -> Any:
    return parse_responses_request({"model": "m", "input": "hi", **fields})


def test_a_lone_string_input_is_the_prompt() -> None:
    """input as a string, without instructions, reaches Codex unchanged."""
    plan = plan_run(_req(input="What is 2+2?"))
    assert plan.prompt.text == "What is 2+2?"
    assert plan.output.schema is None
    assert not plan.output.final_only


def test_messages_and_instructions_keep_roles_and_order() -> None:
    """instructions become a developer turn first; message parts are joined; reasoning skipped."""
    turns, images = input_turns(
        [
            {"role": "system", "content": "sys"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {
                "role": "assistant",
                "content": [{"type": "output_text", "text": "a", "annotations": []}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
        ],
        "be brief",
    )
    assert [(t.role, t.text) for t in turns] == [
        ("developer", "be brief"),
        ("system", "sys"),
        ("user", "q"),
        ("assistant", "a"),
        ("user", "look\n[image 1]"),
    ]
    assert [i.param for i in images] == ["input[4].content[1].image_url"]


@pytest.mark.parametrize(
    ("items", "param"),
    [
        (
            [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
                {"type": "function_call_output", "call_id": "c", "output": 3},
            ],
            "input[3].output",
        ),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0]"),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id"),
        (["text"], "input[0]"),
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        ([{"role": "user"}], "input[0].content"),
        ([{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}], None),
        ([{"role": "user", "content": [{"type": "input_text"}]}], "input[0].content[0].text"),
        (
            [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}],
            "input[0].content[0].file_id",
        ),
        ([{"type": "reasoning", "summary": []}], "input"),
        ([], "input"),
    ],
)
def test_items_the_server_cannot_honour_are_400_naming_them(
    items: list[Any], param: str | None
) -> None:
    """Malformed tool items, unknown items, bad roles and parts are refused naming the item,
    part or field."""
    with pytest.raises(InvalidRequestError) as bad:
        input_turns(items)
    assert bad.value.status_code == 400
    expected = param or "input[0].content[0].type"
    assert bad.value.param == expected
    assert expected.removesuffix(".type") in bad.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": 3}, "model"),
        ({"input": None}, "input"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"x_codex": {"sandbx": "read-only"}}, "x_codex.sandbx"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"previous_response_id": 5}, "previous_response_id"),
    ],
)
def test_bad_fields_are_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    """Wrong types, ranges and unsupported features name the field in a 400."""
    with pytest.raises(InvalidRequestError) as bad:
        _req(**fields)
    assert bad.value.status_code == 400
    assert bad.value.param == param


@pytest.mark.parametrize(
    ("fmt", "param"),
    [
        ({"type": "json_schema", "name": "x"}, "text.format.schema"),
        ({"type": "json_schema", "schema": {"type": "nonsense"}}, "text.format.schema"),
        ({"type": "json_schema", "schema": {}, "name": 5}, "text.format.name"),
        ({"type": "yaml"}, "text.format.type"),
    ],
)
def test_bad_text_formats_are_400(fmt: dict[str, Any], param: str) -> None:
    """An invalid JSON Schema or format type is refused before Codex runs."""
    with pytest.raises(InvalidRequestError) as bad:
        plan_run(_req(text={"format": fmt}))
    assert bad.value.param == param


def test_text_formats_set_schema_and_answer_mode() -> None:
    """json_schema passes the schema to --output-schema; json_object asks for JSON in the prompt."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    plan = plan_run(_req(text={"format": {"type": "json_schema", "name": "A", "schema": schema}}))
    assert plan.output.schema == schema
    assert plan.output.final_only
    obj = plan_run(_req(text={"format": {"type": "json_object"}}))
    assert obj.output.schema is None
    assert obj.output.final_only
    assert "JSON object" in obj.prompt.text
    assert not plan_run(_req(text={"format": {"type": "text"}})).output.final_only


def test_echo_fields_repeat_the_request_with_spec_defaults() -> None:
    """Echoed fields repeat what was sent; absent ones get the spec's defaults."""
    defaults = echo_fields(_req(), None)
    assert defaults["tools"] == []
    assert defaults["tool_choice"] == "auto"
    assert defaults["parallel_tool_calls"] is True
    assert defaults["metadata"] == {}
    assert (defaults["temperature"], defaults["top_p"]) == (1.0, 1.0)
    assert defaults["text"] == {"format": {"type": "text"}}
    assert defaults["store"] is True
    given_fields = echo_fields(
        _req(
            instructions="i",
            temperature=0.2,
            metadata={"a": "b"},
            store=False,
            user="u",
            tool_choice="none",
            reasoning={"effort": "low", "summary": "auto"},
        ),
        "low",
    )
    assert given_fields["instructions"] == "i"
    assert given_fields["temperature"] == 0.2
    assert given_fields["metadata"] == {"a": "b"}
    assert given_fields["store"] is False
    assert given_fields["user"] == "u"
    assert given_fields["tool_choice"] == "none"
    assert given_fields["reasoning"] == {"effort": "low", "summary": "auto"}
