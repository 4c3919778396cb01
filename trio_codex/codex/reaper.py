"""No Codex process outlives its server, even a server killed with SIGKILL.

The server itself kills every Codex process group on every path it controls (``process.py``).
What it cannot control is its own sudden death: SIGKILL, the OOM killer, a crash of the
interpreter. Codex runs in its own session, so it is then orphaned and keeps running a model
turn (for minutes, or for ever when the upstream hangs: CODEX_FACTS section 4).

The mechanism is a sidecar, the *reaper*: one small process per server process
(``python -I -S _reaper_main.py``, stdlib only, about 9 MB), in its own session, ignoring SIGINT,
SIGTERM and SIGHUP. Its stdin is the read end of a pipe whose only write end is held by the
server. The server announces each Codex process group when it is spawned (``+pgid``) and when it
is dead (``-pgid``). When the server process ends, however it ends, the kernel closes the write
end; the reaper reads end of file, sends SIGKILL to every group still announced and exits.
Codex's own commands run in sessions of their own with a parent-death signal (bubblewrap PID
namespaces in the sandboxes), so they die with Codex.

Why not the alternatives:

* ``PR_SET_PDEATHSIG`` in the child: trio spawns from a worker thread of its thread cache, and the
  parent-death signal fires when the *thread* that forked exits, which trio's idle threads do
  after 10 s (measured: a child spawned with it through ``trio.lowlevel.open_process`` was killed
  10.0 s later while the server was fine). It would also reach the leader only, not the other
  members of its group, and needs ``preexec_fn`` (no ``vfork``, unsafe with threads).
* A registry on disk swept at the next start: Hypercorn's master does not restart a worker killed
  by SIGKILL, so "the next start" may be never, and an old pid list risks killing unrelated
  processes that reused the pids.
* A cgroup (``cgroup.kill``) catches even descendants that leave the group with ``setsid``, but
  needs a writable, delegated cgroup tree; in a container the container's own cgroup plays
  that role when it stops.

Guarantees (``tests/test_shutdown.py``):

* a group is announced before Codex has read its prompt (``on_spawn`` runs before stdin is
  written), so a group that has started working is always known to the reaper;
* SIGKILL of the server: every announced group is SIGKILLed within milliseconds;
* a graceful stop: the server waits (up to ``settle`` seconds) for its runs to kill their groups,
  then closes the pipe; the reaper kills whatever is left and exits; the server reaps it;
* the reaper checks that a group is still a session of ours before signalling it, so a reused pid
  is not hit;
* the sidecar gets a minimal environment (``REAPER_ENV_NAMES``), never the server's settings,
  and makes itself non-dumpable;
* if the reaper dies while the server runs, it is restarted (at most ``MAX_RESTARTS`` times) and
  told every live group again; a sidecar that cannot be started (EMFILE, EAGAIN, ...) is tried
  again with back-off (``RETRY_FIRST`` doubling to ``RETRY_MAX``) for as long as the server runs.

Limits: a SIGKILL landing in the microseconds between ``fork`` and the announcement leaves that one
run; so does a SIGKILL sent to the reaper and the server together (e.g. ``kill -9`` of every
process). Descendants that call ``setsid`` themselves are out of reach of any process-group kill.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import trio
from trio_util import AsyncValue

log = logging.getLogger("trio_codex.codex.reaper")

#: The sidecar's program (stdlib only).
REAPER_MAIN: Final = Path(__file__).with_name("_reaper_main.py")
#: How often a reaper that keeps dying is restarted before the server gives up on it.
MAX_RESTARTS: Final = 10
#: A sidecar that cannot be started is tried again after this many seconds, doubling up to
#: ``RETRY_MAX`` (for as long as the server runs).
RETRY_FIRST: Final = 0.5
RETRY_MAX: Final = 30.0
#: How long the server waits for the reaper to exit once the pipe is closed.
EXIT_WAIT: Final = 2.0
#: How long a new sidecar may take to say it is ready.
READY_WAIT: Final = 10.0
#: The only variables the sidecar inherits (it needs none: ``python -I -S``, stdlib only).
REAPER_ENV_NAMES: Final = ("PATH", "LANG", "LC_ALL", "TZ")


def reaper_environment() -> dict[str, str]:
    """The sidecar's environment: ``REAPER_ENV_NAMES`` from ours, nothing else."""
    return {name: os.environ[name] for name in REAPER_ENV_NAMES if name in os.environ}


