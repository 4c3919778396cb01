"""Through the app: a chat or Responses request with tools is a 400 before any run starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import running_app

TOOL_CHAT = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
TOOL_RESPONSES = {"type": "function", "name": "f", "parameters": {"type": "object"}}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", chat_body(tools=[TOOL_CHAT])),
        ("/v1/responses", {"model": "gpt-test", "input": "hi", "tools": [TOOL_RESPONSES]}),
    ],
)
async def test_tools_are_refused_not_dropped(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    path: str,
    body: dict[str, object],
) -> None:
    """With exec: 400 unsupported_parameter naming tools; Codex never runs."""
    async with running_app(tmp_path, backend, backend_name="exec") as app:
        r = await app.test_client().post(path, json=body)
        assert r.status_code == 400
        error = (await r.get_json())["error"]
        assert (error["param"], error["code"]) == ("tools", "unsupported_parameter")
    assert backend.runs == []


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            chat_body(tools=[{"type": "function", "function": {"name": "exec_command"}}]),
            "tools[0].function.name",
        ),
        (
            "/v1/chat/completions",
            {
                "model": "gpt-test",
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "tool", "tool_call_id": "nowhere", "content": "x"},
                ],
            },
            "messages[1].tool_call_id",
        ),
        (
            "/v1/responses",
            {"model": "gpt-test", "input": "hi", "tools": [TOOL_RESPONSES], "tool_choice": "x"},
            "tool_choice",
        ),
    ],
)
async def test_malformed_tools_name_the_field(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    path: str,
    body: dict[str, object],
    param: str,
) -> None:
    """Where tools can run (app-server chat), a malformed tool, tool_choice or orphan tool
    result is a 400 naming it, not 'tools'."""
    async with running_app(tmp_path, backend, backend_name="app-server") as app:
        r = await app.test_client().post(path, json=body)
        assert r.status_code == 400
        assert (await r.get_json())["error"]["param"] == param
    assert backend.runs == []


async def test_exec_refuses_responses_tools_and_says_where_they_work(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With exec, /v1/responses refuses tools as chat does, naming the backend that runs them."""
    body = {"model": "gpt-test", "input": "hi", "tools": [TOOL_RESPONSES]}
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post("/v1/responses", json=body)
        assert r.status_code == 400
        error = (await r.get_json())["error"]
    assert (error["param"], error["code"]) == ("tools", "unsupported_parameter")
    assert "CODEX_BACKEND=app-server" in error["message"]
    assert backend.runs == []


async def test_exec_refuses_tools_before_judging_their_shape(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With exec, tools cannot run at all, so that is what a client hears first, even for a
    tool named like one of Codex's own (what Codex as a client offers)."""
    body = chat_body(tools=[{"type": "function", "function": {"name": "exec_command"}}])
    async with running_app(tmp_path, backend, backend_name="exec") as app:
        r = await app.test_client().post("/v1/chat/completions", json=body)
        assert r.status_code == 400
        error = (await r.get_json())["error"]
        assert (error["param"], error["code"]) == ("tools", "unsupported_parameter")
    assert backend.runs == []
