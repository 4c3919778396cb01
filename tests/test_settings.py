"""Layer 1: ``trio_codex.settings``: the environment variables, their defaults, and the
errors that name a bad one."""

from __future__ import annotations

import stat
import sys
import types
from pathlib import Path

import pytest

from tests.support.fakes import make_settings
from tests.support.security import DANGER
from trio_codex.settings import Settings, SettingsError, bundled_codex


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    codex = tmp_path / "codex"
    codex.write_text("#!/bin/sh\n")
    codex.chmod(0o755)
    return {"CODEX_PATH": str(codex), "CODEX_HOME": str(tmp_path), **extra}


def test_settings_defaults(tmp_path: Path) -> None:
    """With nothing set, every documented default applies and the workdir is private."""
    s = Settings.from_env(_env(tmp_path))
    assert s.api_keys == ()
    assert s.rate_limit_per_minute == 0
    assert s.sandbox_mode == "read-only"
    assert s.reasoning_effort is None
    assert s.local_only is False
    assert s.allow_danger_full_access is False
    assert s.timeout == 600.0
    assert s.max_parallel_requests == 4
    assert s.queue_timeout == 30.0
    assert s.workdir != Path.cwd()
    assert s.workdir.is_dir()
    assert (s.workdir.stat().st_mode & 0o077) == 0


def test_settings_parse_values(tmp_path: Path) -> None:
    """Keys are split on commas; numbers and booleans parse."""
    s = Settings.from_env(
        _env(
            tmp_path,
            PROXY_API_KEY="a, b,,c",
            RATE_LIMIT_PER_MINUTE="10",
            CODEX_WORKDIR=str(tmp_path),
            CODEX_SANDBOX_MODE="workspace-write",
            CODEX_REASONING_EFFORT="high",
            CODEX_LOCAL_ONLY="1",
            CODEX_TIMEOUT="12.5",
            CODEX_MAX_PARALLEL_REQUESTS="2",
            CODEX_QUEUE_TIMEOUT_SECONDS="0",
        )
    )
    assert s.api_keys == ("a", "b", "c")
    assert s.rate_limit_per_minute == 10
    assert s.workdir == tmp_path.resolve()
    assert s.sandbox_mode == "workspace-write"
    assert s.reasoning_effort == "high"
    assert s.local_only is True
    assert s.timeout == 12.5
    assert s.max_parallel_requests == 2
    assert s.queue_timeout == 0


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CODEX_SANDBOX_MODE", "full", "read-only, workspace-write, danger-full-access"),
        ("CODEX_TIMEOUT", "soon", "not a number"),
        ("CODEX_TIMEOUT", "0", "> 0"),
        ("CODEX_TIMEOUT", "-1", "> 0"),
        ("CODEX_TIMEOUT", "inf", "finite"),
        ("CODEX_MAX_PARALLEL_REQUESTS", "0", "minimum of 1"),
        ("CODEX_MAX_PARALLEL_REQUESTS", "two", "not an integer"),
        ("RATE_LIMIT_PER_MINUTE", "-5", "minimum of 0"),
        ("CODEX_LOCAL_ONLY", "maybe", "not a boolean"),
        ("CODEX_REASONING_EFFORT", "extreme", "low, medium, high"),
        ("CODEX_WORKDIR", "/does/not/exist", "not an existing directory"),
        ("CODEX_PATH", "/does/not/exist/codex", "not an executable"),
    ],
)
def test_bad_setting_names_the_variable(
    tmp_path: Path, name: str, value: str, fragment: str
) -> None:
    """A bad value stops startup with the variable's name and what is allowed."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**_env(tmp_path), name: value})
    assert str(info.value).startswith(name)
    assert fragment in str(info.value)


def test_danger_sandbox_needs_the_double_switch(tmp_path: Path) -> None:
    """danger-full-access as the server default needs CODEX_ALLOW_DANGER_FULL_ACCESS=1."""
    with pytest.raises(SettingsError, match="CODEX_ALLOW_DANGER_FULL_ACCESS"):
        Settings.from_env(_env(tmp_path, CODEX_SANDBOX_MODE="danger-full-access"))
    s = Settings.from_env(
        _env(tmp_path, CODEX_SANDBOX_MODE="danger-full-access", CODEX_ALLOW_DANGER_FULL_ACCESS="1")
    )
    assert s.sandbox_mode == "danger-full-access"


def test_missing_codex_home_is_created(tmp_path: Path) -> None:
    """Codex refuses a CODEX_HOME that does not exist, so the server creates it (private)."""
    home = tmp_path / "fresh" / "codex"
    settings = Settings.from_env({**_env(tmp_path), "CODEX_HOME": str(home)})
    assert settings.codex_home == home
    assert home.is_dir()
    assert (home.stat().st_mode & 0o077) == 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingsError, match=r"^CODEX_HOME"):
        Settings.from_env({**_env(tmp_path), "CODEX_HOME": str(tmp_path / "file")})


def test_default_danger_without_the_switch_does_not_start(tmp_path: Path) -> None:
    """CODEX_SANDBOX_MODE=danger-full-access without CODEX_ALLOW_DANGER_FULL_ACCESS=1 is refused."""
    environ = {
        "CODEX_PATH": sys.executable,
        "CODEX_WORKDIR": str(tmp_path),
        "CODEX_SANDBOX_MODE": DANGER,
        "CODEX_ALLOW_DANGER_FULL_ACCESS": "0",
    }
    with pytest.raises(SettingsError, match="CODEX_ALLOW_DANGER_FULL_ACCESS=1"):
        Settings.from_env(environ)
    with pytest.raises(SettingsError, match="CODEX_ALLOW_DANGER_FULL_ACCESS=1"):
        make_settings(tmp_path, sandbox_mode=DANGER)
    allowed = Settings.from_env({**environ, "CODEX_ALLOW_DANGER_FULL_ACCESS": "1"})
    assert allowed.sandbox_mode == DANGER


# --- the cli extra: openai-codex-cli-bin's Codex when no codex is on PATH and CODEX_PATH is unset


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is one empty directory: no ``codex`` on it until a test puts one there."""
    directory = tmp_path / "path"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def _install_fake_extra(monkeypatch: pytest.MonkeyPatch, binary: Path | None) -> None:
    """Stand in for ``codex_cli_bin``; ``binary=None`` is the package missing its binary."""
    module = types.ModuleType("codex_cli_bin")

    def bundled_codex_path() -> Path:
        if binary is None:
            raise FileNotFoundError("openai-codex-cli-bin is installed but missing its binary")
        return binary

    module.bundled_codex_path = bundled_codex_path  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "codex_cli_bin", module)