class Reaper:
    """The server's side of the reaper sidecar: announce groups, supervise the sidecar.

    ``register``/``unregister`` are synchronous and never block (they fit ``ExecBackend``'s
    ``on_spawn``/``on_reap`` hooks); before ``run`` starts the sidecar they only record.
    ``run`` belongs in a nursery that lives as long as the server (the app's lifespan nursery).
    """

    def __init__(self, *, settle: float) -> None:
        self.settle = settle
        self.live: set[int] = set()
        #: Number of live groups (awaitable: ``count.wait_value(0)``).
        self.count = AsyncValue(0)
        #: The sidecar's pid, and how many sidecars were started (awaitable).
        self.pid: int | None = None
        self.spawns = AsyncValue(0)
        #: Failed attempts to start a sidecar (awaitable).
        self.failures = AsyncValue(0)
        self._fd: int | None = None
        self._pending = bytearray()
        self._warned = False

    @property
    def alive(self) -> bool:
        """The sidecar runs and its pipe is open (False before ``run`` started it, while it is
        being restarted, and after the server gave up on it)."""
        return self._fd is not None

    # -- announcements -------------------------------------------------------------------------

    def register(self, pgid: int) -> None:
        """Announce a new Codex process group."""
        self.live.add(pgid)
        self.count.value = len(self.live)
        self._send(b"+%d\n" % pgid)

    def unregister(self, pgid: int) -> None:
        """Announce that a group is dead (its leader reaped, the group SIGKILLed)."""
        self.live.discard(pgid)
        self.count.value = len(self.live)
        self._send(b"-%d\n" % pgid)

    def _send(self, message: bytes) -> None:
        if self._fd is None:
            return  # not running: ``_attach`` replays the live set
        self._pending += message
        try:
            written = os.write(self._fd, self._pending)
        except BlockingIOError:
            # The sidecar is not reading (stopped?): keep the bytes for the next write.
            if not self._warned:
                self._warned = True
                log.warning("the reaper is not reading its pipe; announcements are queued")
            return
        except OSError:
            # The sidecar is gone; ``run`` notices, restarts it and replays the live set.
            self._detach()
            return
        del self._pending[:written]

    def _attach(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray(b"".join(b"+%d\n" % pgid for pgid in sorted(self.live)))
        self._send(b"")

    def _detach(self) -> None:
        fd, self._fd = self._fd, None
        self._pending.clear()
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the sidecar -----------------------------------------------------------------------------

    async def _spawn(self) -> trio.Process:
        """Start a sidecar and return once it ignores the signals it must survive."""
        read_end, write_end = os.pipe()  # both close-on-exec: no Codex child inherits them
        try:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-I", "-S", os.fspath(REAPER_MAIN)],
                stdin=read_end,
                stdout=subprocess.PIPE,
                env=reaper_environment(),
                start_new_session=True,
            )
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        try:
            await _wait_ready(proc)
        except BaseException:
            os.close(write_end)
            with trio.CancelScope(shield=True):
                proc.kill()
                await proc.wait()
            raise
        os.set_blocking(write_end, False)
        self.pid = proc.pid
        self._attach(write_end)
        self.spawns.value += 1
        return proc

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the sidecar (``task_status.started()`` once it runs), keep it running, and on
        cancellation stop it: wait up to ``settle`` for the live groups to be unregistered,
        close the pipe, reap the sidecar. Never raises for a sidecar that fails to start: the
        server then runs without it, says so, and tries again with back-off."""
        proc: trio.Process | None = None
        started = False
        deaths = 0
        delay = RETRY_FIRST
        try:
            while deaths <= MAX_RESTARTS:
                try:
                    proc = await self._spawn()
                except OSError:
                    self.failures.value += 1
                    log.exception(
                        "cannot start the reaper (Codex processes may outlive a killed "
                        "server); trying again in %.1f s",
                        delay,
                    )
                    if not started:
                        started = True
                        task_status.started()
                    await trio.sleep(delay)
                    delay = min(RETRY_MAX, delay * 2)
                    continue
                delay = RETRY_FIRST
                if not started:
                    started = True
                    task_status.started()
                await proc.wait()  # returns only if the sidecar died under us
                self._detach()
                deaths += 1
                log.error(
                    "the reaper (pid %d) exited with %s; %s",
                    proc.pid,
                    proc.returncode,
                    "restarting it" if deaths <= MAX_RESTARTS else "giving up",
                )
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self._stop(proc)

    async def _stop(self, proc: trio.Process | None) -> None:
        with trio.move_on_after(self.settle):
            await self.count.wait_value(0)
        self._send(b"exit\n")
        self._detach()
        if proc is None or proc.returncode is not None:
            return
        with trio.move_on_after(EXIT_WAIT):
            await proc.wait()
        if proc.returncode is None:  # pragma: no cover - the sidecar exits on end of file
            proc.kill()
            with trio.move_on_after(EXIT_WAIT):
                await proc.wait()


async def _wait_ready(proc: trio.Process) -> None:
    """Read the sidecar's ``ready`` line (``OSError`` if it does not come within ``READY_WAIT``)."""
    stdout = proc.stdout
    if stdout is None:  # pragma: no cover - spawned with stdout=PIPE
        raise OSError("the reaper has no stdout")
    data = b""
    try:
        with trio.move_on_after(READY_WAIT):
            while len(data) < len(b"ready\n"):
                chunk = await stdout.receive_some(64)
                if not chunk:
                    break
                data += chunk
    finally:
        await stdout.aclose()
    if data != b"ready\n":
        raise OSError(f"the reaper did not start (it said {data!r})")
