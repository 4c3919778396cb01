"""Chat completions function calling through the app in process, on virtual time: a scripted
backend (``[[run:call=...]]``) calls the client's tools and waits on the runner's bridge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests.support import sse
from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body, check_stream
from tests.support.servers import runner_of, running_app
from trio_codex.run.tools import ToolChoice, ToolChoiceMode, ToolSpec

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}},
    {"type": "function", "function": {"name": "get_time"}},
]
CALLS = "[[run:call=get_weather,get_time]]"
#: The scripted backend answers at once; the bridge's wait is the whole parked time.
TOOL_SETTLE_FREE = 0.0


def _expected_calls(*, stream: bool) -> list[dict[str, Any]]:
    calls = [
        {
            "id": f"call_{n}",
            "type": "function",
            "function": {"name": name, "arguments": f'{{"n":{n}}}'},
        }
        for n, name in enumerate(["get_weather", "get_time"], 1)
    ]
    return [{"index": i, **c} for i, c in enumerate(calls)] if stream else calls


async def test_tool_calls_answer_a_whole_request_and_park_the_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Both calls of the response, content null, finish_reason tool_calls; the tools reach the
    backend; the turn stays parked holding its slot until CODEX_TOOL_RESULT_TIMEOUT ends it."""
    async with running_app(
        tmp_path, backend, backend_name="app-server", tool_result_timeout=30.0
    ) as app:
        start = trio.current_time()
        r = await app.test_client().post("/v1/chat/completions", json=chat_body(CALLS, tools=TOOLS))
        assert r.status_code == 200, await r.get_data()
        body = await r.get_json()
        runner = runner_of(app)
        assert runner.running.value == 1
        await runner.running.wait_value(0)
        assert trio.current_time() - start == pytest.approx(30.0 + TOOL_SETTLE_FREE)
        assert runner.limiter.borrowed_tokens == 0
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == _expected_calls(stream=False)
    assert "x-trio-codex-tool-path" not in r.headers
    spec = backend.runs[0].spec
    assert [t.name for t in spec.tools.tools] == ["get_weather", "get_time"]
    assert spec.tools.tools[0] == ToolSpec("get_weather", "", SCHEMA)


