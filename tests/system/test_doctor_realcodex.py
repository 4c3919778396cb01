"""``trio-codex doctor`` end to end: the console entry point, the real Codex CLI and the fake
upstream. A working set-up is all ``ok`` with exit 0 (``--run`` included, one request reaching the
upstream); a missing provider key is a ``fail`` row naming the variable, with exit 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.support.codex_cli import FAKE_API_KEY, FakeUpstream, private_home, write_codex_home
from tests.support.servers import require_codex_cli

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]


async def _doctor(env: dict[str, str], *args: str) -> tuple[int, str]:
    with trio.fail_after(90):
        result = await trio.run_process(
            [sys.executable, "-m", "trio_codex", "doctor", *args],
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    return result.returncode, result.stdout.decode()


def _rows(table: str) -> dict[str, str]:
    """check name -> status, from the doctor's table."""
    rows = {}
    for line in table.splitlines()[1:]:
        parts = line.split("  ")
        cells = [p.strip() for p in parts if p.strip()]
        if len(cells) >= 2 and cells[1] in {"ok", "warn", "fail"}:
            rows[cells[0]] = cells[1]
    return rows


def _env(tmp_path: Path, upstream: FakeUpstream, **extra: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(private_home(tmp_path)),
        "CODEX_HOME": str(write_codex_home(tmp_path / "codex-home", upstream.base_url)),
        "CODEX_PATH": str(require_codex_cli(native=False)),
        **extra,
    }


async def test_a_working_setup_is_all_ok_and_answers(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    code, out = await _doctor(_env(tmp_path, upstream, FAKE_API_KEY=FAKE_API_KEY), "--run")
    assert code == 0, out
    assert _rows(out) == {
        "settings": "ok",
        "codex binary": "ok",
        "backend": "ok",
        "app-server": "ok",
        "login": "ok",
        "codex home": "ok",
        "local-only": "ok",
        "test run": "ok",
    }, out
    assert "ready to serve" in out
    assert "app-server (CODEX_BACKEND=auto and Codex CLI 0.1" in out  # the default, resolved
    sent = await trio.to_thread.run_sync(upstream.responses_requests)
    assert len(sent) == 1  # only --run reaches the upstream


async def test_a_missing_key_fails_with_its_fix(tmp_path: Path, upstream: FakeUpstream) -> None:
    code, out = await _doctor(_env(tmp_path, upstream))
    assert code == 1, out
    assert _rows(out)["login"] == "fail"
    assert "FAKE_API_KEY, which is not set" in out
    assert "fix:    export FAKE_API_KEY=" in out
    assert "test run" not in _rows(out)  # no --run, no request
    assert await trio.to_thread.run_sync(upstream.responses_requests) == []


async def test_local_only_on_a_remote_provider_fails(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    env = _env(tmp_path, upstream, FAKE_API_KEY=FAKE_API_KEY, CODEX_LOCAL_ONLY="1")
    (Path(env["CODEX_HOME"]) / "config.toml").write_text("")  # the built-in openai provider
    code, out = await _doctor(env)
    assert code == 1, out
    assert _rows(out)["local-only"] == "fail"
    assert "api.openai.com" in out


async def test_trio_codex_codex_runs_the_servers_codex_in_its_home(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    """``trio-codex codex login --with-api-key`` logs the server's CODEX_HOME in (the fix the
    doctor prints), and ``login status`` then says so."""
    env = _env(tmp_path, upstream)
    (Path(env["CODEX_HOME"]) / "config.toml").write_text("")  # the built-in openai provider
    with trio.fail_after(60):
        login = await trio.run_process(
            [sys.executable, "-m", "trio_codex", "codex", "login", "--with-api-key"],
            env=env,
            stdin=b"sk-test-0123456789abcdef\n",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        assert login.returncode == 0, login.stderr
        assert (Path(env["CODEX_HOME"]) / "auth.json").is_file()
    code, out = await _doctor(env)
    assert code == 0, out
    assert _rows(out)["login"] == "ok", out
    assert "sk-test-***" in out  # login status names the key, masked
