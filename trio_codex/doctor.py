"""``trio-codex doctor``: say what is missing before the first request does.

Each check is a pure function from what was observed to a ``Check`` (``ok``, ``warn`` or
``fail``, a detail, and for a failure the fix); ``gather`` runs the probes
(``codex/selfcheck.py``, each bounded in time, leaving no process behind) and ``main`` prints the
table. The exit status is 1 when any check failed, else 0; ``--run`` adds one real request
through the configured backend (``CODEX_BACKEND``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Final, Literal

import trio

from .codex import selfcheck
from .codex.app_server_check import choose_backend
from .codex.command import child_environment, resolve_codex_binary, server_config_overrides
from .codex.localonly import LocalOnlyPolicy, ProviderVerdict, provider_env_keys, resolve_provider
from .settings import BackendName, Settings, SettingsError, bundled_codex

Status = Literal["ok", "warn", "fail"]

#: Codex CLI versions the server's tests have run against (npm pin, PyPI extra).
TESTED_VERSIONS: Final = ("0.163.0", "0.169.0", "0.171.0")
INSTALL_FIX: Final = (
    "pip install 'trio-codex[cli]' (the native Codex from PyPI), or "
    "npm install -g @openai/codex@0.169.0, or set CODEX_PATH to a Codex CLI"
)
_VERSION: Final = re.compile(r"\b\d+\.\d+\.\d+\S*")


@dataclasses.dataclass(frozen=True)
class Check:
    """One row of the report."""

    name: str
    status: Status
    detail: str
    fix: str = ""


# --------------------------------------------------------------------------- pure checks


def check_settings(error: SettingsError | None, settings: Settings | None) -> Check:
    """The environment's settings are valid (the server would start)."""
    if error is not None or settings is None:
        message = str(error)
        if message.startswith("CODEX_PATH"):
            return Check("codex binary", "fail", message, INSTALL_FIX)
        return Check("settings", "fail", message, "fix the variable it names")
    return Check(
        "settings",
        "ok",
        f"valid: sandbox {settings.sandbox_mode}, {settings.max_parallel_requests} parallel runs, "
        f"timeout {settings.timeout:g} s",
    )


def install_source(
    path: Path, *, environ: Mapping[str, str], bundled: Path | None, native: Path
) -> str:
    """Where the server's Codex comes from, in words: how it was chosen and which install."""
    chosen = "CODEX_PATH" if environ.get("CODEX_PATH", "").strip() else "PATH"
    if bundled is not None and path == bundled:
        return "the cli extra (PyPI openai-codex-cli-bin)"
    parts = {*native.parts, *path.resolve().parts}
    if "codex_cli_bin" in native.parts:
        kind = "PyPI openai-codex-cli-bin"
    elif "node_modules" in parts:
        kind = "npm @openai/codex"
    else:
        kind = "a standalone binary"
    return f"{chosen}, {kind}"


def check_binary(path: Path, source: str, version: selfcheck.Probe) -> Check:
    """``codex --version`` answers; a version the tests never ran is a warning."""
    if version.error is not None or version.returncode != 0:
        why = version.error or f"exited {version.returncode}: {_tail(version.stderr)}"
        return Check("codex binary", "fail", f"{path}: {why}", INSTALL_FIX)
    found = _VERSION.search(version.stdout)
    number = found.group(0) if found else "unknown"
    detail = f"{path} ({version.stdout.strip() or 'no version'}; from {source})"
    if number not in TESTED_VERSIONS:
        return Check(
            "codex binary",
            "warn",
            detail,
            f"tested with {', '.join(TESTED_VERSIONS)}; other versions may differ",
        )
    return Check("codex binary", "ok", detail)


def check_backend(requested: BackendName, version: selfcheck.Probe) -> tuple[Check, BackendName]:
    """Which backend the server would run (``CODEX_BACKEND=auto`` resolved for this Codex),
    and that backend; falling back to exec is a warning (no token streaming, no client tools)."""
    backend, why = choose_backend(requested, version.stdout)
    if requested == "auto" and backend == "exec":
        return Check(
            "backend",
            "warn",
            f"exec ({why})",
            "install a newer Codex (npm install -g @openai/codex) and point CODEX_PATH at it, "
            "or set CODEX_BACKEND=exec",
        ), backend
    return Check("backend", "ok", f"{backend} ({why})"), backend


