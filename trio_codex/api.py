"""The HTTP application: ``create_app(settings) -> QuartTrio``. Wiring only.

``create_app`` builds the components (backend, reaper, runner, service, thread locks, rate
limiter, readiness, metrics, request hooks), registers the routes (``http.chat``,
``http.responses``, ``http.ops``: ``/readyz``, ``/metrics``, ``/status``; models and ``/healthz``
here), and installs what holds for every request: the guards (API key, rate limit) before every
route but ``/healthz``, ``/readyz`` and, unless ``METRICS_REQUIRE_KEY=1``, ``/metrics`` and the
status page; every error, ours
or Quart's, leaves as an OpenAI error envelope with the right status; every response carries
``x-request-id``; one ``RequestOutcome`` per request goes to the hooks (``http.access``: the log
line; ``http.metrics``; ``http.live``, the status page's data). Routes are served with and without the ``/v1`` prefix (the operator's
endpoints but ``/readyz`` only without).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import Final

import trio
from quart import Response, g, request
from quart.typing import ResponseReturnValue
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from .codex.backends import CodexBackend, make_backend, serve_backend
from .codex.command import child_environment
from .codex.localonly import LocalOnlyPolicy, provider_env_keys
from .codex.models import ModelCatalog, build_catalog, configured_model, discover_models
from .codex.probe import codex_version
from .codex.reaper import Reaper
from .errors import (
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceError,
)
from .http.access import Caller, RequestHook, RequestRecord, current_record, log_request
from .http.asgi import ClosingHTTPConnection
from .http.body import error_response
from .http.chat import register_chat
from .http.completions import register_completions
from .http.guards import FailedAuthLimiter, RateLimiter, key_fingerprint, presented_key
from .http.live import LiveRequests
from .http.metrics import Metrics
from .http.ops import BASIC_CHALLENGE, OPS_ROUTES, basic_password, register_ops
from .http.responses import register_responses
from .readiness import Readiness, backend_name
from .run.runner import Backend, CodexRunner
from .run.threads import ThreadLocks
from .service import Service
from .settings import Settings

log = logging.getLogger("trio_codex")

#: How long ``codex debug models`` may take at startup before the configured model is served alone.
MODELS_TIMEOUT: Final = 30.0
_PUBLIC: Final = frozenset({"/healthz", "/v1/healthz", "/readyz", "/v1/readyz"})


@dataclasses.dataclass(frozen=True)
class Components:
    """What one app is made of (``components(app)``)."""

    service: Service
    runner: CodexRunner
    locks: ThreadLocks
    reaper: Reaper | None
    readiness: Readiness
    metrics: Metrics
    live: LiveRequests


def components(app: QuartTrio) -> Components:
    """The components of an app made by ``create_app``."""
    found: Components = app.extensions["trio_codex"]
    return found


def create_app(
    settings: Settings,
    *,
    backend: Backend | None = None,
    catalog: ModelCatalog | None = None,
    environ: Mapping[str, str] | None = None,
    hooks: Sequence[RequestHook] = (log_request,),
) -> QuartTrio:
    """The app. ``backend`` and ``catalog`` replace Codex in tests; by default the catalog is
    discovered from ``codex debug models`` when the server starts. ``hooks`` receive every
    request's outcome once."""
    app = QuartTrio("trio_codex")
    app.config["RESPONSE_TIMEOUT"] = None  # streams end by our own deadlines, not Quart's 60 s
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["BODY_TIMEOUT"] = settings.body_timeout  # read_json_body's deadline (408)
    app.asgi_http_class = ClosingHTTPConnection  # a 408 closes its connection (http/asgi.py)
    app.config["BACKGROUND_TASK_SHUTDOWN_TIMEOUT"] = settings.kill_grace + 1.0
    env = dict(os.environ if environ is None else environ)

    reaper: Reaper | None = None
    binary = None
    codex_backend: CodexBackend | None = None
    if backend is None:
        # The reaper kills Codex's groups if this process dies without cleaning up (SIGKILL).
        reaper = Reaper(settle=settings.kill_grace + 1.0)
        made = make_backend(
            settings,
            environ=env,
            extra_env_names=tuple(sorted(provider_env_keys(settings.codex_home))),
            on_spawn=reaper.register,
            on_reap=reaper.unregister,
        )
        backend, codex_backend, binary = made, made, (made.binary, made.binary_env)
    runner = CodexRunner(
        backend,
        max_parallel=settings.max_parallel_requests,
        queue_timeout=settings.queue_timeout,
        exec_timeout=settings.timeout,
        idle_timeout=settings.idle_timeout,
        network_wait=settings.network_wait,
        tool_result_timeout=settings.tool_result_timeout,
    )
    local_only = LocalOnlyPolicy(settings.codex_home, env) if settings.local_only else None
    service = Service(settings, runner, catalog or ModelCatalog([]), local_only=local_only)
    readiness = Readiness(
        service,
        runner,
        settings.backend if binary is not None else backend_name(backend),
        binary=None if binary is None else binary[0],
        reaper=reaper,
    )
    live = LiveRequests(quiet=_PUBLIC | OPS_ROUTES)
    metrics = Metrics(readiness, in_flight=lambda: live.count.value)
    hooks = (*hooks, metrics.observe, live.finished)
    runner.on_tool_timeout.append(metrics.tool_timeout)
    parts = Components(service, runner, ThreadLocks(), reaper, readiness, metrics, live)
    app.extensions["trio_codex"] = parts
    rate = RateLimiter(settings.rate_limit_per_minute)
    auth = FailedAuthLimiter(settings.api_keys)
    public = _PUBLIC if settings.metrics_require_key else _PUBLIC | OPS_ROUTES
    reaper_scope = trio.CancelScope()
    backend_scope = trio.CancelScope()
    backend_done = trio.Event()

    async def _run_reaper(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if reaper is None:
            task_status.started()
            return
        with reaper_scope:
            await reaper.run(task_status=task_status)

    async def _serve_backend(
        *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            with backend_scope:
                if codex_backend is None:
                    task_status.started()
                    return
                await serve_backend(codex_backend, task_status=task_status)
        finally:
            backend_done.set()

    @app.before_serving
    async def _startup() -> None:
        await app.nursery.start(_run_reaper)
        await app.nursery.start(_serve_backend)
        if binary is not None:
            path, binary_env = binary
            codex_env = {**binary_env, **child_environment(env, codex_home=settings.codex_home)}

            async def _version() -> None:
                readiness.version = await codex_version(path, env=codex_env)

            async def _models() -> None:
                found = None
                with trio.move_on_after(MODELS_TIMEOUT):
                    found = await discover_models(
                        path, env=codex_env, codex_home=settings.codex_home
                    )
                service.catalog = found or build_catalog("", configured_model(settings.codex_home))

            async with trio.open_nursery() as probes:
                probes.start_soon(_version)
                if catalog is None:
                    probes.start_soon(_models)
        readiness.started = True
        _log_startup(settings, service, readiness)

    @app.after_serving
    async def _stop_reaper() -> None:
        # The reaper runs until told to stop; without this, every shutdown would wait out
        # BACKGROUND_TASK_SHUTDOWN_TIMEOUT. Runs still ending get their grace period first;
        # runs parked for tool results would wait for a request that cannot come: end them.
        runner.abort_parked()
        with trio.move_on_after(settings.kill_grace + 1.0):
            await runner.running.wait_value(0)
        # Warm spares (and any adopted child) go after the runs, and before the reaper.
        backend_scope.cancel()
        with trio.move_on_after(settings.kill_grace + 1.0):
            await backend_done.wait()
        reaper_scope.cancel()

    @app.before_request
    async def _guard() -> None:
        record = RequestRecord(
            "req_" + secrets.token_hex(12),
            request.method,
            request.path,
            started=trio.current_time(),
            hooks=hooks,
            nursery=app.nursery,
        )
        record.route = request.url_rule.rule if request.url_rule is not None else None
        g.record = record
        live.opened(record)
        if request.path in public:
            return
        headers = dict(request.headers.items())
        presented = presented_key(headers)
        if presented is None and request.path in OPS_ROUTES:
            presented = basic_password(headers)
        key = auth.check(presented, request.remote_addr, trio.current_time())
        bucket = key_fingerprint(key) if key is not None else f"addr:{request.remote_addr}"
        g.caller = Caller(key, bucket)
        record.key = g.caller.label
        rate.check(bucket, trio.current_time())

    @app.after_request
    async def _stamp(response: Response) -> Response:
        record: RequestRecord | None = g.get("record")
        if record is not None:
            response.headers["x-request-id"] = record.request_id
            record.status = response.status_code
            record.responded()
        if response.status_code == 401 and request.path in OPS_ROUTES:
            response.headers["WWW-Authenticate"] = BASIC_CHALLENGE
        return response

    @app.teardown_request
    async def _close(_exc: BaseException | None) -> None:
        # Runs even for a handler cancelled by a disconnect, and must not await (it may run
        # with a cancellation pending). A streamed body reports its own end.
        record: RequestRecord | None = g.get("record")
        if record is not None and not record.body_pending:
            record.close()

    @app.errorhandler(ServiceError)
    async def _service_error(error: ServiceError) -> Response:
        record: RequestRecord | None = g.get("record")
        if record is not None:
            record.code = error.code
            record.body_pending = False
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        return await _service_error(_from_http(error, settings))

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
        current_record().model = model_id
        return service.catalog.resolve(model_id).to_openai()

    register_chat(app, service)
    register_completions(app, service)
    register_responses(app, service, parts.locks)
    register_ops(app, readiness, metrics, live)
    return app


def _from_http(error: HTTPException, settings: Settings) -> ServiceError:
    """Quart's own HTTP errors as OpenAI errors."""
    code = error.code or 500
    if code == 404:
        return NotFoundError(f"Invalid URL ({request.method} {request.path})", code=None)
    if code == 405:
        return MethodNotAllowedError(f"Method {request.method} is not allowed for {request.path}")
    if code == 413:
        return PayloadTooLargeError(
            f"The request body is larger than the limit of {settings.max_body_bytes} bytes."
        )
    if code == 408:
        return ServiceError(
            "The request body did not arrive in time.", status=408, code="request_timeout"
        )
    if 400 <= code < 500:
        return InvalidRequestError(error.description or "Bad request", status=code)
    return ServiceError(error.description or "Internal server error", status=code)


def _log_startup(settings: Settings, service: Service, readiness: Readiness) -> None:
    if readiness.binary is not None:
        log.info(
            "codex: %s (%s), backend %s",
            readiness.binary,
            readiness.version or "version unknown",
            readiness.backend,
        )
    if service.local_only is not None:
        verdict = service.local_only.verdict()
        if verdict.local:
            log.info("local-only: provider %s at %s is local", verdict.provider, verdict.base_url)
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
