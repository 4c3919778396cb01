"""Layer 1: ``trio_codex.openai.responses.wire``: the event builder and sequencer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from trio_codex.openai.responses.wire import (
    ResponseBuilder,
    ResponseStream,
    failure_code,
    responses_usage,
)
from trio_codex.run.events import (
    ErrorEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ThreadStarted,
    TurnCompleted,
    TurnStarted,
    Usage,
)


def _builder(final_only: bool = False) -> ResponseBuilder:
    counter = iter(range(100))
    return ResponseBuilder(
        {"model": "m"},
        created_at=1,
        final_only=final_only,
        clock=lambda: 2,
        item_id=lambda prefix: f"{prefix}_{next(counter)}",
    )


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


def test_builder_maps_deltas_to_the_open_message() -> None:
    """TextDelta opens one message (added, part added) and streams into it; completion closes it."""
    b = _builder()
    events = b.start("resp_x")
    events += b.feed(TextDelta("item_1", "Hel"))
    events += b.feed(TextDelta("item_1", "lo"))
    events += b.feed(MessageCompleted("item_1", "Hello!"))
    events += b.complete(responses_usage(Usage(1, 0, 2, 0)))
    assert _types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    assert [e["delta"] for e in events if e["type"].endswith("text.delta")] == ["Hel", "lo", "!"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert {e["item_id"] for e in events if "item_id" in e} == {"msg_0"}
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello!"
    assert final["usage"]["output_tokens"] == 2
    assert final["completed_at"] == 2


def test_builder_orders_reasoning_and_messages_densely() -> None:
    """Reasoning then two messages get output_index 0, 1, 2; the snapshot lists them in order."""
    b = _builder()
    b.start("r")
    events = b.feed(ReasoningCompleted("item_0", "**Plan**"))
    events += b.feed(MessageCompleted("item_1", "a"))
    events += b.feed(ErrorEvent("Reconnecting... 1/5"))
    events += b.feed(MessageCompleted("item_2", "b"))
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "reasoning"),
        (1, "message"),
        (2, "message"),
    ]
    assert _types(events[:6]) == [
        "output_item.added",
        "reasoning_summary_part.added",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
    ]
    snapshot = b.snapshot()
    assert snapshot["output"][0] == {
        "id": "rs_0",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "**Plan**"}],
    }
    assert [i["content"][0]["text"] for i in snapshot["output"][1:]] == ["a", "b"]


def test_builder_final_only_emits_the_last_message_at_completion() -> None:
    """With structured output, no message event is sent until completion, then only the last."""
    b = _builder(final_only=True)
    b.start("r")
    assert b.feed(MessageCompleted("item_1", "thinking out loud")) == []
    assert b.feed(TextDelta("item_2", '{"a"')) == []
    assert b.feed(MessageCompleted("item_2", '{"a": 1}')) == []
    events = b.complete(None)
    texts = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    assert texts == ['{"a": 1}']
    assert len(events[-1]["response"]["output"]) == 1
    assert "usage" not in events[-1]["response"]


def test_builder_fail_closes_open_items_and_uses_spec_codes() -> None:
    """A failure closes open messages as incomplete and ends with response.failed."""
    b = _builder()
    b.start("r")
    b.feed(TextDelta("item_1", "par"))
    events = b.fail("timeout", "Codex did not finish")
    assert _types(events) == [
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "failed",
    ]
    assert events[2]["item"]["status"] == "incomplete"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "Codex did not finish"}
    assert failed["output"][0]["content"][0]["text"] == "par"


@pytest.mark.parametrize(
    ("ours", "spec"),
    [
        ("rate_limit_exceeded", "rate_limit_exceeded"),
        ("insufficient_quota", "rate_limit_exceeded"),
        ("context_length_exceeded", "invalid_prompt"),
        ("invalid_image", "invalid_image"),
        ("timeout", "server_error"),
        (None, "server_error"),
    ],
)
def test_failure_codes_are_spec_codes(ours: str | None, spec: str) -> None:
    """response.failed codes come from the spec's ResponseErrorCode enum."""
    assert failure_code(ours) == spec


def test_stream_waits_for_the_thread_before_created() -> None:
    """A new conversation's created event waits for ThreadStarted, whose id it carries."""
    minted: list[str | None] = []

    def mint(thread: str | None, turn: str | None) -> str:
        minted.append(thread)
        return f"resp_{thread}"

    stream = ResponseStream(_builder(), mint, thread_id=None, await_thread=True)
    assert stream.open() == []
    events = stream.feed(ThreadStarted("t-9"))
    assert _types(events) == ["created", "in_progress"]
    assert events[0]["response"]["id"] == "resp_t-9"
    assert stream.feed(ThreadStarted("t-9")) == []
    assert _types(stream.complete(None)) == ["completed"]
    assert minted == ["t-9"]


def test_stream_without_a_thread_mints_an_id_that_cannot_continue() -> None:
    """If Codex reports no thread before other output (or ends), the id carries no thread."""
    stream = ResponseStream(
        _builder(), lambda t, _turn: f"resp_{t}", thread_id=None, await_thread=True
    )
    events = stream.feed(TurnCompleted(Usage()))
    assert events[0]["response"]["id"] == "resp_None"
    quiet = ResponseStream(
        _builder(), lambda t, _turn: f"resp_{t}", thread_id=None, await_thread=True
    )
    assert _types(quiet.fail("x", "y")) == ["created", "in_progress", "failed"]


def test_stream_waits_for_the_turn_when_the_id_carries_it() -> None:
    """With await_turn, created waits for TurnStarted (after ThreadStarted) and the id names
    both; a continuation's thread is known, its turn is not."""
    stream = ResponseStream(
        _builder(),
        lambda t, turn: f"resp_{t}_{turn}",
        thread_id=None,
        await_thread=True,
        await_turn=True,
    )
    assert stream.open() == []
    assert stream.feed(ThreadStarted("t-9")) == []
    events = stream.feed(TurnStarted("u-1"))
    assert _types(events) == ["created", "in_progress"]
    assert events[0]["response"]["id"] == "resp_t-9_u-1"
    resumed = ResponseStream(
        _builder(),
        lambda t, turn: f"resp_{t}_{turn}",
        thread_id="t",
        await_thread=False,
        await_turn=True,
    )
    assert resumed.open() == []
    assert resumed.feed(ThreadStarted("t")) == []
    assert resumed.feed(TurnStarted("u-2"))[0]["response"]["id"] == "resp_t_u-2"
    silent = ResponseStream(
        _builder(),
        lambda t, turn: f"resp_{t}_{turn}",
        thread_id="t",
        await_thread=False,
        await_turn=True,
    )
    assert silent.fail("x", "y")[0]["response"]["id"] == "resp_t_None"


def test_continuation_stream_is_created_at_once() -> None:
    """A continuation knows its thread: created and in_progress come before any Codex event."""
    stream = ResponseStream(
        _builder(), lambda t, _turn: f"resp_{t}", thread_id="t", await_thread=False
    )
    events = stream.open()
    assert _types(events) == ["created", "in_progress"]
    assert events[1]["response"]["id"] == "resp_t"


def test_a_completed_response_is_not_mutated_by_later_events() -> None:
    """Snapshots taken for earlier events do not change when the builder moves on."""
    builder = ResponseBuilder({}, created_at=1)
    created = builder.start("resp_1")
    first = builder.feed(TextDelta("i", "a"))
    snapshot = copy.deepcopy(first)
    builder.feed(MessageCompleted("i", "ab"))
    builder.complete(None)
    assert first == snapshot
    assert created[0]["response"]["output"] == []
