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

Codex's reasoning summaries (``ReasoningCompleted``) are shown as ``reasoning_display`` says:

* ``hidden`` (the default): not at all;
* ``field``: in ``message.reasoning_content`` (the summaries joined by a blank line), and in a
  stream as ``delta.reasoning_content`` chunks, each sent when Codex reports it (before the
  answer text that follows it);
* ``think``: in the content, as ``<think>\n...\n</think>\n\n`` before the answer. In a stream the
  block opens at the first summary and closes before the first answer text; a summary that
  arrives after the answer began opens a new block. The whole answer puts every summary in one
  block first. Stop sequences cut the answer only, never the block. With structured output
  (``response_format``) the content must stay JSON, so ``think`` acts as ``field`` there.

With ``progress`` (``x_codex.progress``), the commands Codex runs and the files it changes
(``progress.progress_note``) join the reasoning as they happen, each its own paragraph: in the
``<think>`` block with ``think``, else in ``reasoning_content`` (also when the reasoning itself
is ``hidden``: asking for progress is asking to see it, and the content stays the answer).

Client tool calls: once the run waits for the first result (``ToolCallWaiting``), every call the
model made in that response is known and the answer is complete (``done``): the whole answer has
``message.tool_calls`` (``id``, ``type: "function"``, ``function.name``, ``function.arguments``
as JSON text; ``content`` is null when the model wrote no text) and ``finish_reason:
"tool_calls"``; a stream sends one ``delta.tool_calls`` chunk per call (``index``, ``id``,
``type``, ``function`` with the name and all the arguments), then the finish chunk, the usage
chunk when asked and ``[DONE]``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..errors import ServiceError
from ..run.events import (
    CodexEvent,
    ItemEvent,
    ReasoningCompleted,
    ToolCallStarted,
    ToolCallWaiting,
    Transcript,
    Usage,
)
from ..run.tools import ToolCall
from ..settings import ReasoningDisplay
from .formats import OutputFormat
from .frames import DONE, data_frame
from .progress import progress_note
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
        reasoning_display: ReasoningDisplay = "hidden",
        progress: bool = False,
        completion_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.model = model
        self.output = output
        self.include_usage = include_usage
        if reasoning_display == "think" and output.final_only:
            reasoning_display = "field"  # the content must stay what the format says
        self.reasoning_display = reasoning_display
        self.progress = progress
        self.base = {
            "id": completion_id or new_completion_id(),
            "object": "chat.completion.chunk",
            "created": now() if created is None else created,
            "model": model,
        }
        self.usage: Usage | None = None
        self.error: ServiceError | None = None
        self._answer = AnswerText(final_only=output.final_only, stop=stop)
        #: Reasoning summaries shown so far, and whether a stream's ``<think>`` block is open.
        self._reasoning: list[str] = []
        self._thinking = False
        self._answer_began = False
        #: Client tool calls of the answer, and whether the run now waits for their results.
        self.tool_calls: list[ToolCall] = []
        self._calls_ready = False

    @property
    def done(self) -> bool:
        """A stop sequence, or the model's tool calls, ended the answer before the turn did."""
        return self._answer.stopped or self._calls_ready

    @property
    def waiting_calls(self) -> tuple[str, ...]:
        """The calls this answer hands to the client (once the run waits for a result)."""
        return tuple(c.call_id for c in self.tool_calls) if self._calls_ready else ()

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self._calls_ready else "stop"

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
        if not text:
            return b""
        if self._thinking:
            self._thinking = False
            if self._answer_began:  # the block already stands between two messages
                text = text.removeprefix("\n\n")
            text = "\n</think>\n\n" + text
        self._answer_began = True
        return self._chunk({"content": text}, None)

    def _reason(self, text: str, *, shown: bool = False) -> bytes:
        """A reasoning summary (``shown``: a progress note) as this renderer shows it (may be
        nothing)."""
        if (self.reasoning_display == "hidden" and not shown) or not text:
            return b""
        first = not self._reasoning
        self._reasoning.append(text)
        if self.reasoning_display != "think":
            return self._chunk({"reasoning_content": ("" if first else "\n\n") + text}, None)
        if self._thinking:
            return self._chunk({"content": "\n\n" + text}, None)
        self._thinking = True
        opening = "\n\n<think>\n" if self._answer_began else "<think>\n"
        return self._chunk({"content": opening + text}, None)

    def feed(self, event: CodexEvent) -> bytes:
        if self._calls_ready:
            return b""
        if isinstance(event, ToolCallStarted):
            self.tool_calls.append(event.call)
            return b""
        if isinstance(event, ToolCallWaiting):
            # A wait for a call this answer did not make is for results already handed in
            # (a resumed run asks for them one by one).
            self._calls_ready = any(c.call_id == event.call_id for c in self.tool_calls)
            return b""
        if isinstance(event, ReasoningCompleted):
            return self._reason(event.text)
        if isinstance(event, ItemEvent):
            note = progress_note(event) if self.progress else None
            return self._reason(note, shown=True) if note else b""
        return self._content(self._answer.feed(event))

    def complete(self, transcript: Transcript) -> bytes:
        self.usage = transcript.usage
        frames = self._content(self._answer.finish(transcript))
        if self._thinking:  # no answer text after the last summary
            self._thinking = False
            frames += self._chunk({"content": "\n</think>\n\n"}, None)
        if self._calls_ready:
            for index, call in enumerate(self.tool_calls):
                frames += self._chunk({"tool_calls": [_tool_call(call, index)]}, None)
        frames += self._chunk({}, self.finish_reason)
        if self.include_usage:
            frames += data_frame({**self.base, "choices": [], "usage": chat_usage(self.usage)})
        return frames + DONE

    def fail(self, error: ServiceError) -> bytes:
        self.error = error
        return data_frame(error.envelope()) + DONE

    # -- whole ---------------------------------------------------------------------------------

    def body(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self._answer.text,
            "refusal": None,
            "annotations": [],
        }
        if self._reasoning:
            reasoning = "\n\n".join(self._reasoning)
            if self.reasoning_display != "think":
                message["reasoning_content"] = reasoning
            else:
                message["content"] = f"<think>\n{reasoning}\n</think>\n\n{self._answer.text}"
        if self._calls_ready:
            message["tool_calls"] = [_tool_call(call) for call in self.tool_calls]
            if not message["content"]:
                message["content"] = None
        body: dict[str, Any] = {
            "id": self.base["id"],
            "object": "chat.completion",
            "created": self.base["created"],
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": self.finish_reason,
                }
            ],
        }
        if self.usage is not None:
            body["usage"] = chat_usage(self.usage)
        return body


def _tool_call(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    """A tool call as chat completions put it (with ``index`` in a stream's delta)."""
    out: dict[str, Any] = {} if index is None else {"index": index}
    out |= {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }
    return out
