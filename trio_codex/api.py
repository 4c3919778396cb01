"""The HTTP application: ``create_app(settings) -> QuartTrio``.

Thin routes over ``Service``; the guards (API key, rate limit) run before every route but
``/healthz``; every error, ours or Quart's, leaves as an OpenAI error envelope with the right
status; every response carries ``x-request-id``; one log line per request records id, model,
status, queue wait, run time, Codex's exit code and tokens. Routes are served with and without
the ``/v1`` prefix.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping

import trio
from quart import Response, g, request
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .codex.backends import make_backend
from .codex.command import child_environment
from .codex.exec import ExecBackend
from .codex.localonly import LocalOnlyPolicy, provider_env_keys
from .codex.models import ModelCatalog, discover_models
from .codex.reaper import Reaper
from .errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
)
from .http.body import RequestRecord, app_nursery, error_response, read_json_body
from .http.guards import RateLimiter, check_api_key, key_fingerprint, presented_key
from .http.responses import register_responses
from .http.sse import stream_response
from .openai import chat
from .openai.prompt import Prompt, chat_prompt
from .openai.schemas import ChatCompletionRequest, parse_model
from .run.events import Transcript
from .run.runner import Backend, CodexRunner
from .service import Service
from .settings import Settings

log = logging.getLogger("trio_codex")


def create_app(
    settings: Settings,
    *,
    backend: Backend | None = None,
    catalog: ModelCatalog | None = None,
    environ: Mapping[str, str] | None = None,
) -> QuartTrio:
    """The app. ``backend`` and ``catalog`` replace Codex in tests; by default the catalog is
    discovered from ``codex debug models`` when the server starts."""
    app = QuartTrio("trio_codex")
    app.config["RESPONSE_TIMEOUT"] = None  # streams end by our own deadlines, not Quart's 60 s
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.kill_grace + 1.0
    env = dict(os.environ if environ is None else environ)

    local_only = LocalOnlyPolicy(settings.codex_home, env) if settings.local_only else None
    reaper: Reaper | None = None
    if backend is None:
        # The reaper kills Codex's groups if this process dies without cleaning up (SIGKILL).
        reaper = Reaper(settle=settings.kill_grace + 1.0)
        backend = make_backend(
            settings,
            environ=env,
            extra_env_names=tuple(sorted(provider_env_keys(settings.codex_home))),
            on_spawn=reaper.register,
            on_reap=reaper.unregister,
        )
        app.extensions["trio_codex.codex.reaper"] = reaper
    runner = CodexRunner(
        backend,
        max_parallel=settings.max_parallel_requests,
        queue_timeout=settings.queue_timeout,
        exec_timeout=settings.timeout,
        idle_timeout=settings.idle_timeout,
    )
    service = Service(settings, runner, catalog or ModelCatalog([]), local_only=local_only)
    rate = RateLimiter(settings.rate_limit_per_minute)
    app.extensions["trio_codex"] = service

    reaper_scope = trio.CancelScope()

    async def _run_reaper(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if reaper is None:
            task_status.started()
            return
        with reaper_scope:
            await reaper.run(task_status=task_status)

    @app.after_serving
    async def _stop_reaper() -> None:
        # The reaper runs until told to stop; without this, every shutdown would wait out
        # BACKGROUND_TASK_SHUTDOWN_TIMEOUT. Runs still ending get their grace period first.
        with trio.move_on_after(settings.kill_grace + 1.0):
            await runner.running.wait_value(0)
        reaper_scope.cancel()

    @app.before_serving
    async def _startup() -> None:
        if reaper is not None:
            await app_nursery(app).start(_run_reaper)
        if catalog is None and isinstance(backend, ExecBackend):
            service.catalog = await discover_models(
                backend.binary,
                env={
                    **backend.binary_env,
                    **child_environment(env, codex_home=settings.codex_home),
                },
                codex_home=settings.codex_home,
            )
        if service.local_only is not None:
            verdict = service.local_only.verdict()
            if verdict.local:
                log.info(
                    "local-only: provider %s at %s is local", verdict.provider, verdict.base_url
                )
            else:
                log.error(
                    "CODEX_LOCAL_ONLY=1 but the Codex configuration is not local: %s. "
                    "Every request will be refused with 400 local_only_violation until "
                    "%s is fixed.",
                    verdict.reason,
                    settings.codex_home / "config.toml",
                )
        if os.geteuid() == 0 and settings.sandbox_mode != "read-only":
            log.warning(
                "running as root with CODEX_SANDBOX_MODE=%s: Codex commands can write as root",
                settings.sandbox_mode,
            )

    @app.before_request
    async def _guard() -> None:
        rid = "req_" + secrets.token_hex(12)
        g.record = RequestRecord(rid, request.method, request.path, trio.current_time())
        if request.path in ("/healthz", "/v1/healthz"):
            return
        key = check_api_key(settings.api_keys, presented_key(dict(request.headers.items())))
        bucket = key_fingerprint(key) if key is not None else f"addr:{request.remote_addr}"
        rate.check(bucket, trio.current_time())

    @app.after_request
    async def _finish(response: Response) -> Response:
        record: RequestRecord | None = g.get("record")
        if record is not None:
            response.headers["x-request-id"] = record.request_id
            record.status = response.status_code
            if (not record.stream or response.status_code != 200) and not record.deferred:
                record.emit()
        return response

    @app.errorhandler(ServiceError)
    async def _service_error(error: ServiceError) -> Response:
        record: RequestRecord | None = g.get("record")
        if record is not None:
            record.code = error.code
            record.stream = False
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        code = error.code or 500
        err: ServiceError
        if code == 404:
            err = NotFoundError(f"Invalid URL ({request.method} {request.path})", code=None)
        elif code == 405:
            err = MethodNotAllowedError(
                f"Method {request.method} is not allowed for {request.path}"
            )
        elif code == 413:
            err = PayloadTooLargeError(
                f"The request body is larger than the limit of {settings.max_body_bytes} bytes."
            )
        elif code == 408:
            err = ServiceError(
                "The request body did not arrive in time.", status=408, code="request_timeout"
            )
        elif 400 <= code < 500:
            err = InvalidRequestError(error.description or "Bad request", status=code)
        else:
            err = ServiceError(error.description or "Internal server error", status=code)
        return await _service_error(err)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        record: RequestRecord | None = g.get("record")
        rid = record.request_id if record is not None else "-"
        log.error("unexpected error in request %s", rid, exc_info=error)
        return await _service_error(
            ServiceError(f"The server had an error while processing your request ({rid}).")
        )

    @app.get("/healthz")
    async def healthz() -> ResponseReturnValue:
        limiter = runner.limiter
        return {
            "status": "ok",
            "running": limiter.borrowed_tokens,
            "queued": limiter.statistics().tasks_waiting,
            "slots": limiter.total_tokens,
        }

    @app.get("/v1/models")
    @app.get("/models")
    async def list_models() -> ResponseReturnValue:
        return {"object": "list", "data": [e.to_openai() for e in service.catalog.listed()]}

    @app.get("/v1/models/<path:model_id>")
    @app.get("/models/<path:model_id>")
    async def get_model(model_id: str) -> ResponseReturnValue:
        return service.catalog.resolve(model_id).to_openai()

    @app.post("/v1/chat/completions")
    @app.post("/chat/completions")
    async def chat_completions() -> ResponseReturnValue:
        record: RequestRecord = g.record
        body = await read_json_body(settings.max_body_bytes)
        req = parse_model(ChatCompletionRequest, body)
        record.model = req.model
        options = service.options(req.model, req.x_codex, req.reasoning_effort)
        prompt = chat_prompt(req.messages)
        schema, final_only = chat.output_schema(req.response_format)
        if req.response_format is not None and req.response_format.get("type") == "json_object":
            prompt = Prompt(prompt.text + chat.json_object_instruction(), prompt.images)
        spec, scratch = await service.prepare(prompt, options, output_schema=schema)
        handle = await service.start(app_nursery(app), spec, scratch)
        completion_id = chat.new_completion_id()
        created = chat.now()
        if req.stream:
            record.stream = True
            framer = chat.ChunkFramer(
                completion_id,
                created,
                req.model,
                include_usage=bool(req.stream_options and req.stream_options.include_usage),
            )

            def on_end(transcript: Transcript, error: ServiceError | None) -> None:
                if error is not None:
                    record.code = error.code
                if not record.defer_until_run_ends(handle, transcript, app_nursery(app)):
                    record.emit()

            frames = chat.stream_frames(
                handle,
                framer,
                keepalive=settings.keepalive_interval,
                final_only=final_only,
                on_end=on_end,
            )
            return stream_response(handle, frames)

        transcript = Transcript()
        try:
            await handle.consume(transcript.feed, until=chat.answered)
        finally:
            # The line itself is written by _finish (or later, for a detached run).
            record.defer_until_run_ends(handle, transcript, app_nursery(app))
        error = chat.run_error(handle, transcript)
        if error is not None:
            raise error
        return chat.completion_body(
            completion_id, created, req.model, transcript, final_only=final_only
        )

    register_responses(app, service)
    return app
