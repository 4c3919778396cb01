"""An empty prompt (chat ``messages``, Responses ``input``: empty or whitespace text, no
image) is a 400 naming the field before any process starts; it used to reach Codex (a 502)."""

from __future__ import annotations

import pytest

from tests.support.refusals import BLANKS
from tests.support.refusals import refused_chat as chat
from tests.support.refusals import refused_responses as responses
from trio_codex.openai.prompt import chat_prompt
from trio_codex.openai.schemas import ChatCompletionRequest, parse_model

# --------------------------------------------------------------------------- empty prompts


@pytest.mark.parametrize("content", [*BLANKS, []])
def test_chat_empty_user_message_is_refused(content: object) -> None:
    error = chat([{"role": "user", "content": content}])
    assert (error.status_code, error.param) == (400, "messages[0].content")
    assert "empty" in error.message


@pytest.mark.parametrize("content", BLANKS)
def test_chat_empty_text_parts_are_refused(content: str) -> None:
    error = chat([{"role": "user", "content": [{"type": "text", "text": content}]}])
    assert (error.status_code, error.param) == (400, "messages[0].content")


def test_chat_all_messages_empty_is_refused() -> None:
    error = chat([{"role": "system", "content": " "}, {"role": "user", "content": ""}])
    assert (error.status_code, error.param) == (400, "messages")


def test_chat_image_only_and_system_only_prompts_pass() -> None:
    png = "data:image/png;base64,iVBORw0KGgo="
    image = {"type": "image_url", "image_url": {"url": png}}
    req = parse_model(
        ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    )
    assert len(chat_prompt(req.messages).images) == 1
    req = parse_model(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": ""}],
        },
    )
    assert "x" in chat_prompt(req.messages).text


@pytest.mark.parametrize("text", BLANKS)
def test_responses_empty_string_input_is_refused(text: str) -> None:
    error = responses(input=text)
    assert (error.status_code, error.param) == (400, "input")


@pytest.mark.parametrize("content", [*BLANKS, []])
def test_responses_empty_message_item_is_refused(content: object) -> None:
    error = responses(input=[{"role": "user", "content": content}])
    assert (error.status_code, error.param) == (400, "input[0].content")


@pytest.mark.parametrize("text", BLANKS)
def test_responses_empty_input_text_part_is_refused(text: str) -> None:
    part = {"type": "input_text", "text": text}
    error = responses(input=[{"type": "message", "role": "user", "content": [part]}])
    assert (error.status_code, error.param) == (400, "input[0].content")


def test_responses_instructions_do_not_fill_an_empty_input() -> None:
    error = responses(input="  ", instructions="Be brief.")
    assert (error.status_code, error.param) == (400, "input")


def test_responses_several_empty_items_name_input() -> None:
    error = responses(input=[{"role": "user", "content": ""}, {"role": "user", "content": " "}])
    assert (error.status_code, error.param) == (400, "input")
