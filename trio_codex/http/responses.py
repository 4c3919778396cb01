"""``POST /v1/responses`` (and ``/responses``): the Responses API over one Codex run.

The route only sequences shared steps: validate (``openai.responses.request``), resolve the
previous response (``openai.responses.ids``), ``Service.options/prepare/start``, then answer
through a ``ResponsesRenderer`` with the one stream loop (``http.sse``).

Guarantees:

* every error before the stream begins (validation, unknown ``previous_response_id``, a busy
  conversation, queue timeout) is a plain HTTP error; after it began, a failure is a
  ``response.failed`` event and the end of the stream (never ``[DONE]``);
* a stream sends its first byte as soon as the run holds its slot: ``response.created`` and
  ``response.in_progress`` when the id is known then (continuations, ``store: false``), else
  a ``: keep-alive`` comment, with ``response.created`` following Codex's first line
  (``thread.started``); while Codex is silent the stream carries ``: keep-alive`` comments;
* a conversation is resumed by one run at a time in this process (409 ``conversation_busy``
  otherwise, also when Codex itself reports another writer); the thread is held by the run's
  lease, one of the run's resources, released once its process is gone;
* ``usage`` is the request's own, also on a resumed thread;
* threads are persisted unless a new conversation asks ``store: false``; continuations always
  write to their (already persisted) thread.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import trio
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

from ..codex.rollout import may_have_rollout, read_thread_totals
from ..openai.chat import now
from ..openai.responses.ids import (
    ResponseIdCodec,
    ResponseIdError,
    ResponseRef,
    key_binding,
    previous_not_found,
)
from ..openai.responses.request import echo_fields, parse_responses_request, plan_run
from ..openai.responses.wire import ResponseBuilder, ResponsesRenderer
from ..openai.tools import RESPONSES_NOT_YET, refuse_offered_tools
from ..run.events import Usage
from ..run.threads import RunLease, ThreadLocks
from ..service import Service
from .access import current_caller, current_record
from .body import read_json_body
from .sse import answer_run, stream_response


def register_responses(app: QuartTrio, service: Service, locks: ThreadLocks) -> None:
    """Add ``POST /v1/responses`` (and ``/responses``) to ``app``."""
    settings = service.settings
    codec = ResponseIdCodec(settings.response_id_secret)

    @app.post("/v1/responses")
    @app.post("/responses")
    async def create_response() -> ResponseReturnValue:
        record = current_record()
        body = await read_json_body(settings.max_body_bytes)
        req = parse_responses_request(body)
        record.model = req.model
        refuse_offered_tools(req.tools, req.tool_choice, RESPONSES_NOT_YET)
        binding = key_binding(current_caller().api_key)
        previous = _previous(codec, req.previous_response_id, binding)
        options = service.options(
            req.model, req.x_codex, req.reasoning.effort if req.reasoning else None
        )
        plan = plan_run(req)
        thread = previous.thread_id if previous is not None else None
        persist = thread is not None or req.store is not False

        lease = RunLease(locks)
        async with contextlib.AsyncExitStack() as resources:
            resources.callback(lease.release)
            baseline = Usage()
            if previous is not None and thread is not None:
                lease.claim(thread)
                baseline = await _baseline(settings.codex_home, thread, previous)
            spec = await service.prepare(
                plan.prompt,
                options,
                resources,
                param="input",
                output_schema=plan.output.schema,
                resume_thread_id=thread,
                persist=persist,
            )
            handle = await service.start(app.nursery, spec, resources)
        record.bind(handle)

        def mint(thread_id: str | None, totals: Usage | None) -> str:
            keep = thread_id if persist else None
            if keep is not None and keep != thread:
                lease.hold(keep)  # a new thread: nobody may resume it while this run writes it
            return codec.encode(ResponseRef(keep, totals), binding)

        renderer = ResponsesRenderer(
            ResponseBuilder(
                echo_fields(req, options.reasoning_effort),
                created_at=now(),
                final_only=plan.output.final_only,
            ),
            mint,
            streaming=bool(req.stream),
            thread_id=thread,
            await_thread=persist and thread is None,
            baseline=baseline,
        )
        if req.stream:
            return stream_response(handle, renderer, record, keepalive=settings.keepalive_interval)
        return await answer_run(handle, renderer, record)


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
    carries, else zero (see ``codex.rollout``)."""
    recorded = (
        await trio.to_thread.run_sync(read_thread_totals, codex_home, thread)
        if may_have_rollout(thread)
        else None
    )
    return recorded or previous.totals or Usage()
