"""Responses function calling through the app in process, on virtual time: a scripted backend
(``[[run:call=...]]``) calls the client's tools and waits on the runner's bridge. Shapes are
checked against the official OpenAPI spec (``tests.support.spec``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.servers import post_stream, runner_of, running_app
from tests.support.spec import spec_errors, stream_problems
from trio_codex.run.tools import ToolSpec

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "get_weather", "parameters": SCHEMA, "strict": False},
    {"type": "function", "name": "get_time", "description": "The time."},
]
CALLS = "[[run:call=get_weather,get_time]]"


def _body(items: Any = CALLS, **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "input": items, "tools": TOOLS, **extra}


def _outputs(*texts: str) -> list[dict[str, Any]]:
    return [
        {"type": "function_call_output", "call_id": f"call_{n}", "output": text}
        for n, text in enumerate(texts, 1)
    ]


def _calls(output: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [
        (i["call_id"], i["name"], i["arguments"], i["status"])
        for i in output
        if i["type"] == "function_call"
    ]


EXPECTED = [
    ("call_1", "get_weather", '{"n":1}', "completed"),
    ("call_2", "get_time", '{"n":2}', "completed"),
]


async def test_function_calls_complete_the_response_and_park_the_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Both calls as function_call items (fc_ ids), status completed, the body valid by the
    spec; the tools reach the backend; the turn holds its slot until the bound ends it."""
    async with running_app(
        tmp_path, backend, backend_name="app-server", tool_result_timeout=30.0
    ) as app:
        start = trio.current_time()
        r = await app.test_client().post("/v1/responses", json=_body())
        assert r.status_code == 200, await r.get_data()
        body = await r.get_json()
        runner = runner_of(app)
        assert runner.running.value == 1
        await runner.running.wait_value(0)
        assert trio.current_time() - start == pytest.approx(30.0)
    assert spec_errors("Response", body) == []
    assert body["status"] == "completed"
    assert _calls(body["output"]) == EXPECTED
    assert all(i["id"].startswith("fc_") for i in body["output"])
    assert body["usage"]["total_tokens"] == 0
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    spec = backend.runs[0].spec
    assert spec.tools.tools[0] == ToolSpec("get_weather", "", SCHEMA)
    assert spec.tools.tools[1].description == "The time."


