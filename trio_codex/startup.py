"""What stops the server before it serves, and how it says so: one clear line, a non-zero exit.

``load_settings`` reads the environment (``Settings.from_env``) and checks that ``CODEX_PATH``
answers ``--version`` like the Codex CLI (``/bin/true`` would start, and every request would
then fail with 502); ``resolve_backend`` turns ``CODEX_BACKEND=auto`` into app-server or exec
for that version, and says which in the log. ``refuse`` prints ``trio_codex: <reason>`` and exits 2.

Under the documented command (``hypercorn trio_codex.app:app -k trio``) the refusal happens in
Hypercorn's worker, and Hypercorn 0.18's master exits 0 whatever its worker's exit code (its
``run`` joins the failed worker, then overwrites the code with that of the workers left: none).
So a refusing worker first stops its master with ``SIGUSR1``, which the master does not
handle: it ends at once, with a non-zero status (138 in a shell, ``status=10/USR1`` under
systemd). ``hypercorn_master`` finds that master: the parent of a multiprocessing child whose
command line runs Hypercorn.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import re
import signal
import sys
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Final, NoReturn

import trio

from .codex.app_server_check import choose_backend
from .codex.command import child_environment, resolve_codex_binary
from .codex.probe import codex_version
from .codex.process import signal_process
from .settings import Settings, SettingsError

log = logging.getLogger("trio_codex")

#: ``codex --version`` prints ``codex-cli 0.169.0``.
VERSION_LINE: Final = re.compile(r"^codex(?:-cli)?\s+v?\d+\.\d+", re.MULTILINE)
#: Exit status of a refused start.
REFUSED: Final = 2


def check_codex(codex_path: Path, codex_home: Path, environ: Mapping[str, str]) -> str:
    """The version line ``codex_path --version`` prints; ``SettingsError`` naming
    ``CODEX_PATH`` when it does not answer like the Codex CLI. Runs before the server's own
    event loop (a short one of its own)."""
    binary, binary_env = resolve_codex_binary(codex_path)
    env = {**binary_env, **child_environment(environ, codex_home=codex_home)}
    version = trio.run(partial(codex_version, binary, env=env))
    if version is None or VERSION_LINE.search(version) is None:
        raise SettingsError(
            f"CODEX_PATH: {codex_path} is not the Codex CLI (`--version` printed "
            f"{version or 'no version'!r}); install it with npm install -g @openai/codex "
            "or point CODEX_PATH at it"
        )
    return version


def load_settings(environ: Mapping[str, str] | None = None) -> tuple[Settings, str]:
    """Settings from the environment and the Codex version; ``SettingsError`` otherwise.
    ``CODEX_BACKEND=auto`` is left for ``resolve_backend``, once logging is set up."""
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)
    return settings, check_codex(settings.codex_path, settings.codex_home, env)


def resolve_backend(settings: Settings, version: str) -> Settings:
    """``CODEX_BACKEND=auto`` made concrete for the Codex CLI that printed ``version``
    (``choose_backend``: app-server when it is new enough, else exec), said in the log with the
    reason, a warning when it falls back to exec. Other values are returned as they are."""
    if settings.backend != "auto":
        return settings
    backend, why = choose_backend(settings.backend, version)
    if backend == "exec":
        log.warning(
            "backend: exec (%s); install a newer Codex (npm install -g @openai/codex) for "
            "token streaming and function calling, or set CODEX_BACKEND=exec",
            why,
        )
    else:
        log.info("backend: %s (%s)", backend, why)
    return dataclasses.replace(settings, backend=backend)


def hypercorn_master() -> int | None:
    """The pid of the Hypercorn master this process is a worker of, else None (``python -m
    trio_codex``, ``hypercorn -w 0``, or any other host)."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None or parent.pid != os.getppid():
        return None
    try:
        argv = Path(f"/proc/{parent.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return parent.pid if any(b"hypercorn" in arg for arg in argv[:3]) else None


def refuse(reason: str) -> NoReturn:
    """Print ``trio_codex: <reason>`` and exit with ``REFUSED``; as a Hypercorn worker, stop
    the master first so that the documented command exits non-zero too."""
    print(f"trio_codex: {reason}", file=sys.stderr, flush=True)  # noqa: T201
    master = hypercorn_master()
    if master is not None:
        print(  # noqa: T201
            f"trio_codex: stopping Hypercorn's master (pid {master}) with SIGUSR1 so that it "
            "exits non-zero",
            file=sys.stderr,
            flush=True,
        )
        signal_process(master, signal.SIGUSR1)
    raise SystemExit(REFUSED)
