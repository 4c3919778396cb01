"""``GET /readyz`` with the real ``exec`` backend and the fake codex: the version asked at
startup, the discovered models, the reaper, and 503 once the binary is gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio

from tests.support.fakes import make_settings
from trio_codex import create_app
from trio_codex.api import components

pytestmark = pytest.mark.slow


async def test_ready_then_not_when_the_binary_is_removed(tmp_path: Path, fake_codex: Path) -> None:
    """200 naming the binary, its version, the backend, the discovered models and a running
    reaper; after the binary is deleted, 503 whose reason names it, while /healthz stays 200."""
    binary = tmp_path / "bin" / "codex"
    binary.parent.mkdir()
    shutil.copy2(fake_codex, binary)
    app = create_app(
        make_settings(tmp_path, codex_path=binary, backend="exec"),
        environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    with trio.fail_after(30):
        async with app.test_app():
            client = app.test_client()
            r = await client.get("/v1/readyz")
            body = await r.get_json()
            assert r.status_code == 200, body
            assert body["codex"] == {"path": str(binary), "version": "codex-cli 0.169.0-fake"}
            assert body["backend"] == "exec"
            assert body["models"] == 2  # gpt-test and org/gpt-test-2; gpt-hidden is not listed
            assert body["reaper"]["running"] is True
            assert body["reaper"]["pid"] == components(app).reaper.pid  # type: ignore[union-attr]
            assert body["warnings"] == []

            binary.unlink()
            r = await client.get("/readyz")
            body = await r.get_json()
            assert r.status_code == 503, body
            assert body["status"] == "not_ready"
            (reason,) = body["reasons"]
            assert str(binary) in reason
            assert (await client.get("/healthz")).status_code == 200


async def test_a_binary_without_version_is_ready_with_a_warning(tmp_path: Path) -> None:
    """A Codex that prints no version (here /bin/false) is reported, not refused."""
    app = create_app(
        make_settings(tmp_path, codex_path=Path("/bin/false"), backend="exec"),
        environ={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    with trio.fail_after(30):
        async with app.test_app():
            r = await app.test_client().get("/readyz")
            body = await r.get_json()
    assert body["codex"]["version"] is None
    assert body["warnings"] == ["`/bin/false --version` printed no version at startup"]
