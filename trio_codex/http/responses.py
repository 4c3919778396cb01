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
* ``previous_response_id`` naming the thread's latest turn resumes the thread; naming an older
  turn branches it (app-server ``thread/fork``; a 400 naming ``previous_response_id`` on the
  exec backend, which cannot fork at a turn); see ``run.threads.plan_continuation``;
* a conversation is resumed by one run at a time in this process (409 ``conversation_busy``
  otherwise, also when Codex itself reports another writer); the thread is held by the run's
  lease, one of the run's resources, released once its process is gone; branches take no lock
  on their source, only on the new thread they write;
* ``usage`` is the request's own, also on a resumed or branched thread;
* threads are persisted unless a new conversation asks ``store: false``; continuations always
  write to their (already persisted) thread;
* client tools (``tools``, app-server only; ``exec`` refuses them with 400
  ``unsupported_parameter``): a response whose model calls them ends with its
  ``function_call`` items and parks the run, holding its slot and its thread, for up to
  ``CODEX_TOOL_RESULT_TIMEOUT``. A request of the same key whose trailing
  ``function_call_output`` items answer exactly those calls resumes it (the waiting path,
  ``x-trio-codex-tool-path: waiting``; the thread lock does not refuse it): its response is the
  rest of the turn, with its own id, continuable, and its own usage. Otherwise the results are
  replayed (``replay``): in a new thread whose prompt carries the history, or, with
  ``previous_response_id``, as the next user input of that thread (``thread/resume``). Results
  that nothing reachable asked for, or that answer a waiting turn's calls only in part, are a
  400 naming the field before any process starts (``WaitingResponses``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path

import trio
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

from ..codex.rollout import ThreadRecord, may_have_rollout, read_thread_record
from ..errors import InvalidRequestError
from ..openai.chat import now
from ..openai.progress import wants_progress
from ..openai.responses.ids import (
    ResponseIdCodec,
    ResponseIdError,
    ResponseRef,
    key_binding,
    previous_not_found,
)
from ..openai.responses.request import (
    check_orphan_outputs,
    echo_fields,
    parse_responses_request,
    plan_run,
)
from ..openai.responses.wire import ResponseBuilder, ResponsesRenderer
from ..openai.tools import TOOL_PATH_HEADER, refuse_offered_tools, responses_tools
from ..run.events import Usage
from ..run.runner import CodexRunner, RunHandle
from ..run.threads import RunLease, ThreadLocks, branching_unsupported, plan_continuation
from ..run.tools import ToolOutput
from ..service import Service
from .access import current_caller, current_record
from .body import read_json_body
from .sse import answer_run, stream_response


def register_responses(app: QuartTrio, service: Service, locks: ThreadLocks) -> None:
    """Add ``POST /v1/responses`` (and ``/responses``) to ``app``."""
    settings = service.settings
    codec = ResponseIdCodec(settings.response_id_secret)
    waiting = WaitingResponses()

    @app.post("/v1/responses")
    @app.post("/responses")
    async def create_response() -> ResponseReturnValue:
        record = current_record()
        body = await read_json_body(settings.max_body_bytes)
        req = parse_responses_request(body)
        record.model = req.model
        if settings.backend != "app-server":
            refuse_offered_tools(req.tools, req.tool_choice)
        tools = responses_tools(req.tools, req.tool_choice)
        caller = current_caller()
        binding = key_binding(caller.api_key)
        previous = _previous(codec, req.previous_response_id, binding)
        options = service.options(
            req.model, req.x_codex, req.reasoning.effort if req.reasoning else None
        )
        plan = plan_run(req)
        thread = previous.thread_id if previous is not None else None
        # Whoever may resume a waiting turn: the API key (anyone when auth is off).
        owner = caller.label or "auth-off"
        parked = waiting.claim(service.runner, owner, plan.outputs, thread)
        if parked is None and thread is None:
            check_orphan_outputs(plan)  # nothing this request can reach made those calls
        echo = echo_fields(req, options.reasoning_effort)
        turn_ids = settings.backend == "app-server"  # codex exec reports no turn ids
        branch: str | None = None
        known_turn: str | None = None
        if parked is not None:
            # The turn that made the calls goes on; its run keeps holding its thread.
            known_turn = parked.handle.transcript.turn_id
            parked.handle.resume(list(plan.outputs))
            handle = parked.handle
            thread, persist, baseline = parked.thread_id, parked.persist, parked.total
            lease = RunLease(locks)  # holds nothing: the waiting run's lease keeps the thread
        else:
            persist = thread is not None or req.store is not False
            lease = RunLease(locks)
            async with contextlib.AsyncExitStack() as resources:
                resources.callback(lease.release)
                baseline = Usage()
                if previous is not None and thread is not None:
                    recorded = await _thread_record(settings.codex_home, thread)
                    latest = recorded.last_turn_id if recorded is not None else None
                    branch = plan_continuation(
                        thread,
                        previous.turn_id,
                        latest_turn_id=latest,
                        resuming_from=locks.resuming_from(thread),
                    ).fork_at
                    if branch is None:
                        lease.claim(thread, previous.turn_id or latest)
                        totals = recorded.totals if recorded is not None else None
                        baseline = totals or previous.totals or Usage()
                    elif not turn_ids:
                        raise branching_unsupported()
                spec = await service.prepare(
                    plan.prompt,
                    options,
                    resources,
                    param="input",
                    output_schema=plan.output.schema,
                    resume_thread_id=thread,
                    fork_at_turn=branch,
                    persist=persist,
                    tools=tools,
                )
                handle = await service.start(app.nursery, spec, resources)
        record.bind(handle)

        def mint(thread_id: str | None, turn_id: str | None, totals: Usage | None) -> str:
            keep = thread_id if persist else None
            if keep is not None and keep != thread:
                lease.hold(keep)  # a new thread: nobody may resume it while this run writes it
            # A branch's usage is its turn's own; Codex's total of the new thread also counts
            # the history it inherited, so the id carries no totals for it.
            carried = totals if branch is None else None
            turn = (turn_id or known_turn) if keep is not None else None
            return codec.encode(ResponseRef(keep, carried, turn_id=turn), binding)

        resumed = thread if branch is None else None

        renderer = ResponsesRenderer(
            ResponseBuilder(
                echo,
                created_at=now(),
                final_only=plan.output.final_only,
                progress=wants_progress(req.x_codex, settings.progress),
            ),
            mint,
            streaming=bool(req.stream),
            thread_id=resumed,
            await_thread=persist and resumed is None,
            # A waiting turn goes on: no new turn starts, its id is known.
            await_turn=persist and turn_ids and parked is None,
            continuing=thread is not None,
            baseline=baseline,
        )

        def park(run: RunHandle, call_ids: tuple[str, ...]) -> None:
            total = run.transcript.usage or renderer.baseline
            waiting.park(service.runner, run, owner, call_ids, persist, total)

        headers = {}
        if plan.outputs:
            headers[TOOL_PATH_HEADER] = "waiting" if parked is not None else "replay"
        if req.stream:
            response = stream_response(
                handle, renderer, record, keepalive=settings.keepalive_interval, park=park
            )
            response.headers.update(headers)
            return response
        return await answer_run(handle, renderer, record, park=park), 200, headers


@dataclasses.dataclass(frozen=True)
class ParkedResponse:
    """A run whose response handed tool calls to the client, waiting for their results."""

    handle: RunHandle
    owner: str
    calls: tuple[str, ...]
    #: The run's thread, and whether responses on it may be continued.
    thread_id: str | None
    persist: bool
    #: The run's cumulative usage when it was parked: the continuation's usage baseline.
    total: Usage


class WaitingResponses:
    """The Responses side of parked runs (the runner's registry holds the runs themselves):
    the thread, usage baseline and calls of each, so that a continuation can resume a waiting
    turn on the thread it holds, and a mismatch is refused before any process starts.

    ``claim`` guarantees: the waiting run is resumed only by its owner, only with results for
    exactly its calls (any order), and only on its own thread when ``previous_response_id``
    names one; results that answer some of a waiting run's calls but not exactly those, or
    that continue a thread whose turn waits for other calls, are a 400 naming ``input``.
    """

    def __init__(self) -> None:
        self._runs: dict[int, ParkedResponse] = {}

    def park(
        self,
        runner: CodexRunner,
        handle: RunHandle,
        owner: str,
        calls: tuple[str, ...],
        persist: bool,
        total: Usage,
    ) -> None:
        self._prune()
        runner.park(handle, owner, calls)
        if handle.parked:
            thread = handle.transcript.thread_id
            self._runs[id(handle)] = ParkedResponse(handle, owner, calls, thread, persist, total)

    def _prune(self) -> None:
        for key, parked in list(self._runs.items()):
            if not parked.handle.parked or parked.handle.done.is_set():
                del self._runs[key]

    def claim(
        self,
        runner: CodexRunner,
        owner: str,
        outputs: Sequence[ToolOutput],
        thread: str | None,
    ) -> ParkedResponse | None:
        self._prune()
        answered = [o.call_id for o in outputs]
        mine = [p for p in self._runs.values() if p.owner == owner]
        touched = next((p for p in mine if set(p.calls) & set(answered)), None)
        on_thread = next((p for p in mine if thread is not None and p.thread_id == thread), None)
        target = touched or on_thread
        if target is None or not answered:
            return None  # a message on a parked thread: the thread lock answers (409)
        if sorted(target.calls) != sorted(answered) or (
            thread is not None and target.thread_id != thread
        ):
            raise InvalidRequestError(
                "Invalid value for 'input': a response of yours waits for the results of the "
                f"calls {', '.join(target.calls)}; this input's trailing function_call_output "
                f"items answer {', '.join(answered) or 'none'}. Answer exactly those calls, "
                "in one request (on the thread of the response that made them).",
                param="input",
                code="invalid_value",
            )
        if runner.claim(owner, answered) is not target.handle:
            return None
        del self._runs[id(target.handle)]
        return target


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


async def _thread_record(codex_home: Path, thread: str) -> ThreadRecord | None:
    """Codex's record of the thread (its usage so far and its latest turn; see
    ``codex.rollout``), or None when there is none to read."""
    if not may_have_rollout(thread):
        return None
    return await trio.to_thread.run_sync(read_thread_record, codex_home, thread)
