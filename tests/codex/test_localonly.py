"""Tests for trio_codex.codex.localonly: which configurations count as local, the policy cache,
and that no argv the server builds can change the provider."""

from __future__ import annotations

import ast
import dataclasses
import itertools
import os
import tomllib
from pathlib import Path

import pytest

from tests.support.security import LOOPBACK, REMOTE, write_config
from trio_codex.codex import localonly
from trio_codex.codex.command import build_argv
from trio_codex.codex.localonly import (
    LOCAL_ONLY_CODEX_ARGS,
    LocalOnlyPolicy,
    ProviderVerdict,
    argv_config_overrides,
    is_loopback_url,
    provider_env_keys,
    resolve_provider,
)
from trio_codex.run.runner import RunSpec

MISSING = "<no config.toml>"
DIRECTORY = "<config.toml is a directory>"
OPENAI_URL = "https://api.openai.com/v1"


def custom(base_url: str | None, *, pid: str = "fake", name: str | None = "fake") -> str:
    """A config whose `model_provider` is the custom provider `pid` with this base_url."""
    lines = [f'model_provider = "{pid}"', f"[model_providers.{pid}]"]
    if name is not None:
        lines.append(f'name = "{name}"')
    if base_url is not None:
        lines.append(f"base_url = '{base_url}'")  # a TOML literal string: no escapes
    return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the table: a config, its environment and overrides, the expected verdict."""

    id: str
    config: str
    provider: str
    base_url: str | None
    local: bool
    reason_has: str = ""
    env: tuple[tuple[str, str], ...] = ()
    overrides: tuple[tuple[str, object], ...] = ()


LOCAL_FAKE = custom("http://127.0.0.1:18080/v1")

CASES = [
    Case("no config file", MISSING, "openai", OPENAI_URL, False, "built-in provider `openai`"),
    Case("empty config", "", "openai", OPENAI_URL, False, "not a loopback address"),
    Case("built-in openai", 'model_provider = "openai"\n', "openai", OPENAI_URL, False),
    Case(
        "openai, openai_base_url loopback",
        'openai_base_url = "http://127.0.0.1:8080/v1"\n',
        "openai",
        "http://127.0.0.1:8080/v1",
        True,
        "a loopback address",
    ),
    Case(
        "openai, openai_base_url on the LAN",
        'model_provider = "openai"\nopenai_base_url = "http://192.168.1.10:8080/v1"\n',
        "openai",
        "http://192.168.1.10:8080/v1",
        False,
        "not a loopback address",
    ),
    Case(
        "ollama default", 'model_provider = "ollama"\n', "ollama", "http://localhost:11434/v1", True
    ),
    Case(
        "ollama, CODEX_OSS_BASE_URL remote",
        'model_provider = "ollama"\n',
        "ollama",
        "http://gpu.example.com:11434/v1",
        False,
        "host name other than localhost",
        env=(("CODEX_OSS_BASE_URL", "http://gpu.example.com:11434/v1"),),
    ),
    Case(
        "ollama, CODEX_OSS_BASE_URL loopback wins over CODEX_OSS_PORT",
        'model_provider = "ollama"\n',
        "ollama",
        "http://127.0.0.1:9999/v1",
        True,
        env=(("CODEX_OSS_BASE_URL", "http://127.0.0.1:9999/v1"), ("CODEX_OSS_PORT", "1234")),
    ),
    Case(
        "ollama, blank CODEX_OSS_BASE_URL is ignored",
        'model_provider = "ollama"\n',
        "ollama",
        "http://localhost:11434/v1",
        True,
        env=(("CODEX_OSS_BASE_URL", "  "),),
    ),
    Case(
        "ollama, CODEX_OSS_PORT",
        'model_provider = "ollama"\n',
        "ollama",
        "http://localhost:5555/v1",
        True,
        env=(("CODEX_OSS_PORT", "5555"),),
    ),
    Case(
        "ollama, CODEX_OSS_PORT that is not a u16 keeps the default",
        'model_provider = "ollama"\n',
        "ollama",
        "http://localhost:11434/v1",
        True,
        env=(("CODEX_OSS_PORT", "99999"),),
    ),
    Case(
        "lmstudio default",
        'model_provider = "lmstudio"\n',
        "lmstudio",
        "http://localhost:1234/v1",
        True,
    ),
    Case(
        "lmstudio, CODEX_OSS_PORT",
        'model_provider = "lmstudio"\n',
        "lmstudio",
        "http://localhost:4321/v1",
        True,
        env=(("CODEX_OSS_PORT", "4321"),),
    ),
    Case("custom 127.0.0.1", LOCAL_FAKE, "fake", "http://127.0.0.1:18080/v1", True),
    Case("custom 127.5.6.7", custom("http://127.5.6.7/v1"), "fake", "http://127.5.6.7/v1", True),
    Case(
        "custom localhost",
        custom("http://localhost:8000/v1"),
        "fake",
        "http://localhost:8000/v1",
        True,
    ),
    Case(
        "custom LOCALHOST.",
        custom("https://LOCALHOST.:8443/v1"),
        "fake",
        "https://LOCALHOST.:8443/v1",
        True,
    ),
    Case("custom [::1]", custom("http://[::1]:8080/v1"), "fake", "http://[::1]:8080/v1", True),
    Case(
        "custom LAN 192.168.1.10",
        custom("http://192.168.1.10:8080/v1"),
        "fake",
        "http://192.168.1.10:8080/v1",
        False,
        "not a loopback address",
    ),
    Case("custom 10.0.0.1", custom("http://10.0.0.1/v1"), "fake", "http://10.0.0.1/v1", False),
    Case(
        "custom public 8.8.8.8", custom("https://8.8.8.8/v1"), "fake", "https://8.8.8.8/v1", False
    ),
    Case(
        "custom public IPv6",
        custom("http://[2001:4860:4860::8888]/v1"),
        "fake",
        "http://[2001:4860:4860::8888]/v1",
        False,
        "not a loopback address",
    ),
    Case(
        "custom IPv4-mapped loopback is not accepted",
        custom("http://[::ffff:127.0.0.1]/v1"),
        "fake",
        "http://[::ffff:127.0.0.1]/v1",
        False,
    ),
    Case(
        "custom example.com",
        custom("https://example.com/v1"),
        "fake",
        "https://example.com/v1",
        False,
        "host name other than localhost",
    ),
    Case(
        "custom 0.0.0.0", custom("http://0.0.0.0:8080/v1"), "fake", "http://0.0.0.0:8080/v1", False
    ),
    Case("custom missing base_url", custom(None), "fake", None, False, "has no `base_url`"),
    Case(
        "custom ftp scheme",
        custom("ftp://127.0.0.1/v1"),
        "fake",
        "ftp://127.0.0.1/v1",
        False,
        "not an http(s) URL",
    ),
    Case(
        "custom user info hiding a remote host",
        custom("http://127.0.0.1@evil.example/v1"),
        "fake",
        "http://127.0.0.1@evil.example/v1",
        False,
    ),
    Case(
        "custom backslash parser trick",
        custom("http://evil.example\\@127.0.0.1/v1"),
        "fake",
        "http://evil.example\\@127.0.0.1/v1",
        False,
        "cannot be parsed safely",
    ),
    Case(
        "custom port out of range",
        custom("http://127.0.0.1:99999/v1"),
        "fake",
        "http://127.0.0.1:99999/v1",
        False,
        "cannot be parsed safely",
    ),
    Case(
        "custom provider without name",
        custom("http://127.0.0.1/v1", name=None),
        "fake",
        None,
        False,
        "has no `name`",
    ),
    Case(
        "unknown provider id",
        'model_provider = "nope"\n',
        "nope",
        None,
        False,
        "neither built in nor defined",
    ),
    Case("broken TOML", "model_provider = \n", "", None, False, "cannot be parsed"),
    Case("unreadable config (a directory)", DIRECTORY, "", None, False, "cannot be read"),
    Case(
        "model_provider not a string",
        "model_provider = 3\n",
        "",
        None,
        False,
        "not a string",
    ),
    Case(
        "legacy profile selecting a local provider",
        'profile = "loc"\n[profiles.loc]\nmodel_provider = "ollama"\n',
        "openai",
        None,
        False,
        "legacy `profile` key",
    ),
    Case(
        "legacy profile selecting a remote provider",
        'model_provider = "ollama"\nprofile = "rem"\n[profiles.rem]\nmodel_provider = "openai"\n',
        "ollama",
        None,
        False,
        "legacy `profile` key",
    ),
    Case(
        "profile selected by a -c override",
        LOCAL_FAKE + '[profiles.x]\nmodel_provider = "fake"\n',
        "fake",
        None,
        False,
        "legacy `profile` key",
        overrides=(("profile", "x"),),
    ),
    Case(
        "unselected [profiles.x] table is ignored",
        LOCAL_FAKE + '[profiles.x]\nmodel_provider = "openai"\n',
        "fake",
        "http://127.0.0.1:18080/v1",
        True,
    ),
    Case(
        "-c override switching openai to ollama",
        'model_provider = "openai"\n',
        "ollama",
        "http://localhost:11434/v1",
        True,
        overrides=(("model_provider", "ollama"),),
    ),
    Case(
        "-c override switching a local provider to openai",
        LOCAL_FAKE,
        "openai",
        OPENAI_URL,
        False,
        overrides=(("model_provider", "openai"),),
    ),
    Case(
        "-c dotted override moving base_url to the LAN",
        LOCAL_FAKE,
        "fake",
        "http://10.0.0.5/v1",
        False,
        "provider `fake` sends prompts to http://10.0.0.5/v1, which is not a loopback address",
        overrides=(("model_providers.fake.base_url", "http://10.0.0.5/v1"),),
    ),
    Case(
        "-c overrides defining a new local provider, last one wins",
        "",
        "mine",
        "http://127.0.0.1:7000/v1",
        True,
        overrides=(
            ("model_providers.mine.name", "mine"),
            ("model_providers.mine.base_url", "http://10.0.0.5/v1"),
            ("model_providers.mine.base_url", "http://127.0.0.1:7000/v1"),
            ("model_provider", "mine"),
        ),
    ),
    Case(
        "-c inline-table override merges with the file's table",
        custom("http://10.0.0.5/v1"),
        "fake",
        "http://127.0.0.1:7000/v1",
        True,
        overrides=(("model_providers.fake", {"base_url": "http://127.0.0.1:7000/v1"}),),
    ),
    Case(
        "reserved id ollama redefined",
        'model_provider = "ollama"\n[model_providers.ollama]\nname = "o"\n'
        'base_url = "http://127.0.0.1:11434/v1"\n',
        "ollama",
        None,
        False,
        "reserved built-in provider `ollama`",
    ),
    Case(
        "reserved id openai redefined by a -c override",
        LOCAL_FAKE,
        "fake",
        None,
        False,
        "reserved built-in provider `openai`",
        overrides=(("model_providers.openai.base_url", "http://127.0.0.1/v1"),),
    ),
    Case(
        "built-in cloud provider gcp with a loopback base_url",
        'model_provider = "gcp"\n[model_providers.gcp]\nbase_url = "http://127.0.0.1/v1"\n',
        "gcp",
        "http://127.0.0.1/v1",
        False,
        "cloud service",
    ),
    Case(
        "built-in amazon-bedrock",
        'model_provider = "amazon-bedrock"\n',
        "amazon-bedrock",
        None,
        False,
    ),
    Case(
        "HTTP_PROXY routes a loopback provider through a proxy",
        LOCAL_FAKE,
        "fake",
        "http://127.0.0.1:18080/v1",
        False,
        "HTTP_PROXY routes that request through a proxy",
        env=(("HTTP_PROXY", "http://proxy.example:3128"),),
    ),
    Case(
        "NO_PROXY network exempts the loopback provider",
        LOCAL_FAKE,
        "fake",
        "http://127.0.0.1:18080/v1",
        True,
        env=(
            ("all_proxy", "socks5://proxy.example:1080"),
            ("NO_PROXY", "example.org, 127.0.0.0/8"),
        ),
    ),
    Case(
        "NO_PROXY=* does not exempt an IP host",
        LOCAL_FAKE,
        "fake",
        "http://127.0.0.1:18080/v1",
        False,
        "NO_PROXY does not exempt 127.0.0.1",
        env=(("http_proxy", "http://proxy.example:3128"), ("NO_PROXY", "*")),
    ),
    Case(
        "HTTPS_PROXY does not apply to an http provider",
        'model_provider = "ollama"\n',
        "ollama",
        "http://localhost:11434/v1",
        True,
        env=(("HTTPS_PROXY", "http://proxy.example:3128"),),
    ),
]


def write_home(tmp_path: Path, config: str) -> Path:
    """A CODEX_HOME under ``tmp_path`` holding ``config`` (or the special MISSING/DIRECTORY)."""
    home = tmp_path / "codex-home"
    home.mkdir()
    if config == DIRECTORY:
        (home / "config.toml").mkdir()
    elif config != MISSING:
        (home / "config.toml").write_text(config, encoding="utf-8")
    return home


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_verdict_table(tmp_path: Path, case: Case) -> None:
    """Each configuration in the table yields the expected provider, URL, locality and reason."""
    home = write_home(tmp_path, case.config)
    verdict = resolve_provider(home, dict(case.env), case.overrides)
    assert (verdict.provider, verdict.base_url, verdict.local) == (
        case.provider,
        case.base_url,
        case.local,
    ), verdict.reason
    assert case.reason_has in verdict.reason
    assert verdict.reason.strip()
    assert "\n" not in verdict.reason


def test_table_is_large_enough() -> None:
    """The table covers at least 24 configurations, with both local and non-local verdicts."""
    assert len(CASES) >= 24
    assert {c.local for c in CASES} == {True, False}
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1", True),
        ("HTTP://127.255.255.254:1/x", True),
        ("https://[0:0:0:0:0:0:0:1]:443/", True),
        ("http://user:pw@localhost/", True),
        (" http://localhost/ ", True),
        ("http://127.1/", False),
        ("http://2130706433/", False),
        ("http://127.0.0.1./", False),
        ("http://[::1%25lo]/", False),
        ("http://127.0.0.%31/", False),
        ("http://local host/", False),
        ("http://127.0.0.1\t.evil.example/", False),
        ("http://[::1/", False),
        ("http://[127.0.0.1]/", False),
        ("http:127.0.0.1/", False),
        ("http:///127.0.0.1/", False),
        ("http://127.0.0.1:80:80/", False),
        ("http://evil.example#@127.0.0.1/", False),
        ("http://" + "".join(chr(ord(c) + 0xFEE0) for c in "localhost"), False),  # fullwidth
        ("//127.0.0.1/", False),
        ("", False),
    ],
)
def test_is_loopback_url(url: str, expected: bool) -> None:
    """is_loopback_url accepts only literal loopback hosts and refuses ambiguous URLs."""
    assert is_loopback_url(url) is expected


def test_policy_rereads_changed_file(tmp_path: Path) -> None:
    """LocalOnlyPolicy follows rewrites, deletion and re-creation of config.toml."""
    home = write_home(tmp_path, LOCAL_FAKE)
    config = home / "config.toml"
    policy = LocalOnlyPolicy(home, {})
    assert policy.verdict().local
    config.write_text(custom("http://192.168.1.10:8080/v1"), encoding="utf-8")
    assert not policy.verdict().local
    config.write_text(custom("http://127.0.0.2/v1"), encoding="utf-8")
    assert policy.verdict().base_url == "http://127.0.0.2/v1"
    config.unlink()
    assert policy.verdict().provider == "openai"
    config.write_text("model_provider = \n", encoding="utf-8")
    assert "cannot be parsed" in policy.verdict().reason
    config.write_text(LOCAL_FAKE, encoding="utf-8")
    assert policy.verdict().local


def test_policy_notices_atomic_replace_with_same_size_and_mtime(tmp_path: Path) -> None:
    """A same-size file renamed over config.toml with the old mtime is noticed (new inode)."""
    home = write_home(tmp_path, custom("http://127.0.0.1:1111/v1"))
    config = home / "config.toml"
    policy = LocalOnlyPolicy(home, {})
    assert policy.verdict().local
    old = config.stat()
    replacement = home / "config.toml.new"
    replacement.write_text(custom("http://10.0.0.99:1111/v1"), encoding="utf-8")
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    assert replacement.stat().st_size == old.st_size
    replacement.replace(config)
    assert not policy.verdict().local


def test_policy_does_not_reparse_unchanged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LocalOnlyPolicy resolves once and serves the cached verdict while the stat is unchanged."""
    home = write_home(tmp_path, LOCAL_FAKE)
    calls: list[Path] = []
    real = localonly.resolve_provider

    def counting(*args: object, **kwargs: object) -> ProviderVerdict:
        calls.append(home)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(localonly, "resolve_provider", counting)
    policy = LocalOnlyPolicy(home, {})
    first = policy.verdict()
    assert all(policy.verdict() is first for _ in range(5))
    assert len(calls) == 1


