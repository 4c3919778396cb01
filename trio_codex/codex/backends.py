"""Which backend runs Codex: ``make_backend`` picks it from the settings (``CODEX_BACKEND``).

Every backend spawns Codex in its own process group, with the allowlisted environment, and calls
``on_spawn(pgid)`` / ``on_reap(pgid)`` so the reaper knows every live group. Both expose
``binary`` (the native Codex binary) and ``binary_env`` (what the npm launcher would have set),
which the app uses to run ``codex debug models``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import trio

from ..settings import Settings
from .app_server import AppServerBackend
from .app_server_check import check_app_server
from .exec import ExecBackend

CodexBackend = ExecBackend | AppServerBackend

log = logging.getLogger("trio_codex")


def make_backend(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    extra_env_names: tuple[str, ...],
    on_spawn: Callable[[int], None] | None = None,
    on_reap: Callable[[int], None] | None = None,
) -> CodexBackend:
    """``AppServerBackend`` for ``CODEX_BACKEND=app-server``, else ``ExecBackend``."""
    kind = AppServerBackend if settings.backend == "app-server" else ExecBackend
    return kind(
        settings,
        environ=environ,
        extra_env_names=extra_env_names,
        on_spawn=on_spawn,
        on_reap=on_reap,
    )


async def serve_backend(
    backend: CodexBackend, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Make the backend ready and keep it so while the server runs (the app's lifespan nursery).

    app-server: check the binary (``codex --version`` and one ``initialize`` handshake; raises
    ``AppServerCheckError`` naming the problem), then keep the warm spares until cancelled,
    which kills them. exec: nothing to do.
    """
    if isinstance(backend, AppServerBackend):
        version = await check_app_server(backend)
        log.info("app-server backend: Codex CLI %s", version)
        await backend.serve(task_status=task_status)
    else:
        task_status.started()
