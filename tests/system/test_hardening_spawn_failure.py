"""A Codex that cannot be started (binary removed by an upgrade, argv or environment over the
kernel's limit, out of file descriptors or processes) is a 503 ``codex_unavailable`` naming the
cause, not a generic 500; and a reaper sidecar that fails to start is retried with back-off.
Real processes."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
import trio

from trio_codex import create_app
from trio_codex.codex import reaper as reaper_module
from trio_codex.codex.app_server import AppServerBackend
from trio_codex.codex.exec import unavailable_error
from trio_codex.codex.models import ModelCatalog
from trio_codex.codex.reaper import Reaper
from trio_codex.errors import CodexUnavailableError
from trio_codex.run.runner import RunSpec
from trio_codex.settings import Settings

pytestmark = pytest.mark.slow

CATALOG = ModelCatalog.from_slugs({"gpt-test": ("low",)}, created=1_700_000_000)
CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


def settings(tmp_path: Path, codex: Path, env_passthrough: tuple[str, ...] = ()) -> Settings:
    return Settings(
        workdir=tmp_path,
        codex_home=tmp_path,
        codex_path=codex,
        kill_grace=0.5,
        env_passthrough=env_passthrough,
        backend="exec",  # the app-server case builds its own backend below
    )


@pytest.fixture
def codex(tmp_path: Path) -> Path:
    path = tmp_path / "codex"
    path.write_text(f"#!{sys.executable}\nprint('never run')\n")
    path.chmod(0o755)
    return path


async def post(app: object, body: dict[str, object]) -> tuple[int, dict[str, object], str]:
    client = app.test_client()  # type: ignore[attr-defined]
    response = await client.post("/v1/chat/completions", json=body)
    return (
        response.status_code,
        (await response.get_json())["error"],
        response.headers.get("x-request-id", ""),
    )


async def test_app_server_backend_maps_a_spawn_failure_too(tmp_path: Path, codex: Path) -> None:
    """The app-server backend turns a binary removed after startup into the same 503."""
    backend = AppServerBackend(settings(tmp_path, codex), environ={"PATH": "/usr/bin:/bin"})
    codex.unlink()

    async def emit(event: object) -> None:
        raise AssertionError(f"nothing may run: {event!r}")

    with pytest.raises(CodexUnavailableError) as refused:
        await backend.run(RunSpec(prompt="hi"), emit)
    assert refused.value.status_code == 503
    assert str(codex) in refused.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_removed_binary_is_a_503_naming_it(
    tmp_path: Path, codex: Path, stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings(tmp_path, codex), catalog=CATALOG, environ={"PATH": "/usr/bin:/bin"})
    async with app.test_app():
        codex.unlink()  # an upgrade removed it after the server started
        client = app.test_client()
        with trio.fail_after(20):
            response = await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
            body = await response.get_data(as_text=True)
    if stream:
        assert response.status_code == 200
        assert '"code": "codex_unavailable"' in body or '"code":"codex_unavailable"' in body
        assert str(codex) in body
        return
    assert response.status_code == 503, body
    error = (await response.get_json())["error"]
    assert error["code"] == "codex_unavailable"
    assert str(codex) in error["message"]
    assert "x-request-id" in response.headers
    assert "Codex run failed inside the server" not in caplog.text


async def test_environment_over_the_kernel_limit_is_a_503(tmp_path: Path, codex: Path) -> None:
    """One environment string over MAX_ARG_STRLEN (128 KiB): execve fails with E2BIG."""
    app = create_app(
        settings(tmp_path, codex, env_passthrough=("HUGE",)),
        catalog=CATALOG,
        environ={"PATH": "/usr/bin:/bin", "HUGE": "x" * 200_000},
    )
    async with app.test_app():
        with trio.fail_after(20):
            response = await app.test_client().post("/v1/chat/completions", json=CHAT)
        assert response.status_code == 503
        error = (await response.get_json())["error"]
    assert error["code"] == "codex_unavailable"
    assert "too long" in error["message"]


@pytest.mark.parametrize(
    ("code", "cause", "retry"),
    [
        (errno.ENOENT, "is missing", False),
        (errno.EACCES, "not executable", False),
        (errno.E2BIG, "too long", False),
        (errno.EMFILE, "file descriptors", True),
        (errno.ENFILE, "file descriptors", True),
        (errno.EAGAIN, "processes", True),
        (errno.ENOMEM, "memory", True),
    ],
)
def test_each_cause_is_named(code: int, cause: str, retry: bool) -> None:
    error = unavailable_error(Path("/opt/codex"), OSError(code, os.strerror(code)))
    assert (error.status_code, error.code) == (503, "codex_unavailable")
    assert cause in error.message
    assert ("Retry-After" in error.headers()) is retry


async def test_reaper_that_fails_to_start_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = reaper_module.REAPER_MAIN
    monkeypatch.setattr(reaper_module, "REAPER_MAIN", tmp_path / "missing.py")
    monkeypatch.setattr(reaper_module, "RETRY_FIRST", 0.05)
    reaper = Reaper(settle=0.1)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(reaper.run)  # the server starts even without its reaper
            assert reaper.spawns.value == 0
            await reaper.failures.wait_value(lambda n: n >= 2)  # retried, not given up
            monkeypatch.setattr(reaper_module, "REAPER_MAIN", real)
            await reaper.spawns.wait_value(1)
            assert reaper.pid is not None
            nursery.cancel_scope.cancel()
