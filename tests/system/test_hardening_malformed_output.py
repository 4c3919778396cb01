"""A Codex that prints junk, including a ``turn.completed`` whose ``usage`` is a string, before
its real answer gets that answer to the client (it used to be a 200 with empty content); one
that completes its turn without any agent message is a 502 ``upstream_error``, plain or
streamed, never an empty success. Real processes: the server on Hypercorn runs a small script
as its Codex. exec only: the script prints ``codex exec --json`` lines (app-server's malformed
output is ``tests/system/test_app_server.py``'s and ``tests/codex/test_app_server_protocol.py``'s)."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from trio_codex import create_app
from trio_codex.codex.models import ModelCatalog
from trio_codex.settings import Settings

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, sys
prompt = sys.stdin.read()
def out(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
out(json.dumps({"type": "thread.started", "thread_id": "th-1"}))
out(json.dumps({"type": "turn.started"}))
out("not json at all")
out(json.dumps({"type": "turn.completed", "usage": "a string, not an object"}))
out(json.dumps({"type": "item.completed", "item": {"id": "x", "type": "agent_message", "text": 7}}))
if "no-answer" not in prompt:
    out(json.dumps({"type": "item.completed",
                    "item": {"id": "m", "type": "agent_message", "text": "the real answer"}}))
out(json.dumps({"type": "turn.completed", "usage": {"input_tokens": 3, "output_tokens": 2}}))
"""


@pytest.fixture
def junk_codex(tmp_path: Path) -> Path:
    path = tmp_path / "codex"
    path.write_text(f"#!{sys.executable}\n{SCRIPT}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


async def serve(
    tmp_path: Path, codex: Path, start_server: Callable[[object], Awaitable[str]]
) -> str:
    (tmp_path / "work").mkdir()
    (tmp_path / "home").mkdir()
    settings = Settings(
        workdir=tmp_path / "work",
        codex_home=tmp_path / "home",
        codex_path=codex,
        kill_grace=0.5,
        backend="exec",
    )
    catalog = ModelCatalog.from_slugs({"gpt-test": ("low",)}, created=1_700_000_000)
    app = create_app(settings, catalog=catalog, environ={"PATH": "/usr/bin:/bin"})
    return await start_server(app) + "/v1"


def chat(prompt: str, *, stream: bool = False) -> dict[str, object]:
    return {
        "model": "gpt-test",
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
    }


def stream_text(body: str) -> tuple[str, list[dict[str, object]]]:
    """The streamed content and the error frames of a chat SSE body."""
    text, errors = "", []
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        frame = json.loads(line.removeprefix("data: "))
        if "error" in frame:
            errors.append(frame["error"])
        for choice in frame.get("choices", []):
            text += choice["delta"].get("content") or ""
    return text, errors


async def test_junk_before_the_answer_does_not_end_the_turn(
    tmp_path: Path, junk_codex: Path, start_server: Callable[[object], Awaitable[str]]
) -> None:
    url = await serve(tmp_path, junk_codex, start_server)
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        plain = await client.post("/chat/completions", json=chat("hi"))
        assert plain.status_code == 200, plain.text
        assert plain.json()["choices"][0]["message"]["content"] == "the real answer"
        streamed = await client.post("/chat/completions", json=chat("hi", stream=True))
        assert streamed.status_code == 200
        assert stream_text(streamed.text) == ("the real answer", [])
        response = await client.post("/responses", json={"model": "gpt-test", "input": "hi"})
        assert response.status_code == 200, response.text
        assert response.json()["output"][-1]["content"][0]["text"] == "the real answer"


async def test_a_turn_without_an_answer_is_a_502(
    tmp_path: Path, junk_codex: Path, start_server: Callable[[object], Awaitable[str]]
) -> None:
    url = await serve(tmp_path, junk_codex, start_server)
    async with httpx.AsyncClient(base_url=url, timeout=20) as client:
        plain = await client.post("/chat/completions", json=chat("no-answer"))
        assert plain.status_code == 502, plain.text
        assert plain.json()["error"]["code"] == "upstream_error"
        streamed = await client.post("/chat/completions", json=chat("no-answer", stream=True))
        text, errors = stream_text(streamed.text)
        assert text == ""
        assert [e["code"] for e in errors] == ["upstream_error"]
        assert '"finish_reason":"stop"' not in streamed.text.replace(" ", "")
        response = await client.post("/responses", json={"model": "gpt-test", "input": "no-answer"})
        assert response.status_code == 502, response.text
        structured = await client.post(
            "/chat/completions",
            json={**chat("no-answer"), "response_format": {"type": "json_object"}},
        )
        assert structured.status_code == 502, structured.text