@pytest.mark.parametrize("stream", [False, True])
async def test_the_results_resume_the_waiting_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, stream: bool
) -> None:
    """The follow-up answering both calls resumes the same run (no second run): each call is
    answered with its output, the rest of the turn is this request's answer."""
    first = [{"role": "user", "content": CALLS}]
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        client = app.test_client()
        r = await client.post(
            "/v1/chat/completions", json={"model": "gpt-test", "messages": first, "tools": TOOLS}
        )
        message = (await r.get_json())["choices"][0]["message"]
        follow_up = {
            "model": "gpt-test",
            "messages": [
                *first,
                message,
                {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
            ],
            "tools": TOOLS,
            "stream": stream,
        }
        r2 = await client.post("/v1/chat/completions", json=follow_up)
        assert r2.status_code == 200
        if stream:
            text = check_stream(await r2.get_data(as_text=False)).text
        else:
            text = (await r2.get_json())["choices"][0]["message"]["content"]
        await runner_of(app).running.wait_value(0)
    assert r2.headers["x-trio-codex-tool-path"] == "waiting"
    assert text == "tool results: Sunny | 12:00"
    assert len(backend.runs) == 1
    assert not backend.runs[0].cancelled


async def test_results_after_the_timeout_take_the_replay_path(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """The waiting turn died at CODEX_TOOL_RESULT_TIMEOUT: the results start a new turn."""
    first = [{"role": "user", "content": CALLS}]
    async with running_app(
        tmp_path, backend, backend_name="app-server", tool_result_timeout=5.0
    ) as app:
        client = app.test_client()
        r = await client.post(
            "/v1/chat/completions", json={"model": "gpt-test", "messages": first, "tools": TOOLS}
        )
        message = (await r.get_json())["choices"][0]["message"]
        await runner_of(app).running.wait_value(0)
        results = [
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny [[run:reply=late]]"},
            {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
        ]
        r2 = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-test", "messages": [*first, message, *results], "tools": TOOLS},
        )
        body = await r2.get_json()
    assert r2.headers["x-trio-codex-tool-path"] == "replay"
    assert len(backend.runs) == 2
    assert body["choices"][0]["message"]["content"] == "late"
    assert backend.runs[0].spec.tools == backend.runs[1].spec.tools


async def test_shutdown_ends_a_parked_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A turn waiting for tool results is killed at shutdown like any run, at once."""
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post("/v1/chat/completions", json=chat_body(CALLS, tools=TOOLS))
        assert r.status_code == 200
        stopped = trio.current_time()
    assert backend.runs[0].cancelled
    assert backend.runs[0].ended_at == stopped


async def test_streamed_tool_calls_then_finish_usage_and_done(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """One delta.tool_calls chunk per call (index, id, type, name, all the arguments), then the
    finish chunk, the usage chunk, [DONE]."""
    body = chat_body(CALLS, tools=TOOLS, stream=True, stream_options={"include_usage": True})
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post("/v1/chat/completions", json=body)
        raw = await r.get_data(as_text=False)
    assert check_stream(raw).done
    chunks = [p for p in sse.payloads(raw) if p != sse.DONE]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:3]]
    assert calls == _expected_calls(stream=True)
    finish = chunks[3]
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    assert chunks[4]["choices"] == []
    assert chunks[4]["usage"]["total_tokens"] == 0
    assert len(chunks) == 5


async def test_text_before_the_calls_is_the_content(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post(
            "/v1/chat/completions",
            json=chat_body("[[run:reply=Let me check.;call=get_time]]", tools=TOOLS),
        )
        message = (await r.get_json())["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["get_time"]


async def test_tool_results_replay_the_history_with_the_tools_registered_again(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """The follow-up carrying the results starts a new turn whose prompt holds the calls and
    their outputs; the header names the replay path."""
    messages = [
        {"role": "user", "content": "Weather in Paris? [[run:reply=It is sunny.]]"},
        {"role": "assistant", "content": None, "tool_calls": _expected_calls(stream=False)},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
    ]
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post(
            "/v1/chat/completions",
            json={"model": "gpt-test", "messages": messages, "tools": TOOLS},
        )
        assert r.status_code == 200
        body = await r.get_json()
    assert r.headers["x-trio-codex-tool-path"] == "replay"
    assert body["choices"][0]["message"]["content"] == "It is sunny."
    assert body["choices"][0]["finish_reason"] == "stop"
    spec = backend.runs[0].spec
    assert "Sunny, 21C" in spec.prompt
    assert "get_weather" in spec.prompt
    assert len(spec.tools.tools) == 2


async def test_a_named_tool_choice_is_asked_for_in_the_prompt(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Codex cannot force a call: the choice travels as an instruction beside the tools."""
    choice = {"type": "function", "function": {"name": "get_time"}}
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("hi", tools=TOOLS, tool_choice=choice)
        )
        assert r.status_code == 200
    spec = backend.runs[0].spec
    assert spec.tools.choice == ToolChoice(ToolChoiceMode.NAMED, "get_time")
    assert spec.prompt.endswith("You must call the tool get_time before answering.")
    assert json.loads(json.dumps(spec.tools.tools[1].parameters))["type"] == "object"


async def test_only_the_same_key_resumes_a_waiting_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Another API key answering the same call ids gets the replay path, never the turn."""
    first = [{"role": "user", "content": CALLS}]
    async with running_app(
        tmp_path, backend, backend_name="app-server", api_keys=("key-a", "key-b")
    ) as app:
        client = app.test_client()
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-test", "messages": first, "tools": TOOLS},
            headers={"Authorization": "Bearer key-a"},
        )
        message = (await r.get_json())["choices"][0]["message"]
        results = [
            {"role": "tool", "tool_call_id": "call_1", "content": "x [[run:reply=other]]"},
            {"role": "tool", "tool_call_id": "call_2", "content": "y"},
        ]
        r2 = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-test", "messages": [*first, message, *results], "tools": TOOLS},
            headers={"Authorization": "Bearer key-b"},
        )
        assert r2.status_code == 200
        assert runner_of(app).running.value == 1  # key-a's turn still waits
    assert r2.headers["x-trio-codex-tool-path"] == "replay"
    assert len(backend.runs) == 2
