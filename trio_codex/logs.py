"""The server's logging setup, one function for every entry point: ``configure_logging``.

``LOG_FORMAT=text`` (the default) prints ``time LEVEL logger: message`` lines; ``LOG_FORMAT=json``
prints one JSON object per line, formatted by python-json-logger: ``time`` (ISO 8601, UTC),
``level``, ``logger``, ``message``, the traceback as ``exc_info`` when there is one, and every
field a record carries in ``extra`` (a request's fields: ``http.access.request_fields``).

Under ``hypercorn trio_codex.app:app`` only the ``trio_codex`` logger gets the handler: a root
handler would print every Hypercorn line twice (Hypercorn gives its loggers their own handlers,
and they also propagate). ``python -m trio_codex`` owns the whole process (``whole_process``):
the handler goes on the root logger, so every library's warnings share the format, and the
caller passes Hypercorn its error logger as a ``Logger`` (``HYPERCORN_LOGGER``), which Hypercorn
then leaves without a handler of its own: each line is printed once. A process that configured
logging itself (a handler on the root or the ``trio_codex`` logger) is left as it is.
"""

from __future__ import annotations

import logging
import sys
from typing import IO, Final

from pythonjsonlogger.json import JsonFormatter

from .settings import LogFormat, Settings

#: The text format (today's lines).
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The logger Hypercorn writes its own lines to.
HYPERCORN_LOGGER: Final = "hypercorn.error"


def formatter(log_format: LogFormat) -> logging.Formatter:
    """The formatter of ``LOG_FORMAT``."""
    if log_format == "json":
        return JsonFormatter(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
        )
    return logging.Formatter(TEXT_FORMAT)


def configure_logging(
    settings: Settings, *, stream: IO[str] | None = None, whole_process: bool = False
) -> logging.Handler | None:
    """One handler on ``stream`` (default stderr) in ``settings.log_format``: on the
    ``trio_codex`` logger, or with ``whole_process`` on the root logger (see the module
    docstring); ``trio_codex`` (and then Hypercorn's error logger) log at INFO. Returns the
    handler, or None when the process had configured logging already (nothing is changed)."""
    ours = logging.getLogger("trio_codex")
    root = logging.getLogger()
    if ours.handlers or root.handlers:
        return None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    (root if whole_process else ours).addHandler(handler)
    ours.setLevel(logging.INFO)
    if whole_process:
        logging.getLogger(HYPERCORN_LOGGER).setLevel(logging.INFO)
    return handler
