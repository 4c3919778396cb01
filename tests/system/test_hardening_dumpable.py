"""The server and its reaper are not dumpable, and the reaper holds none of the server's settings.

A ``danger-full-access`` command runs as the server's user; were the server dumpable it could
read ``PROXY_API_KEY`` from ``/proc/<pid>/environ``. ``prctl(PR_SET_DUMPABLE, 0)`` makes the
kernel refuse that to any process without ``CAP_SYS_PTRACE`` (the ``/proc/<pid>`` files then
belong to root). As root the test runs the server as ``nobody`` to observe that.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from tests.support.harness import children_of, cmdline
from trio_codex.codex.reaper import REAPER_MAIN, Reaper

from .hardening_server import (
    HYPERCORN_READY,
    MODULE_READY,
    hypercorn_argv,
    module_argv,
    running,
    server_env,
    world_accessible,
    write_fake_codex,
)

pytestmark = pytest.mark.slow

NOBODY = 65534
SECRET = "sk-proxy-key-that-must-not-leak"  # noqa: S105 - a marker to look for


PROBE = (
    "import subprocess, sys\n"
    "subprocess.run([sys.executable, '-c', 'import trio_codex.api, hypercorn'], check=True)"
)


@dataclasses.dataclass(frozen=True)
class Runner:
    """How to run this package's Python as another user: argv prefix, interpreter, env."""

    prefix: list[str]
    python: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def other_user() -> Runner:
    """As root: ``nobody`` through setpriv, with an interpreter ``nobody`` may run (this one, or
    the system's of the same version with our packages on PYTHONPATH). Else: ourselves."""
    if os.geteuid() != 0:
        return Runner([], sys.executable, {})
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot observe dumpability")
    prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join([os.fspath(root), sysconfig.get_paths()["purelib"]])
    for python in (sys.executable, f"/usr/bin/{version}", f"/usr/local/bin/{version}"):
        env = {"PYTHONPATH": path}
        probe = subprocess.run(
            # A grandchild too: setpriv's own exec may still traverse what nobody cannot.
            [*prefix, python, "-c", PROBE],
            env={**os.environ, **env},
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return Runner(prefix, python, env)
    pytest.skip(f"no {version} that {NOBODY} may run with this package")


def undumpable(pid: int) -> bool:
    """What another process of the same user sees: a non-dumpable process's /proc files belong
    to root, and its environment cannot be read."""
    path = f"/proc/{pid}/environ"
    if os.geteuid() == 0:
        status = Path(f"/proc/{pid}/status").read_text()
        uid = int(status.split("\nUid:", 1)[1].split()[0])
        assert uid == NOBODY, status
        return os.stat(path).st_uid == 0
    try:
        Path(path).read_bytes()
    except PermissionError:
        return True
    return False


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory ``nobody`` can use (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="trio-codex-dumpable-"))
    world_accessible(path)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def reaper_of(pid: int) -> int:
    found = [c for c in children_of(pid) if "_reaper_main" in cmdline(c)]
    assert len(found) == 1, [(c, cmdline(c)) for c in children_of(pid)]
    return found[0]


@pytest.mark.parametrize("launcher", ["module", "hypercorn"])
async def test_server_and_reaper_are_not_dumpable(
    shared_dir: Path, launcher: str, other_user: Runner
) -> None:
    codex = write_fake_codex(shared_dir, other_user.python)
    env = {**server_env(shared_dir, codex, PROXY_API_KEY=SECRET), **other_user.env}
    for name in ("work", "home"):
        world_accessible(shared_dir / name)
    if launcher == "module":
        argv = module_argv("--bind", "127.0.0.1:0", python=other_user.python)
        ready = MODULE_READY
    else:
        # -w 0: the app (trio_codex.app) is served in the process the command starts; a
        # multiprocessing worker cannot start as nobody here (its resource tracker fails).
        argv = hypercorn_argv("--bind", "127.0.0.1:0", "-w", "0", python=other_user.python)
        ready = HYPERCORN_READY
    with trio.fail_after(30):
        async with running(argv, env, cwd=shared_dir, prefix=other_user.prefix) as server:
            await server.wait_for(ready)
            pid = server.proc.pid
            assert undumpable(pid), "the server's environment is readable"
            reaper = reaper_of(pid)
            assert undumpable(reaper), "the reaper's environment is readable"
            if os.geteuid() == 0:
                reaper_env = Path(f"/proc/{reaper}/environ").read_bytes()
                assert SECRET.encode() not in reaper_env


async def test_reaper_gets_no_server_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidecar's environment holds nothing of the server's (PROXY_API_KEY included)."""
    monkeypatch.setenv("PROXY_API_KEY", SECRET)
    reaper = Reaper(settle=0.1)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            await nursery.start(reaper.run)
            assert reaper.pid is not None
            environ = Path(f"/proc/{reaper.pid}/environ").read_bytes()
            nursery.cancel_scope.cancel()
    assert SECRET.encode() not in environ
    names = {entry.split(b"=", 1)[0] for entry in environ.split(b"\0") if entry}
    assert names <= {b"PATH", b"LANG", b"LC_ALL", b"TZ"}, names


async def test_reaper_program_makes_itself_undumpable(shared_dir: Path, other_user: Runner) -> None:
    """The sidecar program on its own (as the server starts it, stdin a pipe)."""
    main = shared_dir / "reaper_main.py"
    main.write_bytes(REAPER_MAIN.read_bytes())
    main.chmod(0o644)
    proc = await trio.lowlevel.open_process(
        [*other_user.prefix, other_user.python, "-I", "-S", os.fspath(main)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        with trio.fail_after(10):
            assert await proc.stdout.receive_some(64) == b"ready\n"
        assert undumpable(proc.pid)
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(10):
            assert proc.stdin is not None
            await proc.stdin.aclose()  # end of file: the sidecar exits
            await proc.wait()
            assert proc.stdout is not None
            await proc.stdout.aclose()
