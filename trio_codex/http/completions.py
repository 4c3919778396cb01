"""``POST /v1/completions`` (and ``/completions``): the legacy completions API over one run.

The same steps as chat (``http.chat``): validate, ``Service.options/prepare/start``, then answer
through a ``CompletionRenderer`` with the one stream loop.
"""

from __future__ import annotations

import contextlib

from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio

from ..openai.completions import CompletionRenderer, CompletionRequest, prompt_text
from ..openai.prompt import Prompt, Turn, check_not_empty
from ..openai.schemas import parse_model
from ..openai.stops import parse_stop
from ..service import Service
from .access import current_record
from .body import read_json_body
from .sse import answer_run, stream_response


def register_completions(app: QuartTrio, service: Service) -> None:
    """Add ``POST /v1/completions`` (and ``/completions``) to ``app``."""
    settings = service.settings

    @app.post("/v1/completions")
    @app.post("/completions")
    async def completions() -> ResponseReturnValue:
        record = current_record()
        body = await read_json_body(settings.max_body_bytes)
        req = parse_model(CompletionRequest, body)
        record.model = req.model
        options = service.options(req.model, req.x_codex)
        text = prompt_text(req)
        check_not_empty([Turn("user", text)], [], param="prompt")
        stop = parse_stop(req.stop)
        async with contextlib.AsyncExitStack() as resources:
            spec = await service.prepare(Prompt(text), options, resources, param="prompt")
            handle = await service.start(app.nursery, spec, resources)
        record.bind(handle)
        renderer = CompletionRenderer(
            req.model,
            echo=text if req.echo else "",
            stop=stop,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
        )
        if req.stream:
            return stream_response(handle, renderer, record, keepalive=settings.keepalive_interval)
        return await answer_run(handle, renderer, record)
