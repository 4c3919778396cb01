"""The ``cli`` extra (``pip install 'trio-codex[cli]'``): the native Codex from PyPI's
``openai-codex-cli-bin`` is found when no ``codex`` is on PATH and ``CODEX_PATH`` is unset; a
Codex the user installed, or ``CODEX_PATH``, wins. End to end, that binary answers through the
server (the nox tests session installs the extra; elsewhere that test skips without it).
"""

from __future__ import annotations

import importlib.util
import stat
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from codex_cli import FAKE_API_KEY, FakeUpstream
from conftest import ServerFactory, in_thread, sdk, serve_real_codex, skip_or_fail

from trio_codex.settings import Settings, SettingsError, bundled_codex


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


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CODEX_HOME": str(tmp_path / "codex-home"), **extra}


def test_the_extra_is_used_when_nothing_else_is_there(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = _executable(tmp_path / "site" / "codex_cli_bin" / "bin" / "codex")
    _install_fake_extra(monkeypatch, bundled)
    settings = Settings.from_env(_env(tmp_path), make_workdir=False)
    assert settings.codex_path == bundled


def test_a_codex_on_path_wins_over_the_extra(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_extra(monkeypatch, _executable(tmp_path / "site" / "codex"))
    on_path = _executable(empty_path / "codex")
    settings = Settings.from_env(_env(tmp_path), make_workdir=False)
    assert settings.codex_path == on_path


def test_codex_path_wins_over_the_extra(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_extra(monkeypatch, _executable(tmp_path / "site" / "codex"))
    chosen = _executable(tmp_path / "elsewhere" / "my-codex")
    settings = Settings.from_env(_env(tmp_path, CODEX_PATH=str(chosen)), make_workdir=False)
    assert settings.codex_path == chosen


def test_without_any_codex_the_error_names_the_extra(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "codex_cli_bin", None)  # import fails
    with pytest.raises(SettingsError, match=r"CODEX_PATH: .*pip install 'trio-codex\[cli\]'"):
        Settings.from_env(_env(tmp_path), make_workdir=False)


def test_an_extra_without_its_binary_is_not_used(
    tmp_path: Path, empty_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_extra(monkeypatch, None)
    assert bundled_codex() is None
    with pytest.raises(SettingsError, match="CODEX_PATH"):
        Settings.from_env(_env(tmp_path), make_workdir=False)


def test_a_bundled_file_that_is_not_executable_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = tmp_path / "codex"
    plain.write_text("not a program")
    _install_fake_extra(monkeypatch, plain)
    assert bundled_codex() is None


def _real_extra() -> Path:
    """The binary of the real ``openai-codex-cli-bin``; skips (fails in CI) without it."""
    if importlib.util.find_spec("codex_cli_bin") is None:
        skip_or_fail("the cli extra is not installed: pip install -e '.[cli]'")
    found = bundled_codex()
    assert found is not None, "openai-codex-cli-bin is installed but its binary is not usable"
    return found


@pytest.mark.slow
@pytest.mark.realcodex
async def test_the_extras_codex_answers_through_the_server(
    tmp_path: Path,
    empty_path: Path,
    upstream: FakeUpstream,
    start_server: ServerFactory,
) -> None:
    """With no codex on PATH the settings pick the extra's binary, and a chat completion runs it
    against the fake upstream."""
    binary = _real_extra()
    found = Settings.from_env(_env(tmp_path), make_workdir=False).codex_path
    assert found == binary
    environ = {"PATH": str(empty_path), "HOME": str(tmp_path), "FAKE_API_KEY": FAKE_API_KEY}
    url = (
        await serve_real_codex(
            tmp_path, upstream.base_url, start_server, codex_path=found, environ=environ
        )
    ).v1

    def call() -> Any:
        with sdk(url) as client:
            return client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "Hi [[fake:reply=From the PyPI binary]]"}],
            )

    completion = await in_thread(call, fail_after=60)
    assert completion.choices[0].message.content == "From the PyPI binary"
    assert len(upstream.responses_requests()) == 1
