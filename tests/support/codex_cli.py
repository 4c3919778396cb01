"""Helpers for tests that run the real Codex CLI against ``tests/support/fake_upstream.py``.

* ``find_codex_cli()`` / ``native_codex_binary()`` locate the CLI (pinned in
  ``tests/node/package.json``; install it with ``npm ci --prefix tests/node``).
* ``write_codex_home()`` / ``private_home()`` / ``codex_env()`` build an isolated
  environment: a ``CODEX_HOME`` whose only provider is the fake, an empty ``HOME`` (Codex
  runs login shells that read ``~/.bashrc``) and a minimal set of environment variables.
* ``FakeUpstream`` runs the fake upstream as a subprocess; ``run_codex_exec()`` runs one
  ``codex exec --json`` and parses its stdout.

Every wait here is bounded by a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import selectors
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from tests.support.paths import FAKE_UPSTREAM_SCRIPT, NODE_DIR

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

CODEX_ENV_VAR = "TRIO_CODEX_TEST_CODEX"
"""Environment variable naming the Codex CLI to test (a path, or a command on PATH)."""

NODE_SHIM = NODE_DIR / "node_modules" / ".bin" / "codex"
FAKE_API_KEY = "x"

# (Node os, Node arch) -> Rust target triple, as in @openai/codex/bin/codex.js
_TARGET_TRIPLES: dict[tuple[str, str], str] = {
    ("linux", "x64"): "x86_64-unknown-linux-musl",
    ("linux", "arm64"): "aarch64-unknown-linux-musl",
    ("darwin", "x64"): "x86_64-apple-darwin",
    ("darwin", "arm64"): "aarch64-apple-darwin",
    ("win32", "x64"): "x86_64-pc-windows-msvc",
    ("win32", "arm64"): "aarch64-pc-windows-msvc",
}
_MACHINES = {"x86_64": "x64", "amd64": "x64", "x64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_NATIVE_MAGIC = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")


def find_codex_cli() -> Path | None:
    """Locate the Codex CLI to test, or return None.

    Order: the ``TRIO_CODEX_TEST_CODEX`` environment variable (a path or a command name on
    PATH; when it is set and does not resolve, the result is None rather than a fallback,
    so a wrong setting is not silently replaced by another CLI), then
    ``tests/node/node_modules/.bin/codex``, then ``codex`` on PATH.
    """
    configured = os.environ.get(CODEX_ENV_VAR, "").strip()
    if configured:
        found = shutil.which(configured)
        return Path(found) if found else None
    if NODE_SHIM.is_file() and os.access(NODE_SHIM, os.X_OK):
        return NODE_SHIM
    found = shutil.which("codex")
    return Path(found) if found else None


def _platform() -> tuple[str, str]:
    """(Node-style os, Node-style arch) of this machine, e.g. ("linux", "x64")."""
    system = sys.platform
    if system.startswith("win"):
        system = "win32"
    elif system.startswith("linux"):
        system = "linux"
    return system, _MACHINES.get(platform.machine().lower(), platform.machine().lower())


def target_triple() -> str | None:
    """The Rust target triple of the native Codex binary for this machine (None if unsupported)."""
    return _TARGET_TRIPLES.get(_platform())


def _is_native_executable(path: Path) -> bool:
    try:
        with path.open("rb") as file:
            head = file.read(4)
    except OSError:
        return False
    return head.startswith(_NATIVE_MAGIC)


def native_codex_binary(path: Path) -> Path | None:
    """Find the platform-native Codex binary behind an npm-installed CLI, or return None.

    ``path`` may be the npm shim (``node_modules/.bin/codex``, a symlink to
    ``@openai/codex/bin/codex.js``), ``codex.js`` itself, or already a native executable
    (returned unchanged).  Like ``codex.js``, which does
    ``require.resolve("@openai/codex-<os>-<arch>/package.json")`` from its own location, this
    looks for ``<dir>/node_modules/@openai/codex-<os>-<arch>/vendor/<triple>/bin/codex`` in
    every ancestor ``<dir>`` of the ``@openai/codex`` package's ``bin`` directory (so both
    the nested ``@openai/codex/node_modules/...`` and the hoisted
    ``<node_modules>/@openai/codex-linux-x64/...`` layouts are found), and finally in
    ``@openai/codex/vendor/<triple>/bin/codex``.
    """
    try:
        real = Path(path).resolve(strict=True)
    except OSError:
        return None
    if _is_native_executable(real):
        return real
    triple = target_triple()
    if triple is None or real.name != "codex.js" or real.parent.name != "bin":
        return None
    system, machine = _platform()
    package = f"codex-{system}-{machine}"
    exe = "codex.exe" if system == "win32" else "codex"
    package_root = real.parent.parent
    candidates = [
        directory / "node_modules" / "@openai" / package / "vendor" / triple / "bin" / exe
        for directory in [real.parent, *real.parent.parents]
        if directory.name != "node_modules"
    ]
    candidates.append(package_root / "vendor" / triple / "bin" / exe)
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def write_codex_home(directory: Path, upstream_base_url: str) -> Path:
    """Write ``directory/config.toml`` for the fake upstream and return ``directory``.

    ``upstream_base_url`` is the fake's root (``http://127.0.0.1:<port>``) or its API base
    (``.../v1``); ``/v1`` is appended when missing.  The config selects model
    ``fake-model`` from the custom provider ``fake`` (Responses wire API,
    ``Authorization: Bearer $FAKE_API_KEY``, no HTTP or stream retries, 30 s stream idle
    timeout) and disables plugin sync and analytics, so Codex makes no other network
    connections.  The directory is created if needed; use the result as ``CODEX_HOME``.
    """
    base_url = upstream_base_url.rstrip("/")
    if not base_url.endswith("/v1"):
        base_url += "/v1"
    directory.mkdir(parents=True, exist_ok=True)
    config = f"""\
