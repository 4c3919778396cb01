"""A run that ends without an agent message and without a failure is a 502 ``upstream_error``
that says so, never an empty success; structured output (the answer is the last message)
follows the same rule."""

from __future__ import annotations

import pytest

from trio_codex.run.events import (
    MessageCompleted,
    TextDelta,
    ThreadStarted,
    Transcript,
    TurnCompleted,
    UnknownEvent,
    Usage,
)


def transcript(*events: object) -> Transcript:
    t = Transcript()
    for event in events:
        t.feed(event)  # type: ignore[arg-type]
    return t


@pytest.mark.parametrize("exit_code", [0, None])
def test_completed_turn_without_a_message_is_an_upstream_error(exit_code: int | None) -> None:
    t = transcript(ThreadStarted("t"), UnknownEvent("junk"), TurnCompleted(Usage(1, 0, 1, 0)))
    failure = t.failure(exit_code)
    assert failure is not None
    assert (failure.status, failure.code) == (502, "upstream_error")
    assert "without an answer" in failure.message


def test_a_message_makes_it_a_success() -> None:
    t = transcript(MessageCompleted("m", "hi"), TurnCompleted(Usage()))
    assert t.failure(0) is None
    assert (t.text, t.final_text) == ("hi", "hi")


def test_streamed_deltas_count_as_an_answer() -> None:
    t = transcript(TextDelta("m", "h"), TurnCompleted(Usage()))
    assert t.failure(None) is None


def test_has_answer_tells_whether_a_message_arrived() -> None:
    assert transcript(TurnCompleted(Usage())).has_answer is False
    assert transcript(MessageCompleted("m", ""), TurnCompleted(Usage())).has_answer is True
