"""Layer 1: ``trio_codex.openai.formats``: output schemas are checked before Codex runs."""

from __future__ import annotations

import pytest

from trio_codex import errors


@pytest.mark.parametrize(
    ("schema", "ok"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, True),
        ({"type": "objectx"}, False),
        ({"type": "object", "required": "a"}, False),
        ({"type": "number", "maximum": float("nan")}, False),
        ({"type": "number", "minimum": float("inf")}, False),
    ],
)
def test_output_schema_is_checked_before_codex_runs(schema: dict[str, object], ok: bool) -> None:
    """An invalid JSON Schema (or NaN/Infinity, which is not JSON) is a 400 naming the field."""
    from trio_codex.openai.formats import check_schema

    if ok:
        check_schema(schema, param="text.format.schema")
        return
    with pytest.raises(errors.InvalidRequestError) as info:
        check_schema(schema, param="text.format.schema")
    assert info.value.param == "text.format.schema"
    assert info.value.code == "invalid_json_schema"
