"""Layer 1: ``trio_codex.openai.prompt``: a chat conversation becomes Codex's prompt, within
Codex's length limit."""

from __future__ import annotations

import pytest

from trio_codex import errors
from trio_codex.openai.prompt import chat_prompt, check_length
from trio_codex.openai.schemas import ChatMessage


def _messages(*pairs: tuple[str, object]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": r, "content": c}) for r, c in pairs]


def test_single_user_message_is_passed_unchanged() -> None:
    """A lone user message reaches Codex as it is, so its text is not rewritten."""
    assert chat_prompt(_messages(("user", "hello there"))).text == "hello there"


def test_conversation_keeps_roles_and_order() -> None:
    """Every message appears once, tagged with its role, in the order sent."""
    text = chat_prompt(
        _messages(
            ("system", "be brief"),
            ("developer", "use French"),
            ("user", "hi"),
            ("assistant", "salut"),
            ("user", "and now?"),
        )
    ).text
    order = [
        text.index('role="system"'),
        text.index("be brief"),
        text.index('role="developer"'),
        text.index('role="user"'),
        text.index('role="assistant"'),
        text.index("and now?"),
    ]
    assert order == sorted(order)
    assert text.count("<message ") == 5


def test_content_parts_are_joined_and_images_collected() -> None:
    """Text parts are joined; image parts become refs that name their position."""
    msgs = [
        ChatMessage.model_validate(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "here"},
                ],
            }
        )
    ]
    prompt = chat_prompt(msgs)
    assert "look" in prompt.text
    assert "here" in prompt.text
    assert [i.param for i in prompt.images] == ["messages[0].content[1].image_url"]


def test_tool_messages_and_calls_are_rendered() -> None:
    """Tool results and assistant tool calls stay visible to the model."""
    msgs = [
        ChatMessage.model_validate({"role": "user", "content": "weather?"}),
        ChatMessage.model_validate(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "wx", "arguments": "{}"}}
                ],
            }
        ),
        ChatMessage.model_validate({"role": "tool", "tool_call_id": "c1", "content": "sunny"}),
    ]
    text = chat_prompt(msgs).text
    assert "called tool wx" in text
    assert 'role="tool" name="tool_call_id=c1"' in text
    assert "sunny" in text


def test_unsupported_part_type_names_the_part() -> None:
    """An audio part is a 400 whose param points at it."""
    msgs = [
        ChatMessage.model_validate(
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
        )
    ]
    with pytest.raises(errors.InvalidRequestError) as info:
        chat_prompt(msgs)
    assert info.value.param == "messages[0].content[0].type"


def test_prompt_over_codex_limit_is_context_length_exceeded() -> None:
    """1,048,577 characters is refused before any process starts; 1,048,576 passes."""
    assert check_length("e" * 1_048_576)
    with pytest.raises(errors.ContextLengthError) as info:
        check_length("e" * 1_048_577)
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"
