"""Reading ``codex app-server generate-json-schema`` output: which methods and fields exist,
and the shape of a field's value, in the terms of ``app_protocol.ProtocolPin``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BUNDLE = "codex_app_server_protocol.schemas.json"


class AppSchema:
    """One generated bundle (``DIR/codex_app_server_protocol.schemas.json``)."""

    def __init__(self, directory: Path) -> None:
        bundle = json.loads((directory / BUNDLE).read_text(encoding="utf-8"))
        definitions: dict[str, Any] = bundle["definitions"]
        self.definitions = {k: v for k, v in definitions.items() if k != "v2"}
        self.definitions.update(definitions.get("v2", {}))

    def methods(self, owner: str) -> set[str]:
        """The method names of ``ClientRequest``, ``ServerNotification``, ... (empty if the
        union does not exist)."""
        names: set[str] = set()
        for alternative in self.definitions.get(owner, {}).get("oneOf", []):
            method = alternative.get("properties", {}).get("method", {})
            names.update(method.get("enum", []))
        return names

    def fields(self, owner: str) -> dict[str, Any] | None:
        """The properties of a definition, merged over its ``oneOf``/``anyOf``/``allOf``
        alternatives; None when the definition does not exist."""
        node = self.definitions.get(owner)
        if node is None:
            return None
        merged: dict[str, Any] = {}
        for part in [node, *(node.get(k, []) for k in ("oneOf", "anyOf", "allOf"))]:
            for alternative in part if isinstance(part, list) else [part]:
                if isinstance(alternative, dict):
                    merged.update(alternative.get("properties", {}))
        return merged


def shape(node: Any) -> str:
    """A field's value in short: ``string``, ``boolean``, ``object``, a definition's name,
    ``array<...>``, alternatives joined by ``|`` (``null`` left out), or ``any``."""
    if not isinstance(node, dict):
        return "any"
    if "$ref" in node:
        return str(node["$ref"]).rsplit("/", 1)[-1]
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        return "|".join(sorted({shape(a) for a in alternatives} - {"null"})) or "null"
    declared = node.get("type")
    types = [declared] if isinstance(declared, str) else list(declared or [])
    if types == ["null"]:
        return "null"
    out = [
        f"array<{shape(node.get('items', True))}>" if t == "array" else str(t)
        for t in types
        if t != "null"
    ]
    return "|".join(sorted(out)) or "any"
