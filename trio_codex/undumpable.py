"""Make this process non-dumpable, so that no other process of the same user can read its memory
or its environment.

A ``danger-full-access`` Codex command runs as the server's user. Were the server dumpable, that
command could read ``/proc/<server pid>/environ`` (``PROXY_API_KEY``, provider keys) or its
memory. ``prctl(PR_SET_DUMPABLE, 0)`` makes the kernel refuse both to any process without
``CAP_SYS_PTRACE`` (the ``/proc/<pid>`` files then belong to root), and disables core dumps.
It does not stop root: a server running as root still exposes its environment to root commands.

Called at startup by both entry points (``trio_codex.app`` and ``python -m trio_codex``); the
reaper sidecar does the same for itself. Linux only; elsewhere it is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Final

PR_SET_DUMPABLE: Final = 4
PR_GET_DUMPABLE: Final = 3


def make_undumpable() -> bool:
    """``prctl(PR_SET_DUMPABLE, 0)``; True when the process is now non-dumpable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return False
        return bool(libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False
