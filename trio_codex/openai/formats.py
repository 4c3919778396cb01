"""Output formats: what a request asks of the answer's shape, parsed once for both APIs.

``response_format`` (chat) and ``text_format`` (Responses ``text.format``) read ``text``,
``json_object`` and ``json_schema`` into one ``OutputFormat``: the JSON Schema Codex must follow,
whether the answer is the last agent message only, and any instruction appended to the prompt.
``check_schema`` refuses a schema that is not valid JSON Schema (Draft 2020-12, which is what
OpenAI's structured outputs accept) with a 400 naming the field, before any process starts; a
``pattern`` that Python's ``re`` cannot compile is such a schema, never a 500. Pure.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import jsonschema

from ..errors import InvalidRequestError


def check_schema(schema: Mapping[str, Any], *, param: str) -> None:
    """Raise ``InvalidRequestError`` unless ``schema`` is a valid JSON Schema object."""
    try:
        json.dumps(schema, allow_nan=False)
    except ValueError:
        raise InvalidRequestError(
            f"Invalid JSON Schema in '{param}': NaN and Infinity are not JSON.",
            param=param,
            code="invalid_json_schema",
        ) from None
    try:
        jsonschema.Draft202012Validator.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        detail = f" at '{where}'" if where else ""
        raise InvalidRequestError(
            f"Invalid JSON Schema in '{param}'{detail}: {exc.message}",
            param=param,
            code="invalid_json_schema",
        ) from None
    except (OverflowError, RecursionError, re.error) as exc:
        # A ``pattern`` the regex engine cannot compile (``a{4294967296}``: OverflowError),
        # raised by jsonschema's own format check.
        raise InvalidRequestError(
            f"Invalid JSON Schema in '{param}': a regular expression cannot be compiled ({exc}).",
            param=param,
            code="invalid_json_schema",
        ) from None


#: Appended to the prompt for ``{"type": "json_object"}`` (Codex has no JSON mode of its own).
JSON_OBJECT_INSTRUCTION: Final = (
    "\n\nRespond with one JSON object and nothing else: no prose, no code fences."
)


@dataclasses.dataclass(frozen=True)
class OutputFormat:
    """What a request asks of the answer's shape, for either API."""

    #: JSON Schema Codex must follow (``--output-schema`` / ``outputSchema``), if any.
    schema: dict[str, Any] | None = None
    #: Structured output: the answer is the last agent message only.
    final_only: bool = False
    #: Text appended to the prompt.
    instruction: str = ""


def response_format(value: Mapping[str, Any] | None) -> OutputFormat:
    """Chat's ``response_format`` (``json_schema`` nests the schema under ``json_schema``)."""
    if value is None:
        return OutputFormat()
    spec = value.get("json_schema")
    holder = spec if isinstance(spec, dict) else {}
    return _parse(value.get("type"), holder, "response_format", "response_format.json_schema")


def text_format(value: Mapping[str, Any] | None) -> OutputFormat:
    """Responses' ``text.format`` (``json_schema`` carries ``name`` and ``schema`` itself)."""
    if value is None:
        return OutputFormat()
    return _parse(value.get("type"), value, "text.format", "text.format")


def _parse(kind: object, holder: Mapping[str, Any], param: str, schema_at: str) -> OutputFormat:
    if kind == "text":
        return OutputFormat()
    if kind == "json_object":
        return OutputFormat(final_only=True, instruction=JSON_OBJECT_INSTRUCTION)
    if kind == "json_schema":
        schema = holder.get("schema")
        if not isinstance(schema, dict):
            raise InvalidRequestError(
                f"{schema_at}.schema must be a JSON Schema object.",
                param=f"{schema_at}.schema",
                code="invalid_value" if "schema" in holder else "missing_required_parameter",
            )
        name = holder.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidRequestError(
                f"{schema_at}.name must be a string.",
                param=f"{schema_at}.name",
                code="invalid_value",
            )
        check_schema(schema, param=f"{schema_at}.schema")
        return OutputFormat(schema=schema, final_only=True)
    raise InvalidRequestError(
        f"{param}.type {kind!r} is not supported; use text, json_object or json_schema.",
        param=f"{param}.type",
        code="invalid_value",
    )
