"""``GET /readyz``: the readiness verdict and its reasons (``readiness.py``), in process with a
scripted backend, and the verdict itself for a binary, a reaper and a catalog it is handed."""

from __future__ import annotations

from pathlib import Path

import pytest
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.servers import runner_of, running_app, service_of
from trio_codex.codex.models import ModelCatalog
from trio_codex.codex.reaper import Reaper
from trio_codex.readiness import Readiness


async def test_ready_with_a_scripted_backend(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """200 under /readyz and /v1/readyz, public even with API keys, with the backend's name, the
    model count and the slots; no binary to report for an in-process backend."""
    async with running_app(tmp_path, backend, api_keys=("sk-a",), max_parallel_requests=3) as app:
        client = app.test_client()
        for path in ("/readyz", "/v1/readyz"):
            r = await client.get(path)
            assert r.status_code == 200, await r.get_data()
            body = await r.get_json()
            assert body["status"] == "ready"
            assert body["reasons"] == []
            assert body["backend"] == "ScriptedBackend"
            assert body["models"] == 2
            assert body["codex"] == {"path": None, "version": None}
            assert body["local_only"] is None
            assert body["slots"] == {"total": 3, "running": 0, "queued": 0}
            assert body["warm_spares"] is None  # a backend without a warm pool


async def test_local_only_refused_config_is_not_ready(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """CODEX_LOCAL_ONLY=1 with the default (OpenAI) provider: 503 naming the refusal; a local
    provider in config.toml makes it ready again without a restart."""
    async with running_app(tmp_path, backend, local_only=True, environ={}) as app:
        client = app.test_client()
        r = await client.get("/readyz")
        assert r.status_code == 503
        body = await r.get_json()
        assert body["status"] == "not_ready"
        assert body["local_only"]["local"] is False
        (reason,) = body["reasons"]
        assert reason.startswith("CODEX_LOCAL_ONLY=1 refuses the Codex configuration")
        home = service_of(app).settings.codex_home
        (home / "config.toml").write_text('model_provider = "lmstudio"\n', encoding="utf-8")
        r = await client.get("/readyz")
        assert r.status_code == 200, await r.get_json()
        assert (await r.get_json())["local_only"]["local"] is True


async def test_verdict_names_every_failing_check(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A binary that is gone, a reaper that does not run and an empty catalog are three reasons;
    a missing version is only a warning."""
    async with running_app(tmp_path, backend) as app:
        service = service_of(app)
        service.catalog = ModelCatalog([])
        gone = tmp_path / "codex-was-here"
        report = Readiness(
            service,
            runner_of(app),
            "exec",
            binary=gone,
            reaper=Reaper(settle=0.0),
            started=True,
        ).report()
    assert not report.ready
    assert len(report.reasons) == 3, report.reasons
    assert str(gone) in report.reasons[0]
    assert "reaper" in report.reasons[1]
    assert "no model" in report.reasons[2]
    assert report.body["reaper"] == {"running": False, "pid": None, "process_groups": 0}
    assert report.body["warnings"] == [f"`{gone} --version` printed no version at startup"]


@pytest.mark.parametrize("started", [False, True])
async def test_not_ready_until_started(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, started: bool
) -> None:
    """Before the startup probes are over the server is not ready."""
    executable = tmp_path / "codex"
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    async with running_app(tmp_path, backend) as app:
        report = Readiness(
            service_of(app), runner_of(app), "exec", binary=executable, version="v", started=started
        ).report()
    assert report.ready is started
    assert report.reasons == (() if started else ("the server is starting",))
