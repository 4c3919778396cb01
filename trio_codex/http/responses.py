"""``POST /v1/responses`` (and ``/responses``): the Responses API over one Codex run.

The route only sequences shared steps: validate (``responses_request``), resolve the previous
response (``conversation``), ``Service.options/prepare/start``, then fold the run's events
through a ``ResponseBuilder`` (``responses_wire``), streamed as SSE or returned as one object.

Guarantees:

* every error before the stream begins (validation, unknown ``previous_response_id``, a busy
  conversation, queue timeout) is a plain HTTP error; after it began, a failure is a
  ``response.failed`` event and the end of the stream (never ``[DONE]``);
* a stream sends its first byte as soon as the run holds its slot: ``response.created`` and
  ``response.in_progress`` when the id is known then (continuations, ``store: false``), else
  a ``: keep-alive`` comment, with ``response.created`` following Codex's first line
  (``thread.started``); while Codex is silent the stream carries ``: keep-alive`` comments;
* a conversation is resumed by one run at a time in this process (409 ``conversation_busy``
  otherwise, also when Codex itself reports another writer); the thread is held until the run
  is over and its process is gone;
* ``usage`` is the request's own, also on a resumed thread (see ``conversation``);
* threads are persisted (no ``--ephemeral``) unless a new conversation asks ``store: false``;
  continuations always write to their (already persisted) thread.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio
from quart import g, request
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

from ..errors import ServiceError
from ..openai.chat import now, run_error
from ..openai.responses.ids import (
    ResponseIdCodec,
    ResponseIdError,
    ResponseRef,
    RunLease,
    ThreadLocks,
    key_binding,
    may_have_rollout,
    previous_not_found,
    read_thread_totals,
    resume_error,
    usage_since,
)
from ..openai.responses.request import echo_fields, parse_responses_request, plan_run
from ..openai.responses.wire import Event, ResponseBuilder, ResponseStream
from ..run.events import CodexEvent, Transcript, Usage
from ..run.runner import RunHandle
from ..service import Service
from .body import RequestRecord, app_nursery, read_json_body
from .guards import check_api_key, presented_key
from .sse import KEEPALIVE, EndOfRun, event_frame, next_event, stream_response

log = logging.getLogger("trio_codex.http.responses")


def frames(events: list[Event]) -> bytes:
    """``event: <type>`` + ``data: <json>`` frames for ``events``."""
    return b"".join(event_frame(e["type"], e) for e in events)


def register_responses(app: QuartTrio, service: Service) -> None:
    """Add ``POST /v1/responses`` (and ``/responses``) to ``app``."""
    settings = service.settings
    codec = ResponseIdCodec(settings.response_id_secret)
    locks = ThreadLocks()
    app.extensions["trio_codex.thread_locks"] = locks

    @app.post("/v1/responses")
    @app.post("/responses")
    async def create_response() -> ResponseReturnValue:
        record: RequestRecord = g.record
        body = await read_json_body(settings.max_body_bytes)
        req = parse_responses_request(body)
        record.model = req.model
        binding = key_binding(
            check_api_key(settings.api_keys, presented_key(dict(request.headers.items())))
        )
        previous = _previous(codec, req.previous_response_id, binding)
        options = service.options(
            req.model, req.x_codex, req.reasoning.effort if req.reasoning else None
        )
        plan = plan_run(req)
        thread = previous.thread_id if previous is not None else None
        persist = thread is not None or req.store is not False

        lease = RunLease(locks)
        try:
            baseline = Usage()
            if previous is not None and thread is not None:
                lease.claim(thread)
                baseline = await _baseline(settings.codex_home, thread, previous)
            spec, scratch = await service.prepare(
                plan.prompt,
                options,
                output_schema=plan.output_schema,
                resume_thread_id=thread,
                persist=persist,
            )
            handle = await service.start(app_nursery(app), spec, scratch)
        except BaseException:
            lease.release()
            raise
        app_nursery(app).start_soon(_release_when_done, handle, lease)

        builder = ResponseBuilder(
            echo_fields(req, options.reasoning_effort),
            created_at=now(),
            final_only=plan.final_only,
        )

        def mint(thread_id: str | None, totals: Usage | None = None) -> str:
            keep = thread_id if persist else None
            if keep is not None and keep != thread:
                lease.hold(keep)  # a new thread: nobody may resume it while this run writes it
            return codec.encode(ResponseRef(keep, totals), binding)

        def outcome(transcript: Transcript) -> tuple[ServiceError | None, Usage | None]:
            error = run_error(handle, transcript)
            if error is not None and thread is not None:
                error = resume_error(error)
            usage = transcript.usage
            if usage is not None:
                usage = usage_since(usage, baseline)
            return error, usage

        if req.stream:
            record.stream = True
            stream = ResponseStream(
                builder, mint, thread_id=thread, await_thread=persist and thread is None
            )

            def on_end(
                transcript: Transcript, error: ServiceError | None, usage: Usage | None
            ) -> None:
                record.from_run(handle, transcript)
                if usage is not None:
                    record.tokens = usage.total_tokens
                if error is not None:
                    record.code = error.code
                record.emit()

            body_frames = _stream_frames(
                handle, stream, outcome, keepalive=settings.keepalive_interval, on_end=on_end
            )
            return stream_response(handle, body_frames)

        transcript = Transcript()

        def feed(event: CodexEvent) -> None:
            transcript.feed(event)
            builder.feed(event)

        try:
            await handle.consume(feed)
        finally:
            record.from_run(handle, transcript)
        error, usage = outcome(transcript)
        if error is not None:
            raise error
        await handle.done.wait()
        lease.release()
        if usage is not None:
            record.tokens = usage.total_tokens
        builder.response_id = mint(thread or transcript.thread_id, transcript.usage)
        builder.complete(usage.to_responses() if usage is not None else None)
        return builder.snapshot()


def _previous(
    codec: ResponseIdCodec, response_id: str | None, binding: bytes
) -> ResponseRef | None:
    """The previous response a request continues (404 unless it is ours, for this key, and
    continuable)."""
    if response_id is None:
        return None
    try:
        previous = codec.decode(response_id, binding)
    except ResponseIdError:
        raise previous_not_found() from None
    if previous.thread_id is None:
        raise previous_not_found(
            "Previous response cannot be continued: it was created with store: false "
            "(or Codex reported no conversation for it)."
        )
    return previous


async def _baseline(codex_home: Path, thread: str, previous: ResponseRef) -> Usage:
    """The thread's usage before this run: Codex's own record, else what the previous id
    carries, else zero (see ``conversation``)."""
    recorded = (
        await trio.to_thread.run_sync(read_thread_totals, codex_home, thread)
        if may_have_rollout(thread)
        else None
    )
    return recorded or previous.totals or Usage()


async def _release_when_done(handle: RunHandle, lease: RunLease) -> None:
    """Free the run's threads once its process is gone (also if the server shuts down)."""
    try:
        await handle.done.wait()
    finally:
        lease.release()


async def _stream_frames(
    handle: RunHandle,
    stream: ResponseStream,
    outcome: Callable[[Transcript], tuple[ServiceError | None, Usage | None]],
    *,
    keepalive: float,
    on_end: Callable[[Transcript, ServiceError | None, Usage | None], None],
) -> AsyncIterator[bytes]:
    """The whole SSE body of a streamed response."""
    transcript = Transcript()
    error: ServiceError | None = None
    usage: Usage | None = None
    try:
        yield frames(stream.open()) or KEEPALIVE
        while not isinstance(event := await next_event(handle, keepalive), EndOfRun):
            if event is None:
                yield KEEPALIVE
                continue
            transcript.feed(event)
            events = stream.feed(event)
            if events:
                yield frames(events)
        error, usage = outcome(transcript)
        if error is not None:
            yield frames(stream.fail(error.code, error.message))
            return
        yield frames(stream.complete(usage.to_responses() if usage is not None else None))
    finally:
        on_end(transcript, error, usage)
