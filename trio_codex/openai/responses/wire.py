"""The Responses API on the wire: the ``Response`` object and its stream events, built from
Codex events. Pure: no IO, no clock but the one passed in.

``ResponseBuilder`` folds Codex events into output items and returns, for each event, the
stream events it causes; the same builder serves the non-streamed answer (its events are
dropped, its final snapshot is the body). Guarantees, checked against the official SDKs'
stream helpers and the OpenAPI spec (WIRE.md section 4):

* every event has ``type`` and a ``sequence_number`` that counts 0, 1, 2, ... with no gaps;
* output items are appended only: ``output_index`` counts 0, 1, 2, ... in ``output_item.added``
  order; every item event carries ``item_id`` equal to the item's ``id``;
* each item's events come in lifecycle order: ``output_item.added``, then
  ``content_part.added`` / ``reasoning_summary_part.added``, the deltas, the ``*.done`` events,
  and ``output_item.done``; every added item is done before the terminal event, and the
  terminal event's ``response.output`` lists exactly the done items, in order;
* reasoning (Codex ``reasoning`` items) becomes ``reasoning`` items with one ``summary_text``;
  each agent message becomes one ``message`` item with one ``output_text`` part
  (``annotations: []``, ``logprobs: []``); token deltas (``TextDelta``) stream into the open
  message of their Codex item; with ``final_only`` (structured output) only the last message
  is emitted, once the run has completed;
* a client tool call (``ToolCallStarted``) becomes a ``function_call`` item (``id`` "fc_...",
  ``call_id``, ``name``, ``arguments`` as JSON text, ``status: "completed"``) with
  ``output_item.added`` (arguments ""), one ``function_call_arguments.delta``, ``.done`` and
  ``output_item.done``, in the order the model made it, after the reasoning and messages
  before it. Once the run waits for the result of one of them, every call of that model
  response is known: the response is complete (``ResponsesRenderer.done``) with
  ``status: "completed"``, and the run is parked for the client's ``function_call_output``;
* with ``progress`` (``x_codex.progress``) each command Codex runs and each file change it
  applies (``progress.progress_note``) is a ``reasoning`` item too, when it happens;
* ``response.failed`` carries ``error.code`` from the spec's ``ResponseErrorCode`` enum
  (``failure_code``) and the message; ``error`` is null otherwise.

``ResponseStream`` adds the one ordering rule that depends on the id: ``response.created``
(first, as both SDK helpers require) is sent as soon as the id can be minted. A response on a
known thread (a continuation) or that will not be continued gets its id at once; a new
persisted conversation (or a branch, which gets a new thread) waits for Codex's
``thread.started`` (its first line), since the id carries the thread; on a backend that
reports turn ids (app-server) the id also waits for ``TurnStarted``, since it carries the turn
(a later ``previous_response_id`` may branch there).
"""

from __future__ import annotations

import copy
import dataclasses
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from ...errors import ServiceError
from ...run.events import (
    CodexEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ThreadStarted,
    ToolCallStarted,
    ToolCallWaiting,
    Transcript,
    TurnStarted,
    Usage,
)
from ...run.tools import ToolCall
from ..frames import event_frame
from ..progress import progress_note
from .ids import resume_error

Event = dict[str, Any]

#: ``ResponseErrorCode`` of the OpenAPI spec: the codes ``response.failed`` may carry.
SPEC_ERROR_CODES: Final = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)
_CODE_MAP: Final = {
    "insufficient_quota": "rate_limit_exceeded",
    "context_length_exceeded": "invalid_prompt",
    "image_url_not_allowed": "invalid_image_url",
}


def failure_code(code: str | None) -> str:
    """Our error code as a ``ResponseErrorCode`` (``server_error`` when nothing fits)."""
    if code in SPEC_ERROR_CODES:
        return code
    return _CODE_MAP.get(code or "", "server_error")


def responses_usage(usage: Usage) -> dict[str, Any]:
    """``usage`` of a Responses API response (every field the spec's ``ResponseUsage``
    requires, ``input_tokens_details.cache_write_tokens`` included)."""
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": usage.cache_write_input_tokens,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_output_tokens},
        "total_tokens": usage.total_tokens,
    }


def frames(events: list[Event]) -> bytes:
    """``event: <type>`` + ``data: <json>`` frames for ``events``."""
    return b"".join(event_frame(e["type"], e) for e in events)


def new_item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


@dataclasses.dataclass
class _OpenMessage:
    index: int
    item_id: str
    text: str = ""


