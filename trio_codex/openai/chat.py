"""``/v1/chat/completions``: the request-to-run translation and both response shapes.

Non-stream: one ``chat.completion`` object. Stream (WIRE.md section 3): a role chunk first (sent
as soon as the run holds its slot, before Codex prints anything), content chunks, a finish chunk
with ``finish_reason: "stop"``, the usage chunk (``choices: []``) when
``stream_options.include_usage`` is set, then ``data: [DONE]``. Every chunk carries the same
``id``, ``object``, ``created`` and ``model``. A failure after the stream began is a
``data: {"error": {...}}`` frame and the end of the stream (no ``[DONE]``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import InvalidRequestError, ServiceError, UpstreamError
from ..http.sse import DONE, KEEPALIVE, EndOfRun, data_frame, next_event
from ..run.events import CodexEvent, MessageCompleted, TextDelta, Transcript, TurnCompleted
from ..run.runner import RunHandle
from .formats import check_schema


def new_completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)


def run_error(handle: RunHandle, transcript: Transcript) -> ServiceError | None:
    """Why the run failed, as the error the client should get; None on success."""
    if handle.error is not None:
        return handle.error
    failure = transcript.failure(handle.exit.exit_code, handle.exit.stderr)
    if failure is None:
        return None
    return UpstreamError(failure.message, status=failure.status, code=failure.code)


def answered(event: CodexEvent) -> bool:
    """The turn is complete: the answer and the usage are known (chat runs are ephemeral, so
    nothing is lost by not waiting for Codex to exit)."""
    return isinstance(event, TurnCompleted)


def completion_body(
    completion_id: str, created: int, model: str, transcript: Transcript, *, final_only: bool
) -> dict[str, Any]:
    usage = transcript.usage
    body: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": transcript.final_text if final_only else transcript.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage.to_chat()
    return body


class ChunkFramer:
    """Builds the chunks of one streamed completion (all share id, created, model)."""

    def __init__(self, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self.include_usage = include_usage

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

    def role(self) -> bytes:
        return self._chunk({"role": "assistant", "content": ""}, None)

    def content(self, text: str) -> bytes:
        return self._chunk({"content": text}, None)

    def finish(self, reason: str = "stop") -> bytes:
        return self._chunk({}, reason)

    def usage(self, transcript: Transcript) -> bytes:
        usage = (
            transcript.usage.to_chat()
            if transcript.usage is not None
            else {
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "total_tokens": 0,
            }
        )
        return data_frame({**self.base, "choices": [], "usage": usage})


async def stream_frames(
    handle: RunHandle,
    framer: ChunkFramer,
    *,
    keepalive: float,
    final_only: bool,
    on_end: Callable[[Transcript, ServiceError | None], None],
) -> AsyncIterator[bytes]:
    """The whole SSE body of a streamed completion."""
    transcript = Transcript()
    error: ServiceError | None = None
    yield framer.role()
    sent_any = False
    streamed_items: set[str] = set()
    try:
        while not isinstance(event := await next_event(handle, keepalive), EndOfRun):
            if event is None:
                yield KEEPALIVE
                continue
            transcript.feed(event)
            if isinstance(event, TurnCompleted):
                # Everything the client gets is here; Codex finishes exiting on its own.
                handle.detach()
                break
            if final_only:
                continue
            if isinstance(event, TextDelta) and event.delta:
                prefix = "\n\n" if sent_any and event.item_id not in streamed_items else ""
                streamed_items.add(event.item_id)
                sent_any = True
                yield framer.content(prefix + event.delta)
            elif (
                isinstance(event, MessageCompleted)
                and event.item_id not in streamed_items
                and event.text
            ):
                yield framer.content(("\n\n" if sent_any else "") + event.text)
                sent_any = True
        error = run_error(handle, transcript)
        if error is not None:
            yield data_frame(error.envelope())
            return
        if final_only and transcript.final_text:
            yield framer.content(transcript.final_text)
        yield framer.finish("stop")
        if framer.include_usage:
            yield framer.usage(transcript)
        yield DONE
    finally:
        on_end(transcript, error)


def json_object_instruction() -> str:
    """Appended to the prompt for ``response_format: {"type": "json_object"}``."""
    return "\n\nRespond with one JSON object and nothing else: no prose, no code fences."


def now() -> int:
    return int(time.time())


def output_schema(
    response_format: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, bool]:
    """``response_format`` to (schema for ``--output-schema``, answer is the last message only)."""
    if response_format is None:
        return None, False
    kind = response_format.get("type")
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequestError(
                "response_format.json_schema.schema must be a JSON Schema object.",
                param="response_format.json_schema.schema",
                code="invalid_value",
            )
        schema: dict[str, Any] = spec["schema"]
        check_schema(schema, param="response_format.json_schema.schema")
        return schema, True
    raise InvalidRequestError(
        f"response_format.type '{kind}' is not supported; use text, json_object or json_schema.",
        param="response_format.type",
        code="invalid_value",
    )
