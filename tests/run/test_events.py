"""Layer 1: ``trio_codex.run.events``: the transcript of a run, Codex's failures mapped to the
status a client should see, and per-request usage."""

from __future__ import annotations

import pytest

from tests.support.recordings import RECORDED_FAILURE, RECORDED_RUN
from trio_codex.codex.exec import parse_event
from trio_codex.openai.chat import chat_usage
from trio_codex.openai.responses.wire import responses_usage
from trio_codex.run.events import (
    ErrorEvent,
    MessageCompleted,
    Transcript,
    TurnFailed,
    Usage,
    classify_failure,
)


def test_transcript_of_recorded_run() -> None:
    """The answer is the agent message; usage maps to chat and responses shapes."""
    transcript = Transcript()
    for line in RECORDED_RUN:
        transcript.feed(parse_event(line))
    assert transcript.text == "Hello from fake upstream."
    assert transcript.reasoning == ["**Planning** I will say hi."]
    assert transcript.failure(0) is None
    assert transcript.usage is not None
    assert chat_usage(transcript.usage) == {
        "prompt_tokens": 5264,
        "completion_tokens": 6,
        "total_tokens": 5270,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    assert responses_usage(transcript.usage)["output_tokens_details"] == {"reasoning_tokens": 7}
    assert len(transcript.warnings) == 1


def test_recorded_failure_maps_to_401() -> None:
    """turn.failed with an upstream 401 is a 401; retry notices are not the failure."""
    transcript = Transcript()
    events = [parse_event(line) for line in RECORDED_FAILURE]
    for event in events:
        transcript.feed(event)
    assert isinstance(events[2], ErrorEvent)
    assert isinstance(events[4], TurnFailed)
    failure = transcript.failure(1)
    assert failure is not None
    assert failure.status == 401
    assert "Incorrect API key" in failure.message


@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        (
            "unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses",
            401,
            "invalid_api_key",
        ),
        ("Quota exceeded. Check your plan and billing details.", 429, "insufficient_quota"),
        ("exceeded retry limit, last status: 429 Too Many Requests", 429, "rate_limit_exceeded"),
        (
            "rate limit exceeded: Rate limit reached. Please try again in 2.5s.",
            429,
            "rate_limit_exceeded",
        ),
        (
            "Codex ran out of room in the model's context window. Start a new thread or clear earlier history before retrying.",
            400,
            "context_length_exceeded",
        ),
        (
            "Error: turn/start: turn/start failed: Input exceeds the maximum length of 1048576 characters. (code -32602)",
            400,
            "context_length_exceeded",
        ),
        ("The requested model 'nope' does not exist.", 404, "model_not_found"),
        (
            "unexpected status 403 Forbidden: Country not supported, url: http://127.0.0.1:1/v1/responses",
            403,
            "permission_denied",
        ),
        (
            "We\u2019re currently experiencing high demand, which may cause temporary errors.",
            502,
            "upstream_error",
        ),
        (
            "stream disconnected before completion: idle timeout waiting for SSE",
            502,
            "upstream_error",
        ),
        (
            "unexpected status 503 Service Unavailable: Service unavailable., url: http://127.0.0.1:18503/v1/responses",
            502,
            "upstream_error",
        ),
    ],
)
def test_failure_mapping(message: str, status: int, code: str) -> None:
    """Codex failure texts map to the status a client should see, message kept verbatim."""
    failure = classify_failure(message)
    assert (failure.status, failure.code, failure.message) == (status, code, message)


def test_exit_without_turn_completed_is_a_failure() -> None:
    """A run that printed an answer but exited non-zero without turn.completed failed."""
    transcript = Transcript()
    transcript.feed(MessageCompleted("i", "partial"))
    failure = transcript.failure(3, "")
    assert failure is not None
    assert failure.status == 502
    assert "status 3" in failure.message
    stderr_failure = Transcript().failure(1, "Error: Model provider `nope` not found\n")
    assert stderr_failure is not None
    assert "nope" in stderr_failure.message


def test_usage_since_subtracts_and_clamps() -> None:
    """Per-request usage is total minus baseline per count, never below zero."""
    assert Usage(300, 5, 30, 2, 7).since(Usage(100, 5, 10, 0, 3)) == Usage(200, 0, 20, 2, 4)
    assert Usage(5, 0, 1, 0).since(Usage(10, 3, 2, 1)) == Usage(0, 0, 0, 0)
