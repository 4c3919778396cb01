"""``x_codex.progress`` through the app (scripted backend, in process): off by default, on per
request or by ``CODEX_PROGRESS`` (a request's ``false`` wins), spec-valid Responses streams, and
a non-boolean refused with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from tests.support import sse
from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import post_stream, running_app
from tests.support.spec import stream_problems

PROMPT = "do it [[run:progress=exec;reply=done]]"
NOTES = "Running `/bin/bash -lc 'echo hi'`"


async def _chat(app: Any, **extra: Any) -> dict[str, Any]:
    response = await app.test_client().post("/v1/chat/completions", json=chat_body(PROMPT, **extra))
    assert response.status_code == 200
    body: dict[str, Any] = await response.get_json()
    return body["choices"][0]["message"]  # type: ignore[no-any-return]


async def test_chat_progress_is_off_by_default_and_on_per_request(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    async with running_app(tmp_path, backend) as app:
        plain = await _chat(app)
        shown = await _chat(app, x_codex={"progress": True})
    assert "reasoning_content" not in plain
    assert plain["content"] == "done"
    assert shown["reasoning_content"].startswith(NOTES)
    assert "Changed: add notes.txt" in shown["reasoning_content"]
    assert shown["content"] == "done"


async def test_codex_progress_is_the_default_a_request_may_turn_off(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    async with running_app(tmp_path, backend, progress=True) as app:
        shown = await _chat(app)
        plain = await _chat(app, x_codex={"progress": False})
    assert shown["reasoning_content"].startswith(NOTES)
    assert "reasoning_content" not in plain


async def test_chat_stream_sends_each_note_as_it_happens(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    async with running_app(tmp_path, backend) as app:
        response = await app.test_client().post(
            "/v1/chat/completions",
            json=chat_body(
                "x [[run:progress=app;reply=done]]",
                stream=True,
                x_codex={"progress": True, "reasoning_display": "think"},
            ),
        )
        assert response.status_code == 200
        chunks = sse.payloads(await response.get_data())
    content = [c["choices"][0]["delta"].get("content") for c in chunks[:-1] if c["choices"]]
    assert content[1:5] == [
        "<think>\n" + NOTES,
        "\n\n`/bin/bash -lc 'echo hi'` exited with 0",
        "\n\nChanged: add notes.txt",
        "\n</think>\n\ndone",
    ]


async def test_responses_stream_with_progress_is_spec_valid(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    async with running_app(tmp_path, backend) as app:
        response = await post_stream(
            app,
            {"model": "gpt-test", "input": PROMPT, "stream": True, "x_codex": {"progress": True}},
        )
    assert response.status == 200
    events = response.events
    assert stream_problems(events) == []
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["reasoning"] * 3 + ["message"]
    assert output[0]["summary"][0]["text"] == NOTES


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses"])
async def test_a_non_boolean_progress_is_refused_naming_the_field(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, path: str
) -> None:
    body = (
        chat_body("hi", x_codex={"progress": "yes"})
        if path.endswith("completions")
        else {"model": "gpt-test", "input": "hi", "x_codex": {"progress": "yes"}}
    )
    async with running_app(tmp_path, backend) as app:
        response = await app.test_client().post(path, json=body)
        error = (await response.get_json())["error"]
    assert response.status_code == 400
    assert error["param"] == "x_codex.progress"
    assert backend.runs == []