async def test_streamed_function_calls_follow_the_spec_and_the_sdk_order(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """The message before the calls, then per call output_item.added (arguments ""), one
    arguments delta, .done (with the name), output_item.done; response.completed lists them."""
    prompt = "[[run:reply=Let me check.;call=get_weather,get_time]]"
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        streamed = await post_stream(app, _body(prompt, stream=True))
    events = streamed.events
    assert stream_problems(events) == []
    kinds = [e["type"] for e in events]
    call_kinds = [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert kinds[-9:] == [*call_kinds, *call_kinds, "response.completed"]
    added = events[-9]["item"]
    assert (added["arguments"], added["status"]) == ("", "in_progress")
    assert events[-7]["name"] == "get_weather"
    final = events[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call", "function_call"]
    assert _calls(final["output"]) == EXPECTED
    assert final["status"] == "completed"
    assert final["usage"]["total_tokens"] == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_outputs_with_previous_response_id_resume_the_waiting_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, stream: bool
) -> None:
    """The results answer the parked turn (one run, no 409 from the thread it holds); the
    answer is the rest of the turn, with its own id (continuable) and the turn's usage."""
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        client = app.test_client()
        first = await (await client.post("/v1/responses", json=_body())).get_json()
        follow = _body(_outputs("Sunny", "12:00"), previous_response_id=first["id"])
        if stream:
            streamed = await post_stream(app, {**follow, "stream": True})
            assert stream_problems(streamed.events) == []
            body = streamed.events[-1]["response"]
            path = None
        else:
            r2 = await client.post("/v1/responses", json=follow)
            assert r2.status_code == 200, await r2.get_data()
            body = await r2.get_json()
            path = r2.headers["x-trio-codex-tool-path"]
        await runner_of(app).running.wait_value(0)
        # The answer's id continues the same thread.
        r3 = await client.post(
            "/v1/responses",
            json={"model": "gpt-test", "input": "more", "previous_response_id": body["id"]},
        )
        assert r3.status_code == 200, await r3.get_data()
    assert path in (None, "waiting")
    assert body["output"][-1]["content"][0]["text"] == "tool results: Sunny | 12:00"
    assert body["id"] != first["id"]
    assert body["usage"]["input_tokens"] == 10
    assert len(backend.runs) == 2
    assert backend.runs[1].spec.resume_thread_id == "thread-1"


async def test_echoed_history_without_previous_response_id_resumes_the_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """What openai-agents sends: the whole history, the function_call items echoed back."""
    first_input = [{"role": "user", "content": CALLS}]
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        client = app.test_client()
        first = await (await client.post("/v1/responses", json=_body(first_input))).get_json()
        history = [*first_input, *first["output"], *_outputs("a", "b")]
        r2 = await client.post("/v1/responses", json=_body(history))
        body = await r2.get_json()
    assert r2.headers["x-trio-codex-tool-path"] == "waiting"
    assert body["output"][-1]["content"][0]["text"] == "tool results: a | b"
    assert len(backend.runs) == 1


async def test_results_after_the_timeout_replay_the_history(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """No turn waits any more: a new turn whose prompt holds the calls and the outputs, tools
    registered again."""
    first_input = [{"role": "user", "content": CALLS}]
    async with running_app(
        tmp_path, backend, backend_name="app-server", tool_result_timeout=5.0
    ) as app:
        client = app.test_client()
        first = await (await client.post("/v1/responses", json=_body(first_input))).get_json()
        await runner_of(app).running.wait_value(0)
        history = [*first_input, *first["output"], *_outputs("Sunny [[run:reply=late]]", "12")]
        r2 = await client.post("/v1/responses", json=_body(history))
        body = await r2.get_json()
    assert r2.headers["x-trio-codex-tool-path"] == "replay"
    assert body["output"][-1]["content"][0]["text"] == "late"
    prompt = backend.runs[1].spec.prompt
    assert '[called tool get_weather with arguments {"n":1}]' in prompt
    assert 'name="call_id=call_2"' in prompt
    assert backend.runs[1].spec.tools == backend.runs[0].spec.tools
    assert backend.runs[1].spec.resume_thread_id is None


async def test_previous_response_id_replays_on_the_thread_once_the_turn_is_gone(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With previous_response_id and no waiting turn, the outputs are the next input of that
    thread (resumed), tools registered."""
    async with running_app(
        tmp_path, backend, backend_name="app-server", tool_result_timeout=5.0
    ) as app:
        client = app.test_client()
        first = await (await client.post("/v1/responses", json=_body())).get_json()
        await runner_of(app).running.wait_value(0)
        follow = _body(
            _outputs("Sunny [[run:reply=resumed]]", "12"), previous_response_id=first["id"]
        )
        r2 = await client.post("/v1/responses", json=follow)
        body = await r2.get_json()
    assert r2.headers["x-trio-codex-tool-path"] == "replay"
    assert body["output"][-1]["content"][0]["text"] == "resumed"
    spec = backend.runs[1].spec
    assert spec.resume_thread_id == "thread-1"
    assert 'name="call_id=call_1"' in spec.prompt
    assert len(spec.tools.tools) == 2


async def test_shutdown_ends_a_parked_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post("/v1/responses", json=_body(stream=True))
        assert r.status_code == 200
        await r.get_data()
        stopped = trio.current_time()
    assert backend.runs[0].cancelled
    assert backend.runs[0].ended_at == stopped


# --------------------------------------------------------------------------- bad input


async def _refusal(
    tmp_path: Path, backend: ScriptedBackend, bodies: list[dict[str, Any]], **app: Any
) -> tuple[int, dict[str, Any], int]:
    """Post ``bodies`` in order (each may use ``{prev}`` for the first response's id); the
    last one's status and error, and how many runs started."""
    async with running_app(tmp_path, backend, backend_name="app-server", **app) as served:
        client = served.test_client()
        first_id = ""
        r = None
        for n, body in enumerate(bodies):
            headers = body.pop("_headers", {})
            if body.get("previous_response_id") == "{prev}":
                body["previous_response_id"] = first_id
            r = await client.post("/v1/responses", json=body, headers=headers)
            if n == 0:
                first_id = (await r.get_json()).get("id", "")
        assert r is not None
        runs = len(backend.runs)
        return r.status_code, (await r.get_json()).get("error") or {}, runs


async def test_an_output_for_an_unknown_call_with_no_history_is_a_400(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    status, error, runs = await _refusal(tmp_path, backend, [_body(_outputs("x"))])
    assert (status, error["param"], error["code"]) == (400, "input[0].call_id", "invalid_value")
    assert runs == 0


async def test_a_call_answered_twice_is_a_400(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    twice = [*_outputs("x"), *_outputs("y")]
    status, error, runs = await _refusal(tmp_path, backend, [_body(twice)])
    assert (status, error["param"]) == (400, "input[1].call_id")
    assert "answered twice" in error["message"]
    assert runs == 0


async def test_outputs_that_answer_the_waiting_calls_in_part_are_a_400(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """One result of two: refused naming input, the turn still waits, no new run."""
    bodies = [_body(), _body(_outputs("only one"), previous_response_id="{prev}")]
    status, error, runs = await _refusal(tmp_path, backend, bodies)
    assert (status, error["param"]) == (400, "input")
    assert "call_1, call_2" in error["message"]
    assert runs == 1


async def test_a_continuation_from_another_key_is_a_404(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    bodies = [
        {**_body(), "_headers": {"Authorization": "Bearer key-a"}},
        {
            **_body(_outputs("a", "b"), previous_response_id="{prev}"),
            "_headers": {"Authorization": "Bearer key-b"},
        },
    ]
    status, error, runs = await _refusal(tmp_path, backend, bodies, api_keys=("key-a", "key-b"))
    assert (status, error["code"]) == (404, "previous_response_not_found")
    assert runs == 1


async def test_a_plain_continuation_of_a_parked_thread_is_a_409(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A parked turn holds its thread: a message instead of the results is conversation_busy."""
    bodies = [_body(), _body("hello?", previous_response_id="{prev}")]
    status, error, runs = await _refusal(tmp_path, backend, bodies)
    assert (status, error["code"]) == (409, "conversation_busy")
    assert runs == 1


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "function_call_output", "output": "x"}, "input[0].call_id"),
        ({"type": "function_call_output", "call_id": "c"}, "input[0].output"),
        (
            {
                "type": "function_call_output",
                "call_id": "c",
                "output": [{"type": "input_image", "image_url": "data:image/png;base64,AA"}],
            },
            "input[0].output[0]",
        ),
        ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input[0].name"),
    ],
)
async def test_malformed_tool_items_name_the_field(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    item: dict[str, Any],
    param: str,
) -> None:
    status, error, runs = await _refusal(tmp_path, backend, [_body([item])])
    assert (status, error["param"]) == (400, param)
    assert runs == 0


@pytest.mark.parametrize(
    ("tools", "param"),
    [
        ([{"type": "web_search"}], "tools[0].type"),
        ([{"type": "function", "name": "exec_command"}], "tools[0].name"),
        ([{"type": "function"}], "tools[0].name"),
    ],
)
async def test_tools_that_cannot_be_offered_name_the_tool(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    tools: list[dict[str, Any]],
    param: str,
) -> None:
    status, error, runs = await _refusal(tmp_path, backend, [{**_body(), "tools": tools}])
    assert (status, error["param"]) == (400, param)
    assert runs == 0


async def test_a_named_tool_choice_must_name_an_offered_tool(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    choice = {"type": "function", "name": "nope"}
    status, error, _ = await _refusal(tmp_path, backend, [_body(tool_choice=choice)])
    assert (status, error["param"]) == (400, "tool_choice.name")
