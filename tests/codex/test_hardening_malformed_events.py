"""A malformed Codex event is never mistaken for the end of a turn or for an answer.

A ``turn.completed`` whose ``usage`` is not an object (a string, a list, a number, null,
missing), or an ``agent_message`` whose ``text`` is not a string, is an ``UnknownEvent``: kept,
never fatal, and never a completion. Before, such a ``turn.completed`` ended a chat run with an
empty answer while the real answer was still to come.
"""

from __future__ import annotations

import json

import pytest

from trio_codex.codex.exec import parse_event
from trio_codex.run.events import MessageCompleted, TurnCompleted, UnknownEvent, Usage


@pytest.mark.parametrize("usage", ["lots", [], 5, None, True])
def test_turn_completed_with_usage_that_is_not_an_object_is_unknown(usage: object) -> None:
    line = json.dumps({"type": "turn.completed", "usage": usage})
    assert parse_event(line) == UnknownEvent(line)


def test_turn_completed_without_usage_is_unknown() -> None:
    line = json.dumps({"type": "turn.completed"})
    assert parse_event(line) == UnknownEvent(line)


def test_turn_completed_with_an_object_still_completes() -> None:
    """Bad counts inside a usage object read as 0, as before: the turn did complete."""
    line = json.dumps(
        {"type": "turn.completed", "usage": {"input_tokens": "5", "output_tokens": 3}}
    )
    assert parse_event(line) == TurnCompleted(Usage(output_tokens=3))


@pytest.mark.parametrize("text", [5, None, ["a"], {"t": "a"}])
def test_agent_message_whose_text_is_not_a_string_is_unknown(text: object) -> None:
    line = json.dumps(
        {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": text}}
    )
    assert parse_event(line) == UnknownEvent(line)


def test_agent_message_with_text_is_a_message() -> None:
    line = json.dumps(
        {"type": "item.completed", "item": {"id": "i", "type": "agent_message", "text": "hi"}}
    )
    assert parse_event(line) == MessageCompleted("i", "hi")