def test_policy_missing_file_is_a_stable_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing config.toml is cached like any other state and re-resolved once it appears."""
    home = write_home(tmp_path, MISSING)
    calls: list[int] = []
    real = localonly.resolve_provider

    def counting(*args: object, **kwargs: object) -> ProviderVerdict:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(localonly, "resolve_provider", counting)
    policy = LocalOnlyPolicy(home, {})
    assert not policy.verdict().local
    assert not policy.verdict().local
    assert len(calls) == 1
    (home / "config.toml").write_text('model_provider = "lmstudio"\n', encoding="utf-8")
    assert policy.verdict().local
    assert len(calls) == 2


def test_policy_copies_environ_and_overrides(tmp_path: Path) -> None:
    """LocalOnlyPolicy uses the environment and overrides it was given, copied at construction."""
    home = write_home(tmp_path, 'model_provider = "ollama"\n')
    env = {"CODEX_OSS_PORT": "7777"}
    overrides = [("model_provider", "lmstudio")]
    policy = LocalOnlyPolicy(home, env, overrides)
    env["CODEX_OSS_PORT"] = "8888"
    overrides.clear()
    verdict = policy.verdict()
    assert (verdict.provider, verdict.base_url) == ("lmstudio", "http://localhost:7777/v1")


def test_provider_env_keys(tmp_path: Path) -> None:
    """provider_env_keys lists every provider's env_key, including ones added by overrides."""
    home = write_home(
        tmp_path,
        LOCAL_FAKE
        + 'env_key = "FAKE_API_KEY"\n'
        + '[model_providers.other]\nname = "o"\nbase_url = "http://127.0.0.1/v1"\n'
        + 'env_key = "OTHER_KEY"\n'
        + '[model_providers.plain]\nname = "p"\nbase_url = "http://127.0.0.1/v1"\n',
    )
    assert provider_env_keys(home) == {"FAKE_API_KEY", "OTHER_KEY"}
    extra = (("model_providers.plain.env_key", "PLAIN_KEY"),)
    assert provider_env_keys(home, extra) == {"FAKE_API_KEY", "OTHER_KEY", "PLAIN_KEY"}


