"""What the response echoes must be valid Unicode, and a schema must compile.

* a lone surrogate in any Responses field is refused at validation (400 naming the field): in an
  echoed field it used to end the stream after the 200 without ``response.failed``;
* a JSON Schema ``pattern`` that Python's ``re`` cannot compile (``a{4294967296}``: an
  ``OverflowError`` in jsonschema's format check) is a 400 ``invalid_json_schema``, not a 500.
"""

from __future__ import annotations

from typing import Any

import pytest

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.formats import check_schema
from trio_codex.openai.responses.request import parse_responses_request

# --------------------------------------------------------------------------- lone surrogates


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"metadata": {"k": "\ud800"}}, "metadata.k"),
        ({"metadata": {"\udc00": "v"}}, "metadata"),
        ({"user": "a\ud800"}, "user"),
        ({"safety_identifier": "\ud800"}, "safety_identifier"),
        ({"prompt_cache_key": "\ud800"}, "prompt_cache_key"),
        ({"service_tier": "\ud800"}, "service_tier"),
        ({"tools": [{"type": "function", "name": "\ud800"}]}, "tools[0].name"),
        ({"tool_choice": "\ud800"}, "tool_choice"),
        ({"instructions": "\ud800"}, "instructions"),
        ({"reasoning": {"summary": "\ud800"}}, "reasoning.summary"),
        (
            {"text": {"format": {"type": "json_schema", "name": "\udfff", "schema": {}}}},
            "text.format.name",
        ),
        ({"text": {"verbosity": "\ud800"}}, "text.verbosity"),
        ({"prompt_cache_retention": "\ud800"}, "prompt_cache_retention"),
        ({"input": [{"role": "user", "content": "hi \ud800"}]}, "input[0].content"),
    ],
)
def test_lone_surrogates_are_refused_at_validation(fields: dict[str, Any], param: str) -> None:
    body = {"model": "m", "input": "hi", **fields}
    with pytest.raises(InvalidRequestError) as info:
        parse_responses_request(body)
    assert (info.value.status_code, info.value.param, info.value.code) == (
        400,
        param,
        "invalid_value",
    )
    assert "surrogate" in info.value.message


# --------------------------------------------------------------------------- schema patterns


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "a{4294967296}"},
        {"type": "object", "patternProperties": {"a{4294967296}": {}}},
        {"type": "string", "pattern": "a{1,4294967296}"},
    ],
)
def test_schema_pattern_that_cannot_compile_is_invalid_json_schema(schema: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_schema(schema, param="text.format.schema")
    assert (info.value.status_code, info.value.code, info.value.param) == (
        400,
        "invalid_json_schema",
        "text.format.schema",
    )
