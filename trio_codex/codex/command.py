"""Build the ``codex exec`` invocation for one request: argv, environment, working directory, stdin.

Pure: no process is started here and nothing is read but what is passed in (the one exception,
``resolve_codex_binary``, only looks at files to find the native binary). Guarantees:

* the prompt travels on stdin (``codex exec ... -``), never in argv (128 KiB per argument) and
  never through a shell;
* every value that reaches argv is either a validated enum, a model id from the catalog, or a path
  the server created; nothing from a request is pasted into a ``-c key=value`` string unchecked;
* the child's environment is built from an allowlist, so the server's own settings (the proxy's
  API keys among them) never reach Codex or the commands it runs.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from ..run.runner import RunSpec
from ..run.threads import branching_unsupported
from ..settings import Settings
from .localonly import LOCAL_ONLY_CODEX_ARGS, argv_config_overrides

#: Flags that make every run faster and quieter without changing what the user gets: no plugin
#: sync (a ``git ls-remote`` to GitHub), no analytics upload (can delay exit by 10 s on a
#: black-holed network), no login-shell snapshot at startup (CODEX_FACTS sections 7 and 12).
FAST_FLAGS: Final[tuple[str, ...]] = (
    "--disable",
    "plugins",
    "--disable",
    "shell_snapshot",
    "-c",
    "analytics.enabled=false",
)


def server_config_overrides(*, local_only: bool) -> tuple[tuple[str, object], ...]:
    """The config overrides the server passes to every run (``FAST_FLAGS``, plus
    ``LOCAL_ONLY_CODEX_ARGS`` in local-only mode), for the local-only verdict to merge.

    Per-request ``-c`` values (reasoning effort, workspace network, the resume sandbox) are
    validated enums under keys that cannot change the provider; a test holds that.
    """
    return argv_config_overrides((*FAST_FLAGS, *(LOCAL_ONLY_CODEX_ARGS if local_only else ())))


#: Environment variables the child may inherit from the server.
BASE_ENV_ALLOWLIST: Final[frozenset[str]] = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "CODEX_HOME",
        "CODEX_API_KEY",
        "CODEX_OSS_BASE_URL",
        "CODEX_OSS_PORT",
        "CODEX_CA_CERTIFICATE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
        "RUST_LOG",
    }
)


@dataclasses.dataclass(frozen=True)
class CodexCommand:
    """A complete, inert description of one Codex child process."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    stdin: bytes


def resolve_codex_binary(path: Path) -> tuple[Path, dict[str, str]]:
    """Prefer the native binary when ``path`` is the npm ``node`` launcher.

    The launcher adds ~70 ms per run and, on Node < 22.15, leaves the native child orphaned
    when it is SIGKILLed. Returns the binary to run and the variables the launcher would set.
    """
    real = path.resolve()
    if real.name != "codex.js" or real.parent.name != "bin":
        return path, {}
    package_root = real.parent.parent  # .../node_modules/@openai/codex
    triple = _target_triple()
    if triple is None:
        return path, {}
    arch = "x64" if triple.startswith("x86_64") else "arm64"
    platform_package = f"codex-{'linux' if 'linux' in triple else 'darwin'}-{arch}"
    candidates = (
        package_root / "node_modules" / "@openai" / platform_package,
        package_root.parent / platform_package,
        package_root,
    )
    for base in candidates:
        native = base / "vendor" / triple / "bin" / "codex"
        if native.is_file() and os.access(native, os.X_OK):
            return native, {
                "CODEX_MANAGED_BY_NPM": "1",
                "CODEX_MANAGED_PACKAGE_ROOT": str(package_root),
            }
    return path, {}


def _target_triple() -> str | None:
    machine = platform.machine().lower()
    system = platform.system()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(
        machine
    )
    if arch is None:
        return None
    if system == "Linux":
        return f"{arch}-unknown-linux-musl"
    if system == "Darwin":
        return f"{arch}-apple-darwin"
    return None


def child_environment(
    environ: Mapping[str, str],
    *,
    codex_home: Path,
    passthrough: Iterable[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The child's environment: allowlisted names only, plus ``CODEX_HOME`` and ``extra``."""
    allowed = BASE_ENV_ALLOWLIST | frozenset(passthrough)
    env = {
        name: value for name, value in environ.items() if name in allowed or name.startswith("LC_")
    }
    env.setdefault("PATH", os.defpath)
    env["CODEX_HOME"] = os.fspath(codex_home)
    if extra:
        env.update(extra)
    return env


def build_argv(
    binary: Path, spec: RunSpec, *, workdir: Path, local_only: bool = False
) -> tuple[str, ...]:
    """``codex exec`` argv for ``spec``; the final ``-`` makes Codex read the prompt from stdin.
    A branch (``spec.fork_at_turn``) is refused with the 400 of ``run.threads``. ``local_only`` adds ``LOCAL_ONLY_CODEX_ARGS`` (server policy, never a request's)."""
    if spec.fork_at_turn is not None:
        # `codex exec fork` forks a whole thread, never at a turn: never resume instead.
        raise branching_unsupported()
    argv: list[str] = [os.fspath(binary), "exec"]
    if spec.resume_thread_id is not None:
        # `exec resume` has no -s/-C/--color: the sandbox goes through -c, cwd through the process.
        argv += ["resume", "--json", "--skip-git-repo-check"]
        argv += ["-c", f"sandbox_mode={spec.sandbox}"]
    else:
        argv += ["--json", "--skip-git-repo-check", "--color", "never"]
        argv += ["-s", spec.sandbox, "-C", os.fspath(workdir)]
    if not spec.persist:
        argv.append("--ephemeral")
    argv += FAST_FLAGS
    if spec.model is not None:
        argv += ["-m", spec.model]
    if spec.reasoning_effort is not None:
        argv += ["-c", f"model_reasoning_effort={spec.reasoning_effort}"]
    if spec.network_access and spec.sandbox == "workspace-write":
        argv += ["-c", "sandbox_workspace_write.network_access=true"]
    if spec.output_schema is not None:
        argv += ["--output-schema", os.fspath(spec.output_schema)]
    # `--image=PATH` form: `-i` takes several values and would swallow the `-` that follows.
    argv += [f"--image={os.fspath(p)}" for p in spec.images]
    if local_only:
        argv += LOCAL_ONLY_CODEX_ARGS
    if spec.resume_thread_id is not None:
        argv += ["--", spec.resume_thread_id, "-"]
    else:
        argv.append("-")
    return tuple(argv)


def build_command(
    settings: Settings,
    spec: RunSpec,
    *,
    binary: Path,
    binary_env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    extra_env_names: Sequence[str] = (),
) -> CodexCommand:
    """Everything needed to spawn Codex for ``spec`` under ``settings``."""
    env = child_environment(
        os.environ if environ is None else environ,
        codex_home=settings.codex_home,
        passthrough=(*settings.env_passthrough, *extra_env_names),
        extra=binary_env,
    )
    return CodexCommand(
        argv=build_argv(binary, spec, workdir=settings.workdir, local_only=settings.local_only),
        env=env,
        cwd=settings.workdir,
        stdin=spec.prompt.encode("utf-8"),
    )
