"""``trio-codex`` / ``python -m trio_codex``: ``serve`` (also the bare command), ``doctor``,
``codex``.

``serve`` serves with Hypercorn on trio; its options (``trio_codex.options``) are ``--host``,
``--port``, ``--bind``, ``--workers`` (1 only), ``--log-level``, ``--graceful-timeout``,
``--env-file`` / ``--no-env-file`` and one per setting. The ``.env`` file and the options become
environment variables of this process before the settings are read, so they act exactly as
exported variables would. A bad value is one line on stderr and exit ``REFUSED`` (2).
Logs ``listening on http://host:port`` once the sockets are bound (``--port 0`` picks a
free port). On SIGINT or SIGTERM it stops accepting, gives in-flight requests
``--graceful-timeout`` seconds, then cancels them, which kills their Codex process groups
(SIGTERM, ``CODEX_KILL_GRACE_SECONDS``, SIGKILL). The first signal logs what it waits for and
how long; a second SIGINT or SIGTERM (Ctrl-C again) stops now: every run is cancelled, its
group killed, and the process exits 1. The process exits 0 within graceful timeout +
kill grace + 1 s, even when a client has stopped reading: Hypercorn's sends are shielded from
cancellation, so such a connection would hold the process for ever; after the deadline the runs
are stopped and the process exits anyway (the reaper sidecar sweeps anything left).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
from collections.abc import AsyncIterator
from functools import partial
from typing import NoReturn

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from . import options
from .api import components, create_app
from .logs import HYPERCORN_LOGGER, configure_logging
from .run.runner import CodexRunner
from .settings import Settings, SettingsError
from .startup import REFUSED, load_settings, resolve_backend
from .undumpable import make_undumpable

log = logging.getLogger("trio_codex")

#: Slack after graceful timeout + kill grace before a stuck server exits regardless.
HARD_STOP_SLACK = 0.5
#: How long after Hypercorn's graceful deadline the server cancels what Hypercorn could not.
CANCEL_MARGIN = 0.1


def connection_read_timeout(settings: Settings) -> int:
    """Seconds a connection may send nothing: above the longest request (body, queue, run)."""
    return math.ceil(settings.body_timeout + settings.queue_timeout + settings.timeout) + 30


def main(argv: list[str] | None = None) -> int:
    command = sys.argv[1:] if argv is None else argv
    if command[:1] == ["serve"]:
        return serve_main(command[1:])
    if command[:1] == ["doctor"]:  # `trio-codex doctor`: what is missing (trio_codex/doctor.py)
        from . import doctor

        return doctor.main(command[1:])
    if command[:1] == ["codex"]:  # `trio-codex codex ARGS`: the server's Codex and CODEX_HOME
        from .codex import passthrough

        return passthrough.main(command[1:])
    return serve_main(command)


def serve_main(argv: list[str]) -> int:
    """``trio-codex serve``: serve until SIGTERM/SIGINT; 0 after a graceful stop, ``REFUSED``
    (one line on stderr) when an option, the ``.env`` file or a setting is bad."""
    args = options.build_parser().parse_args(argv)  # bad usage: argparse's exit 2 (REFUSED)
    make_undumpable()  # no Codex command of the same user may read our environment or memory
    try:
        bind = options.bind_address(args)
        options.check_workers(args)
        environ = options.serve_environment(args, os.environ, options.read_env_file(args))
        # The settings, Codex's environment and any child see one environment.
        os.environ.update(environ)
        settings, version = load_settings()
    except SettingsError as exc:
        print(f"trio_codex: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return REFUSED
    configure_logging(settings, whole_process=True)
    level = getattr(logging, args.log_level.upper())
    logging.getLogger("trio_codex").setLevel(level)
    logging.getLogger(HYPERCORN_LOGGER).setLevel(level)
    log.info("Codex CLI: %s", version)
    settings = resolve_backend(settings, version)
    config = Config()
    config.bind = [bind]
    config.graceful_timeout = args.graceful_timeout
    config.accesslog = None
    config.errorlog = logging.getLogger(HYPERCORN_LOGGER)  # no handler of its own: no doubles
    # A connection that sends nothing for longer than any request can last is dropped
    # (Hypercorn's default: never); idle keep-alive connections already end after 5 s, and a
    # silent request body after CODEX_BODY_TIMEOUT_SECONDS (408).
    config.read_timeout = connection_read_timeout(settings)
    app = create_app(settings)
    try:
        trio.run(partial(_serve, app, config, kill_grace=settings.kill_grace))
    except (OSError, BaseExceptionGroup) as exc:
        unbound = _bind_error(exc)
        if unbound is None:
            raise
        # A socket that cannot be bound (in use, no such address, a privileged port): one
        # line, not a traceback.
        print(  # noqa: T201
            f"trio_codex: cannot listen on {bind}: {unbound.strerror or unbound}",
            file=sys.stderr,
        )
        return REFUSED
    return 0


def _bind_error(exc: BaseException) -> OSError | None:
    """The OSError a failed start consists of (alone or in exception groups), else None."""
    if isinstance(exc, BaseExceptionGroup):
        matched, rest = exc.split(OSError)
        if matched is None or rest is not None:
            return None
        leaf: BaseException = matched
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        exc = leaf
    return exc if isinstance(exc, OSError) else None


async def _serve(app: QuartTrio, config: Config, *, kill_grace: float) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully (in-flight requests get
    ``graceful_timeout``, then are cancelled, which kills their Codex process groups); exit
    by graceful timeout + ``kill_grace`` + 1 s whatever the clients do. The first signal logs
    what the server waits for and how long; a second one stops now (``_stop_now``)."""
    # One receiver for the whole life of the server: a second signal is never left to the
    # default handlers, however soon it follows the first.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        await _serve_until_stopped(app, config, signals, kill_grace=kill_grace)


