"""Every Responses payload the server sends validates against the official OpenAPI spec.

The schemas are ``tests/data/openai_responses_schemas.json`` (extracted unchanged from the spec
by ``tests/data/extract_openai_schemas.py``). Discriminated unions (``ResponseStreamEvent``,
``OutputItem``, ...) are checked against the branch their ``type`` names, as the SDKs read
them; everything else is plain JSON Schema 2020-12. ``stream_problems`` adds the ordering
rules the SDK stream helpers enforce (WIRE.md section 4). Other test modules import these
helpers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import Any, cast

import jsonschema
import pytest
import trio
from quart_trio import QuartTrio
from quart_trio.testing import connections as quart_connections
from trio.testing import MockClock

from tests.support import sse
from tests.support.fakes import ScriptedBackend
from tests.support.paths import DATA_DIR
from tests.support.servers import running_app

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


# --------------------------------------------------------------------------- the app


@dataclasses.dataclass
class Streamed:
    """A response read chunk by chunk, with the virtual time each chunk arrived."""

    status: int
    chunks: list[tuple[float, bytes]]

    @property
    def text(self) -> str:
        return b"".join(c for _, c in self.chunks).decode()

    @property
    def events(self) -> list[dict[str, Any]]:
        return stream_events(self.text)


async def post_stream(
    app: QuartTrio, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Streamed:
    """POST ``body`` to /v1/responses and read the body as it arrives (the test client's
    ``post`` holds only 10 chunks until the handler returns, so long streams need this)."""
    async with app.test_client().request(
        "/v1/responses",
        method="POST",
        headers={"Content-Type": "application/json", **(headers or {})},
    ) as connection:
        await connection.send(json.dumps(body).encode())
        await connection.send_complete()
        chunks: list[tuple[float, bytes]] = []
        while True:
            try:
                chunk = await connection.receive()
            except trio.EndOfChannel:
                break
            chunks.append((trio.current_time(), chunk))
        status = cast(quart_connections.TestHTTPConnection, connection).status_code
    assert status is not None
    return Streamed(status, chunks)


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "sequence_number": 0, **fields}


def test_validator_rejects_what_the_spec_rejects() -> None:
    """The validator accepts a spec example and names a missing logprobs or a bad item type."""
    delta = _event(
        "response.output_text.delta",
        item_id="msg_1",
        output_index=0,
        content_index=0,
        delta="hi",
        logprobs=[],
    )
    assert spec_errors("ResponseStreamEvent", delta) == []
    no_logprobs = {k: v for k, v in delta.items() if k != "logprobs"}
    assert any("logprobs" in e for e in spec_errors("ResponseStreamEvent", no_logprobs))
    bad_item = _event(
        "response.output_item.added", output_index=0, item={"type": "messagez", "id": "x"}
    )
    assert spec_errors("ResponseStreamEvent", bad_item)
    assert spec_errors("ResponseStreamEvent", _event("keepalive"))


def test_stream_checker_catches_ordering_errors() -> None:
    """stream_problems flags a stream that does not start with created or skips an index."""
    created = {"type": "response.created", "sequence_number": 0, "response": {"id": "r"}}
    item = {"id": "m", "type": "message", "status": "in_progress", "role": "assistant"}
    skipped = {
        "type": "response.output_item.added",
        "sequence_number": 1,
        "output_index": 1,
        "item": {**item, "content": []},
    }
    problems = stream_problems([created, skipped])
    assert any("not dense" in p for p in problems)
    assert any("first event" in p for p in stream_problems([skipped]))


STREAM_CASES = {
    "reasoning, deltas and two messages": "[[run:reasoning=Plan it;replies=one|two;deltas=2]]",
    "whole messages": "[[run:replies=alpha|beta|gamma]]",
    "failure after output": "[[run:replies=partial;deltas=3;fail_late=stream disconnected]]",
    "failure before output": "[[run:fail=unexpected status 401 Unauthorized: bad key]]",
    "timeout": "[[run:sleep=60]]",
}


@pytest.mark.parametrize("directive", list(STREAM_CASES.values()), ids=list(STREAM_CASES))
async def test_recorded_streams_validate_against_the_spec(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, directive: str
) -> None:
    """Every event of a recorded stream validates as a ResponseStreamEvent, in SDK order."""
    async with running_app(tmp_path, backend, timeout=10.0, keepalive_interval=4.0) as app:
        response = await post_stream(
            app, {"model": "gpt-test", "input": f"hi {directive}", "stream": True}
        )
    assert response.status == 200
    events = response.events
    assert stream_problems(events) == []
    assert events[-1]["type"] in ("response.completed", "response.failed")


async def test_structured_and_continued_streams_validate(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A structured-output stream and a continuation stream (with echo fields) are spec-valid."""
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        first = await post_stream(
            app,
            {
                "model": "gpt-test",
                "input": [{"role": "user", "content": "x [[run:replies=draft|{};deltas=2]]"}],
                "text": {"format": {"type": "json_schema", "name": "E", "schema": {}}},
                "stream": True,
                "metadata": {"k": "v"},
                "tools": [{"type": "function", "name": "f", "parameters": {}, "strict": True}],
                "temperature": 0.5,
                "reasoning": {"effort": "low", "summary": "auto"},
            },
        )
        events = first.events
        assert stream_problems(events) == []
        final = events[-1]["response"]
        assert [i["content"][0]["text"] for i in final["output"]] == ["{}"]
        second = await client.post(
            "/v1/responses",
            json={"model": "gpt-test", "input": "more", "previous_response_id": final["id"]},
        )
        assert second.status_code == 200
        body = await second.get_json()
    assert spec_errors("Response", body) == []
    assert body["previous_response_id"] == final["id"]


async def test_non_stream_response_and_errors_validate(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """The non-stream Response object and the error envelopes validate against the spec."""
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        ok = await client.post(
            "/v1/responses",
            json={
                "model": "gpt-test-high",
                "input": "hi [[run:reasoning=r;replies=a|b]]",
                "instructions": "be brief",
                "max_output_tokens": 50,
                "truncation": "auto",
                "user": "u1",
            },
        )
        body = await ok.get_json()
        assert spec_errors("Response", body) == []
        assert [i["type"] for i in body["output"]] == ["reasoning", "message", "message"]
        bad = await client.post("/v1/responses", json={"model": "gpt-test", "input": 5})
        missing = await client.post(
            "/v1/responses",
            json={"model": "gpt-test", "input": "x", "previous_response_id": "resp_nope"},
        )
    for response, status in ((bad, 400), (missing, 404)):
        assert response.status_code == status
        assert spec_errors("ErrorResponse", await response.get_json()) == []


def test_a_completed_response_is_not_mutated_by_later_events() -> None:
    """Snapshots taken for earlier events do not change when the builder moves on."""
    from trio_codex.openai.responses.wire import ResponseBuilder
    from trio_codex.run.events import MessageCompleted, TextDelta

    builder = ResponseBuilder({}, created_at=1)
    created = builder.start("resp_1")
    first = builder.feed(TextDelta("i", "a"))
    snapshot = copy.deepcopy(first)
    builder.feed(MessageCompleted("i", "ab"))
    builder.complete(None)
    assert first == snapshot
    assert created[0]["response"]["output"] == []
