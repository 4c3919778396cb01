"""The legacy completions API (``/v1/completions``): request and answer. Pure.

Some clients still speak it (llama-index's ``OpenAILike`` by default, older LangChain LLM
classes). The prompt is one string (or a list holding one string) and is passed to Codex as the
user's message; the answer is a ``text_completion`` with one choice. ``stop``, ``echo``,
``stream`` and ``stream_options.include_usage`` are honoured; ``suffix`` and token-id prompts
are refused with a 400 naming the field; other fields (``max_tokens``, ``temperature``, ``n``,
``logprobs`` ...) are accepted and ignored, as in chat. A stream is ``data:`` chunks with
``object: "text_completion"``, a final chunk with ``finish_reason: "stop"``, the usage chunk when
asked, then ``data: [DONE]``; a failure after the start is an error frame, then ``[DONE]``.
"""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import StrictBool, StrictStr

from ..errors import InvalidRequestError, ServiceError
from ..run.events import CodexEvent, Transcript, Usage
from .chat import chat_usage, now
from .frames import DONE, data_frame
from .schemas import Open, StreamOptions, XCodex
from .text import AnswerText


class CompletionRequest(Open):
    """``POST /v1/completions``; unknown fields are accepted (and ignored)."""

    model: StrictStr
    prompt: StrictStr | list[Any]
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    stop: StrictStr | list[StrictStr] | None = None
    echo: StrictBool | None = False
    suffix: StrictStr | None = None
    x_codex: XCodex | None = None


def prompt_text(req: CompletionRequest) -> str:
    """The one prompt string (400 naming the field for anything else)."""
    if req.suffix:
        raise InvalidRequestError(
            "suffix (insertion) is not supported by this server.",
            param="suffix",
            code="unsupported_parameter",
        )
    prompt = req.prompt
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise InvalidRequestError(
                "prompt must be a string or a list holding one string "
                "(token ids and batches are not supported).",
                param="prompt",
                code="invalid_value",
            )
        prompt = prompt[0]
    return prompt


class CompletionRenderer:
    """One run as a legacy ``text_completion``, streamed or whole."""

    detach_at_turn_end = True
    #: Legacy completions offer no tools.
    waiting_calls: tuple[str, ...] = ()

    def __init__(
        self,
        model: str,
        *,
        echo: str = "",
        stop: tuple[str, ...] = (),
        include_usage: bool = False,
    ) -> None:
        self.model = model
        self.echo = echo
        self.include_usage = include_usage
        self.base = {
            "id": "cmpl-" + secrets.token_hex(12),
            "object": "text_completion",
            "created": now(),
            "model": model,
        }
        self.usage: Usage | None = None
        self.error: ServiceError | None = None
        self._answer = AnswerText(stop=stop)

    @property
    def done(self) -> bool:
        return self._answer.stopped

    def _chunk(self, text: str, finish_reason: str | None) -> bytes:
        choice = {"text": text, "index": 0, "logprobs": None, "finish_reason": finish_reason}
        return data_frame({**self.base, "choices": [choice]})

    def open(self) -> bytes:
        return self._chunk(self.echo, None) if self.echo else b""

    def feed(self, event: CodexEvent) -> bytes:
        text = self._answer.feed(event)
        return self._chunk(text, None) if text else b""

    def complete(self, transcript: Transcript) -> bytes:
        self.usage = transcript.usage
        rest = self._answer.finish(transcript)
        frames = self._chunk(rest, None) if rest else b""
        frames += self._chunk("", "stop")
        if self.include_usage:
            frames += data_frame({**self.base, "choices": [], "usage": _usage(self.usage)})
        return frames + DONE

    def fail(self, error: ServiceError) -> bytes:
        self.error = error
        return data_frame(error.envelope()) + DONE

    def body(self) -> dict[str, Any]:
        choice = {
            "text": self.echo + self._answer.text,
            "index": 0,
            "logprobs": None,
            "finish_reason": "stop",
        }
        return {**self.base, "choices": [choice], "usage": _usage(self.usage)}


def _usage(usage: Usage | None) -> dict[str, Any]:
    full = chat_usage(usage)
    return {k: full[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")}
