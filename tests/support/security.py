"""Inputs and checks the security tests of every layer share: Codex config files naming a
provider, a chat body with an image, the sandbox double-switch matrix, and a POST to the app
in process whose error envelope is checked."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from quart_trio import QuartTrio

from tests.support.fakes import tiny_png
from trio_codex.settings import SANDBOX_MODES

# --- Codex config and images ----------------------------------------------------------------------


PNG = tiny_png(b"\x10\x80\xf0")  # Codex passes PNGs to the upstream byte for byte
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
IMAGE_PARAM = "messages[0].content[1].image_url"


def image_body(prompt: str, url: str = PNG_URL, **extra: Any) -> dict[str, Any]:
    """A chat body whose only message is ``prompt`` plus one ``image_url`` part."""
    content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text, encoding="utf-8")


def provider_config(base_url: str, pid: str = "lan", env_key: str | None = None) -> str:
    lines = [f'model_provider = "{pid}"', f"[model_providers.{pid}]", f'name = "{pid}"']
    lines.append(f'base_url = "{base_url}"')
    if env_key is not None:
        lines.append(f'env_key = "{env_key}"')
    return "\n".join(lines) + "\n"


REMOTE = provider_config("http://192.168.1.10:8080/v1")
LOOPBACK = provider_config("http://127.0.0.1:11434/v1", pid="box")


# --- the app in process ---------------------------------------------------------------------------


async def post(app: QuartTrio, body: Any, **headers: str) -> tuple[int, Any]:
    """POST a chat body (any JSON value) and return the status and the parsed JSON answer."""
    response = await app.test_client().post("/v1/chat/completions", json=body, headers=headers)
    return response.status_code, await response.get_json()


def assert_error(status: int, body: Any, expected: int, code: str, param: str | None) -> str:
    """Check an OpenAI error envelope; return its message."""
    assert status == expected, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["code"], body["error"]["param"]) == (code, param)
    message: str = body["error"]["message"]
    return message


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# --- the danger double switch ---------------------------------------------------------------------


DANGER = "danger-full-access"
OVERRIDES: list[str | None] = [None, *SANDBOX_MODES]
VALID_SERVERS = [
    (default, allow)
    for default in SANDBOX_MODES
    for allow in (False, True)
    if not (default == DANGER and not allow)
]


def expected_sandbox(default: str, allow: bool, override: str | None) -> str | None:
    """The sandbox Codex must get, or None when the request must be refused with 403."""
    effective = override or default
    return None if effective == DANGER and not allow else effective