def _extra_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CODEX_HOME": str(tmp_path / "codex-home"), **extra}


def test_the_extra_is_used_when_nothing_else_is_there(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = _executable(tmp_path / "site" / "codex_cli_bin" / "bin" / "codex")
    _install_fake_extra(monkeypatch, bundled)
    settings = Settings.from_env(_extra_env(tmp_path), make_workdir=False)
    assert settings.codex_path == bundled


def test_a_codex_on_path_wins_over_the_extra(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_extra(monkeypatch, _executable(tmp_path / "site" / "codex"))
    on_path = _executable(empty_path / "codex")
    settings = Settings.from_env(_extra_env(tmp_path), make_workdir=False)
    assert settings.codex_path == on_path


def test_codex_path_wins_over_the_extra(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_extra(monkeypatch, _executable(tmp_path / "site" / "codex"))
    chosen = _executable(tmp_path / "elsewhere" / "my-codex")
    settings = Settings.from_env(_extra_env(tmp_path, CODEX_PATH=str(chosen)), make_workdir=False)
    assert settings.codex_path == chosen


def test_without_any_codex_the_error_names_the_extra(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "codex_cli_bin", None)  # import fails
    with pytest.raises(SettingsError, match=r"CODEX_PATH: .*pip install 'trio-codex\[cli\]'"):
        Settings.from_env(_extra_env(tmp_path), make_workdir=False)


def test_an_extra_without_its_binary_is_not_used(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_extra(monkeypatch, None)
    assert bundled_codex() is None
    with pytest.raises(SettingsError, match="CODEX_PATH"):
        Settings.from_env(_extra_env(tmp_path), make_workdir=False)


def test_a_bundled_file_that_is_not_executable_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "codex"
    plain.write_text("not a program")
    _install_fake_extra(monkeypatch, plain)
    assert bundled_codex() is None


def test_tool_result_timeout(tmp_path: Path) -> None:
    """CODEX_TOOL_RESULT_TIMEOUT bounds a run's wait for a tool result; 300 s by default."""
    assert Settings.from_env(_env(tmp_path)).tool_result_timeout == 300.0
    env = _env(tmp_path, CODEX_TOOL_RESULT_TIMEOUT="45")
    assert Settings.from_env(env).tool_result_timeout == 45.0
    with pytest.raises(SettingsError, match="CODEX_TOOL_RESULT_TIMEOUT"):
        Settings.from_env(_env(tmp_path, CODEX_TOOL_RESULT_TIMEOUT="0"))
