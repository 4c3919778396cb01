"""Layer 1: stop sequences (``trio_codex.openai.stops``: ``StopCutter``, ``parse_stop``) and the
answer text they cut (``trio_codex.openai.text.AnswerText``), as plain calls."""

from __future__ import annotations

from typing import Any

import pytest

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
