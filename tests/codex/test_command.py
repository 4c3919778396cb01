"""Layer 1: ``trio_codex.codex.command``: Codex's argv, its environment, and the binary behind
the npm launcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_codex.codex.command import FAST_FLAGS, build_argv, child_environment, resolve_codex_binary
from trio_codex.run.runner import RunSpec


def test_argv_reads_prompt_from_stdin_and_never_contains_it(tmp_path: Path) -> None:
    """The prompt is not in argv; argv ends with '-' so Codex reads stdin."""
    spec = RunSpec(prompt="secret prompt; rm -rf /", model="gpt-test", reasoning_effort="high")
    argv = build_argv(Path("/x/codex"), spec, workdir=tmp_path)
    assert argv[-1] == "-"
    assert not any("secret prompt" in a for a in argv)
    assert argv[:3] == ("/x/codex", "exec", "--json")
    for flag in ("--skip-git-repo-check", "--ephemeral", "--color"):
        assert flag in argv
    assert argv[argv.index("-s") + 1] == "read-only"
    assert argv[argv.index("-C") + 1] == str(tmp_path)
    assert argv[argv.index("-m") + 1] == "gpt-test"
    assert "model_reasoning_effort=high" in argv
    assert tuple(argv[argv.index(FAST_FLAGS[0]) :][: len(FAST_FLAGS)]) == FAST_FLAGS


def test_argv_network_access_only_with_workspace_write(tmp_path: Path) -> None:
    """network_access becomes a -c switch for workspace-write only."""
    on = build_argv(
        Path("codex"),
        RunSpec(prompt="p", sandbox="workspace-write", network_access=True),
        workdir=tmp_path,
    )
    assert "sandbox_workspace_write.network_access=true" in on
    off = build_argv(
        Path("codex"),
        RunSpec(prompt="p", sandbox="read-only", network_access=True),
        workdir=tmp_path,
    )
    assert "sandbox_workspace_write.network_access=true" not in off


def test_argv_images_and_schema(tmp_path: Path) -> None:
    """Images use the --image=PATH form (so '-' is not swallowed); the schema is a file."""
    argv = build_argv(
        Path("codex"),
        RunSpec(prompt="p", images=(tmp_path / "a.png",), output_schema=tmp_path / "s.json"),
        workdir=tmp_path,
    )
    assert f"--image={tmp_path / 'a.png'}" in argv
    assert argv[argv.index("--output-schema") + 1] == str(tmp_path / "s.json")
    assert argv[-1] == "-"


def test_argv_resume_uses_resume_subcommand(tmp_path: Path) -> None:
    """A continuation runs `exec resume ... -- <thread> -`, persisted, sandbox via -c."""
    argv = build_argv(
        Path("codex"),
        RunSpec(prompt="p", resume_thread_id="0199-abc", persist=True),
        workdir=tmp_path,
    )
    assert argv[1:3] == ("exec", "resume")
    assert argv[-3:] == ("--", "0199-abc", "-")
    assert "-s" not in argv
    assert "-C" not in argv
    assert "--ephemeral" not in argv
    assert "sandbox_mode=read-only" in argv


def test_child_environment_is_an_allowlist(tmp_path: Path) -> None:
    """Server secrets never reach Codex; PATH, HOME, CODEX_HOME and passthrough names do."""
    environ = {
        "PATH": "/bin",
        "HOME": "/home/x",
        "PROXY_API_KEY": "sk-proxy",
        "CODEX_TIMEOUT": "5",
        "AWS_SECRET_ACCESS_KEY": "nope",
        "LC_ALL": "C",
        "MY_PROVIDER_KEY": "k",
        "CODEX_API_KEY": "ck",
    }
    env = child_environment(environ, codex_home=tmp_path, passthrough=["MY_PROVIDER_KEY"])
    assert env["CODEX_HOME"] == str(tmp_path)
    assert env["PATH"] == "/bin"
    assert env["HOME"] == "/home/x"
    assert env["LC_ALL"] == "C"
    assert env["MY_PROVIDER_KEY"] == "k"
    assert env["CODEX_API_KEY"] == "ck"
    for secret in ("PROXY_API_KEY", "CODEX_TIMEOUT", "AWS_SECRET_ACCESS_KEY"):
        assert secret not in env


def test_native_binary_preferred_over_npm_shim(tmp_path: Path) -> None:
    """A CODEX_PATH that is the npm launcher resolves to the platform's native binary."""
    nm = tmp_path / "node_modules"
    shim = nm / "@openai" / "codex" / "bin" / "codex.js"
    shim.parent.mkdir(parents=True)
    shim.write_text("// launcher")
    from trio_codex.codex.command import _target_triple

    triple = _target_triple()
    if triple is None:
        pytest.skip("no native Codex build for this platform")
    arch = "x64" if triple.startswith("x86_64") else "arm64"
    osname = "linux" if "linux" in triple else "darwin"
    native = nm / "@openai" / f"codex-{osname}-{arch}" / "vendor" / triple / "bin" / "codex"
    native.parent.mkdir(parents=True)
    native.write_text("#!/bin/sh\n")
    native.chmod(0o755)
    link = tmp_path / "bin" / "codex"
    link.parent.mkdir()
    link.symlink_to(shim)
    binary, env = resolve_codex_binary(link)
    assert binary == native
    assert env["CODEX_MANAGED_BY_NPM"] == "1"
    plain = tmp_path / "plain-codex"
    plain.write_text("#!/bin/sh\n")
    assert resolve_codex_binary(plain) == (plain, {})
