"""The official Node SDK runs function-calling loops through the real Codex CLI (app-server)
against the fake upstream: Responses (``create`` and the ``stream()`` helper's
``finalResponse()``) and chat completions (``create`` by hand and ``runTools``). The script is
``tests/node/tools.mjs``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.support.codex_cli import FakeUpstream
from tests.support.paths import NODE_DIR
from tests.support.servers import ServerFactory, serve_real_codex
from tests.system.test_responses_sdk import _node

pytestmark = pytest.mark.realcodex


async def test_node_sdk_tool_loops(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    node = _node()
    server = await serve_real_codex(tmp_path, upstream.base_url, start_server, backend="app-server")
    with trio.fail_after(180):
        done = await trio.run_process(
            [node, str(NODE_DIR / "tools.mjs"), server.v1],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    both = ["get_time", "get_weather"]
    created = out["responses_create"]
    assert created["status"] == "completed"
    assert sorted(created["calls"]) == both
    assert created["output_text"].startswith("Tool finished. Output: ")
    assert "get_weather done" in created["output_text"]
    streamed = out["responses_stream"]
    assert sorted(streamed["calls"]) == both
    assert streamed["types"].count("response.function_call_arguments.done") == 2
    assert streamed["types"][-1] == "response.completed"
    assert "get_time done" in streamed["output_text"]
    chat = out["chat_create"]
    assert chat["finish_reason"] == "tool_calls"
    assert sorted(chat["calls"]) == both
    assert "get_weather done" in chat["content"]
    assert out["run_tools"]["ran"] == both
    assert 'get_weather ran with {"city":"example"}' in out["run_tools"]["content"]
