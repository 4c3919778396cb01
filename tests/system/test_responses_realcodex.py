"""End to end for ``/v1/responses``: the official SDK -> trio_codex (real Hypercorn) -> the real
Codex CLI (``exec`` and ``exec resume``) -> the fake Responses upstream on 127.0.0.1.

Every Codex child gets a private empty HOME and CODEX_HOME and works in ``tmp_path`` (outside
any git repository). In CI these tests fail when the CLI is missing; elsewhere they skip with
the install command.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest
import trio

from tests.support.codex_cli import FakeUpstream, codex_env, private_home, resume_argv
from tests.support.servers import (
    ServerFactory,
    in_thread,
    require_codex_cli,
    scratch_root,
    sdk,
    serve_real_codex,
    service_of,
)
from tests.support.spec import stream_events, stream_problems
from trio_codex.openai.responses.ids import ResponseIdCodec, key_binding

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]

SECRET = b"realcodex-test-secret"


class Answer(pydantic.BaseModel):
    answer: str
    score: int
    tags: list[str]


async def serve_real(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, **overrides: Any
) -> str:
    """The app on real Hypercorn, running the real CLI against ``upstream``; returns /v1 URL.

    Response ids are signed with ``SECRET``; request files (output schemas) go to
    ``tmp_path/scratch``.
    """
    server = await serve_real_codex(
        tmp_path, upstream.base_url, start_server, response_id_secret=SECRET, **overrides
    )
    scratch_root(server.app, tmp_path)
    return server.v1


def user_texts(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of the user/assistant text parts of an upstream request's input."""
    out = []
    for item in request["body"]["input"]:
        if item.get("type", "message") == "message" and item.get("role") in ("user", "assistant"):
            content = item["content"]
            parts = [content] if isinstance(content, str) else [p.get("text", "") for p in content]
            out += [(item["role"], text) for text in parts if text]
    return out


