"""Reasoning display in chat completions (``ChatRenderer``, pure): hidden, ``reasoning_content``
or a ``<think>`` block, streamed and whole, from the same events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support import sse
from trio_codex.openai.chat import ChatRenderer
from trio_codex.openai.formats import response_format
from trio_codex.run.events import (
    CodexEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    Transcript,
    TurnCompleted,
    Usage,
)
from trio_codex.settings import ReasoningDisplay

PLAIN = response_format(None)
JSON_OBJECT = response_format({"type": "json_object"})


def run(
    events: list[CodexEvent],
    display: ReasoningDisplay,
    *,
    output: Any = PLAIN,
    stop: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The stream's chunk deltas and the whole answer's message, from the same events."""
    events = [*events, TurnCompleted(Usage())]
    streamed = ChatRenderer("gpt-test", output, reasoning_display=display, stop=stop)
    whole = ChatRenderer("gpt-test", output, reasoning_display=display, stop=stop)
    transcript = Transcript()
    frames = streamed.open()
    for event in events:
        transcript.feed(event)
        frames += streamed.feed(event)
        whole.feed(event)
    frames += streamed.complete(transcript)
    whole.complete(transcript)
    chunks = sse.payloads(frames)
    assert chunks[-1] == sse.DONE
    deltas = [choice["delta"] for chunk in chunks[:-1] for choice in chunk["choices"]]
    return deltas, whole.body()["choices"][0]["message"]


def joined(deltas: list[dict[str, Any]], field: str) -> str:
    return "".join(d.get(field) or "" for d in deltas)


REASONED: list[CodexEvent] = [
    ReasoningCompleted("r1", "**Plan** it"),
    MessageCompleted("m1", "the answer"),
]


def test_hidden_shows_no_reasoning() -> None:
    deltas, message = run(REASONED, "hidden")
    assert joined(deltas, "content") == "the answer"
    assert not any("reasoning_content" in d for d in deltas)
    assert message["content"] == "the answer"
    assert "reasoning_content" not in message


def test_field_sends_reasoning_before_the_answer() -> None:
    """The reasoning chunk comes after the role chunk and before the first content."""
    deltas, message = run(REASONED, "field")
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"reasoning_content": "**Plan** it"}
    assert deltas[2] == {"content": "the answer"}
    assert message["reasoning_content"] == "**Plan** it"
    assert message["content"] == "the answer"


def test_field_joins_summaries_with_a_blank_line() -> None:
    events: list[CodexEvent] = [
        ReasoningCompleted("r1", "one"),
        ReasoningCompleted("r2", "two"),
        MessageCompleted("m1", "answer"),
    ]
    deltas, message = run(events, "field")
    assert joined(deltas, "reasoning_content") == "one\n\ntwo" == message["reasoning_content"]


def test_field_without_reasoning_has_no_field() -> None:
    deltas, message = run([MessageCompleted("m1", "answer")], "field")
    assert "reasoning_content" not in message
    assert not any("reasoning_content" in d for d in deltas)


def test_think_puts_a_block_before_the_content() -> None:
    deltas, message = run(REASONED, "think")
    expected = "<think>\n**Plan** it\n</think>\n\nthe answer"
    assert joined(deltas, "content") == expected
    assert message["content"] == expected
    assert deltas[1] == {"content": "<think>\n**Plan** it"}  # sent as Codex reports it


def test_think_streams_a_summary_after_the_answer_began_as_a_new_block() -> None:
    """Streamed: blocks where they happened; whole: one block of every summary first."""
    events: list[CodexEvent] = [
        ReasoningCompleted("r1", "first"),
        TextDelta("m1", "Hel"),
        TextDelta("m1", "lo"),
        MessageCompleted("m1", "Hello"),
        ReasoningCompleted("r2", "second"),
        MessageCompleted("m2", "again"),
    ]
    deltas, message = run(events, "think")
    assert joined(deltas, "content") == (
        "<think>\nfirst\n</think>\n\nHello\n\n<think>\nsecond\n</think>\n\nagain"
    )
    assert message["content"] == "<think>\nfirst\n\nsecond\n</think>\n\nHello\n\nagain"


def test_think_closes_a_block_that_no_answer_followed() -> None:
    deltas, message = run([ReasoningCompleted("r1", "only thoughts")], "think")
    assert joined(deltas, "content") == "<think>\nonly thoughts\n</think>\n\n"
    assert message["content"] == "<think>\nonly thoughts\n</think>\n\n"


def test_stop_sequences_cut_the_answer_not_the_block() -> None:
    events: list[CodexEvent] = [
        ReasoningCompleted("r1", "think about STOP"),
        MessageCompleted("m1", "yes STOP no"),
    ]
    deltas, message = run(events, "think", stop=("STOP",))
    assert joined(deltas, "content") == "<think>\nthink about STOP\n</think>\n\nyes "
    assert message["content"] == "<think>\nthink about STOP\n</think>\n\nyes "


@pytest.mark.parametrize("display", ["field", "think"])
def test_structured_output_keeps_its_content_json(display: ReasoningDisplay) -> None:
    """With a JSON response format the content is the JSON alone; think acts as field."""
    events: list[CodexEvent] = [ReasoningCompleted("r1", "hmm"), MessageCompleted("m1", '{"a": 1}')]
    deltas, message = run(events, display, output=JSON_OBJECT)
    assert json.loads(joined(deltas, "content")) == {"a": 1}
    assert json.loads(message["content"]) == {"a": 1}
    assert joined(deltas, "reasoning_content") == "hmm" == message["reasoning_content"]
