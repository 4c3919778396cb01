"""Logs of a real server process: with ``LOG_FORMAT=json`` every line ``python -m trio_codex``
prints is a JSON object (Hypercorn's included) and each line is printed once; under Hypercorn's
CLI our lines are JSON and Hypercorn keeps its own; the text format keeps today's lines."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
import trio

from tests.support.harness import chat_body, http_request, raw_exchange, run_server, server_env
from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow


async def _one_request(launcher: str, tmp_path: Path, fake_codex: Path, log_format: str) -> str:
    """Serve one chat request, stop the server with SIGTERM; return the lines it printed."""
    env, _workdir = server_env(tmp_path, fake_codex, LOG_FORMAT=log_format)
    with trio.fail_after(30):
        async with run_server(launcher, env, graceful=1, cwd=REPO_ROOT) as server:
            found = re.search(r"(?:listening|Running) on (http://[\d.]+:\d+)", server.text)
            assert found is not None, server.text
            server.url = found.group(1)
            host, port = server.hostport
            reply = await raw_exchange(host, port, http_request(host, port, chat_body("hi")))
            assert reply is not None
            assert reply.status == 200
            await server.wait_for("request id=")
            os.kill(server.proc.pid, signal.SIGTERM)
            assert await server.proc.wait() == 0, server.text
    return server.text[: server.text.rfind("\n") + 1]  # whole lines only


async def test_module_json_prints_only_json_lines_once_each(
    tmp_path: Path, fake_codex: Path
) -> None:
    """Every stderr line parses; Hypercorn's 'Running on' and our 'listening on' appear once; the
    request's record has its fields."""
    text = await _one_request("module", tmp_path, fake_codex, "json")
    lines = [json.loads(line) for line in text.splitlines()]
    messages = [line["message"] for line in lines]
    assert sum(m.startswith("Running on ") for m in messages) == 1, messages
    assert sum(m.startswith("listening on ") for m in messages) == 1, messages
    assert any(line["logger"] == "hypercorn.error" for line in lines)
    (request,) = [line for line in lines if line.get("request_id")]
    assert request["logger"] == "trio_codex"
    assert (request["status"], request["model"], request["exit_code"]) == (200, "gpt-test", 0)
    assert request["tokens"]["total"] > 0
    assert request["message"].startswith(f"request id={request['request_id']} method=POST")


@pytest.mark.parametrize("launcher", ["module", "hypercorn"])
async def test_text_lines_are_printed_once(tmp_path: Path, fake_codex: Path, launcher: str) -> None:
    """The default text format: today's request line, and no line printed twice."""
    text = await _one_request(launcher, tmp_path, fake_codex, "text")
    lines = text.splitlines()
    assert sum("Running on http://" in line for line in lines) == 1, text
    (request,) = [line for line in lines if "request id=" in line]
    assert re.search(
        r" INFO trio_codex: request id=req_\w+ method=POST path=/v1/chat/completions key=- "
        r"model=gpt-test status=200 stream=0 queue_wait=\d+\.\d{3} run_time=\d+\.\d{3} exit=0 "
        r"tokens=\d+ duration=\d+\.\d{3}$",
        request,
    ), request


async def test_hypercorn_cli_json_keeps_hypercorn_lines_and_prints_ours_as_json(
    tmp_path: Path, fake_codex: Path
) -> None:
    """Under ``hypercorn trio_codex.app:app`` Hypercorn's lines are its own (text, once); ours
    are JSON."""
    text = await _one_request("hypercorn", tmp_path, fake_codex, "json")
    ours = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    theirs = [line for line in text.splitlines() if not line.startswith("{")]
    assert sum("Running on http://" in line for line in theirs) == 1, text
    assert [line["status"] for line in ours if line.get("request_id")] == [200]