def check_app_server(probe: selfcheck.Probe) -> Check:
    """``codex app-server`` answers ``initialize`` (the binary runs and loads its config)."""
    answer = probe.answer or {}
    if probe.error is None and "result" in answer:
        return Check("app-server", "ok", f"answered initialize in {probe.seconds:.2f} s")
    why = probe.error or f"answered with an error: {answer.get('error')}"
    return Check(
        "app-server",
        "fail",
        f"{why}; {_tail(probe.stderr)}".rstrip("; "),
        "run `codex app-server` by hand to see why; check CODEX_HOME/config.toml",
    )


def selected_provider(config_text: str | None) -> tuple[str, dict[str, object]]:
    """The provider id ``config.toml`` selects and its ``model_providers`` table (``{}`` for a
    built-in one). A file that cannot be parsed selects ``openai`` (``resolve_provider`` reports
    the breakage)."""
    try:
        config = tomllib.loads(config_text or "")
    except tomllib.TOMLDecodeError:
        return "openai", {}
    provider = config.get("model_provider", "openai")
    tables = config.get("model_providers", {})
    table = tables.get(provider) if isinstance(tables, dict) else None
    return str(provider), table if isinstance(table, dict) else {}


def check_auth(
    provider: str,
    table: Mapping[str, object],
    verdict: ProviderVerdict,
    login: selfcheck.Probe | None,
    *,
    environ: Mapping[str, str],
    login_command: str,
) -> Check:
    """Codex can authenticate to its provider: logged in, or the provider's key is set."""
    login_fix = (
        f"{login_command} login --device-auth (works headless), or "
        f"printenv OPENAI_API_KEY | {login_command} login --with-api-key"
    )
    if verdict.provider == "" or (verdict.base_url is None and "config" in verdict.reason):
        return Check("login", "fail", verdict.reason, "fix CODEX_HOME/config.toml")
    if provider in {"ollama", "lmstudio"}:
        return Check("login", "ok", f"provider {provider} at {verdict.base_url} needs no login")
    env_key = table.get("env_key")
    if isinstance(env_key, str) and env_key:
        if environ.get(env_key, "").strip():
            return Check("login", "ok", f"provider {provider}: {env_key} is set")
        return Check(
            "login",
            "fail",
            f"provider {provider} reads its key from {env_key}, which is not set",
            f"export {env_key}=... in the server's environment",
        )
    if table and not table.get("requires_openai_auth"):
        return Check("login", "ok", f"provider {provider} at {verdict.base_url} needs no key")
    if environ.get("CODEX_API_KEY", "").strip():
        return Check("login", "ok", f"provider {provider}: CODEX_API_KEY is set")
    if login is not None and login.error is None and login.returncode == 0:
        said = [ln.strip() for ln in (login.stdout + login.stderr).splitlines()]
        # 0.163: "Logged in using an API key - sk-…"; 0.169: "API key configured - sk-…".
        found = [ln for ln in said if ln and not ln.startswith("WARNING")] or ["logged in"]
        return Check("login", "ok", f"{found[0]} (--run proves it works)")
    why = login.error if login is not None and login.error else _tail(login.stderr if login else "")
    return Check("login", "fail", f"provider {provider}: {why or 'not logged in'}", login_fix)


def check_codex_home(path: Path, writable: bool, why: str = "") -> Check:
    """``CODEX_HOME`` accepts new files (Codex writes sessions, logs and its login there)."""
    if writable:
        return Check("codex home", "ok", f"{path} is writable")
    return Check(
        "codex home",
        "fail",
        f"{path} is not writable: {why}",
        "set CODEX_HOME to a directory this user owns",
    )


def check_local_only(local_only: bool, verdict: ProviderVerdict) -> Check:
    """With ``CODEX_LOCAL_ONLY=1`` the provider must be local; otherwise say where prompts go."""
    if not local_only:
        where = verdict.base_url or "an unknown address"
        return Check("local-only", "ok", f"off: provider {verdict.provider or '?'} at {where}")
    if verdict.local:
        return Check("local-only", "ok", f"on: {verdict.reason}")
    return Check(
        "local-only",
        "fail",
        f"on, but {verdict.reason}: every request gets 400 local_only_violation",
        "point model_provider at a loopback base_url in CODEX_HOME/config.toml, "
        "or unset CODEX_LOCAL_ONLY",
    )


def check_exec(run: selfcheck.ExecProbe) -> Check:
    """One real request through the configured backend completed with an answer."""
    transcript = run.transcript
    failure = None if run.error else transcript.failure(run.exit_code, run.stderr)
    if run.error is None and failure is None and transcript.text.strip():
        usage = transcript.usage
        tokens = usage.input_tokens + usage.output_tokens if usage else 0
        return Check(
            "test run",
            "ok",
            f"answered {transcript.text.strip()[:40]!r} in {run.seconds:.1f} s ({tokens} tokens)",
        )
    why = run.error or (failure.message if failure else "an empty answer")
    return Check("test run", "fail", why, "see the login and app-server rows; then RUST_LOG=info")


