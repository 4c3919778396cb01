"""Layer 1: ``trio_codex.options``, the ``serve`` command line: an option and a line of
``--help`` for every setting ``Settings.from_env`` reads, the precedence option > environment >
``.env``, the listening address, and what is refused."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from trio_codex import options
from trio_codex.settings import SETTINGS, Settings, SettingsError, _Reader


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name it was asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.env = dict(values)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.env[name]

    def get(self, name: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(name)
        return self.env.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self.env

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("Settings.from_env must ask for names, not list the environment")

    def __len__(self) -> int:
        return len(self.env)


def _variables_read(tmp_path: Path) -> set[str]:
    codex = tmp_path / "codex"
    codex.write_text("#!/bin/sh\n")
    codex.chmod(0o755)
    env = RecordingEnv({"CODEX_PATH": str(codex), "CODEX_HOME": str(tmp_path / "home")})
    Settings.from_env(env, make_workdir=False)
    return env.read


def _help() -> str:
    """``serve --help`` with its line breaks undone."""
    return " ".join(options.build_parser().format_help().split())


def test_help_documents_every_variable_the_settings_read(tmp_path: Path) -> None:
    """Each variable ``Settings.from_env`` asks for (recorded, not listed by hand) is in
    ``--help`` with its option, its default and its meaning."""
    read = _variables_read(tmp_path)
    assert len(read) >= 30  # the recording saw the whole reader, not a part
    text = _help()
    docs = {doc.env: doc for doc in SETTINGS}
    for name in sorted(read):
        assert name in docs, f"{name} is read but has no entry in settings.SETTINGS"
        doc = docs[name]
        entry = re.search(rf"{re.escape(doc.option)} (?:VALUE|\[0\|1\]) (.*?)\[env {name};", text)
        assert entry is not None, f"{name}: no '{doc.option}' line in --help"
        assert doc.meaning.split()[0] in entry.group(1)
        assert f"[env {name}; default: {doc.default}]" in text


def test_every_documented_variable_is_read(tmp_path: Path) -> None:
    """No entry of the table is stale: ``Settings.from_env`` reads each one."""
    assert {doc.env for doc in SETTINGS} == _variables_read(tmp_path)


def test_options_are_unique() -> None:
    names = [doc.option for doc in SETTINGS]
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"--[a-z][a-z0-9-]+", name) for name in names)


def test_reading_an_undocumented_variable_is_an_error() -> None:
    """A new ``get("X", ...)`` in ``from_env`` without a line in the table fails at once."""
    with pytest.raises(AssertionError, match="NOT_A_SETTING"):
        _Reader({"NOT_A_SETTING": "1"}).raw("NOT_A_SETTING")


def _parse(*argv: str) -> argparse.Namespace:
    return options.build_parser().parse_args(list(argv))


def test_an_option_wins_over_the_environment_which_wins_over_the_env_file() -> None:
    env_file = {"CODEX_TIMEOUT": "1", "CODEX_MAX_IMAGES": "2", "CODEX_BACKEND": "app-server"}
    environ = {"CODEX_TIMEOUT": "10", "CODEX_MAX_IMAGES": "20"}
    merged = options.serve_environment(_parse("--timeout", "100"), environ, env_file)
    assert merged["CODEX_TIMEOUT"] == "100"
    assert merged["CODEX_MAX_IMAGES"] == "20"
    assert merged["CODEX_BACKEND"] == "app-server"


def test_each_setting_option_sets_its_variable() -> None:
    for doc in SETTINGS:
        merged = options.serve_environment(_parse(doc.option, "x"), {}, {})
        assert merged == {doc.env: "x"}


def test_a_boolean_option_alone_means_on_and_takes_0_to_turn_off(tmp_path: Path) -> None:
    assert options.setting_options(_parse("--local-only")) == {"CODEX_LOCAL_ONLY": "1"}
    merged = options.serve_environment(_parse("--local-only", "0"), {"CODEX_LOCAL_ONLY": "1"}, {})
    env = {**merged, "CODEX_PATH": "/bin/sh", "CODEX_HOME": str(tmp_path)}
    assert Settings.from_env(env, make_workdir=False).local_only is False


def test_options_are_validated_as_the_variables_are(tmp_path: Path) -> None:
    merged = options.serve_environment(_parse("--sandbox-mode", "wide-open"), {}, {})
    with pytest.raises(SettingsError, match="CODEX_SANDBOX_MODE: 'wide-open' is not one of"):
        Settings.from_env(
            {**merged, "CODEX_PATH": "/bin/sh", "CODEX_HOME": str(tmp_path)}, make_workdir=False
        )


@pytest.mark.parametrize(
    ("argv", "bind"),
    [
        ((), "127.0.0.1:8000"),
        (("--port", "0"), "127.0.0.1:0"),
        (("--host", "0.0.0.0", "--port", "9000"), "0.0.0.0:9000"),  # noqa: S104
        (("--host", "::1"), "[::1]:8000"),
        (("--bind", "unix:/tmp/s"), "unix:/tmp/s"),
    ],
)
def test_the_listening_address(argv: tuple[str, ...], bind: str) -> None:
    assert options.bind_address(_parse(*argv)) == bind


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--bind", "127.0.0.1:1", "--port", "2"), "--bind: give either"),
        (("--port", "70000"), "--port: 70000 is not a port number"),
    ],
)
def test_contradicting_or_bad_addresses_are_refused(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        options.bind_address(_parse(*argv))


def test_more_than_one_worker_is_refused_with_the_reason() -> None:
    options.check_workers(_parse())
    with pytest.raises(SettingsError, match=r"--workers 2: .*killed"):
        options.check_workers(_parse("--workers", "2"))
    with pytest.raises(SettingsError, match="--workers: 0 is below"):
        options.check_workers(_parse("--workers", "0"))


def test_the_env_file(tmp_path: Path) -> None:
    """``./.env`` when present, ``--env-file`` for another (which must exist), none with
    ``--no-env-file``; quotes, comments and ``export`` are python-dotenv's."""
    assert options.read_env_file(_parse(), cwd=tmp_path) == {}
    (tmp_path / ".env").write_text(
        '# comment\nexport CODEX_TIMEOUT=12\nPROXY_API_KEY="a b"\nEMPTY\n'
    )
    assert options.read_env_file(_parse(), cwd=tmp_path) == {
        "CODEX_TIMEOUT": "12",
        "PROXY_API_KEY": "a b",
    }
    assert options.read_env_file(_parse("--no-env-file"), cwd=tmp_path) == {}
    other = tmp_path / "other.env"
    other.write_text("CODEX_TIMEOUT=5\n")
    assert options.read_env_file(_parse("--env-file", str(other))) == {"CODEX_TIMEOUT": "5"}
    with pytest.raises(SettingsError, match=r"--env-file: .*missing\.env"):
        options.read_env_file(_parse("--env-file", str(tmp_path / "missing.env")))


