"""Chat completions function calling through the app in process, on virtual time: a scripted
backend (``[[run:call=...]]``) calls the client's tools and waits on the runner's bridge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


async def test_tool_calls_answer_a_whole_request_and_end_the_turn(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Both calls of the response, content null, finish_reason tool_calls; the tools reach the
    backend; the waiting run is stopped and its slot freed (replay path)."""
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post("/v1/chat/completions", json=chat_body(CALLS, tools=TOOLS))
        assert r.status_code == 200, await r.get_data()
        body = await r.get_json()
        assert runner_of(app).limiter.borrowed_tokens == 0
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == _expected_calls(stream=False)
    assert "x-trio-codex-tool-path" not in r.headers
    spec = backend.runs[0].spec
    assert [t.name for t in spec.tools.tools] == ["get_weather", "get_time"]
    assert spec.tools.tools[0] == ToolSpec("get_weather", "", SCHEMA)
    assert backend.runs[0].cancelled


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
