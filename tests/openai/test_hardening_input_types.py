"""Every wrong JSON type anywhere in a Responses ``input`` item is a 400 naming the field
(``role: {}`` was a 500: an unhashable value in a set lookup)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.refusals import refused_responses as responses
from trio_codex.openai.responses.request import parse_responses_request, plan_run

# --------------------------------------------------------------------------- wrong types in input

WRONG = [{}, [], 1, 1.5, True, None]


@pytest.mark.parametrize("value", WRONG)
@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"role": "$", "content": "hi"}, "input[0].role"),
        ({"type": "$", "role": "user", "content": "hi"}, "input[0].type"),
        ({"role": "user", "content": "$"}, "input[0].content"),
        ({"role": "user", "content": ["$"]}, "input[0].content[0]"),
        ({"role": "user", "content": [{"type": "$", "text": "hi"}]}, "input[0].content[0].type"),
        (
            {"role": "user", "content": [{"type": "input_text", "text": "$"}]},
            "input[0].content[0].text",
        ),
        (
            {"role": "user", "content": [{"type": "input_image", "image_url": "$"}]},
            "input[0].content[0].image_url",
        ),
        (
            {"role": "user", "content": [{"type": "refusal", "refusal": "$"}]},
            "input[0].content[0].refusal",
        ),
        (
            {"type": "function_call_output", "call_id": "$", "output": "x"},
            "input[0]",
        ),
    ],
)
def test_every_wrong_type_in_input_items_is_a_400(
    item: dict[str, Any], param: str, value: object
) -> None:
    def put(obj: Any) -> Any:
        if obj == "$":
            return value
        if isinstance(obj, dict):
            return {k: put(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [put(v) for v in obj]
        return obj

    if value is None and param == "input[0].type":
        # A null type is an absent type: a message item, which is valid.
        plan_run(parse_responses_request({"model": "m", "input": [put(item)]}))
        return
    error = responses(input=[put(item)])
    assert error.status_code == 400
    assert error.param is not None
    assert error.param.startswith(param), (error.param, param)
