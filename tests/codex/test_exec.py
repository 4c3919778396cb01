"""Layer 1: ``trio_codex.codex.exec.parse_event``: ``codex exec --json`` lines become typed
events, and nothing it prints is fatal."""

from __future__ import annotations

import pytest

from tests.support.recordings import RECORDED_RUN
from trio_codex.codex.exec import parse_event
from trio_codex.run.events import (
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    ThreadStarted,
    TurnCompleted,
    TurnStarted,
    UnknownEvent,
    Usage,
)


def test_recorded_run_parses_into_typed_events() -> None:
    """Each recorded line becomes the event of its type; the web_search duplicate id is kept."""
    events = [parse_event(line) for line in RECORDED_RUN]
    assert isinstance(events[0], ThreadStarted)
    assert events[0].thread_id == "01a20bf1-29b6-7921-bc58-13ae9b0af77b"
    assert isinstance(events[1], ItemEvent)
    assert events[1].item_type == "error"
    assert isinstance(events[2], TurnStarted)
    assert isinstance(events[3], ReasoningCompleted)
    assert isinstance(events[4], ItemEvent)
    assert events[4].phase == "started"
    assert events[4].item_type == "command_execution"
    assert isinstance(events[6], ItemEvent)
    assert events[6].item["id"] == "ws_1"
    assert isinstance(events[7], ItemEvent)
    assert events[7].item_type == "file_change"
    assert events[8] == MessageCompleted("item_5", "Hello from fake upstream.")
    assert events[9] == TurnCompleted(Usage(5264, 100, 6, 7))


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "[1,2]",
        '{"type":"brand.new","x":1}',
        '{"type":"item.completed"}',
        "{" * 5000,
    ],
)
def test_unknown_and_garbage_lines_are_kept_not_fatal(line: str) -> None:
    """Anything unexpected is an UnknownEvent; parse_event never raises."""
    assert isinstance(parse_event(line), UnknownEvent)
