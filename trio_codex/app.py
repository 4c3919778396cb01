"""The deployable ASGI app: ``hypercorn trio_codex.app:app -k trio``.

Importing this module makes the process non-dumpable (``undumpable``) and reads the environment
(``Settings.from_env``); a bad value stops the process with a message naming the variable. Tests and embedders use ``trio_codex.create_app``.
"""

from __future__ import annotations

import sys

from .api import create_app
from .logs import configure_logging
from .settings import Settings, SettingsError
from .undumpable import make_undumpable

__all__ = ["app"]


def _load() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"trio_codex: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


make_undumpable()  # no Codex command of the same user may read our environment or memory
_settings = _load()
# Our lines on stderr (LOG_FORMAT), unless the embedding process configured logging itself.
configure_logging(_settings)

app = create_app(_settings)