async def test_two_turn_conversation_through_previous_response_id(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """Turn 2 resumes turn 1's thread with its own usage; another API key gets 404."""
    url = await serve_real(tmp_path, upstream, start_server, api_keys=("key-a", "key-b"))
    first_prompt = "first [[fake:mode=echo;input_tokens=100;output_tokens=10]]"
    second_prompt = "second [[fake:mode=echo;input_tokens=250;output_tokens=20]]"

    def turn_one() -> Any:
        with (
            sdk(url, "key-a") as client,
            client.responses.stream(model="fake-model", input=first_prompt) as stream,
        ):
            for _ in stream:
                pass
            return stream.get_final_response()

    first = await in_thread(turn_one, fail_after=60)
    assert first.output_text == '[["user","first"]]'
    assert first.usage is not None
    assert (first.usage.input_tokens, first.usage.output_tokens) == (100, 10)

    def turn_two() -> Any:
        with sdk(url, "key-a") as client:
            return client.responses.create(
                model="fake-model", input=second_prompt, previous_response_id=first.id
            )

    second = await in_thread(turn_two, fail_after=60)
    assert json.loads(second.output_text) == [
        ["user", "first"],
        ["assistant", first.output_text],
        ["user", "second"],
    ]
    assert second.previous_response_id == first.id
    assert second.usage is not None
    # Codex reports 350 / 30 for the whole thread; the response reports this turn only.
    assert (second.usage.input_tokens, second.usage.output_tokens) == (250, 20)

    sent = await trio.to_thread.run_sync(upstream.responses_requests)
    assert len(sent) == 2
    history = user_texts(sent[1])
    assert ("user", first_prompt) in history
    assert ("assistant", first.output_text) in history
    assert history[-1] == ("user", second_prompt)
    thread = ResponseIdCodec(SECRET).decode(second.id, key_binding("key-a")).thread_id
    assert thread == ResponseIdCodec(SECRET).decode(first.id, key_binding("key-a")).thread_id
    assert thread is not None
    assert sent[1]["headers"].get("session-id", thread) == thread

    def foreign() -> None:
        with sdk(url, "key-b") as client:
            client.responses.create(
                model="fake-model", input="third", previous_response_id=second.id
            )

    with pytest.raises(openai.NotFoundError) as info:
        await in_thread(foreign, fail_after=60)
    assert info.value.code == "previous_response_not_found"
    assert len(await trio.to_thread.run_sync(upstream.responses_requests)) == 2


async def test_structured_output_end_to_end(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """parse() of both APIs returns the model; Codex sent the schema with --output-schema."""
    server = await serve_real_codex(
        tmp_path, upstream.base_url, start_server, response_id_secret=SECRET
    )
    scratch_root(server.app, tmp_path)
    url = server.v1

    def call() -> tuple[Any, Any]:
        with sdk(url) as client:
            response = client.responses.parse(
                model="fake-model", input="Rate it [[fake:mode=json]]", text_format=Answer
            )
            completion = client.chat.completions.parse(
                model="fake-model",
                messages=[{"role": "user", "content": "Rate it [[fake:mode=json]]"}],
                response_format=Answer,
            )
            return response, completion

    response, completion = await in_thread(call, fail_after=60)
    assert response.output_parsed == Answer(answer="example", score=1, tags=["example"])
    assert completion.choices[0].message.parsed == response.output_parsed
    sent = await trio.to_thread.run_sync(upstream.responses_requests)
    for request in sent:
        text_format = request["body"]["text"]["format"]
        assert text_format["type"] == "json_schema"
        assert text_format["schema"]["required"] == ["answer", "score", "tags"]
    # The runs' scratch directories (each held output-schema.json) are gone once the runs
    # have ended (a chat run may still be exiting when its answer arrives).
    with trio.fail_after(10):
        await service_of(server.app).runner.running.wait_value(0)
    assert list((tmp_path / "scratch").iterdir()) == []


async def test_real_reasoning_stream_validates_against_the_spec(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """A raw stream of a real run (reasoning, then the answer) is spec-valid, in SDK order."""
    url = await serve_real(tmp_path, upstream, start_server)
    payload = {
        "model": "fake-model",
        "input": "Think [[fake:mode=reasoning;summary=Weighing it up;reply=Done.]]",
        "stream": True,
    }
    with trio.fail_after(60):
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream("POST", url + "/responses", json=payload) as response,
        ):
            assert response.status_code == 200
            text = (await response.aread()).decode()
    events = stream_events(text)
    assert stream_problems(events) == []
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["summary"][0]["text"] == "Weighing it up"
    assert final["output"][1]["content"][0]["text"] == "Done."


async def test_another_writer_of_the_thread_is_409(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """Codex's refusal while another process writes the thread reaches the client as 409."""
    url = await serve_real(tmp_path, upstream, start_server)

    def first_turn() -> Any:
        with sdk(url) as client:
            return client.responses.create(model="fake-model", input="hello")

    first = await in_thread(first_turn, fail_after=60)
    thread = ResponseIdCodec(SECRET).decode(first.id, key_binding(None)).thread_id
    assert thread is not None
    env = codex_env(private_home(tmp_path), tmp_path / "codex-home")
    argv = resume_argv(require_codex_cli(), thread)
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
        try:
            assert process.stdin is not None
            assert process.stdout is not None
            await process.stdin.send_all(b"hold it [[fake:mode=stall]]")
            await process.stdin.aclose()
            seen = b""
            while b'"turn.started"' not in seen:  # the other writer now holds the thread
                chunk = await process.stdout.receive_some(65536)
                assert chunk, "the other codex exited before starting its turn"
                seen += chunk

            def conflicting() -> None:
                with sdk(url) as client:
                    client.responses.create(
                        model="fake-model", input="me too", previous_response_id=first.id
                    )

            with pytest.raises(openai.ConflictError) as busy:
                await in_thread(conflicting, fail_after=60)
        finally:
            with trio.CancelScope(shield=True):
                os.killpg(process.pid, 9)
                await process.wait()
                if process.stdout is not None:
                    await process.stdout.aclose()
    assert busy.value.status_code == 409
    assert busy.value.code == "conversation_busy"
