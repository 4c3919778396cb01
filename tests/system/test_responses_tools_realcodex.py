"""Responses function calling through the real Codex CLI (app-server) against the fake upstream,
driven by the official Python SDK: the fake model calls the client's tools
(``[[fake:call_tool=...]]``), the SDK answers with ``function_call_output`` items, and the
final answer quotes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.codex_cli import FakeUpstream
from tests.support.harness import assert_no_process_in
from tests.support.servers import (
    RealCodexServer,
    ServerFactory,
    in_thread,
    runner_of,
    sdk,
    serve_real_codex,
)

pytestmark = pytest.mark.realcodex

TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
]
ASK = "Weather? [[fake:call_tool=get_weather,get_time]]"


async def _serve(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, **overrides: Any
) -> RealCodexServer:
    return await serve_real_codex(
        tmp_path, upstream.base_url, start_server, backend="app-server", **overrides
    )


def _first(url: str, *, stream: bool) -> Any:
    """The first request with the SDK: ``responses.create`` or the ``responses.stream()``
    helper's final response."""
    with sdk(url) as client:
        if not stream:
            return client.responses.create(model="fake-model", input=ASK, tools=TOOLS)
        with client.responses.stream(model="fake-model", input=ASK, tools=TOOLS) as events:
            for _ in events:
                pass
            return events.get_final_response()


def _results(response: Any) -> list[Any]:
    calls = [item for item in response.output if item.type == "function_call"]
    return [
        {"type": "function_call_output", "call_id": call.call_id, "output": f"result {n}"}
        for n, call in enumerate(calls, 1)
    ]


@pytest.mark.parametrize("stream", [False, True])
async def test_real_codex_responses_tool_loop_waiting_path(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, stream: bool
) -> None:
    """Both calls in one response (parallel); the follow-up with previous_response_id and both
    outputs resumes the waiting turn, whose next upstream request carries them."""
    server = await _serve(tmp_path, upstream, start_server)

    def loop() -> tuple[Any, Any, Any]:
        first = _first(server.v1, stream=stream)
        with sdk(server.v1) as client:
            raw = client.responses.with_raw_response.create(
                model="fake-model",
                previous_response_id=first.id,
                input=_results(first),
                tools=TOOLS,
                stream=False,
            )
            return first, raw.parse(), raw.headers

    first, final, headers = await in_thread(loop, fail_after=90)
    assert first.status == "completed"
    calls = {i.name: json.loads(i.arguments) for i in first.output if i.type == "function_call"}
    assert calls == {"get_weather": {"city": "example"}, "get_time": {}}
    assert all(i.id.startswith("fc_") for i in first.output if i.type == "function_call")
    assert headers["x-trio-codex-tool-path"] == "waiting"
    assert final.output_text.startswith("Tool finished. Output: result ")
    assert "result 1" in final.output_text
    assert "result 2" in final.output_text
    assert final.usage is not None
    assert final.usage.input_tokens > 0
    requests = upstream.responses_requests()
    assert len(requests) == 2
    outputs = [i for i in requests[1]["body"]["input"] if i.get("type") == "function_call_output"]
    assert sorted(i["output"] for i in outputs) == ["result 1", "result 2"]


async def test_real_codex_responses_replay_resumes_the_thread_after_the_timeout(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """The waiting turn dies at CODEX_TOOL_RESULT_TIMEOUT with its processes; the late outputs
    continue the previous response's thread (thread/resume), the tools offered again."""
    server = await _serve(tmp_path, upstream, start_server, tool_result_timeout=1.0)
    first = await in_thread(lambda: _first(server.v1, stream=False), fail_after=60)
    runner = runner_of(server.app)
    with trio.fail_after(30):
        await runner.running.wait_value(0)
    await assert_no_process_in(server.settings.workdir)
    assert runner.limiter.borrowed_tokens == 0
    late = _results(first)
    late[-1]["output"] += " [[fake:mode=echo]]"

    def follow_up() -> tuple[Any, Any]:
        with sdk(server.v1) as client:
            raw = client.responses.with_raw_response.create(
                model="fake-model", previous_response_id=first.id, input=late, tools=TOOLS
            )
            return raw.parse(), raw.headers

    final, headers = await in_thread(follow_up, fail_after=60)
    assert headers["x-trio-codex-tool-path"] == "replay"
    assert final.status == "completed"
    requests = upstream.responses_requests()
    replay = requests[-1]["body"]
    offered = {t.get("name") for t in replay["tools"]}
    assert {"get_weather", "get_time"} <= offered
    text = json.dumps(replay["input"])
    assert "result 1" in text
    assert "result 2" in text


@pytest.mark.parametrize("model_kind", ["responses", "chat"])
async def test_openai_agents_runs_a_function_tool(
    tmp_path: Path,
    upstream: FakeUpstream,
    start_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
    model_kind: str,
) -> None:
    """An ``Agent`` with a ``@function_tool`` through ``Runner.run``: the model calls the tool,
    the agent runs it and sends the history back itself (function_call + function_call_output
    items on Responses, tool messages on chat), which resumes the waiting turn; the final
    output quotes the tool's result."""
    pytest.importorskip("agents")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    server = await _serve(tmp_path, upstream, start_server)
    ran: list[str] = []

    def recipe() -> str:
        import asyncio

        from agents import (
            Agent,
            OpenAIChatCompletionsModel,
            OpenAIResponsesModel,
            Runner,
            function_tool,
            set_tracing_disabled,
        )
        from openai import AsyncOpenAI

        set_tracing_disabled(True)

        @function_tool
        def get_weather(city: str) -> str:
            """The weather in a city."""
            ran.append(city)
            return f"Sunny in {city}"

        async def main() -> str:
            async with AsyncOpenAI(
                base_url=server.v1, api_key="sk-anything", max_retries=0
            ) as client:
                model = (
                    OpenAIResponsesModel(model="fake-model", openai_client=client)
                    if model_kind == "responses"
                    else OpenAIChatCompletionsModel(model="fake-model", openai_client=client)
                )
                agent = Agent(
                    name="helper", instructions="Be brief.", model=model, tools=[get_weather]
                )
                result = await Runner.run(agent, "Weather? [[fake:call_tool=get_weather]]")
                return str(result.final_output)

        return asyncio.run(main())

    final = await in_thread(recipe, fail_after=120)
    assert ran == ["example"]
    assert final == "Tool finished. Output: Sunny in example"
    # One Codex turn: the second upstream request is the waiting turn going on.
    requests = upstream.responses_requests()
    assert len(requests) == 2
    assert requests[1]["body"]["input"][-1]["type"] == "function_call_output"
