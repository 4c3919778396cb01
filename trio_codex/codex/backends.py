"""Which backend runs Codex: ``make_backend`` picks it from the settings.

Every backend spawns Codex in its own process group, with the allowlisted environment, and calls
``on_spawn(pgid)`` / ``on_reap(pgid)`` so the reaper knows every live group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..settings import Settings
from .exec import ExecBackend


def make_backend(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    extra_env_names: tuple[str, ...],
    on_spawn: Callable[[int], None] | None = None,
    on_reap: Callable[[int], None] | None = None,
) -> ExecBackend:
    """The backend the settings ask for (``codex exec`` today)."""
    return ExecBackend(
        settings,
        environ=environ,
        extra_env_names=extra_env_names,
        on_spawn=on_spawn,
        on_reap=on_reap,
    )
