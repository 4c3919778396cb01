"""Structured output: the JSON Schema a request asks the answer to follow.

``check_schema`` refuses a schema that is not valid JSON Schema (Draft 2020-12, which is what
OpenAI's structured outputs accept) with a 400 naming the field, before any process starts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

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
