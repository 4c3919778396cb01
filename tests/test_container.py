"""The container files agree with the code (no Docker engine is needed, and none runs here):
the image installs the cli extra pyproject declares, serves on the port it exposes, its health
check asks a route the app answers without a key, and compose points Open WebUI at the server's
``/v1`` (the task model is checked against the real catalog in ``tests/system/test_clients.py``)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.fakes import TEST_CATALOG, make_settings
from trio_codex import create_app

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instruction(name: str) -> list[str]:
    """Every ``NAME ...`` instruction's arguments, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", joined, re.M)]


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def test_the_image_installs_the_cli_extra_that_pyproject_declares() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("openai-codex-cli-bin==") for dep in extras["cli"])
    assert any("'/src[cli]'" in run for run in _instruction("RUN"))


def test_the_image_runs_as_a_user_under_tini_and_serves_the_exposed_port() -> None:
    user = _instruction("USER")
    assert user
    assert not user[-1].startswith(("0", "root"))
    entrypoint = json.loads(_instruction("ENTRYPOINT")[-1])
    assert entrypoint[:3] == ["tini", "--", "trio-codex"]
    cmd = json.loads(_instruction("CMD")[-1])
    port = cmd[cmd.index("--bind") + 1].rpartition(":")[2]
    assert _instruction("EXPOSE") == [port]
    assert "/codex-home" in _instruction("VOLUME")[-1]
    assert "CODEX_HOME=/codex-home" in _instruction("ENV")[-1]


async def test_the_health_check_asks_a_public_route(tmp_path: Path) -> None:
    """The HEALTHCHECK URL answers 200 even when the server requires an API key."""
    check = _instruction("HEALTHCHECK")[-1]
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", check)
    assert url is not None
    cmd = json.loads(_instruction("CMD")[-1])
    assert cmd[cmd.index("--bind") + 1].endswith(":" + url.group(1))
    # exec: this app has no Codex (CODEX_PATH is Python), and exec starts without a handshake.
    settings = make_settings(tmp_path, api_keys=("secret",), backend="exec")
    app = create_app(settings, catalog=TEST_CATALOG)
    async with app.test_app():
        client = app.test_client()
        response = await client.get(url.group(2))
        assert response.status_code == httpx.codes.OK


def test_compose_points_open_webui_at_the_server() -> None:
    services = _compose()["services"]
    server, webui = services["trio-codex"], services["open-webui"]
    port = json.loads(_instruction("CMD")[-1])[-1].rpartition(":")[2]
    env = webui["environment"]
    assert env["OPENAI_API_BASE_URL"] == f"http://trio-codex:{port}/v1"
    # Open WebUI sends the same key the server requires.
    assert env["OPENAI_API_KEY"] == server["environment"]["PROXY_API_KEY"]
    assert webui["depends_on"]["trio-codex"]["condition"] == "service_healthy"
    assert "codex-home:/codex-home" in server["volumes"]
    # The stop timeout covers the graceful timeout (10 s) + the kill grace (2 s) + 1 s.
    assert int(server["stop_grace_period"].removesuffix("s")) >= 13
