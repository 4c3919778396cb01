"""The deployable ASGI app: ``hypercorn trio_codex.app:app -k trio``.

Importing this module makes the process non-dumpable (``undumpable``), reads the environment and
checks the Codex CLI (``startup.load_settings``): a bad value stops the process with one line
naming the variable and a non-zero exit, also of Hypercorn's master (``startup.refuse``). As a
Hypercorn worker the process ends, its Codex runs with it, when the master dies
(``masterwatch``). Tests and embedders use ``trio_codex.create_app``.
"""

from __future__ import annotations

import logging
from functools import partial

from quart_trio import QuartTrio

from .api import components, create_app
from .logs import configure_logging
from .masterwatch import master_sentinel, watch_master
from .settings import Settings, SettingsError
from .startup import hypercorn_master, load_settings, refuse, resolve_backend
from .undumpable import make_undumpable

__all__ = ["app"]


def _load() -> tuple[Settings, str]:
    try:
        return load_settings()
    except SettingsError as exc:
        refuse(f"configuration error: {exc}")


def _end_with_master(app: QuartTrio, settings: Settings) -> None:
    """As a Hypercorn worker, end when the master dies (``masterwatch``)."""
    master, sentinel = hypercorn_master(), master_sentinel()
    if master is None or sentinel is None:
        return

    @app.before_serving
    async def _watch() -> None:
        runner = components(app).runner
        app.nursery.start_soon(
            partial(watch_master, sentinel, master, runner, grace=settings.kill_grace)
        )


make_undumpable()  # no Codex command of the same user may read our environment or memory
_settings, _version = _load()
# Our lines on stderr (LOG_FORMAT), unless the embedding process configured logging itself.
configure_logging(_settings)
logging.getLogger("trio_codex").info("Codex CLI: %s", _version)
_settings = resolve_backend(_settings, _version)

app = create_app(_settings)
_end_with_master(app, _settings)
