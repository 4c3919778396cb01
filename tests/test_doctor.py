"""``trio-codex doctor``: each check's verdict from what was observed (pure), the table and the
exit status. The probes themselves are tested in ``tests/system/test_selfcheck.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_codex import doctor
from trio_codex.codex import selfcheck
from trio_codex.codex.localonly import ProviderVerdict
from trio_codex.run.events import MessageCompleted, TurnCompleted, Usage
from trio_codex.settings import BackendName, SettingsError

OPENAI = ProviderVerdict(
    "openai", "https://api.openai.com/v1", False, "built-in provider `openai` is remote"
)
LOCAL = ProviderVerdict("fake", "http://127.0.0.1:9/v1", True, "a loopback address")
LOGGED_IN = selfcheck.Probe(0, "", "Logged in using ChatGPT\n")
LOGGED_OUT = selfcheck.Probe(1, "", "Not logged in\n")


def _auth(
    provider: str = "openai",
    table: dict[str, object] | None = None,
    verdict: ProviderVerdict = OPENAI,
    login: selfcheck.Probe | None = LOGGED_OUT,
    **environ: str,
) -> doctor.Check:
    return doctor.check_auth(
        provider, table or {}, verdict, login, environ=environ, login_command="trio-codex codex"
    )


def test_a_missing_codex_is_a_binary_failure_with_the_install_fix() -> None:
    check = doctor.check_settings(SettingsError("CODEX_PATH: 'codex' is not an executable"), None)
    assert (check.name, check.status) == ("codex binary", "fail")
    assert "trio-codex[cli]" in check.fix


def test_a_bad_variable_is_a_settings_failure() -> None:
    check = doctor.check_settings(SettingsError("CODEX_TIMEOUT: 'x' is not a number"), None)
    assert (check.name, check.status) == ("settings", "fail")
    assert "CODEX_TIMEOUT" in check.detail


@pytest.mark.parametrize(
    ("stdout", "status"),
    [
        ("codex-cli 0.169.0\n", "ok"),
        ("codex-cli 0.171.0\n", "ok"),
        ("codex-cli 0.163.0\n", "ok"),
        ("codex-cli 0.99.1\n", "warn"),
    ],
)
def test_the_binary_row_knows_the_tested_versions(stdout: str, status: str) -> None:
    check = doctor.check_binary(Path("/x/codex"), "PATH", selfcheck.Probe(0, stdout))
    assert check.status == status
    assert stdout.strip() in check.detail


def test_a_binary_that_does_not_run_fails() -> None:
    check = doctor.check_binary(Path("/x/codex"), "PATH", selfcheck.Probe(error="cannot run"))
    assert check.status == "fail"
    assert check.fix == doctor.INSTALL_FIX


def test_install_source_names_the_extra_npm_and_codex_path(tmp_path: Path) -> None:
    bundled = tmp_path / "site-packages" / "codex_cli_bin" / "bin" / "codex"
    assert "cli extra" in doctor.install_source(
        bundled, environ={}, bundled=bundled, native=bundled
    )
    npm = tmp_path / "node_modules" / ".bin" / "codex"
    source = doctor.install_source(npm, environ={"CODEX_PATH": str(npm)}, bundled=None, native=npm)
    assert source == "CODEX_PATH, npm @openai/codex"
    other = tmp_path / "bin" / "codex"
    assert doctor.install_source(other, environ={}, bundled=None, native=other) == (
        "PATH, a standalone binary"
    )


def test_app_server_row() -> None:
    ok = selfcheck.Probe(0, answer={"id": 0, "result": {}}, seconds=0.2)
    assert doctor.check_app_server(ok).status == "ok"
    refused = selfcheck.Probe(0, answer={"id": 0, "error": {"message": "nope"}})
    assert doctor.check_app_server(refused).status == "fail"
    silent = selfcheck.Probe(
        error="no answer to initialize within 10 s", stderr="\x1b[31mboom\x1b[0m"
    )
    check = doctor.check_app_server(silent)
    assert check.status == "fail"
    assert "boom" in check.detail
    assert "\x1b" not in check.detail


def test_selected_provider_reads_the_config() -> None:
    text = 'model_provider = "p"\n[model_providers.p]\nname = "p"\nenv_key = "P_KEY"\n'
    assert doctor.selected_provider(text) == ("p", {"name": "p", "env_key": "P_KEY"})
    assert doctor.selected_provider(None) == ("openai", {})
    assert doctor.selected_provider("not = [toml") == ("openai", {})


def test_auth_openai_needs_a_login() -> None:
    assert _auth(login=LOGGED_IN).status == "ok"
    failed = _auth(login=LOGGED_OUT)
    assert failed.status == "fail"
    assert "trio-codex codex login --device-auth" in failed.fix
    assert "--with-api-key" in failed.fix
    assert _auth(login=LOGGED_OUT, CODEX_API_KEY="sk-1").status == "ok"


def test_auth_custom_provider_needs_its_env_key() -> None:
    table: dict[str, object] = {"name": "p", "env_key": "P_KEY"}
    missing = _auth("p", table, LOCAL, login=LOGGED_OUT)
    assert missing.status == "fail"
    assert "P_KEY" in missing.detail
    assert missing.fix.startswith("export P_KEY=")
    assert _auth("p", table, LOCAL, login=LOGGED_OUT, P_KEY="k").status == "ok"
    keyless = _auth("p", {"name": "p"}, LOCAL, login=LOGGED_OUT)
    assert keyless.status == "ok"
    openai_auth = _auth("p", {"name": "p", "requires_openai_auth": True}, LOCAL, LOGGED_OUT)
    assert openai_auth.status == "fail"


def test_auth_local_oss_provider_needs_nothing() -> None:
    verdict = ProviderVerdict("ollama", "http://localhost:11434/v1", True, "loopback")
    assert _auth("ollama", verdict=verdict, login=LOGGED_OUT).status == "ok"


def test_auth_broken_config_fails() -> None:
    broken = ProviderVerdict("", None, False, "the Codex config.toml cannot be parsed (x)")
    check = _auth(verdict=broken, login=LOGGED_IN)
    assert check.status == "fail"
    assert "cannot be parsed" in check.detail


def test_local_only_row() -> None:
    assert doctor.check_local_only(False, OPENAI).status == "ok"
    assert "api.openai.com" in doctor.check_local_only(False, OPENAI).detail
    assert doctor.check_local_only(True, LOCAL).status == "ok"
    refused = doctor.check_local_only(True, OPENAI)
    assert refused.status == "fail"
    assert "local_only_violation" in refused.detail
    assert "CODEX_LOCAL_ONLY" in refused.fix


def test_codex_home_row(tmp_path: Path) -> None:
    assert doctor.check_codex_home(tmp_path, *doctor._writable(tmp_path)).status == "ok"
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    check = doctor.check_codex_home(tmp_path / "missing", *doctor._writable(tmp_path / "missing"))
    assert check.status == "fail"
    assert "not writable" in check.detail


def test_exec_row() -> None:
    good = selfcheck.ExecProbe(exit_code=0, seconds=1.5)
    good.transcript.feed(MessageCompleted("m1", "ok"))
    good.transcript.feed(TurnCompleted(Usage(input_tokens=10, output_tokens=1)))
    check = doctor.check_exec(good)
    assert check.status == "ok"
    assert "'ok'" in check.detail
    assert "11 tokens" in check.detail
    empty = selfcheck.ExecProbe(exit_code=1, stderr="Error: 401 Unauthorized\n")
    failed = doctor.check_exec(empty)
    assert failed.status == "fail"
    assert "401" in failed.detail
    assert doctor.check_exec(selfcheck.ExecProbe(error="no answer within 120 s")).status == "fail"


def test_the_table_and_the_exit_status() -> None:
    rows = [
        doctor.Check("a", "ok", "fine", "never shown"),
        doctor.Check("bb", "warn", "hm", "maybe this"),
        doctor.Check("c", "fail", "broken", "do that"),
    ]
    text = doctor.render(rows)
    assert "never shown" not in text
    assert "fix:    maybe this" in text
    assert "fix:    do that" in text
    assert text.splitlines()[0].split() == ["check", "status", "detail"]
    assert "1 check(s) failed" in text
    assert doctor.exit_code(rows) == 1
    assert doctor.exit_code(rows[:2]) == 0
    assert doctor.render(rows[:2]).endswith("ready to serve")


@pytest.mark.parametrize(
    ("requested", "version", "status", "backend"),
    [
        ("auto", "codex-cli 0.169.0\n", "ok", "app-server"),
        ("auto", "codex-cli 0.163.0\n", "warn", "exec"),  # the cli extra's Codex
        ("exec", "codex-cli 0.171.0\n", "ok", "exec"),
        ("app-server", "codex-cli 0.171.0\n", "ok", "app-server"),
    ],
)
def test_the_backend_row_resolves_auto_and_warns_on_the_exec_fallback(
    requested: BackendName, version: str, status: str, backend: str
) -> None:
    check, chosen = doctor.check_backend(requested, selfcheck.Probe(0, version, ""))
    assert (check.name, check.status, chosen) == ("backend", status, backend)
    assert check.detail.startswith(backend)
    if status == "warn":
        assert "older than 0.169.0" in check.detail
        assert "npm install -g @openai/codex" in check.fix
