"""``trio-codex codex ARGS...``: the Codex CLI the server runs, with the server's ``CODEX_HOME``.

So ``trio-codex codex login --device-auth`` logs in the very Codex and home the server uses, also
when that Codex is the ``cli`` extra's binary, which is not on ``PATH``. The process is replaced
(``execve``): the terminal, signals and the exit status are Codex's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..settings import Settings, SettingsError
from .command import resolve_codex_binary


def main(argv: Sequence[str]) -> int:  # noqa: RET503 - execve does not return
    """Exec Codex with ``argv``; returns only when the settings are invalid (status 2)."""
    try:
        settings = Settings.from_env(make_workdir=False)
    except SettingsError as exc:
        print(f"trio-codex codex: configuration error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    binary, binary_env = resolve_codex_binary(settings.codex_path)
    env = {**os.environ, "CODEX_HOME": os.fspath(settings.codex_home), **binary_env}
    os.execve(binary, [os.fspath(binary), *argv], env)  # noqa: S606
