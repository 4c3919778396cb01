"""Where things are, from this file: the repository, ``tests/``, its data and Node packages."""

from __future__ import annotations

from pathlib import Path

SUPPORT_DIR = Path(__file__).resolve().parent
TESTS_DIR = SUPPORT_DIR.parent
REPO_ROOT = TESTS_DIR.parent
DATA_DIR = TESTS_DIR / "data"
NODE_DIR = TESTS_DIR / "node"
"""``tests/node``: the pinned Codex CLI and the Node SDK (``npm ci --prefix tests/node``)."""
FAKE_CODEX_SCRIPT = SUPPORT_DIR / "fake_codex.py"
FAKE_APP_SERVER_SCRIPT = SUPPORT_DIR / "fake_app_server.py"
FAKE_UPSTREAM_SCRIPT = SUPPORT_DIR / "fake_upstream.py"
