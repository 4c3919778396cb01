"""``POST /v1/chat/completions`` (and ``/chat/completions``): chat completions over one run.

The route only sequences shared steps: validate (``openai.schemas``), flatten the messages
(``openai.prompt``), read ``response_format`` (``openai.formats``), ``Service.options/prepare/
start``, then answer through a ``ChatRenderer`` with the one stream loop (``http.sse``).
"""

from __future__ import annotations

import contextlib

from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

from ..openai.chat import ChatRenderer
from ..openai.formats import response_format
from ..openai.progress import wants_progress
from ..openai.prompt import Prompt, chat_prompt
from ..openai.schemas import ChatCompletionRequest, parse_model
from ..openai.stops import parse_stop
from ..openai.tools import (
    TOOL_PATH_HEADER,
    chat_tools,
    check_chat_tool_messages,
    choice_instruction,
    refuse_offered_tools,
    trailing_tool_outputs,
)
from ..run.runner import RunHandle
from ..service import Service
from .access import current_caller, current_record
from .body import read_json_body
from .sse import answer_run, stream_response


def register_chat(app: QuartTrio, service: Service) -> None:
    """Add ``POST /v1/chat/completions`` (and ``/chat/completions``) to ``app``."""
    settings = service.settings

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions() -> ResponseReturnValue:
        record = current_record()
        body = await read_json_body(settings.max_body_bytes)
        req = parse_model(ChatCompletionRequest, body)
        record.model = req.model
        if settings.backend != "app-server":
            refuse_offered_tools(req.tools, req.tool_choice)
        check_chat_tool_messages(req.messages)
        tools = chat_tools(req.tools, req.tool_choice)
        options = service.options(req.model, req.x_codex, req.reasoning_effort)
        output = response_format(req.response_format)
        stop = parse_stop(req.stop)
        prompt = chat_prompt(req.messages)
        prompt = Prompt(prompt.text + output.instruction + choice_instruction(tools), prompt.images)
        runner = service.runner
        # Whoever may resume a waiting turn: the API key (anyone when auth is off).
        owner = current_caller().label or "auth-off"
        outputs = trailing_tool_outputs(req.messages)
        resumed = runner.claim(owner, [o.call_id for o in outputs]) if tools else None
        if resumed is not None:
            resumed.resume(outputs)  # the turn that made the calls goes on
            handle = resumed
        else:
            async with contextlib.AsyncExitStack() as resources:
                spec = await service.prepare(
                    prompt,
                    options,
                    resources,
                    param="messages",
                    output_schema=output.schema,
                    tools=tools,
                )
                handle = await service.start(app.nursery, spec, resources)
        record.bind(handle)
        renderer = ChatRenderer(
            req.model,
            output,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            stop=stop,
            reasoning_display=(req.x_codex.reasoning_display if req.x_codex else None)
            or settings.reasoning_display,
            progress=wants_progress(req.x_codex, settings.progress),
        )
        # Tool results resume the waiting turn, else replay the conversation in a new one.
        headers = {}
        if outputs:
            headers[TOOL_PATH_HEADER] = "waiting" if resumed is not None else "replay"

        def park(run: RunHandle, call_ids: tuple[str, ...]) -> None:
            runner.park(run, owner, call_ids)

        waits = park if tools else None
        if req.stream:
            response = stream_response(
                handle, renderer, record, keepalive=settings.keepalive_interval, park=waits
            )
            response.headers.update(headers)
            return response
        return await answer_run(handle, renderer, record, park=waits), 200, headers