def test_documented_defaults_are_the_defaults(tmp_path: Path) -> None:
    """Setting a variable to the default ``--help`` gives for it changes nothing: the table
    cannot drift from ``Settings.from_env`` (defaults that are not a value, such as "unset" or a
    path chosen at run time, are not checked)."""
    codex = tmp_path / "codex"
    codex.write_text("#!/bin/sh\n")
    codex.chmod(0o755)
    base = {
        "CODEX_PATH": str(codex),
        "CODEX_HOME": str(tmp_path / "home"),
        "TRIO_CODEX_RESPONSE_ID_SECRET": "a fixed secret of more than thirty-two bytes",
    }
    reference = Settings.from_env(base, make_workdir=False)
    checked = []
    for doc in SETTINGS:
        if doc.env in base or not doc.default:
            continue
        value = doc.default.split()[0]
        if value in ("unset", "a", "random", "Codex's", "codex", "~/.codex"):
            continue  # a description, not a value
        explicit = Settings.from_env({**base, doc.env: value}, make_workdir=False)
        assert explicit == reference, f"{doc.env}: --help says the default is {doc.default!r}"
        checked.append(doc.env)
    assert len(checked) >= 20, checked  # most defaults are values, and were checked


def test_the_readme_table_gives_the_same_defaults() -> None:
    """The README's Configuration table and ``--help`` agree on every default."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| (.*?) \|", readme, flags=re.MULTILINE))
    for doc in SETTINGS:
        assert doc.env in rows, f"{doc.env} has no row in the README's table"
        assert rows[doc.env].replace("`", "") == doc.default, doc.env