async def _serve_until_stopped(
    app: QuartTrio, config: Config, signals: AsyncIterator[int], *, kill_grace: float
) -> None:
    stopping = trio.Event()
    served = trio.Event()
    runner = components(app).runner

    async def until_signal() -> None:
        """Hypercorn's shutdown trigger: the first SIGINT/SIGTERM, said in full."""
        async for signum in signals:
            name = signal.Signals(signum).name
            log.warning(
                "%s received: shutting down; waiting up to %g s (--graceful-timeout) for "
                "%d running request(s) and %d queued, then cancelling them and their Codex "
                "runs; %s again stops now",
                name,
                config.graceful_timeout,
                runner.running.value,
                runner.queued.value,
                "Ctrl-C" if signum == signal.SIGINT else name,
            )
            stopping.set()
            return

    async def on_second_signal() -> None:
        async for signum in signals:
            log.warning(
                "%s received again: stopping now (cancelling %d running request(s))",
                signal.Signals(signum).name,
                runner.running.value,
            )
            await _stop_now(runner, kill_grace)

    async def serving(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            async with trio.open_nursery() as inner:
                binds = await inner.start(
                    partial(serve, app, config, shutdown_trigger=until_signal)
                )
                task_status.started(binds)
        finally:
            served.set()

    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(serving)
        log.info("listening on %s", " ".join(binds))
        await stopping.wait()
        nursery.start_soon(on_second_signal)  # the same receiver: nothing is lost meanwhile
        # A little after Hypercorn's own deadline, so that its cancellation of the handlers
        # always comes first (a run we cut earlier would let its handler answer in full).
        with trio.move_on_after(config.graceful_timeout + CANCEL_MARGIN):
            await served.wait()
        if not served.is_set():
            # Hypercorn has cancelled the requests; what is left is stuck writing to a client
            # that does not read. Stop every run (their groups die within kill_grace).
            runner.cancel_all()
            with trio.move_on_after(kill_grace + HARD_STOP_SLACK - CANCEL_MARGIN):
                await served.wait()
        if not served.is_set():
            with trio.move_on_after(HARD_STOP_SLACK):
                await runner.running.wait_value(0)
            log.warning(
                "connections still open %.1f s after the graceful timeout (clients not "
                "reading); exiting anyway",
                kill_grace + HARD_STOP_SLACK,
            )
            logging.shutdown()
            os._exit(0)
        nursery.cancel_scope.cancel()  # the signal watcher


async def _stop_now(runner: CodexRunner, kill_grace: float) -> NoReturn:
    """Cancel every run (each Codex group: SIGTERM, ``kill_grace``, SIGKILL), wait for them,
    and exit 1 without waiting for the clients (the reaper sweeps anything left)."""
    runner.cancel_all()
    with trio.move_on_after(kill_grace + HARD_STOP_SLACK):
        await runner.running.wait_value(0)
    logging.shutdown()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