@pytest.mark.parametrize(
    "config",
    [
        MISSING,
        DIRECTORY,
        'env_key = "X"\nmodel_provider = \n',
        'profile = "p"\n[model_providers.f]\nname = "f"\nenv_key = "F_KEY"\n',
        '[model_providers.ollama]\nname = "o"\nenv_key = "O_KEY"\n',
        '[model_providers.f]\nname = "f"\nenv_key = 5\n',
    ],
    ids=["missing", "directory", "broken-toml", "legacy-profile", "reserved-id", "bad-type"],
)
def test_provider_env_keys_empty_on_missing_or_broken_config(tmp_path: Path, config: str) -> None:
    """provider_env_keys is empty when there is no config or Codex would refuse to load it."""
    assert provider_env_keys(write_home(tmp_path, config)) == frozenset()


def test_local_only_codex_args_shape() -> None:
    """LOCAL_ONLY_CODEX_ARGS disables plugins, analytics and web search with valid -c values."""
    args = list(LOCAL_ONLY_CODEX_ARGS)
    pairs = list(zip(args[::2], args[1::2], strict=True))
    assert ("--disable", "plugins") in pairs
    overrides = dict(value.split("=", 1) for flag, value in pairs if flag == "-c")
    parsed = {key: tomllib.loads(f"v = {raw}")["v"] for key, raw in overrides.items()}
    assert parsed == {"analytics.enabled": False, "web_search": "disabled"}


