"""Startup check for ``CODEX_BACKEND=app-server``: is this Codex one whose app-server we speak?

``check_app_server(backend)`` runs ``codex --version`` and one ``initialize`` handshake with
``codex app-server`` (no thread, nothing sent upstream), exactly as a request would spawn it.
It returns the version, or raises ``AppServerCheckError`` whose message says what is wrong and
what to do, so the server can refuse to start instead of failing every request:

* the binary does not run, or does not print a version;
* the version is older than ``MIN_VERSION`` (the protocol was measured on 0.169.0; the
  subcommand is ``[experimental]`` and older releases differ);
* app-server does not answer ``initialize`` within the backend's ``rpc_timeout``, or breaks the
  protocol;
* Codex could not load ``config.toml`` (app-server would go on with the default provider).

A version newer than the one measured is accepted with a warning in the log.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from contextlib import aclosing
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from ..settings import BackendName
from . import process
from .app_protocol import fatal_config_warning, initialize_params
from .jsonrpc import Notification, ProtocolError, RpcConnection, RpcError

if TYPE_CHECKING:
    from .app_server import AppServerBackend

log = logging.getLogger("trio_codex.codex.app_server_check")

#: The oldest Codex CLI whose app-server protocol trio_codex was checked against.
MIN_VERSION: Final = (0, 169, 0)
#: The newest one (newer ones are accepted with a warning).
TESTED_VERSION: Final = (0, 169, 0)
T = TypeVar("T")
_VERSION: Final = re.compile(r"\b(\d+)\.(\d+)\.(\d+)\b")


class AppServerCheckError(RuntimeError):
    """Codex cannot serve as the app-server backend; the message says why and what to do."""


def parse_version(text: str) -> tuple[int, int, int] | None:
    """``codex-cli 0.169.0`` -> ``(0, 169, 0)``; None when no version is found."""
    found = _VERSION.search(text)
    if found is None:
        return None
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


def choose_backend(requested: BackendName, version: str) -> tuple[BackendName, str]:
    """The backend ``CODEX_BACKEND=requested`` means for a Codex whose ``--version`` printed
    ``version``, and why: ``auto`` is app-server from ``MIN_VERSION`` on (what its protocol was
    measured on), else exec; ``exec`` and ``app-server`` are themselves (an app-server that is
    too old is the startup check's to refuse)."""
    if requested != "auto":
        return requested, f"CODEX_BACKEND={requested}"
    parsed = parse_version(version)
    if parsed is not None and parsed >= MIN_VERSION:
        return "app-server", f"CODEX_BACKEND=auto and Codex CLI {dotted_version(parsed)}"
    shown = dotted_version(parsed) if parsed is not None else repr(version.strip())
    return "exec", (
        f"CODEX_BACKEND=auto and Codex CLI {shown} is older than {dotted_version(MIN_VERSION)}, "
        "which app-server needs: answers arrive in one piece and client tools are refused"
    )


def dotted_version(version: tuple[int, int, int]) -> str:
    """``(0, 169, 0)`` -> ``0.169.0``."""
    return ".".join(str(n) for n in version)


async def check_app_server(backend: AppServerBackend) -> str:
    """The Codex version, after a successful handshake; raises ``AppServerCheckError``."""
    binary = backend.binary
    with trio.move_on_after(backend.rpc_timeout) as deadline:
        try:
            result = await trio.run_process(
                [str(binary), "--version"],
                capture_stdout=True,
                capture_stderr=True,
                stdin=subprocess.DEVNULL,
                env=backend.env(),
                check=False,
                start_new_session=True,
            )
        except OSError as exc:
            raise AppServerCheckError(f"CODEX_PATH: cannot run {binary}: {exc}") from None
    if deadline.cancelled_caught:
        raise AppServerCheckError(
            f"`{binary} --version` did not finish within {backend.rpc_timeout:g} s"
        )
    output = result.stdout.decode("utf-8", "replace").strip()
    version = parse_version(output)
    if result.returncode != 0 or version is None:
        raise AppServerCheckError(
            f"`{binary} --version` did not print a Codex version "
            f"(exit status {result.returncode}): {output[:200]!r}"
        )
    if version < MIN_VERSION:
        raise AppServerCheckError(
            f"CODEX_BACKEND=app-server needs Codex CLI {dotted_version(MIN_VERSION)} or newer; "
            f"{binary} is {dotted_version(version)}. Upgrade it (npm install -g "
            f"@openai/codex@{dotted_version(TESTED_VERSION)}) or use CODEX_BACKEND=exec"
        )
    if version > TESTED_VERSION:
        log.warning(
            "Codex CLI %s is newer than %s, the version whose app-server protocol trio_codex "
            "was checked against (the protocol is experimental); watch for failed runs",
            dotted_version(version),
            dotted_version(TESTED_VERSION),
        )
    await _handshake(backend)
    return dotted_version(version)


async def _handshake(backend: AppServerBackend) -> None:
    """initialize, then close stdin and read everything app-server printed until it exits."""
    problem: str | None = None
    stderr = bytearray()
    async with process.open_process_group(
        backend.argv(),
        env=backend.env(),
        cwd=backend.settings.workdir,
        grace=backend.settings.kill_grace,
    ) as proc:
        if backend.on_spawn is not None:
            backend.on_spawn(proc.pid)
        stdin, stdout, stderr_pipe = _pipe(proc.stdin), _pipe(proc.stdout), _pipe(proc.stderr)
        conn = RpcConnection(stdin, peer="codex app-server", timeout=backend.rpc_timeout)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read, conn, stdout)
                nursery.start_soon(process.drain_capped, stderr_pipe, stderr, 64 * 1024)
                try:
                    await conn.request("initialize", initialize_params(backend.client_version))
                    await conn.notify("initialized")
                    await conn.close_input()
                    with trio.move_on_after(backend.rpc_timeout):
                        async for message in conn.incoming:
                            if isinstance(message, Notification):
                                problem = problem or fatal_config_warning(
                                    message.method, message.params
                                )
                except (ProtocolError, RpcError) as exc:
                    problem = str(exc)
                nursery.cancel_scope.cancel()
        finally:
            if backend.on_reap is not None:
                backend.on_reap(proc.pid)
    if problem is not None:
        detail = stderr.decode("utf-8", "replace").strip().splitlines()
        raise AppServerCheckError(
            f"`{' '.join(backend.argv())}` failed its startup handshake: {problem}"
            + (f" (stderr: {detail[-1][:300]})" if detail else "")
        )


def _pipe(stream: T | None) -> T:
    if stream is None:  # pragma: no cover - open_process_group always pipes all three
        raise RuntimeError("the Codex process has no pipe")
    return stream


async def _read(conn: RpcConnection, stdout: trio.abc.ReceiveStream) -> None:
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        async with aclosing(process.read_lines(stdout)) as lines:
            await conn.serve(lines)
