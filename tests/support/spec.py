"""The official OpenAPI spec of the Responses API as a validator, and the stream rules of the SDKs.

The schemas are ``tests/data/openai_responses_schemas.json`` (extracted unchanged from the spec
by ``tests/data/extract_openai_schemas.py``). Discriminated unions (``ResponseStreamEvent``,
``OutputItem``, ...) are checked against the branch their ``type`` names, as the SDKs read
them; everything else is plain JSON Schema 2020-12. ``stream_problems`` adds the ordering
rules the SDK stream helpers enforce (WIRE.md section 4).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema

from tests.support import sse
from tests.support.paths import DATA_DIR

SCHEMAS = DATA_DIR / "openai_responses_schemas.json"


REF = "#/components/schemas/"


TERMINAL = ("response.completed", "response.failed", "response.incomplete")


# --------------------------------------------------------------------------- the validator


def _branch_types(schemas: dict[str, Any], branch: Any) -> list[str] | None:
    """The ``type`` values a union branch accepts, or None when they cannot be read off."""
    seen = 0
    while isinstance(branch, dict) and "$ref" in branch and seen < 20:
        branch = schemas.get(branch["$ref"].removeprefix(REF), {})
        seen += 1
    if not isinstance(branch, dict):
        return None
    if "allOf" in branch:
        found = [_branch_types(schemas, part) for part in branch["allOf"]]
        return next((f for f in found if f), None)
    if "anyOf" in branch or "oneOf" in branch:
        out: list[str] = []
        options: list[Any] = branch.get("anyOf") or branch.get("oneOf") or []
        for sub in options:
            if isinstance(sub, dict) and sub.get("type") == "null":
                continue
            values = _branch_types(schemas, sub)
            if values is None:
                return None
            out += values
        return out or None
    prop = (branch.get("properties") or {}).get("type")
    if not isinstance(prop, dict):
        return None
    if "const" in prop:
        return [prop["const"]]
    if isinstance(prop.get("enum"), list):
        return [v for v in prop["enum"] if isinstance(v, str)]
    return None


def _normalise(schemas: dict[str, Any], node: Any) -> Any:
    """Rewrite discriminated unions as an if/then chain on ``type`` (the branch the payload
    names is the one checked, so errors point at the real problem)."""
    if isinstance(node, list):
        return [_normalise(schemas, n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _normalise(schemas, v) for k, v in node.items()}
    disc = node.pop("discriminator", None)
    key = "oneOf" if "oneOf" in node else "anyOf" if "anyOf" in node else None
    if disc is None or key is None:
        return node
    table = [(_branch_types(schemas, b), b) for b in node[key]]
    if any(values is None for values, _ in table):
        node["anyOf"] = node.pop(key)
        return node
    known = sorted({v for values, _ in table for v in values or []})
    node.pop(key)
    node["allOf"] = [
        *node.get("allOf", []),
        {"type": "object", "required": ["type"], "properties": {"type": {"enum": known}}},
        *(
            {"if": {"properties": {"type": {"enum": values}}, "required": ["type"]}, "then": b}
            for values, b in table
        ),
    ]
    return node


@cache
def _document() -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(SCHEMAS.read_text(encoding="utf-8"))["components"]["schemas"]
    return {"components": {"schemas": {k: _normalise(raw, v) for k, v in raw.items()}}}


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({"$ref": REF + name, **_document()})


def spec_errors(name: str, instance: Any) -> list[str]:
    """Every violation of component schema ``name`` by ``instance`` ([] when valid)."""
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    return ["/" + "/".join(map(str, e.absolute_path)) + ": " + e.message[:300] for e in errors]


# --------------------------------------------------------------------------- streams


def stream_events(text: str) -> list[dict[str, Any]]:
    """The JSON events of a Responses SSE body (asserting each ``event:`` names its type)."""
    events = []
    for name, data in sse.events(text):
        event = json.loads(data)
        assert name == event["type"], (name, event)
        events.append(event)
    return events


def stream_problems(events: list[dict[str, Any]]) -> list[str]:
    """Schema violations of each event, plus the ordering rules of both SDK helpers."""
    problems = [
        f"event {i} ({e.get('type')}): {msg}"
        for i, e in enumerate(events)
        for msg in spec_errors("ResponseStreamEvent", e)
    ]
    if not events or events[0]["type"] != "response.created":
        problems.append("the first event is not response.created")
        return problems
    if [e["sequence_number"] for e in events] != list(range(len(events))):
        problems.append("sequence_number is not 0, 1, 2, ...")
    rid = events[0]["response"]["id"]
    items: dict[str, dict[str, Any]] = {}
    done: list[dict[str, Any]] = []
    for i, e in enumerate(events):
        kind = e["type"]
        if "response" in e and e["response"]["id"] != rid:
            problems.append(f"event {i}: lifecycle response id changed")
        if kind == "response.output_item.added":
            if e["output_index"] != len(items):
                problems.append(f"event {i}: output_index {e['output_index']} is not dense")
            items[e["item"]["id"]] = {"index": e["output_index"], "item": e["item"]}
        elif kind == "response.output_item.done":
            added = items.get(e["item"]["id"])
            if added is None or added["index"] != e["output_index"]:
                problems.append(f"event {i}: output_item.done for an item never added")
            elif added["item"]["type"] != e["item"]["type"]:
                problems.append(f"event {i}: item type changed")
            done.append(e["item"])
        elif "item_id" in e:
            added = items.get(e["item_id"])
            if added is None or added["index"] != e["output_index"]:
                problems.append(f"event {i}: {kind} for an unknown item or index")
        elif "output_index" in e:
            problems.append(f"event {i}: {kind} has output_index but no item_id")
    terminal = [e for e in events if e["type"] in TERMINAL]
    if len(terminal) != 1 or terminal[0] is not events[-1]:
        problems.append("the stream does not end with exactly one terminal event")
    elif terminal[0]["response"]["output"] != sorted(done, key=lambda d: items[d["id"]]["index"]):
        problems.append("the terminal response's output is not the done items")
    if len(done) != len(items):
        problems.append("an added item was never done")
    return problems