def test_module_is_pure() -> None:
    """localonly imports only the standard library (no trio, no Quart)."""
    tree = ast.parse(Path(localonly.__file__).read_text(encoding="utf-8"))
    roots = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
    }
    assert roots <= {
        "__future__",
        "collections",
        "dataclasses",
        "ipaddress",
        "os",
        "pathlib",
        "tomllib",
        "typing",
        "urllib",
    }


# --- nothing the server puts in argv changes the provider -----------------------------------------


def test_argv_config_overrides_reads_codex_flags() -> None:
    """-c/--config values parse as TOML (raw string otherwise); --enable/--disable are features."""
    argv = [
        "codex",
        "exec",
        "-c",
        'model_provider="lan"',
        "--config",
        "model_providers.lan.base_url=http://10.0.0.1/v1",
        "--config=x.y=[1, 2]",
        "--disable",
        "plugins",
        "--enable",
        "web_search_request",
        "-s",
        "read-only",
        "-c",
        "not-a-pair",
        "-",
    ]
    assert argv_config_overrides(argv) == (
        ("model_provider", "lan"),
        ("model_providers.lan.base_url", "http://10.0.0.1/v1"),
        ("x.y", [1, 2]),
        ("features.plugins", False),
        ("features.web_search_request", True),
    )


