"""``x_codex.progress`` in the pure core: the note for each command and file change of either
backend (``progress.progress_note``), where chat completions put it for each reasoning display,
and the Responses ``reasoning`` items it becomes (spec-valid, in order with the answer)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import sse
from tests.support.fakes import progress_events
from tests.support.spec import stream_problems
from trio_codex.codex.app_protocol import TurnMapper
from trio_codex.codex.exec import parse_event
from trio_codex.openai.chat import ChatRenderer
from trio_codex.openai.formats import response_format
from trio_codex.openai.progress import MAX_COMMAND_CHARS, progress_note
from trio_codex.openai.responses.request import echo_fields, parse_responses_request
from trio_codex.openai.responses.wire import ResponseBuilder
from trio_codex.run.events import (
    CodexEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    Transcript,
    TurnCompleted,
    Usage,
)
from trio_codex.settings import ReasoningDisplay

NOTES = [
    "Running `/bin/bash -lc 'echo hi'`",
    "`/bin/bash -lc 'echo hi'` exited with 0",
    "Changed: add notes.txt",
]


def notes(events: list[CodexEvent]) -> list[str]:
    return [
        note for e in events if isinstance(e, ItemEvent) and (note := progress_note(e)) is not None
    ]


@pytest.mark.parametrize("camel", [False, True], ids=["exec", "app-server"])
def test_a_command_and_a_file_change_make_three_notes(camel: bool) -> None:
    """Started and finished for a command, once applied for a file change."""
    assert notes(progress_events(camel=camel)) == NOTES


def test_the_backends_parse_codex_lines_into_the_events_the_notes_read() -> None:
    """``codex exec --json`` lines (CODEX_FACTS samples) and ``codex app-server``
    notifications (APP_SERVER.md) become ``ItemEvent`` items with notes."""
    lines = [
        '{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc \'echo hi\'","aggregated_output":"","exit_code":null,"status":"in_progress"}}',
        '{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"/bin/bash -lc \'echo hi\'","aggregated_output":"hi\\n","exit_code":0,"status":"completed"}}',
        '{"type":"item.completed","item":{"id":"item_0","type":"file_change","changes":[{"path":"notes.txt","kind":"add"}],"status":"completed"}}',
    ]
    assert notes([parse_event(line) for line in lines]) == NOTES
    mapper = TurnMapper("turn-1")
    command = {"type": "commandExecution", "id": "call_1", "command": "/bin/bash -lc 'echo hi'"}
    events = mapper.feed(
        "item/started",
        {"turnId": "turn-1", "item": {**command, "status": "inProgress", "exitCode": None}},
    )
    events += mapper.feed(
        "item/completed",
        {"turnId": "turn-1", "item": {**command, "status": "completed", "exitCode": 0}},
    )
    assert notes(events) == NOTES[:2]


def test_failed_and_odd_items() -> None:
    long = "x" * (MAX_COMMAND_CHARS + 50)
    failed = ItemEvent(
        "completed", "command_execution", {"command": "false", "exit_code": 1, "status": "failed"}
    )
    declined = ItemEvent(
        "completed", "command_execution", {"command": "rm x", "status": "declined"}
    )
    assert progress_note(failed) == "`false` exited with 1"
    assert progress_note(declined) == "`rm x` ended (declined)"
    note = progress_note(ItemEvent("started", "command_execution", {"command": long}))
    assert note is not None
    assert len(note) < MAX_COMMAND_CHARS + 20
    assert note.endswith("…`")
    multi = ItemEvent("started", "command_execution", {"command": "a\n  `b`"})
    assert progress_note(multi) == "Running `a 'b'`"
    assert progress_note(ItemEvent("completed", "web_search", {"query": "q"})) is None
    assert progress_note(ItemEvent("started", "command_execution", {"command": 7})) == (
        "Running `7`"
    )
    assert progress_note(ItemEvent("started", "command_execution", {})) is None
    assert progress_note(ItemEvent("completed", "file_change", {"changes": "nope"})) is None
    rejected = ItemEvent(
        "completed", "file_change", {"changes": [{"path": "a"}], "status": "failed"}
    )
    assert progress_note(rejected) == "Not changed (failed): a"


EVENTS: list[CodexEvent] = [
    ReasoningCompleted("r1", "**Plan** it"),
    *progress_events(),
    MessageCompleted("m1", "the answer"),
]


def chat(
    display: ReasoningDisplay, *, progress: bool
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stream's deltas and the whole message, from the same events."""
    output = response_format(None)
    streamed = ChatRenderer("gpt-test", output, reasoning_display=display, progress=progress)
    whole = ChatRenderer("gpt-test", output, reasoning_display=display, progress=progress)
    transcript = Transcript()
    frames = streamed.open()
    for event in [*EVENTS, TurnCompleted(Usage())]:
        transcript.feed(event)
        frames += streamed.feed(event)
        whole.feed(event)
    frames += streamed.complete(transcript)
    whole.complete(transcript)
    chunks = sse.payloads(frames)
    deltas = [choice["delta"] for chunk in chunks[:-1] for choice in chunk["choices"]]
    return deltas, whole.body()["choices"][0]["message"]


