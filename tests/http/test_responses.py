"""Layer 2 for ``/v1/responses``: the app in process with the scripted backend, on virtual time.

Shapes, sequence numbers, timing of the first bytes, failures, conversations (ids, 404, 409,
per-request usage, persistence) and structured output, asserted exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio
from trio.testing import MockClock

from tests.support import sse
from tests.support.fakes import ScriptedBackend
from tests.support.servers import post_stream, runner_of, running_app
from tests.support.spec import stream_problems
from trio_codex.api import components
from trio_codex.run.threads import ThreadLocks


def body(prompt: str | list[Any] = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "input": prompt, **extra}


async def create(app: QuartTrio, payload: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    return await app.test_client().post("/v1/responses", json=payload, headers=headers)


async def test_non_stream_response_shape(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A plain request returns a completed response: reasoning, then one message per message."""
    async with running_app(tmp_path, backend) as app:
        r = await create(app, body("[[run:reasoning=Think;replies=one|two]]"))
        assert r.status_code == 200
        assert r.headers["x-request-id"].startswith("req_")
        out = await r.get_json()
    assert out["object"] == "response"
    assert out["id"].startswith("resp_")
    assert out["status"] == "completed"
    assert (out["error"], out["incomplete_details"], out["instructions"]) == (None, None, None)
    assert out["model"] == "gpt-test"
    assert [i["type"] for i in out["output"]] == ["reasoning", "message", "message"]
    assert out["output"][0]["summary"] == [{"type": "summary_text", "text": "Think"}]
    assert out["output"][1]["content"] == [
        {"type": "output_text", "text": "one", "annotations": [], "logprobs": []}
    ]
    assert len({i["id"] for i in out["output"]}) == 3
    assert out["usage"] == {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 15,
    }
    assert "output_text" not in out