#: The only config keys the server ever passes with -c; none of them can change the provider.
SERVER_CONFIG_KEYS = {
    "analytics.enabled",
    "web_search",
    "model_reasoning_effort",
    "sandbox_workspace_write.network_access",
    "sandbox_mode",
}


PROVIDER_CONFIGS = [
    "",
    REMOTE,
    LOOPBACK,
    'model_provider = "ollama"\n',
    'model_provider = "lmstudio"\n',
    'openai_base_url = "http://127.0.0.1:9000/v1"\n',
]


@pytest.mark.parametrize("config", PROVIDER_CONFIGS)
def test_server_argv_cannot_change_the_provider(tmp_path: Path, config: str) -> None:
    """Every -c the server can put in argv is a known non-provider key; verdicts do not move."""
    write_config(tmp_path, config)
    specs = [
        RunSpec(prompt="x", model="m", reasoning_effort=effort, sandbox=sandbox, network_access=net)
        for effort in (None, "low", "ultra")
        for sandbox in ("read-only", "workspace-write", "danger-full-access")
        for net in (False, True)
    ]
    specs += [RunSpec(prompt="x", resume_thread_id="t", persist=True, sandbox="workspace-write")]
    specs += [RunSpec(prompt="x", images=(Path("i.png"),))]
    plain = resolve_provider(tmp_path, {})
    for spec, local_only in itertools.product(specs, (False, True)):
        argv = build_argv(Path("codex"), spec, workdir=tmp_path, local_only=local_only)
        overrides = argv_config_overrides(argv)
        keys = {key for key, _ in overrides if not key.startswith("features.")}
        assert keys <= SERVER_CONFIG_KEYS, spec
        assert resolve_provider(tmp_path, {}, overrides) == plain, spec
