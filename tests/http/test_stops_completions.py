"""Stop sequences (chat ``stop``) and the legacy ``/v1/completions`` endpoint, through the app in
process on virtual time with the scripted backend.

The pure stop cutting is ``tests/openai/test_stops.py``; the official SDK against real Hypercorn is
``tests/system/test_stops_completions.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import running_app


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_stop_cuts_the_answer_and_stops_the_run(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, stream: bool
) -> None:
    """The answer ends before `Observation:` with finish_reason stop, and the run is stopped
    right there instead of going on to the end of the turn (linger 30 s here)."""
    prompt = "[[run:reply=Thought: call it\nObservation: made up;deltas=6;linger=30]]"
    async with running_app(tmp_path, backend) as app:
        start = trio.current_time()
        r = await app.test_client().post(
            "/v1/chat/completions",
            json=chat_body(prompt, stream=stream, stop=["Observation:", "Calling tools:"]),
        )
        assert r.status_code == 200
        data = await r.get_data(as_text=True)
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == start
        assert backend.runs[0].cancelled
    if stream:
        assert "Observation" not in data
        assert '"finish_reason":"stop"' in data
        assert data.endswith("data: [DONE]\n\n")
    else:
        body = json.loads(data)
        assert body["choices"][0]["message"]["content"] == "Thought: call it\n"
        assert body["choices"][0]["finish_reason"] == "stop"


async def test_completions_non_stream_in_process(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A text_completion with the answer, usage and echo; the prompt reaches Codex as is."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            "/v1/completions",
            json={"model": "gpt-test", "prompt": ["Say [[run:reply=hi there]]"], "echo": True},
        )
        assert r.status_code == 200
        body = await r.get_json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Say [[run:reply=hi there]]hi there"
    assert body["usage"]["total_tokens"] == 15
    assert backend.runs[0].spec.prompt == "Say [[run:reply=hi there]]"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"prompt": [1, 2, 3]}, "prompt"),
        ({"prompt": ["a", "b"]}, "prompt"),
        ({"suffix": "x"}, "suffix"),
        ({"prompt": " \n\t"}, "prompt"),
    ],
)
async def test_completions_refuse_what_they_cannot_honour(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    extra: dict[str, Any],
    param: str,
) -> None:
    """Token-id prompts, batches, suffix and an empty prompt are a 400 naming the field;
    nothing runs."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            "/v1/completions", json={"model": "gpt-test", "prompt": "hi", **extra}
        )
        assert r.status_code == 400
        assert (await r.get_json())["error"]["param"] == param
    assert backend.runs == []