async def test_request_options_reach_the_run(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Model alias, reasoning.effort and x_codex set the run; instructions lead the prompt."""
    async with running_app(tmp_path, backend) as app:
        await create(app, {**body(), "model": "gpt-test-high"})
        r = await create(
            app,
            body(
                [{"role": "user", "content": [{"type": "input_text", "text": "Q"}]}],
                instructions="Answer tersely.",
                reasoning={"effort": "low"},
                x_codex={"sandbox": "workspace-write"},
            ),
        )
        echoed = await r.get_json()
    first, second = (run.spec for run in backend.runs)
    assert (first.model, first.reasoning_effort, first.prompt) == ("gpt-test", "high", "hi")
    assert (second.reasoning_effort, second.sandbox) == ("low", "workspace-write")
    assert second.prompt.index("Answer tersely.") < second.prompt.index("Q")
    assert echoed["instructions"] == "Answer tersely."
    assert echoed["reasoning"]["effort"] == "low"


async def test_stream_of_a_new_conversation_starts_with_a_keepalive(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """The first byte is sent when the slot is held; created follows Codex's thread.started."""
    async with running_app(tmp_path, backend, keepalive_interval=2.0) as app:
        start = trio.current_time()
        r = await post_stream(app, body("[[run:silent=3;sleep=5;reply=late]]", stream=True))
    assert r.status == 200
    times = [(t - start, chunk[:30]) for t, chunk in r.chunks if chunk]
    assert times[0] == (0.0, b": keep-alive\n\n")
    created_at = next(t for t, c in times if c.startswith(b"event: response.created"))
    assert created_at == 3
    keepalives = [t for t, c in times if c == b": keep-alive\n\n"]
    assert keepalives == [0, 2, 5, 7]  # silent from 3 to 8: every 2 s after the last event
    assert stream_problems(r.events) == []


async def test_stream_of_a_continuation_is_created_at_once(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A continuation sends created and in_progress at t=0, before Codex prints anything."""
    async with running_app(tmp_path, backend, keepalive_interval=100.0) as app:
        first = await (await create(app, body())).get_json()
        start = trio.current_time()
        r = await post_stream(
            app,
            body("[[run:silent=4;reply=b]]", stream=True, previous_response_id=first["id"]),
        )
    created = [(t - start, e) for t, e in _timed_events(r.chunks)]
    assert [(t, e["type"]) for t, e in created[:2]] == [
        (0, "response.created"),
        (0, "response.in_progress"),
    ]
    assert created[2][0] == 4
    assert created[0][1]["response"]["previous_response_id"] == first["id"]


def _timed_events(chunks: list[tuple[float, bytes]]) -> list[tuple[float, dict[str, Any]]]:
    return [
        (t, frame.json())
        for t, chunk in chunks
        for frame in sse.frames(chunk)
        if frame.data is not None
    ]


async def test_stream_events_and_sequence_numbers(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Deltas stream into their message; sequence numbers are dense; completed has usage."""
    async with running_app(tmp_path, backend) as app:
        r = await post_stream(app, body("[[run:replies=abcdef|xy;deltas=3]]", stream=True))
    events = r.events
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = [(e["output_index"], e["delta"]) for e in events if e["type"].endswith("text.delta")]
    assert deltas == [(0, "ab"), (0, "cd"), (0, "ef"), (1, "x"), (1, "y")]
    final = events[-1]
    assert final["type"] == "response.completed"
    assert [i["content"][0]["text"] for i in final["response"]["output"]] == ["abcdef", "xy"]
    assert final["response"]["usage"]["total_tokens"] == 15
    assert "[DONE]" not in r.text


async def test_failures_in_a_stream_end_with_response_failed(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A timeout after the stream began is response.failed (status failed, code, message)."""
    async with running_app(tmp_path, backend, timeout=10.0, keepalive_interval=100.0) as app:
        start = trio.current_time()
        r = await post_stream(app, body("[[run:sleep=30]]", stream=True))
        assert trio.current_time() - start == 10
        quota = await post_stream(
            app, body("[[run:fail=Quota exceeded. Check your plan and billing.]]", stream=True)
        )
    failed = r.events[-1]
    assert failed["type"] == "response.failed"
    assert failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "server_error"
    assert "CODEX_TIMEOUT" in failed["response"]["error"]["message"]
    assert quota.events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"
    assert backend.runs[0].cancelled


async def test_errors_before_the_stream_are_plain_http(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With the only slot busy, a streamed request gets a 503 at the queue deadline, not SSE."""
    settings: dict[str, Any] = {"max_parallel_requests": 1, "queue_timeout": 5.0}
    async with running_app(tmp_path, backend, **settings) as app, trio.open_nursery() as nursery:
        nursery.start_soon(create, app, body("[[run:sleep=30]]"))
        await trio.sleep(1)
        r = await create(app, body("x", stream=True))
        nursery.cancel_scope.cancel()
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert (await r.get_json())["error"]["code"] == "queue_timeout"


async def test_non_stream_failure_maps_status(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Codex's upstream 401 is our 401 with its message, as for chat completions."""
    async with running_app(tmp_path, backend) as app:
        r = await create(app, body("[[run:fail=unexpected status 401 Unauthorized: bad key]]"))
    assert r.status_code == 401
    assert "bad key" in (await r.get_json())["error"]["message"]


# --------------------------------------------------------------------------- conversations


async def test_continuation_resumes_the_thread_with_per_request_usage(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """previous_response_id resumes the thread; usage is this turn's share of the running total."""
    async with running_app(tmp_path, backend) as app:
        one = await (await create(app, body("a [[run:thread=T1;usage=100,5,10,2]]"))).get_json()
        two = await (
            await create(app, body("b [[run:usage=300,5,30,2]]", previous_response_id=one["id"]))
        ).get_json()
        three = await post_stream(
            app, body("c [[run:usage=600,9,60,3]]", stream=True, previous_response_id=two["id"])
        )
    specs = [run.spec for run in backend.runs]
    assert [(s.resume_thread_id, s.persist) for s in specs] == [
        (None, True),
        ("T1", True),
        ("T1", True),
    ]
    assert specs[1].prompt == "b [[run:usage=300,5,30,2]]"
    assert two["previous_response_id"] == one["id"]
    assert two["usage"]["input_tokens"] == 200
    assert two["usage"]["output_tokens"] == 20
    assert two["usage"]["input_tokens_details"]["cached_tokens"] == 0
    usage = three.events[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"]) == (300, 30)


async def test_store_false_is_ephemeral_and_cannot_be_continued(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """store: false runs --ephemeral; its id is refused as previous_response_id with 404."""
    async with running_app(tmp_path, backend) as app:
        out = await (await create(app, body(store=False))).get_json()
        streamed = await post_stream(app, body(store=False, stream=True))
        again = await create(app, body(previous_response_id=out["id"]))
        again_stream = await create(
            app, body(previous_response_id=streamed.events[0]["response"]["id"])
        )
    assert [run.spec.persist for run in backend.runs] == [False, False]
    assert out["store"] is False
    for r in (again, again_stream):
        assert r.status_code == 404
        error = (await r.get_json())["error"]
        assert error["code"] == "previous_response_not_found"
        assert "store: false" in error["message"]


@pytest.mark.parametrize(
    "previous",
    ["resp_garbage", "chatcmpl-abc", "", "resp_" + "A" * 80],
)
async def test_unknown_or_malformed_ids_are_404(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, previous: str
) -> None:
    """An id this server did not mint is 404 previous_response_not_found; nothing runs."""
    async with running_app(tmp_path, backend) as app:
        r = await create(app, body(previous_response_id=previous))
    assert r.status_code == 404
    error = (await r.get_json())["error"]
    assert (error["code"], error["param"]) == (
        "previous_response_not_found",
        "previous_response_id",
    )
    assert backend.runs == []


async def test_another_keys_id_is_404(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """An id minted for one API key is not found for another; its own key continues it."""
    async with running_app(tmp_path, backend, api_keys=("sk-a", "sk-b")) as app:
        out = await (await create(app, body(), key="sk-a")).get_json()
        foreign = await create(app, body(previous_response_id=out["id"]), key="sk-b")
        own = await create(app, body(previous_response_id=out["id"]), key="sk-a")
    assert foreign.status_code == 404
    assert (await foreign.get_json())["error"]["code"] == "previous_response_not_found"
    assert own.status_code == 200
    assert len(backend.runs) == 2


async def test_ids_do_not_survive_a_new_secret(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With TRIO_CODEX_RESPONSE_ID_SECRET the ids outlive the process; a new secret voids them."""
    async with running_app(tmp_path, backend, response_id_secret=b"one") as app:
        rid = (await (await create(app, body())).get_json())["id"]
    async with running_app(tmp_path, backend, response_id_secret=b"one") as app:
        assert (await create(app, body(previous_response_id=rid))).status_code == 200
    async with running_app(tmp_path, backend, response_id_secret=b"two") as app:
        assert (await create(app, body(previous_response_id=rid))).status_code == 404


async def test_concurrent_continuations_of_one_thread_get_409(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """While a continuation runs, another one of the same thread is 409; afterwards it works."""
    async with running_app(tmp_path, backend) as app:
        rid = (await (await create(app, body("[[run:thread=T7]]"))).get_json())["id"]
        statuses: list[int] = []

        async def continue_slowly() -> None:
            r = await create(app, body("[[run:sleep=10]]", previous_response_id=rid))
            statuses.append(r.status_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(continue_slowly)
            await trio.sleep(1)
            busy = await create(app, body(previous_response_id=rid))
            busy_stream = await create(app, body(previous_response_id=rid, stream=True))
            other = await create(app, body())  # a new conversation is not affected
        after = await create(app, body(previous_response_id=rid))
        locks: ThreadLocks = components(app).locks
        assert not locks.busy("T7")
    for r in (busy, busy_stream):
        assert r.status_code == 409
        error = (await r.get_json())["error"]
        assert (error["code"], error["param"]) == ("conversation_busy", "previous_response_id")
        assert "one request at a time" in error["message"]
    assert statuses == [200]
    assert other.status_code == 200
    assert after.status_code == 200
    assert len(backend.runs) == 4


async def test_a_streamed_new_thread_is_busy_until_its_run_ends(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """The id in response.created cannot be continued while that run still writes the thread."""
    async with running_app(tmp_path, backend, keepalive_interval=100.0) as app:
        async with app.test_client().request(
            "/v1/responses", method="POST", headers={"Content-Type": "application/json"}
        ) as connection:
            await connection.send(
                json.dumps(body("[[run:thread=T3;sleep=5]]", stream=True)).encode()
            )
            await connection.send_complete()
            head = b""
            while b"response.in_progress" not in head:
                head += await connection.receive()
            created = sse.payloads(head)[0]
            rid = created["response"]["id"]
            busy = await create(app, body(previous_response_id=rid))
            with trio.fail_after(10):
                while True:
                    try:
                        await connection.receive()
                    except trio.EndOfChannel:
                        break
        after = await create(app, body(previous_response_id=rid))
    assert busy.status_code == 409
    assert after.status_code == 200
    assert backend.runs[-1].spec.resume_thread_id == "T3"


async def test_codex_refusals_to_resume_map_to_409_and_404(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Codex's own 'active writer' (another process) is 409; 'no rollout found' is 404."""
    async with running_app(tmp_path, backend) as app:
        rid = (await (await create(app, body())).get_json())["id"]
        writer = await create(
            app,
            body(
                "[[run:fail=thread/resume failed: thread x already has an active writer]]",
                previous_response_id=rid,
            ),
        )
        gone = await create(
            app,
            body(
                "[[run:fail=thread/resume failed: no rollout found for thread id x]]",
                previous_response_id=rid,
            ),
        )
    assert writer.status_code == 409
    assert gone.status_code == 404
    assert (await gone.get_json())["error"]["code"] == "previous_response_not_found"


async def test_a_cancelled_continuation_frees_its_thread(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A client that leaves mid-continuation frees the thread once the run is gone."""
    async with running_app(tmp_path, backend) as app:
        rid = (await (await create(app, body("[[run:thread=T5]]"))).get_json())["id"]
        with trio.move_on_after(2):
            await create(app, body("[[run:sleep=60]]", previous_response_id=rid))
        with trio.fail_after(5):
            await runner_of(app).running.wait_value(0)
            await trio.testing.wait_all_tasks_blocked()  # the lease watcher has run
        assert not components(app).locks.busy("T5")
        after = await create(app, body(previous_response_id=rid))
    assert after.status_code == 200
    assert backend.runs[1].cancelled


# --------------------------------------------------------------------------- structured output


async def test_json_schema_goes_to_output_schema_and_the_file_is_removed(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """json_schema reaches --output-schema, removed in every outcome; the last message wins."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    seen: list[tuple[Path, Any]] = []
    original = backend.run

    async def spy(spec: Any, emit: Any) -> Any:
        assert spec.output_schema is not None
        seen.append((spec.output_schema, json.loads(spec.output_schema.read_text())))
        return await original(spec, emit)

    backend.run = spy  # type: ignore[method-assign]
    fmt = {"format": {"type": "json_schema", "name": "A", "schema": schema, "strict": True}}
    async with running_app(tmp_path, backend, timeout=5.0) as app:
        ok = await (await create(app, body('[[run:replies=draft|{"a": 1}]]', text=fmt))).get_json()
        failed = await create(app, body("[[run:fail=boom]]", text=fmt))
        timed_out = await post_stream(app, body("[[run:sleep=60]]", text=fmt, stream=True))
    assert [i["content"][0]["text"] for i in ok["output"]] == ['{"a": 1}']
    assert ok["text"]["format"]["name"] == "A"
    assert failed.status_code == 502
    assert timed_out.events[-1]["type"] == "response.failed"
    assert [content for _, content in seen] == [schema] * 3
    assert not any(path.exists() or path.parent.exists() for path, _ in seen)


async def test_invalid_schema_is_400_before_codex_runs(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A text.format schema that is not JSON Schema is refused with 400; nothing runs."""
    async with running_app(tmp_path, backend) as app:
        r = await create(
            app,
            body(text={"format": {"type": "json_schema", "name": "x", "schema": {"type": 5}}}),
        )
    assert r.status_code == 400
    error = (await r.get_json())["error"]
    assert (error["param"], error["code"]) == ("text.format.schema", "invalid_json_schema")
    assert backend.runs == []


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"model": "gpt-test"}, 400, "input"),
        ({"input": "x"}, 400, "model"),
        (
            body(input=[{"type": "function_call_output", "call_id": "c", "output": "1"}]),
            400,
            "input[0].call_id",  # answers no call this request can reach
        ),
        (
            body(input=[{"role": "user", "content": "a"}] * 3 + [{"type": "web_search_call"}]),
            400,
            "input[3]",
        ),
        (body(temperature=9), 400, "temperature"),
        (body(stream="yes"), 400, "stream"),
        (body(background=True), 400, "background"),
        (body(x_codex={"network_access": True}), 400, "x_codex.network_access"),
        (body(x_codex={"sandbox": "danger-full-access"}), 403, "x_codex.sandbox"),
        ({**body(), "model": "gpt-4o"}, 404, "model"),
        (
            body(
                input=[
                    {
                        "role": "user",
                        "content": [{"type": "input_image", "image_url": "file:///etc/passwd"}],
                    }
                ]
            ),
            400,
            "input[0].content[0].image_url",
        ),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    payload: dict[str, Any],
    status: int,
    param: str,
) -> None:
    """Validation errors are 4xx envelopes naming the field (never 422/500); nothing runs."""
    async with running_app(tmp_path, backend) as app:
        r = await create(app, payload)
    assert r.status_code == status
    error = (await r.get_json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert backend.runs == []


async def test_unprefixed_route_and_unknown_fields(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """/responses works like /v1/responses; unknown fields are accepted; echoes come back."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            "/responses",
            json=body(
                future_field={"x": 1},
                include=["reasoning.encrypted_content"],
                metadata={"ticket": "42"},
                parallel_tool_calls=False,
                tool_choice="none",
                top_p=0.5,
            ),
        )
        out = await r.get_json()
    assert r.status_code == 200
    assert out["metadata"] == {"ticket": "42"}
    assert (out["parallel_tool_calls"], out["tool_choice"], out["top_p"]) == (False, "none", 0.5)
    assert "future_field" not in out
