"""What the server knows about its Codex binary: its version (asked once, at startup) and whether
it is still there (checked on every readiness probe, a ``stat``).

``codex_version`` runs ``codex --version`` in its own session, bounded by ``VERSION_TIMEOUT``; it
never raises for a Codex that fails: the answer is then None (readiness reports it). A cancelled
call leaves no process behind (``trio.run_process`` kills its child).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import trio

log = logging.getLogger("trio_codex.codex.probe")

#: How long ``codex --version`` may take at startup.
VERSION_TIMEOUT: Final = 10.0


async def codex_version(binary: Path, *, env: Mapping[str, str]) -> str | None:
    """The first line ``codex --version`` prints (``codex-cli 0.169.0``), or None when it fails,
    prints nothing or takes longer than ``VERSION_TIMEOUT``."""
    with trio.move_on_after(VERSION_TIMEOUT):
        try:
            result = await trio.run_process(
                [os.fspath(binary), "--version"],
                capture_stdout=True,
                capture_stderr=True,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                check=False,
                start_new_session=True,
            )
        except OSError as exc:
            log.warning("`%s --version` failed: %s", binary, exc)
            return None
        lines = result.stdout.decode("utf-8", "replace").strip().splitlines()
        if result.returncode != 0 or not lines:
            log.warning("`%s --version` exited %s without a version", binary, result.returncode)
            return None
        return lines[0].strip()[:200]
    log.warning("`%s --version` did not answer within %g s", binary, VERSION_TIMEOUT)
    return None


def is_executable(path: Path) -> bool:
    """``path`` is (still) a file this process may execute."""
    return path.is_file() and os.access(path, os.X_OK)
