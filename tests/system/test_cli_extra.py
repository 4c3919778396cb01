"""The ``cli`` extra end to end: with no ``codex`` on PATH and ``CODEX_PATH`` unset, the settings
pick the native Codex of PyPI's ``openai-codex-cli-bin``, and it answers through the server. The
nox tests session installs the extra; elsewhere this skips without it (fails in CI)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from tests.support.codex_cli import FAKE_API_KEY, FakeUpstream
from tests.support.servers import ServerFactory, in_thread, sdk, serve_real_codex, skip_or_fail
from trio_codex.settings import Settings, bundled_codex


@pytest.fixture
def empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH is one empty directory: no ``codex`` on it."""
    directory = tmp_path / "path"
    directory.mkdir()
    monkeypatch.setenv("PATH", str(directory))
    return directory


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"CODEX_HOME": str(tmp_path / "codex-home"), **extra}


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
