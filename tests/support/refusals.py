"""Asserting that a request body is refused at validation, before anything runs (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.prompt import chat_prompt
from trio_codex.openai.responses.request import parse_responses_request, plan_run
from trio_codex.openai.schemas import ChatCompletionRequest, parse_model

#: Texts that hold nothing to answer.
BLANKS = ["", " ", "\t\n\r"]


def refused_chat(messages: list[dict[str, Any]]) -> InvalidRequestError:
    """The 400 that chat ``messages`` get from validation and flattening."""
    req = parse_model(ChatCompletionRequest, {"model": "m", "messages": messages})
    with pytest.raises(InvalidRequestError) as info:
        chat_prompt(req.messages)
    return info.value


def refused_responses(**fields: Any) -> InvalidRequestError:
    """The 400 that a Responses body (``model`` added) gets from validation and planning."""
    with pytest.raises(InvalidRequestError) as info:
        plan_run(parse_responses_request({"model": "m", **fields}))
    return info.value
