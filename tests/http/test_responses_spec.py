"""Every Responses payload the server sends validates against the official OpenAPI spec.

The schemas are ``tests/data/openai_responses_schemas.json`` (extracted unchanged from the spec
by ``tests/data/extract_openai_schemas.py``). Discriminated unions (``ResponseStreamEvent``,
``OutputItem``, ...) are checked against the branch their ``type`` names, as the SDKs read
them; everything else is plain JSON Schema 2020-12. ``stream_problems`` adds the ordering
rules the SDK stream helpers enforce (WIRE.md section 4). The validator and the stream checks
live in ``tests.support.spec``; the first two tests here check them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.servers import post_stream, running_app
from tests.support.spec import spec_errors, stream_problems


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
                "tool_choice": "none",
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