class ResponseBuilder:
    """The output items and stream events of one response (see the module docstring)."""

    def __init__(
        self,
        fields: Mapping[str, Any],
        *,
        created_at: int,
        final_only: bool = False,
        progress: bool = False,
        clock: Callable[[], float] = time.time,
        item_id: Callable[[str], str] = new_item_id,
    ) -> None:
        self.fields = dict(fields)
        self.created_at = created_at
        self.final_only = final_only
        self.progress = progress
        self.response_id = ""
        self.status = "in_progress"
        self.error: dict[str, str] | None = None
        self.usage: dict[str, Any] | None = None
        self.completed_at: int | None = None
        self.output: list[dict[str, Any]] = []
        self.started = False
        self._clock = clock
        self._item_id = item_id
        self._seq = 0
        self._open: dict[str, _OpenMessage] = {}
        #: final_only: agent messages so far (Codex item id -> text), last completed last.
        self._answers: dict[str, str] = {}

    # ------------------------------------------------------------------ snapshots and events

    def snapshot(self) -> dict[str, Any]:
        """The ``Response`` object as it stands (every field the spec requires)."""
        body: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": self.status,
            "completed_at": self.completed_at,
            "error": copy.deepcopy(self.error),
            "incomplete_details": None,
            **copy.deepcopy(self.fields),
            "output": copy.deepcopy(self.output),
        }
        if self.usage is not None:
            body["usage"] = copy.deepcopy(self.usage)
        return body

    def _event(self, kind: str, **payload: Any) -> Event:
        event = {"type": kind, **copy.deepcopy(payload), "sequence_number": self._seq}
        self._seq += 1
        return event

    def start(self, response_id: str) -> list[Event]:
        """Fix the id; ``response.created`` and ``response.in_progress``."""
        self.response_id = response_id
        self.started = True
        return [
            self._event("response.created", response=self.snapshot()),
            self._event("response.in_progress", response=self.snapshot()),
        ]

    # ------------------------------------------------------------------ Codex events

    def feed(self, event: CodexEvent) -> list[Event]:
        """The stream events that ``event`` causes (none for most Codex events)."""
        match event:
            case TextDelta(item_id=key, delta=delta):
                if self.final_only:
                    self._answers[key] = self._answers.get(key, "") + delta
                    return []
                return self._delta(key, delta)
            case MessageCompleted(item_id=key, text=text):
                if self.final_only:
                    self._answers.pop(key, None)
                    self._answers[key] = text
                    return []
                return self._message(key, text)
            case ReasoningCompleted(text=text):
                return self._reasoning(text) if text.strip() else []
            case ToolCallStarted(call=call):
                return self._function_call(call)
            case ItemEvent() if self.progress:
                # x_codex.progress: what Codex runs and changes, as reasoning (progress.py).
                note = progress_note(event)
                return self._reasoning(note) if note else []
            case _:
                return []

    def _open_message(self, key: str) -> tuple[_OpenMessage, list[Event]]:
        message = _OpenMessage(len(self.output), self._item_id("msg"))
        item = {
            "id": message.item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }
        self.output.append(item)
        self._open[key] = message
        events = [
            self._event("response.output_item.added", output_index=message.index, item=item),
            self._event(
                "response.content_part.added",
                item_id=message.item_id,
                output_index=message.index,
                content_index=0,
                part=_text_part(""),
            ),
        ]
        return message, events

    def _text_delta(self, message: _OpenMessage, delta: str) -> Event:
        message.text += delta
        return self._event(
            "response.output_text.delta",
            item_id=message.item_id,
            output_index=message.index,
            content_index=0,
            delta=delta,
            logprobs=[],
        )

    def _delta(self, key: str, delta: str) -> list[Event]:
        if not delta:
            return []
        message = self._open.get(key)
        events: list[Event] = []
        if message is None:
            message, events = self._open_message(key)
        return [*events, self._text_delta(message, delta)]

    def _message(self, key: str, text: str) -> list[Event]:
        message = self._open.get(key)
        events: list[Event] = []
        if message is None:
            message, events = self._open_message(key)
        if text.startswith(message.text) and len(text) > len(message.text):
            events.append(self._text_delta(message, text[len(message.text) :]))
        message.text = text
        return events + self._close_message(key, "completed")

    def _close_message(self, key: str, status: str) -> list[Event]:
        message = self._open.pop(key)
        part = _text_part(message.text)
        item = {
            "id": message.item_id,
            "type": "message",
            "status": status,
            "role": "assistant",
            "content": [part],
        }
        self.output[message.index] = item
        where = {"item_id": message.item_id, "output_index": message.index, "content_index": 0}
        return [
            self._event("response.output_text.done", **where, text=message.text, logprobs=[]),
            self._event("response.content_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=message.index, item=item),
        ]

    def _reasoning(self, text: str) -> list[Event]:
        index = len(self.output)
        item_id = self._item_id("rs")
        self.output.append({"id": item_id, "type": "reasoning", "summary": []})
        part = {"type": "summary_text", "text": text}
        done = {"id": item_id, "type": "reasoning", "summary": [part]}
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        events = [
            self._event(
                "response.output_item.added",
                output_index=index,
                item={"id": item_id, "type": "reasoning", "summary": []},
            ),
            self._event(
                "response.reasoning_summary_part.added",
                **where,
                part={"type": "summary_text", "text": ""},
            ),
            self._event("response.reasoning_summary_text.delta", **where, delta=text),
            self._event("response.reasoning_summary_text.done", **where, text=text),
            self._event("response.reasoning_summary_part.done", **where, part=part),
            self._event("response.output_item.done", output_index=index, item=done),
        ]
        self.output[index] = done
        return events

    def _function_call(self, call: ToolCall) -> list[Event]:
        """A client tool call as a whole ``function_call`` item: added (arguments ""), the
        arguments in one delta, ``.done``, then the item done (``status: "completed"``)."""
        index = len(self.output)
        item_id = self._item_id("fc")
        item = {
            "id": item_id,
            "type": "function_call",
            "status": "in_progress",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": "",
        }
        done = {**item, "status": "completed", "arguments": call.arguments}
        self.output.append(done)
        where = {"item_id": item_id, "output_index": index}
        events = [self._event("response.output_item.added", output_index=index, item=item)]
        if call.arguments:
            events.append(
                self._event("response.function_call_arguments.delta", **where, delta=call.arguments)
            )
        return [
            *events,
            self._event(
                "response.function_call_arguments.done",
                **where,
                name=call.name,
                arguments=call.arguments,
            ),
            self._event("response.output_item.done", output_index=index, item=done),
        ]

    # ------------------------------------------------------------------ endings

    def complete(self, usage: Mapping[str, Any] | None) -> list[Event]:
        """Finish every item, emit the answer (``final_only``), then ``response.completed``."""
        events: list[Event] = []
        if self.final_only and self._answers:
            key, text = list(self._answers.items())[-1]
            self._answers.clear()
            events += self._message(key, text)
        for key in list(self._open):
            events += self._close_message(key, "completed")
        self.status = "completed"
        self.completed_at = int(self._clock())
        self.usage = dict(usage) if usage is not None else None
        events.append(self._event("response.completed", response=self.snapshot()))
        return events

    def fail(self, code: str | None, message: str) -> list[Event]:
        """Close open items as incomplete, then ``response.failed`` with a spec error code."""
        events: list[Event] = []
        for key in list(self._open):
            events += self._close_message(key, "incomplete")
        self._answers.clear()
        self.status = "failed"
        self.error = {"code": failure_code(code), "message": message}
        events.append(self._event("response.failed", response=self.snapshot()))
        return events


class ResponseStream:
    """The event order of one streamed response, with ``response.created`` first.

    ``mint(thread_id, turn_id)`` makes the response id. With ``await_thread`` the id waits for
    Codex's ``ThreadStarted`` (a new conversation, or a branch, that may be continued), with
    ``await_turn`` also for ``TurnStarted`` (whose turn id it carries); if anything else comes
    first, or the run ends before them, the id is minted with what is known (without a thread,
    that response cannot be continued, which is the truth: Codex reported no thread).
    """

    def __init__(
        self,
        builder: ResponseBuilder,
        mint: Callable[[str | None, str | None], str],
        *,
        thread_id: str | None,
        await_thread: bool,
        await_turn: bool = False,
    ) -> None:
        self.builder = builder
        self._mint = mint
        self._thread_id = thread_id
        self._await_thread = await_thread
        self._await_turn = await_turn

    def open(self) -> list[Event]:
        """The events to send once the run holds its slot (none while awaiting the thread)."""
        if self._await_thread or self._await_turn:
            return []
        return self.builder.start(self._mint(self._thread_id, None))

    def _ensure_started(self) -> list[Event]:
        if self.builder.started:
            return []
        return self.builder.start(self._mint(self._thread_id, None))

    def feed(self, event: CodexEvent) -> list[Event]:
        if not self.builder.started:
            if isinstance(event, ThreadStarted):
                if self._await_thread and event.thread_id:
                    self._thread_id = event.thread_id
                    self._await_thread = False
                if self._await_thread or self._await_turn:
                    return []
                return self._ensure_started()
            if isinstance(event, TurnStarted) and self._await_turn:
                return self.builder.start(self._mint(self._thread_id, event.turn_id))
        return self._ensure_started() + self.builder.feed(event)

    def complete(self, usage: Mapping[str, Any] | None) -> list[Event]:
        return self._ensure_started() + self.builder.complete(usage)

    def fail(self, code: str | None, message: str) -> list[Event]:
        return self._ensure_started() + self.builder.fail(code, message)


class ResponsesRenderer:
    """One run as a Responses API answer, streamed or whole.

    ``mint(thread_id, turn_id, totals)`` makes the response id. Streamed, the id is minted as
    soon as it can be (``ResponseStream``); whole, it is minted at the end with Codex's
    cumulative totals of the thread, so a later continuation has a usage baseline even without
    Codex's record. ``usage`` is the request's own: the run's total ``.since(baseline)`` (a
    resumed thread's total counts every earlier turn). A continued run's refusals from Codex
    (another writer, a thread that is gone) are reported as 409 / 404 (``ids.resume_error``).
    ``thread_id`` is the thread the run writes when known ahead (a resume); a new conversation
    or a branch (``continuing`` without ``thread_id``) takes the thread Codex reports.
    """

    detach_at_turn_end = False

    def __init__(
        self,
        builder: ResponseBuilder,
        mint: Callable[[str | None, str | None, Usage | None], str],
        *,
        streaming: bool,
        thread_id: str | None,
        await_thread: bool,
        baseline: Usage | None = None,
        await_turn: bool = False,
        continuing: bool | None = None,
    ) -> None:
        self.builder = builder
        self.streaming = streaming
        self.thread_id = thread_id
        self.continuing = thread_id is not None if continuing is None else continuing
        self.baseline = baseline or Usage()
        self.usage: Usage | None = None
        self.error: ServiceError | None = None
        self._mint = mint
        self._stream = ResponseStream(
            builder,
            lambda t, turn: mint(t, turn, None),
            thread_id=thread_id,
            await_thread=await_thread,
            await_turn=await_turn,
        )
        #: Client tool calls of this response, and whether the run now waits for their results.
        self.tool_calls: list[ToolCall] = []
        self._calls_ready = False
        #: The run's cumulative usage when this response completed (None: not reported).
        self.total: Usage | None = None

    @property
    def done(self) -> bool:
        """The model's tool calls ended the response before the turn did (the Responses API
        has no stop sequences)."""
        return self._calls_ready

    @property
    def waiting_calls(self) -> tuple[str, ...]:
        """The calls this response hands to the client (once the run waits for a result)."""
        return tuple(c.call_id for c in self.tool_calls) if self._calls_ready else ()

    def open(self) -> bytes:
        return frames(self._stream.open())

    def feed(self, event: CodexEvent) -> bytes:
        if self._calls_ready:
            return b""
        if isinstance(event, ToolCallStarted):
            self.tool_calls.append(event.call)
        elif isinstance(event, ToolCallWaiting):
            # A wait for a call this response did not make is for results already handed in
            # (a resumed run asks for them one by one).
            self._calls_ready = any(c.call_id == event.call_id for c in self.tool_calls)
            return b""
        if self.streaming:
            return frames(self._stream.feed(event))
        self.builder.feed(event)
        return b""

    def complete(self, transcript: Transcript) -> bytes:
        total = transcript.usage
        self.total = total
        if total is None and self._calls_ready:
            total = self.baseline  # Codex reports a response's usage after its tool calls
        self.usage = total.since(self.baseline) if total is not None else None
        wire = responses_usage(self.usage) if self.usage is not None else None
        if self.streaming:
            return frames(self._stream.complete(wire))
        self.builder.response_id = self._mint(
            self.thread_id or transcript.thread_id, transcript.turn_id, total
        )
        self.builder.complete(wire)
        return b""

    def fail(self, error: ServiceError) -> bytes:
        self.error = resume_error(error) if self.continuing else error
        if self.streaming:
            return frames(self._stream.fail(self.error.code, self.error.message))
        return b""

    def body(self) -> dict[str, Any]:
        return self.builder.snapshot()