# --------------------------------------------------------------------------- report


def render(checks: Sequence[Check]) -> str:
    """The table: check, status, detail, and an indented ``fix:`` line under each problem."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check'.ljust(width)}  status  detail"]
    for check in checks:
        lines.append(f"{check.name.ljust(width)}  {check.status.ljust(6)}  {check.detail}")
        if check.fix and check.status != "ok":
            lines.append(f"{''.ljust(width)}  fix:    {check.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append("")
    lines.append(
        f"{failed} check(s) failed: fix them before serving" if failed else "ready to serve"
    )
    return "\n".join(lines)


def exit_code(checks: Sequence[Check]) -> int:
    """1 when any check failed, else 0 (warnings do not fail)."""
    return 1 if any(c.status == "fail" for c in checks) else 0


# --------------------------------------------------------------------------- runner


def _writable(directory: Path) -> tuple[bool, str]:
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".trio-codex-doctor-"):
            return True, ""
    except OSError as exc:
        return False, exc.strerror or str(exc)


async def gather(
    settings: Settings,
    environ: Mapping[str, str],
    *,
    run: bool,
    login_command: str = "trio-codex codex",
) -> list[Check]:
    """Probe the Codex that ``settings`` name and judge each part. ``login_command`` runs that
    Codex with the server's ``CODEX_HOME`` (for the fixes)."""
    native, binary_env = resolve_codex_binary(settings.codex_path)
    extra_names = tuple(sorted(provider_env_keys(settings.codex_home)))
    env = child_environment(
        environ,
        codex_home=settings.codex_home,
        passthrough=(*settings.env_passthrough, *extra_names),
        extra=binary_env,
    )
    cwd = settings.workdir
    source = install_source(
        settings.codex_path, environ=environ, bundled=bundled_codex(), native=native
    )
    version = await selfcheck.run_command(
        [os.fspath(native), "--version"], env=env, cwd=cwd, timeout=10
    )
    checks = [check_binary(settings.codex_path, source, version)]
    if checks[0].status == "fail":
        return checks
    backend_check, backend = check_backend(settings.backend, version)
    checks.append(backend_check)
    settings = dataclasses.replace(settings, backend=backend)
    checks.append(check_app_server(await selfcheck.app_server_handshake(native, env=env, cwd=cwd)))
    config_path = settings.codex_home / "config.toml"
    provider, table = selected_provider(
        config_path.read_text("utf-8", "replace") if config_path.is_file() else None
    )
    verdict = resolve_provider(
        settings.codex_home, environ, server_config_overrides(local_only=settings.local_only)
    )
    login = await selfcheck.run_command(
        [os.fspath(native), "login", "status"], env=env, cwd=cwd, timeout=10
    )
    checks.append(
        check_auth(provider, table, verdict, login, environ=environ, login_command=login_command)
    )
    checks.append(check_codex_home(settings.codex_home, *_writable(settings.codex_home)))
    if settings.local_only:
        policy = LocalOnlyPolicy(
            settings.codex_home, environ, server_config_overrides(local_only=True)
        )
        verdict = policy.verdict()
    checks.append(check_local_only(settings.local_only, verdict))
    if run:
        probe = await selfcheck.exec_once(settings, environ=environ, extra_env_names=extra_names)
        checks.append(check_exec(probe))
    return checks


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """``trio-codex doctor [--run]``: print the table; 1 when a check failed."""
    parser = argparse.ArgumentParser(prog="trio-codex doctor", description=__doc__)
    parser.add_argument(
        "--run",
        action="store_true",
        help="also send one real request through the configured backend (CODEX_BACKEND)",
    )
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        settings = Settings.from_env(env, make_workdir=False)
    except SettingsError as exc:
        checks = [check_settings(exc, None)]
    else:
        program = sys.argv[0] if Path(sys.argv[0]).name == "trio-codex" else "trio-codex"
        probe = partial(gather, settings, env, run=args.run, login_command=f"{program} codex")
        checks = [check_settings(None, settings), *trio.run(probe)]
    print(render(checks))  # noqa: T201
    return exit_code(checks)


def _tail(text: str, limit: int = 300) -> str:
    """The last non-blank line of ``text``, without colour codes, at most ``limit`` characters."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1][:limit] if lines else ""


if __name__ == "__main__":
    sys.exit(main())
