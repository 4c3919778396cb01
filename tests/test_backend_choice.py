"""``CODEX_BACKEND=auto`` (the default): app-server when the Codex CLI is new enough for it,
else exec with a warning naming the version; explicit choices are kept as they are."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.support.fakes import make_settings
from trio_codex.codex.app_server_check import MIN_VERSION, choose_backend, dotted_version
from trio_codex.settings import BackendName, Settings
from trio_codex.startup import resolve_backend

MIN = dotted_version(MIN_VERSION)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        (f"codex-cli {MIN}", "app-server"),
        ("codex-cli 0.171.0", "app-server"),
        ("codex-cli 1.0.0", "app-server"),
        ("codex-cli 0.163.0", "exec"),  # the cli extra's Codex (PyPI)
        ("codex-cli 0.168.9", "exec"),
        ("no version here", "exec"),
    ],
)
def test_auto_is_app_server_from_the_minimum_version_on(version: str, expected: str) -> None:
    backend, why = choose_backend("auto", version)
    assert backend == expected
    assert why.startswith("CODEX_BACKEND=auto")
    if expected == "exec":
        assert f"older than {MIN}" in why


@pytest.mark.parametrize("requested", ["exec", "app-server"])
def test_an_explicit_backend_is_kept_whatever_the_version(requested: BackendName) -> None:
    for version in ("codex-cli 0.163.0", "codex-cli 0.171.0"):
        assert choose_backend(requested, version) == (requested, f"CODEX_BACKEND={requested}")


def test_auto_is_the_default() -> None:
    assert Settings.from_env({}, make_workdir=False).backend == "auto"


def test_resolve_logs_the_choice_and_warns_on_the_fallback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auto = make_settings(tmp_path, backend="auto")
    with caplog.at_level(logging.INFO, logger="trio_codex"):
        new = resolve_backend(auto, "codex-cli 0.171.0")
        old = resolve_backend(auto, "codex-cli 0.163.0")
        kept = resolve_backend(make_settings(tmp_path, backend="exec"), "codex-cli 0.171.0")
    assert (new.backend, old.backend, kept.backend) == ("app-server", "exec", "exec")
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels[0][0] == "INFO"
    assert "backend: app-server" in levels[0][1]
    assert levels[1][0] == "WARNING"
    assert "backend: exec" in levels[1][1]
    assert "0.163.0 is older than" in levels[1][1]
    assert len(levels) == 2  # an explicit choice says nothing
