"""Extract the OpenAPI component schemas the Responses tests validate against.

Usage::

    python tests/data/extract_openai_schemas.py OPENAPI_JSON > tests/data/openai_responses_schemas.json

``OPENAPI_JSON`` is ``openapi.json`` of ``openai/openai-openapi`` (the file used here came from
commit f85dbe223d40e1a31cba812ab2d755c7e98a92a3). The output holds ``ROOTS`` and every schema
they reference, transitively, unchanged, under ``components.schemas`` so that ``$ref``
pointers resolve as in the original document.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOTS = ("ResponseStreamEvent", "Response", "ErrorResponse")
REF = "#/components/schemas/"


def closure(schemas: dict[str, Any], roots: tuple[str, ...]) -> dict[str, Any]:
    """``roots`` and every schema reachable from them through ``$ref``."""
    keep: dict[str, Any] = {}
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        stack: list[Any] = [schemas[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str) and ref.startswith(REF):
                    todo.append(ref.removeprefix(REF))
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return dict(sorted(keep.items()))


def main(argv: list[str]) -> None:
    document = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    out = {
        "$comment": (
            "Component schemas of openai/openai-openapi openapi.json (commit f85dbe2, "
            "OpenAPI 3.1.0, API 2.3.0) reachable from " + ", ".join(ROOTS) + "; extracted "
            "unchanged by tests/data/extract_openai_schemas.py."
        ),
        "components": {"schemas": closure(document["components"]["schemas"], ROOTS)},
    }
    sys.stdout.write(json.dumps(out, separators=(",", ":"), sort_keys=False) + "\n")


if __name__ == "__main__":
    main(sys.argv)