def joined(deltas: list[dict[str, Any]], field: str) -> str:
    return "".join(d.get(field) or "" for d in deltas)


def test_chat_without_progress_shows_none() -> None:
    for display in ("hidden", "field", "think"):
        deltas, message = chat(display, progress=False)
        assert "Running" not in json.dumps(deltas) + json.dumps(message)


def test_chat_progress_with_reasoning_content() -> None:
    """Each note is a reasoning_content chunk when it happens, after the summary, before the
    answer; the whole message holds the same text."""
    deltas, message = chat("field", progress=True)
    expected = "\n\n".join(["**Plan** it", *NOTES])
    assert joined(deltas, "reasoning_content") == expected
    assert [d["reasoning_content"] for d in deltas if "reasoning_content" in d][1:] == [
        "\n\n" + note for note in NOTES
    ]
    assert joined(deltas, "content") == "the answer"
    assert message["reasoning_content"] == expected
    assert message["content"] == "the answer"


def test_chat_progress_while_reasoning_is_hidden_goes_to_reasoning_content() -> None:
    """Progress asked for is shown (in reasoning_content); the reasoning itself stays hidden."""
    deltas, message = chat("hidden", progress=True)
    assert joined(deltas, "reasoning_content") == "\n\n".join(NOTES)
    assert joined(deltas, "content") == "the answer"
    assert message["reasoning_content"] == "\n\n".join(NOTES)
    assert message["content"] == "the answer"


def test_chat_progress_in_a_think_block() -> None:
    deltas, message = chat("think", progress=True)
    block = "<think>\n" + "\n\n".join(["**Plan** it", *NOTES]) + "\n</think>\n\n"
    assert joined(deltas, "content") == block + "the answer"
    assert not joined(deltas, "reasoning_content")
    assert message["content"] == block + "the answer"
    assert "reasoning_content" not in message


@pytest.mark.parametrize("progress", [False, True])
def test_responses_progress_items_are_reasoning_items_in_spec_order(progress: bool) -> None:
    fields = echo_fields(parse_responses_request({"model": "gpt-test", "input": "hi"}), None)
    builder = ResponseBuilder(fields, created_at=1, progress=progress, clock=lambda: 2.0)
    events = builder.start("resp_1")
    for event in EVENTS:
        events += builder.feed(event)
    events += builder.complete(None)
    assert stream_problems(events) == []
    output = events[-1]["response"]["output"]
    summaries = [item["summary"][0]["text"] for item in output if item["type"] == "reasoning"]
    assert summaries == (["**Plan** it", *NOTES] if progress else ["**Plan** it"])
    assert [item["type"] for item in output][-1] == "message"
    deltas = [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"]
    assert deltas == summaries
