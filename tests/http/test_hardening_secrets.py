"""Secrets and guessing: a response-id secret shorter than 32 bytes stops the server with a
message naming the variable, and failed API-key attempts are limited per client address
(429 with ``Retry-After``, whatever key the next attempt presents, so a right guess cannot be
told from a wrong one while the address is locked out)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import running_app
from trio_codex.errors import AuthenticationError, RateLimitError
from trio_codex.http.guards import FailedAuthLimiter
from trio_codex.settings import Settings, SettingsError

KEYS = ("sk-right",)


def env(tmp: str, **extra: str) -> dict[str, str]:
    return {"CODEX_PATH": "/bin/sh", "CODEX_HOME": tmp, "CODEX_WORKDIR": tmp, **extra}


@pytest.mark.parametrize("secret", ["x", "a" * 31, "short-secret"])
def test_short_response_id_secret_is_refused(tmp_path: object, secret: str) -> None:
    with pytest.raises(SettingsError, match="TRIO_CODEX_RESPONSE_ID_SECRET") as info:
        Settings.from_env(env(str(tmp_path), TRIO_CODEX_RESPONSE_ID_SECRET=secret))
    assert "32" in str(info.value)


def test_long_enough_secret_and_unset_secret_pass(tmp_path: object) -> None:
    secret = "s" * 32
    settings = Settings.from_env(env(str(tmp_path), TRIO_CODEX_RESPONSE_ID_SECRET=secret))
    assert settings.response_id_secret == secret.encode()
    assert len(Settings.from_env(env(str(tmp_path))).response_id_secret) == 32


def test_failed_attempts_lock_the_address_out() -> None:
    limiter = FailedAuthLimiter(KEYS, max_failures=3)
    for i in range(3):
        with pytest.raises(AuthenticationError):
            limiter.check("sk-wrong", "10.0.0.1", now=float(i))
    # The fourth attempt is refused before the key is looked at: even the right key.
    with pytest.raises(RateLimitError) as info:
        limiter.check("sk-right", "10.0.0.1", now=3.0)
    assert info.value.status_code == 429
    assert info.value.headers()["Retry-After"] == "57"
    # Another address is not affected; the locked one is free once the window has passed.
    assert limiter.check("sk-right", "10.0.0.2", now=3.0) == "sk-right"
    assert limiter.check("sk-right", "10.0.0.1", now=60.5) == "sk-right"


def test_successes_and_missing_keys_do_not_count() -> None:
    limiter = FailedAuthLimiter(KEYS, max_failures=2)
    for i in range(10):
        assert limiter.check("sk-right", "a", now=float(i)) == "sk-right"
        with pytest.raises(AuthenticationError) as info:
            limiter.check(None, "a", now=float(i))
        assert info.value.code == "missing_api_key"
    with pytest.raises(AuthenticationError):
        limiter.check("sk-wrong", "a", now=11.0)
    assert limiter.check("sk-right", "a", now=11.0) == "sk-right"


def test_ipv6_addresses_share_their_64_prefix() -> None:
    """One host owns a whole /64: rotating its low bits does not buy new attempts."""
    limiter = FailedAuthLimiter(KEYS, max_failures=2)
    for suffix in ("1", "2"):
        with pytest.raises(AuthenticationError):
            limiter.check("sk-wrong", f"2001:db8:1:2::{suffix}", now=0.0)
    with pytest.raises(RateLimitError):
        limiter.check("sk-wrong", "2001:db8:1:2::ffff", now=0.0)
    with pytest.raises(AuthenticationError):
        limiter.check("sk-wrong", "2001:db8:1:3::1", now=0.0)


def test_auth_off_never_limits() -> None:
    limiter = FailedAuthLimiter((), max_failures=1)
    for _ in range(5):
        assert limiter.check("anything", "a", now=0.0) is None


def test_memory_is_bounded() -> None:
    limiter = FailedAuthLimiter(KEYS, max_failures=5, max_addresses=100)
    for i in range(1000):
        with pytest.raises(AuthenticationError):
            limiter.check("sk-wrong", f"10.{i // 256}.{i % 256}.1", now=0.0)
    assert limiter.tracked <= 100


async def test_the_app_locks_out_an_address_that_guesses_keys(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Through the app: ten wrong keys from one address, then even the right key is a 429
    with Retry-After until the window passes; then the right key works again."""
    async with running_app(tmp_path, backend, api_keys=KEYS) as app:
        client = app.test_client()

        async def ask(key: str) -> int:
            r = await client.post(
                "/v1/chat/completions",
                json=chat_body(),
                headers={"Authorization": f"Bearer {key}"},
            )
            return r.status_code

        assert [await ask(f"sk-wrong-{n}") for n in range(10)] == [401] * 10
        r = await client.post(
            "/v1/chat/completions", json=chat_body(), headers={"Authorization": "Bearer sk-right"}
        )
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) > 0
        await trio.sleep(61)
        assert await ask("sk-right") == 200
