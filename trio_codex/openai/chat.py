"""Chat completions on the wire: the ``chat.completion`` object and its stream, from a run.

``ChatRenderer`` renders one run for ``/v1/chat/completions``. Non-stream: one
``chat.completion`` object (``body``). Stream (WIRE.md section 3): a role chunk first (sent as
soon as the run holds its slot, before Codex prints anything), content chunks as text arrives
(token deltas as they come; several agent messages separated by a blank line), a finish chunk
with ``finish_reason: "stop"``, the usage chunk (``choices: []``) when
``stream_options.include_usage`` is set, then ``data: [DONE]``. Every chunk carries the same
``id``, ``object``, ``created`` and ``model``. A failure after the stream began is a
``data: {"error": {...}}`` frame followed by ``data: [DONE]``, so a client that reads until
``[DONE]`` terminates (the SDKs raise on the error frame). The answer is complete at the turn's
end: the renderer detaches there and Codex finishes exiting on its own. With ``stop`` sequences
the answer is cut at the first one, streamed or not (``finish_reason: "stop"``), and it is
complete there (``done``): the run is stopped. Pure.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..errors import ServiceError
from ..run.events import CodexEvent, Transcript, Usage
from .formats import OutputFormat
from .frames import DONE, data_frame
from .text import AnswerText


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def now() -> int:
    return int(time.time())


def chat_usage(usage: Usage | None) -> dict[str, Any]:
    """``usage`` of a chat completion: prompt/completion/total plus the details."""
    if usage is None:
        return {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_output_tokens},
    }


class ChatRenderer:
    """One run as a chat completion, streamed or whole (see the module docstring)."""

    detach_at_turn_end = True

    def __init__(
        self,
        model: str,
        output: OutputFormat,
        *,
        include_usage: bool = False,
        stop: tuple[str, ...] = (),
        completion_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.model = model
        self.output = output
        self.include_usage = include_usage
        self.base = {
            "id": completion_id or new_completion_id(),
            "object": "chat.completion.chunk",
            "created": now() if created is None else created,
            "model": model,
        }
        self.usage: Usage | None = None
        self.error: ServiceError | None = None
        self._answer = AnswerText(final_only=output.final_only, stop=stop)

    @property
    def done(self) -> bool:
        """A stop sequence ended the answer before the turn did."""
        return self._answer.stopped

    # -- stream --------------------------------------------------------------------------------

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        chunk: dict[str, Any] = {
            **self.base,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None
        return data_frame(chunk)

    def open(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""}, None)

    def _content(self, text: str) -> bytes:
        return self._chunk({"content": text}, None) if text else b""

    def feed(self, event: CodexEvent) -> bytes:
        return self._content(self._answer.feed(event))

    def complete(self, transcript: Transcript) -> bytes:
        self.usage = transcript.usage
        frames = self._content(self._answer.finish(transcript))
        frames += self._chunk({}, "stop")
        if self.include_usage:
            frames += data_frame({**self.base, "choices": [], "usage": chat_usage(self.usage)})
        return frames + DONE

    def fail(self, error: ServiceError) -> bytes:
        self.error = error
        return data_frame(error.envelope()) + DONE

    # -- whole ---------------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.base["id"],
            "object": "chat.completion",
            "created": self.base["created"],
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": self._answer.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
        }
        if self.usage is not None:
            body["usage"] = chat_usage(self.usage)
        return body
