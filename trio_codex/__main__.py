"""``python -m trio_codex``: serve with Hypercorn on trio (``--bind``, ``--graceful-timeout``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from .api import create_app
from .settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_codex", description=__doc__)
    parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port (default %(default)s)")
    parser.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds in-flight requests get after SIGTERM/SIGINT (default %(default)s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"trio_codex: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    config = Config()
    config.bind = [args.bind]
    config.graceful_timeout = args.graceful_timeout
    config.accesslog = None
    app = create_app(settings)
    trio.run(_serve, app, config)
    return 0


async def _serve(app: object, config: Config) -> None:
    """Serve until SIGINT or SIGTERM, then shut down gracefully (in-flight requests get
    ``graceful_timeout``, then are cancelled, which kills their Codex process groups)."""

    async def until_signal() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                logging.getLogger("trio_codex").info(
                    "%s received: shutting down", signal.Signals(signum).name
                )
                return

    await serve(app, config, shutdown_trigger=until_signal)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
