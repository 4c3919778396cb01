"""The deployable ASGI app: ``hypercorn trio_codex.app:app -k trio``.

Importing this module reads the environment (``Settings.from_env``); a bad value stops the
process with a message naming the variable. Tests and embedders use ``trio_codex.create_app``.
"""

from __future__ import annotations

import logging
import sys

from .api import create_app
from .settings import Settings, SettingsError

__all__ = ["app"]


def _load() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        print(f"trio_codex: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        raise SystemExit(2) from None


def _configure_logging() -> None:
    """Our request lines on stderr, unless the embedding process configured logging itself.

    Only the ``trio_codex`` logger gets a handler: a root handler would print every Hypercorn
    line twice (Hypercorn's loggers have their own handlers and also propagate).
    """
    logger = logging.getLogger("trio_codex")
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


_configure_logging()

app = create_app(_load())
