"""The ``serve`` command line: an option for every setting, ``.env`` files, and the environment
they make together.

Every variable of ``settings.SETTINGS`` is also an option (``--sandbox-mode`` for
``CODEX_SANDBOX_MODE``, ``--api-key`` for ``PROXY_API_KEY``, ...), made from that table, so the
options and ``--help`` cannot drift from what ``Settings.from_env`` reads. An option wins over
the environment, the environment wins over the ``.env`` file (``./.env`` when present,
``--env-file PATH`` for another, ``--no-env-file`` for none). ``serve_environment`` returns the
environment the server then runs with: options are not parsed here but passed on as the strings
the variables would hold, so ``Settings.from_env`` validates them, once, the same way. Pure but
for reading the ``.env`` file.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from dotenv import dotenv_values

from .settings import SETTINGS, SettingsError

#: The options of the ``serve`` command that are not settings.
DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 8000
DEFAULT_ENV_FILE: Final = Path(".env")
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

#: Why ``--workers`` above 1 is refused (measured with Hypercorn 0.18, see docs/serve.md).
WORKERS_REFUSAL: Final = (
    "--workers above 1 is not supported: Hypercorn's multi-worker master sends SIGTERM to "
    "every worker still running as soon as the first one has stopped, so a worker still "
    "finishing its requests is killed and its clients get no answer; run one server per "
    "port (or per container) behind a load balancer instead"
)


def _setting_help(env: str, default: str, meaning: str) -> str:
    return f"{meaning} [env {env}; default: {default}]".replace("%", "%%")


def build_parser(prog: str = "trio-codex serve") -> argparse.ArgumentParser:
    """The parser of ``trio-codex serve`` (also of the bare ``trio-codex``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Serve the OpenAI-compatible API with Hypercorn on trio. Every setting is an option, "
            "an environment variable, or a line of a .env file; an option wins over the "
            "environment, which wins over the .env file."
        ),
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", help=f"address to listen on (default {DEFAULT_HOST})")
    server.add_argument(
        "--port", type=int, help=f"port to listen on; 0 picks a free one (default {DEFAULT_PORT})"
    )
    server.add_argument(
        "--bind", help="host:port to listen on, instead of --host and --port (IPv6: [::1]:8000)"
    )
    server.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes (default %(default)s; only 1 is supported, see docs/serve.md)",
    )
    server.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="default %(default)s"
    )
    server.add_argument(
        "--graceful-timeout",
        type=float,
        default=10.0,
        help="seconds in-flight requests get after SIGTERM/SIGINT (default %(default)s)",
    )
    env_file = server.add_mutually_exclusive_group()
    env_file.add_argument(
        "--env-file",
        type=Path,
        help=f"read settings from this file (default: {DEFAULT_ENV_FILE} when present)",
    )
    env_file.add_argument(
        "--no-env-file", action="store_true", help=f"do not read {DEFAULT_ENV_FILE}"
    )
    settings = parser.add_argument_group(
        "settings", "each also an environment variable (named in brackets with its default)"
    )
    for doc in SETTINGS:
        help_text = _setting_help(doc.env, doc.default, doc.meaning)
        if doc.flag:
            settings.add_argument(
                doc.option, dest=doc.env, nargs="?", const="1", metavar="0|1", help=help_text
            )
        else:
            settings.add_argument(doc.option, dest=doc.env, metavar="VALUE", help=help_text)
    return parser


def bind_address(args: argparse.Namespace) -> str:
    """The one ``host:port`` to listen on; ``SettingsError`` for contradicting options."""
    if args.bind is not None:
        if args.host is not None or args.port is not None:
            raise SettingsError("--bind: give either --bind or --host/--port, not both")
        return str(args.bind)
    host = DEFAULT_HOST if args.host is None else str(args.host)
    port = DEFAULT_PORT if args.port is None else int(args.port)
    if not 0 <= port <= 65535:
        raise SettingsError(f"--port: {port} is not a port number (0 to 65535)")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def check_workers(args: argparse.Namespace) -> None:
    """``SettingsError`` unless ``--workers`` is 1 (see ``WORKERS_REFUSAL``)."""
    if args.workers < 1:
        raise SettingsError(f"--workers: {args.workers} is below the minimum of 1")
    if args.workers > 1:
        raise SettingsError(f"--workers {args.workers}: {WORKERS_REFUSAL}")


def read_env_file(args: argparse.Namespace, cwd: Path | None = None) -> dict[str, str]:
    """The variables of the ``.env`` file the options choose ({} when none)."""
    if args.no_env_file:
        return {}
    path: Path = args.env_file if args.env_file is not None else DEFAULT_ENV_FILE
    if cwd is not None and not path.is_absolute():
        path = cwd / path
    if not path.is_file():
        if args.env_file is not None:
            raise SettingsError(f"--env-file: {str(path)!r} is not a readable file")
        return {}
    try:
        values = dotenv_values(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"--env-file: cannot read {str(path)!r}: {exc}") from None
    return {name: value for name, value in values.items() if value is not None}


def setting_options(args: argparse.Namespace) -> dict[str, str]:
    """The settings given as options, by variable name."""
    given = {doc.env: getattr(args, doc.env) for doc in SETTINGS}
    return {name: value for name, value in given.items() if value is not None}


def serve_environment(
    args: argparse.Namespace, environ: Mapping[str, str], env_file: Mapping[str, str]
) -> dict[str, str]:
    """The environment to serve with: ``env_file``, then ``environ`` over it, then the options
    over both."""
    return {**env_file, **environ, **setting_options(args)}