model = "fake-model"
model_provider = "fake"

[model_providers.fake]
name = "fake"
base_url = {json.dumps(base_url)}
wire_api = "responses"
env_key = "FAKE_API_KEY"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 30000

[features]
plugins = false

[analytics]
enabled = false
"""
    (directory / "config.toml").write_text(config, encoding="utf-8")
    return directory


def private_home(tmp_path: Path) -> Path:
    """Create and return an empty directory to use as ``HOME`` (``tmp_path/home``)."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    return home


def codex_env(home: Path, codex_home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment for the CLI: PATH, HOME, CODEX_HOME, FAKE_API_KEY, LANG, ``extra``.

    Nothing else is inherited, so proxies, ``OPENAI_*``/``CODEX_*`` variables and
    ``RUST_BACKTRACE`` of the test runner do not leak into the CLI.
    """
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "FAKE_API_KEY": FAKE_API_KEY,
        "LANG": "C.UTF-8",
        **extra,
    }


class FakeUpstream:
    """Runs ``tests/support/fake_upstream.py --port 0`` as a subprocess (a context manager).

    Entering waits (at most ``start_timeout`` seconds) for the ``LISTENING`` line; leaving
    terminates the process (killing it after 5 s).  ``base_url`` is ``http://127.0.0.1:<port>``.
    """

    def __init__(self, log: Path | None = None, start_timeout: float = 15.0) -> None:
        self._log = log
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def __enter__(self) -> Self:
        command = [sys.executable, str(FAKE_UPSTREAM_SCRIPT), "--port", "0"]
        if self._log is not None:
            command += ["--log", str(self._log)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            self.base_url = self._read_address(self._process, self._start_timeout)
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    @staticmethod
    def _read_address(process: subprocess.Popen[bytes], timeout: float) -> str:
        """Read the ``LISTENING host:port`` line; return ``http://host:port``."""
        assert process.stdout is not None
        deadline = time.monotonic() + timeout
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while b"\n" not in data:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise TimeoutError(f"fake upstream printed nothing within {timeout} s")
                chunk = os.read(process.stdout.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
        line = data.partition(b"\n")[0]
        prefix = b"LISTENING "
        if not line.startswith(prefix):
            raise RuntimeError(f"fake upstream did not start: first line {line!r}")
        return "http://" + line.removeprefix(prefix).decode().strip()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def _call(self, method: str, path: str) -> Any:
        request = urllib.request.Request(self.base_url + path, method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.load(response)

    def requests(self) -> list[dict[str, Any]]:
        """The fake's request log (``GET /_fake/requests``)."""
        result: list[dict[str, Any]] = self._call("GET", "/_fake/requests")
        return result

    def responses_requests(self) -> list[dict[str, Any]]:
        """The logged ``POST .../responses`` requests."""
        return [
            entry
            for entry in self.requests()
            if entry["method"] == "POST" and entry["path"].partition("?")[0].endswith("/responses")
        ]

    def clear(self) -> None:
        """Empty the fake's request log (``POST /_fake/clear``)."""
        self._call("POST", "/_fake/clear")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group led by ``process`` (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@dataclass
class CodexRun:
    """The outcome of one ``codex exec --json`` run."""

    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str
    seconds: float
    argv: list[str] = field(default_factory=list)

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        """The events whose ``type`` is ``event_type``."""
        return [event for event in self.events if event.get("type") == event_type]

    def items(self, item_type: str) -> list[dict[str, Any]]:
        """The ``item`` of every ``item.completed`` event whose item type is ``item_type``."""
        return [
            event["item"]
            for event in self.of_type("item.completed")
            if event.get("item", {}).get("type") == item_type
        ]

    def describe(self) -> str:
        """A multi-line description for assertion messages."""
        return f"argv={self.argv}\nrc={self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def exec_argv(codex: Path, workdir: Path, *extra: str, ephemeral: bool = True) -> list[str]:
    """The argv of a new ``codex exec --json`` session reading the prompt from stdin.

    ``codex exec --json --skip-git-repo-check [--ephemeral] --color never -s read-only
    -C <workdir> <extra...> -``.  Pass ``ephemeral=False`` to keep the rollout so the
    session can be resumed.
    """
    return [
        str(codex),
        "exec",
        "--json",
        "--skip-git-repo-check",
        *(["--ephemeral"] if ephemeral else []),
        "--color",
        "never",
        "-s",
        "read-only",
        "-C",
        str(workdir),
        *extra,
        "-",
    ]


def resume_argv(codex: Path, thread_id: str, *extra: str) -> list[str]:
    """The argv of ``codex exec resume --json --skip-git-repo-check <extra...> <id> -``.

    ``exec resume`` has no ``-s``, ``-C`` or ``--color``; it runs in the process's cwd.
    """
    return [str(codex), "exec", "resume", "--json", "--skip-git-repo-check", *extra, thread_id, "-"]


def run_codex_exec(
    argv: Sequence[str],
    prompt: str,
    env: Mapping[str, str],
    *,
    cwd: Path,
    timeout: float = 60.0,
) -> CodexRun:
    """Run ``argv`` with ``prompt`` on stdin and parse stdout as JSON lines.

    The CLI runs in a new session; when it runs longer than ``timeout`` seconds its whole
    process group is killed and ``subprocess.TimeoutExpired`` is raised (with the output so
    far).  A stdout line that is not JSON raises ``AssertionError``.
    """
    start = time.monotonic()
    process = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(prompt.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        out, err = process.communicate(timeout=5)
        raise subprocess.TimeoutExpired(list(argv), timeout, out, err) from None
    except BaseException:
        _kill_group(process)
        process.communicate(timeout=5)
        raise
    seconds = time.monotonic() - start
    completed = subprocess.CompletedProcess(list(argv), process.returncode, out, err)
    stdout = completed.stdout.decode("utf-8", "replace")
    events: list[dict[str, Any]] = []
    for line in stdout.splitlines():
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError as exc:
                raise AssertionError(f"stdout line is not JSON: {line!r}") from exc
    return CodexRun(
        returncode=completed.returncode,
        events=events,
        stdout=stdout,
        stderr=completed.stderr.decode("utf-8", "replace"),
        seconds=seconds,
        argv=list(argv),
    )
