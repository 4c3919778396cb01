"""The reaper sidecar's own program: stdlib only, run as ``python -I -S _reaper_main.py``.

It reads announcements from the server on stdin, one per line: ``+<pgid>`` (a Codex process group
was spawned), ``-<pgid>`` (that group is dead), ``exit`` (the server is shutting down on purpose).
At end of file, which the kernel delivers when the server process ends for any reason (SIGKILL and
the OOM killer included), it sends SIGKILL to every group still announced and exits 0.

It makes itself non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``), like the server, so that no Codex
command of the same user can read its memory. It ignores SIGINT, SIGTERM and SIGHUP, so a terminal's Ctrl-C or a supervisor's SIGTERM to every
process cannot end it before it has done its job; only end of file (or SIGKILL) ends it. Once the
signals are ignored it writes ``ready`` on stdout and closes it.

Before signalling a group it checks, where ``/proc`` exists, that some process still has that
process group *and* that session id: every Codex leader is a session leader (``setsid``), so a pid
reused by an unrelated process is not mistaken for a leftover group.

Knows nothing of trio or of the server: importing the package would cost 0.4 s and 40 MB.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PROC = "/proc"
#: Longest accepted announcement line; longer input is a protocol error and is dropped.
MAX_LINE = 64


def group_exists(pgid: int) -> bool:
    """True when a process of group ``pgid`` in session ``pgid`` is alive (True without /proc)."""
    if not os.path.isdir(PROC):
        return True
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            with open(f"{PROC}/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 4 or fields[0] in (b"Z", b"X"):
            continue
        if int(fields[2]) == pgid and int(fields[3]) == pgid:
            return True
    return False


def kill_group(pgid: int) -> bool:
    """SIGKILL group ``pgid`` if it is still one of ours; True when a signal was sent."""
    if pgid <= 1 or not group_exists(pgid):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def apply(line: bytes, live: dict[int, None]) -> bool:
    """Apply one announcement to ``live``; True for ``exit``."""
    text = line.strip()
    if text == b"exit":
        return True
    if len(text) >= 2 and text[:1] in (b"+", b"-") and text[1:].isdigit():
        pgid = int(text[1:])
        if text[:1] == b"+":
            live[pgid] = None
        else:
            live.pop(pgid, None)
    return False


def make_undumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)`` where it exists (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE


def main() -> int:
    make_undumpable()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    # Tell the server that signals can no longer stop us, then stop talking.
    os.write(1, b"ready\n")
    os.close(1)
    live: dict[int, None] = {}
    orderly = False
    buf = b""
    while chunk := os.read(0, 65536):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            orderly = apply(line, live) or orderly
        if len(buf) > MAX_LINE:
            buf = b""
    killed = [pgid for pgid in live if kill_group(pgid)]
    if killed:
        why = "shut down" if orderly else "ended without cleaning up"
        sys.stderr.write(
            f"trio_codex reaper: the server {why}; sent SIGKILL to {len(killed)} Codex "
            f"process group(s): {' '.join(map(str, killed))}\n"
        )
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
