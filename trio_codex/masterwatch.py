"""A Hypercorn worker ends, and its Codex runs with it, when its master dies.

Hypercorn's master (the process ``hypercorn trio_codex.app:app -k trio`` creates) tells its
workers to stop through a shared event it sets on SIGTERM/SIGINT. Killed with SIGKILL (or by
the OOM killer) it sets nothing, and its worker went on serving as an orphan, with every Codex
group alive, out of reach of the supervisor that had started the master.

Each worker is a multiprocessing child: ``multiprocessing.parent_process().sentinel`` is the
read end of a pipe whose write end only the master holds, so it becomes readable exactly when
the master is gone, however it went. ``watch_master`` waits for that (no polling), then cancels
every run (each Codex group gets SIGTERM, then SIGKILL after ``CODEX_KILL_GRACE_SECONDS``),
waits for them up to that grace plus one second, and ends the process; the reaper sidecar
sweeps whatever is left when the worker's end closes its pipe.

Only a Hypercorn worker watches (``startup.hypercorn_master``): ``python -m trio_codex`` and
``hypercorn -w 0`` serve in the process their supervisor started, whose parent may come and go.
"""

from __future__ import annotations

import logging
import multiprocessing
import os

import trio

from .run.runner import CodexRunner

log = logging.getLogger("trio_codex")


def master_sentinel() -> int | None:
    """The fd that becomes readable when this worker's master dies (None: not a worker)."""
    parent = multiprocessing.parent_process()
    return None if parent is None else parent.sentinel


async def watch_master(sentinel: int, master: int, runner: CodexRunner, *, grace: float) -> None:
    """Return never: once ``sentinel`` is readable, stop every run and end the process."""
    await trio.lowlevel.wait_readable(sentinel)
    log.error(
        "Hypercorn's master (pid %d) is gone: stopping this worker (pid %d) and its %d Codex "
        "run(s)",
        master,
        os.getpid(),
        runner.running.value,
    )
    runner.cancel_all()
    with trio.move_on_after(grace + 1.0):
        await runner.running.wait_value(0)
    logging.shutdown()
    os._exit(1)
