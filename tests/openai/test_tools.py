"""``tools`` are refused, never dropped in silence, until function calling exists."""

from __future__ import annotations

from typing import Any

import pytest

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.tools import refuse_tools

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


@pytest.mark.parametrize("choice", [None, "auto", "required", {"type": "function"}])
def test_offered_tools_are_a_400_naming_tools(choice: Any) -> None:
    """A request that lets the model call a tool gets 400 unsupported_parameter on `tools`."""
    with pytest.raises(InvalidRequestError) as refused:
        refuse_tools([TOOL], choice)
    assert (refused.value.param, refused.value.code) == ("tools", "unsupported_parameter")


@pytest.mark.parametrize(("tools", "choice"), [(None, None), ([], "auto"), ([TOOL], "none")])
def test_no_tools_or_tool_choice_none_pass(tools: list[Any] | None, choice: Any) -> None:
    """No tools, an empty list, or tool_choice none: nothing to refuse."""
    refuse_tools(tools, choice)
