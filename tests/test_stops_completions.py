"""Stop sequences (chat ``stop``) and the legacy ``/v1/completions`` endpoint.

Pure tests of ``StopCutter``/``parse_stop``; the app in process on virtual time with the
scripted backend; and the official Python SDK's ``completions.create`` (streamed and not)
against real Hypercorn and the fake codex.
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
from tests.support.servers import (
    SdkClientFactory,
    ServerFactory,
    in_thread,
    running_app,
    serve_fake,
)
from trio_codex.errors import InvalidRequestError
from trio_codex.openai.stops import StopCutter, parse_stop
from trio_codex.openai.text import AnswerText
from trio_codex.run.events import CodexEvent, MessageCompleted, TextDelta, Transcript


@pytest.mark.parametrize(
    ("pieces", "stops", "sent"),
    [
        (["Thought: a", "\nObserv", "ation: b"], ["Observation:"], "Thought: a\n"),
        (["abc"], ["x"], "abc"),
        (["one STOP two END"], ["END", "STOP"], "one "),
        (["no", " stop", " here"], [], "no stop here"),
        (["a", "b", "c"], ["bc"], "a"),
    ],
)
def test_the_cutter_sends_everything_before_the_first_stop(
    pieces: list[str], stops: list[str], sent: str
) -> None:
    """Pieces pass through, cut at the earliest stop string, also one spanning two pieces."""
    cutter = StopCutter(stops)
    out = "".join(cutter.feed(p) for p in pieces) + cutter.flush()
    assert out == sent
    assert cutter.stopped == (sent != "".join(pieces))


@pytest.mark.parametrize("value", [["a", "b", "c", "d", "e"], [1], {"a": 1}])
def test_bad_stop_values_are_400(value: Any) -> None:
    """More than 4 sequences, or anything but strings, is refused naming `stop`."""
    with pytest.raises(InvalidRequestError) as bad:
        parse_stop(value)
    assert bad.value.param == "stop"


def test_answer_text_cuts_streamed_and_whole_alike() -> None:
    """The streamed pieces and the whole answer agree, two messages included."""
    answer = AnswerText(stop=("END",))
    events: list[CodexEvent] = [
        TextDelta("m1", "first"),
        MessageCompleted("m1", "first"),
        TextDelta("m2", "second E"),
        TextDelta("m2", "ND more"),
    ]
    transcript = Transcript()
    streamed = ""
    for event in events:
        transcript.feed(event)
        streamed += answer.feed(event)
    streamed += answer.finish(transcript)
    assert streamed == answer.text == "first\n\nsecond "
    assert answer.stopped


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
    ],
)
async def test_completions_refuse_what_they_cannot_honour(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    extra: dict[str, Any],
    param: str,
) -> None:
    """Token-id prompts, batches and suffix are a 400 naming the field; nothing runs."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            "/v1/completions", json={"model": "gpt-test", "prompt": "hi", **extra}
        )
        assert r.status_code == 400
        assert (await r.get_json())["error"]["param"] == param
    assert backend.runs == []


@pytest.mark.slow
async def test_sdk_completions_create_plain_and_streamed(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory, sdk_client: SdkClientFactory
) -> None:
    """The official SDK's completions.create works, streamed and not, with stop honoured."""
    url = await serve_fake(tmp_path, fake_codex, start_server)
    client = sdk_client(url)
    plain = await in_thread(
        lambda: client.completions.create(
            model="gpt-test", prompt="hi [[codex:reply=Hello there. STOP here]]", stop="STOP"
        )
    )
    assert plain.object == "text_completion"
    assert plain.choices[0].text == "Hello there. "
    assert plain.choices[0].finish_reason == "stop"

    def consume() -> list[Any]:
        stream = client.completions.create(
            model="gpt-test",
            prompt="[[codex:mode=messages;count=2]]",
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    chunks = await in_thread(consume)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "part-0\n\npart-1"
    assert chunks[-1].usage is not None
