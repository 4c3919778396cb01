"""What a ``read-only`` Codex run can still reach: a measurement for the trust model.

Runs a command under the very sandbox ``codex exec -s read-only`` gives its commands
(``codex sandbox -c sandbox_mode=read-only -- ...``, the pinned CLI) against a CODEX_HOME laid
out like a server's. Measured with Codex 0.169.0 on Linux: the sandbox *reads* the whole
CODEX_HOME (``auth.json`` with the upstream credentials, every other caller's rollout in
``sessions/``), *writes* nothing there, and sees no process of the server (a PID namespace).
So every API key holder can read every conversation and the upstream credentials of the
server's CODEX_HOME: separate tenants with one server and one CODEX_HOME each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]

TESTS = Path(__file__).resolve().parents[1]


def codex_cli() -> Path:
    """The pinned CLI (``TRIO_CODEX_TEST_CODEX``, else ``tests/node``); skip, or fail in CI."""
    named = os.environ.get("TRIO_CODEX_TEST_CODEX")
    found = shutil.which(named) if named else None
    candidate = Path(found) if found else TESTS / "node" / "node_modules" / ".bin" / "codex"
    if not candidate.exists():
        message = "Codex CLI not installed: run npm ci --prefix tests/node"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return candidate


def sandboxed(codex: Path, home: Path, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(codex), "sandbox", "-c", "sandbox_mode=read-only", "--", "sh", "-c", script],
        env={
            "PATH": os.environ.get("PATH", os.defpath),
            "HOME": os.fspath(home.parent),
            "CODEX_HOME": os.fspath(home),
        },
        cwd=home.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def codex_home(tmp_path: Path) -> Path:
    home = tmp_path / "codex-home"
    (home / "sessions" / "2026" / "01" / "01").mkdir(parents=True)
    (home / "auth.json").write_text('{"OPENAI_API_KEY": "sk-upstream-secret"}')
    (home / "auth.json").chmod(0o600)
    rollout = home / "sessions" / "2026" / "01" / "01" / "rollout-other-tenant.jsonl"
    rollout.write_text('{"payload": "another caller\'s conversation"}\n')
    return home


def test_read_only_sandbox_reads_codex_home_but_cannot_write_it(codex_home: Path) -> None:
    done = sandboxed(
        codex_cli(),
        codex_home,
        'cat "$CODEX_HOME/auth.json"; echo; cat "$CODEX_HOME"/sessions/*/*/*/*.jsonl; '
        'echo x > "$CODEX_HOME/planted" && echo wrote || echo write-refused',
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert "sk-upstream-secret" in done.stdout  # the upstream credentials
    assert "another caller's conversation" in done.stdout  # every other session
    assert "write-refused" in done.stdout
    assert not (codex_home / "planted").exists()


def test_read_only_sandbox_sees_no_server_process(codex_home: Path) -> None:
    done = sandboxed(
        codex_cli(),
        codex_home,
        f"cat /proc/{os.getpid()}/environ > /dev/null && echo visible || echo hidden",
    )
    assert "hidden" in done.stdout, done.stdout + done.stderr
