"""Layer 1: ``trio_codex.openai.schemas``: validating a chat completions request."""

from __future__ import annotations

import pytest

from trio_codex import errors
from trio_codex.openai.schemas import ChatCompletionRequest, parse_model


def test_unknown_fields_are_ignored_known_ones_validated() -> None:
    """temperature, tools, n and friends parse; a wrong type names the field."""
    req = parse_model(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi", "weird": 1}],
            "temperature": 0.2,
            "max_tokens": 5,
            "top_p": 1,
            "n": 1,
            "stop": ["x"],
            "user": "u",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "whatever_else": {"a": [1]},
        },
    )
    assert req.model == "m"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(
            ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": 5}]}
        )
    assert info.value.param == "messages[0].content"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(ChatCompletionRequest, {"model": "m", "messages": [], "stream": "yes"})
    assert info.value.param == "messages"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(
            ChatCompletionRequest,
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "x_codex": {"sandbox": "root"},
            },
        )
    assert info.value.param == "x_codex.sandbox"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(ChatCompletionRequest, {"messages": [{"role": "user", "content": "x"}]})
    assert info.value.param == "model"
    assert info.value.code == "missing_required_parameter"
