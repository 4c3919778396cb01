"""Decide whether ``codex exec`` would send prompts only to a loopback address (``CODEX_LOCAL_ONLY``).

Guarantee: ``resolve_provider`` answers ``local=True`` only when every rule below says the
provider Codex CLI 0.169.0 will use is reached on a literal loopback address (127.0.0.0/8,
``::1``) or on the host name ``localhost``, directly and not through a proxy. Every doubt (a
config that cannot be read, parsed or that Codex itself would refuse, an unknown provider, an
unparsable URL) answers ``local=False`` with a one-sentence reason. The module is pure: it reads
``$CODEX_HOME/config.toml`` and the mapping it is given, nothing else, and imports neither trio
nor Quart.

How Codex 0.169.0 picks the provider (checked against the native binary, run with a private
``HOME``/``CODEX_HOME`` inside a network namespace, with a listener on 127.0.0.1 recording where
requests arrived):

* The config is ``$CODEX_HOME/config.toml`` deep-merged with the ``-c key=value`` overrides
  (tables merge key by key, anything else is replaced, the last override wins; dotted keys are
  split on ``.``). ``model_provider`` defaults to the built-in ``openai``.
* ``openai`` posts to ``https://api.openai.com/v1`` unless the top-level ``openai_base_url`` is
  set; the ``OPENAI_BASE_URL`` environment variable is not read.
* ``ollama`` and ``lmstudio`` post to ``http://localhost:11434/v1`` and
  ``http://localhost:1234/v1``. ``CODEX_OSS_BASE_URL`` (when not blank) replaces the whole URL
  and wins over ``CODEX_OSS_PORT``, which replaces the port only when it parses as a u16 exactly
  (``" 5555"``, ``"abc"`` and ``"99999"`` leave the default port).
* ``openai``, ``ollama`` and ``lmstudio`` are reserved: a ``[model_providers.<id>]`` table (or a
  ``-c model_providers.<id>...`` override) for them makes Codex refuse to start ("model_providers
  contains reserved built-in provider IDs"). Two more built-ins exist, ``amazon-bedrock`` and
  ``gcp`` (Google Cloud Vertex AI); they accept a partial table (``base_url``, ``auth``, ...),
  resolve cloud credentials, and are never treated as local here.
* A custom ``[model_providers.<id>]`` needs a non-blank ``name`` (otherwise Codex refuses to
  start); without ``base_url`` it falls back to the OpenAI API (seen as DNS look-ups).
* The legacy ``profile = "x"`` selector, in the file or as ``-c profile=...``, is refused in
  0.169.0 ("legacy `profile = "x"` config is no longer supported; use `--profile x` with
  `x.config.toml` instead"), with or without ``--strict-config``. An unselected ``[profiles.x]``
  table is ignored, and ``profiles.x.openai_base_url`` is an unknown field, so no profile can
  change the provider through ``config.toml``; a config with the selector is treated as broken.
* Requests honour ``HTTP_PROXY``/``http_proxy``, ``HTTPS_PROXY``/``https_proxy`` and
  ``ALL_PROXY``/``all_proxy`` even for loopback targets; ``NO_PROXY`` (or ``no_proxy`` when
  ``NO_PROXY`` is absent) exempts a host listed exactly, or an IP inside a listed network
  (``NO_PROXY=*`` did not exempt 127.0.0.1). A proxied request counts as not local.

``LOCAL_ONLY_CODEX_ARGS`` turns off Codex's own outbound traffic. ``--disable plugins`` stops the
plugin sync (its DNS look-ups disappeared under strace); ``-c analytics.enabled=false`` stops the
analytics upload; ``-c web_search="disabled"`` removes the ``web_search`` tool from the request
body (without it the body carries ``{"type": "web_search", "external_web_access": false}``).
``web_search`` is the right key: ``--strict-config`` rejects ``web_search="bogus"`` with
"unknown variant `bogus`, expected one of `disabled`, `cached`, `indexed`, `live`", and
``"live"`` turns ``external_web_access`` on. ``-c tools.web_search=false`` is accepted but left
the tool in the request. With the three settings, strace saw connections to the provider's
loopback port only.

Not covered (the verdict cannot see them): system-wide and managed (MDM) config layers, a project
``.codex/config.toml``, ``--profile x`` files, and traffic that is not the prompt request to the
provider (MCP servers, OpenTelemetry exporters).
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

#: The file Codex reads from ``$CODEX_HOME``.
CONFIG_FILE_NAME: Final = "config.toml"

#: Built-in provider ids that a ``[model_providers.<id>]`` table may not redefine.
RESERVED_PROVIDER_IDS: Final = frozenset({"openai", "ollama", "lmstudio"})

#: Built-in cloud providers (Amazon Bedrock, Google Cloud Vertex AI): never local.
CLOUD_PROVIDER_IDS: Final = frozenset({"amazon-bedrock", "gcp"})

#: Extra ``codex exec`` argv for local-only mode: no plugin sync, no analytics, no web search.
LOCAL_ONLY_CODEX_ARGS: Final[tuple[str, ...]] = (
    "--disable",
    "plugins",
    "-c",
    "analytics.enabled=false",
    "-c",
    'web_search="disabled"',
)

_DEFAULT_PROVIDER: Final = "openai"
_OPENAI_DEFAULT_URL: Final = "https://api.openai.com/v1"
_OSS_DEFAULT_PORTS: Final = {"ollama": 11434, "lmstudio": 1234}
_LOCALHOST_NAMES: Final = frozenset({"localhost", "localhost."})
_IPV6_LOOPBACK: Final = ipaddress.IPv6Address("::1")
_IPV4_LOOPBACK_NET: Final = ipaddress.IPv4Network("127.0.0.0/8")
# What a WHATWG URL parser strips from both ends of its input (C0 controls and space).
_C0_AND_SPACE: Final = "".join(chr(i) for i in range(0x21))

_Table = dict[str, object]


@dataclass(frozen=True)
class ProviderVerdict:
    """Where Codex would send prompts, and whether that is a loopback address.

    ``provider`` is the provider id (empty when the config could not be loaded), ``base_url``
    the URL prompts would go to (``None`` when unknown), ``reason`` one human sentence.
    """

    provider: str
    base_url: str | None
    local: bool
    reason: str


class _BrokenConfig(Exception):
    """The config cannot be loaded, or Codex would refuse it: nothing is sent anywhere."""

    def __init__(self, reason: str, provider: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.provider = provider


def is_loopback_url(url: str) -> bool:
    """True iff ``url`` is http(s) and its host is 127.0.0.0/8, ``::1`` or ``localhost``.

    Strict on purpose: anything a browser-style parser might read differently (backslashes,
    whitespace or control characters inside, non-ASCII, ``%`` in the host, shorthand IPv4 such
    as ``127.1``) is not loopback.
    """
    return _url_problem(url) is None


def _split_host(url: str) -> tuple[str, str | None]:
    """The scheme and lowercased host of ``url``, the host ``None`` if it cannot be trusted."""
    text = url.strip(_C0_AND_SPACE)
    if not text.isascii() or any(ch <= " " or ch in "\x7f\\" for ch in text):
        return "", None
    try:
        parts = urlsplit(text)
    except ValueError:
        return "", None
    hostport = parts.netloc.rpartition("@")[2]
    if hostport.startswith("["):
        host, sep, rest = hostport[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return parts.scheme, None
        port = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return parts.scheme, None
    else:
        host, _, port = hostport.partition(":")
    if "%" in host or ":" in port or (port and not (port.isdigit() and int(port) <= 65535)):
        return parts.scheme, None
    return parts.scheme, host.lower()


def _url_problem(url: str) -> str | None:
    """``None`` if ``url`` is a loopback http(s) URL, else why not (a clause for a reason)."""
    scheme, host = _split_host(url)
    if host is None:
        return "which cannot be parsed safely"
    if scheme not in {"http", "https"}:
        return "which is not an http(s) URL"
    if not host:
        return "which has no host"
    if host in _LOCALHOST_NAMES:
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "which is a host name other than localhost"
    if address in _IPV4_LOOPBACK_NET or address == _IPV6_LOOPBACK:
        return None
    return "which is not a loopback address"


def _no_proxy_exempts(host: str, environ: Mapping[str, str]) -> bool:
    """True iff NO_PROXY (or no_proxy when NO_PROXY is absent) certainly exempts ``host``."""
    raw = environ["NO_PROXY"] if "NO_PROXY" in environ else environ.get("no_proxy", "")
    entries = [entry.strip().lower() for entry in raw.split(",") if entry.strip()]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in entries
    for entry in entries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _proxy_problem(url: str, environ: Mapping[str, str]) -> str | None:
    """``None`` if Codex reaches ``url`` directly, else the clause naming the proxy variable."""
    scheme, host = _split_host(url)
    if host is None:  # unreachable for URLs that passed _url_problem; stay strict anyway
        return "which cannot be parsed safely"
    names = (f"{scheme.upper()}_PROXY", f"{scheme}_proxy", "ALL_PROXY", "all_proxy")
    proxies = [name for name in names if environ.get(name, "").strip()]
    if not proxies or _no_proxy_exempts(host, environ):
        return None
    return f"but {proxies[0]} routes that request through a proxy (NO_PROXY does not exempt {host})"


def _load_file(codex_home: Path) -> _Table:
    """The parsed config file; ``{}`` when it does not exist."""
    path = codex_home / CONFIG_FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise _BrokenConfig(
            f"the Codex {CONFIG_FILE_NAME} cannot be read ({exc.strerror or exc})"
        ) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise _BrokenConfig(f"the Codex {CONFIG_FILE_NAME} cannot be parsed ({exc})") from None


def _override_layer(overrides: Sequence[tuple[str, object]]) -> _Table:
    """The ``-c`` overrides as one table, built the way Codex builds it (split on ``.``)."""
    root: _Table = {}
    for key, value in overrides:
        parts = key.strip().split(".")
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = value
    return root


def _merge(base: _Table, layer: Mapping[str, object]) -> _Table:
    """``layer`` over ``base``: tables merge key by key, any other value replaces."""
    merged = dict(base)
    for key, value in layer.items():
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = _merge(old, value)
        else:
            merged[key] = value
    return merged


@dataclass(frozen=True)
class _Config:
    """The parts of an effective config that decide where prompts go."""

    provider: str
    openai_base_url: str | None
    providers: dict[str, _Table]


def _load_config(codex_home: Path, overrides: Sequence[tuple[str, object]]) -> _Config:
    """The effective config, or ``_BrokenConfig`` if Codex would not start with it."""
    config = _merge(_load_file(codex_home), _override_layer(overrides))
    provider = config.get("model_provider", _DEFAULT_PROVIDER)
    if not isinstance(provider, str):
        raise _BrokenConfig("`model_provider` in the Codex config is not a string")
    if "profile" in config:
        raise _BrokenConfig(
            "the Codex config selects a profile with the legacy `profile` key, "
            "which Codex 0.169.0 refuses to load",
            provider,
        )
    openai_base_url = config.get("openai_base_url")
    if openai_base_url is not None and not isinstance(openai_base_url, str):
        raise _BrokenConfig("`openai_base_url` in the Codex config is not a string", provider)
    raw_providers = config.get("model_providers", {})
    if not isinstance(raw_providers, dict):
        raise _BrokenConfig("`model_providers` in the Codex config is not a table", provider)
    reserved = sorted(RESERVED_PROVIDER_IDS.intersection(raw_providers))
    if reserved:
        raise _BrokenConfig(
            f"the Codex config redefines the reserved built-in provider `{reserved[0]}`, "
            "which Codex refuses to load",
            provider,
        )
    providers: dict[str, _Table] = {}
    for pid, table in raw_providers.items():
        if not isinstance(table, dict):
            raise _BrokenConfig(
                f"`model_providers.{pid}` in the Codex config is not a table", provider
            )
        for field in ("base_url", "env_key"):
            if not isinstance(table.get(field, ""), str):
                raise _BrokenConfig(
                    f"`model_providers.{pid}.{field}` in the Codex config is not a string",
                    provider,
                )
        name = table.get("name")
        if pid not in CLOUD_PROVIDER_IDS and not (isinstance(name, str) and name.strip()):
            raise _BrokenConfig(
                f"provider `{pid}` has no `name`, so Codex refuses to load the config", provider
            )
        providers[pid] = table
    return _Config(provider, openai_base_url, providers)


def argv_config_overrides(argv: Sequence[str]) -> tuple[tuple[str, object], ...]:
    """The config overrides an argv carries, in order, as Codex reads them.

    ``-c key=value`` / ``--config key=value`` / ``--config=key=value``: the value is parsed as a
    TOML value and, when that fails, kept as the raw string (Codex's rule). ``--enable x`` and
    ``--disable x`` are ``features.x = true/false``. Anything else is skipped, so the argv of a
    whole ``codex exec`` invocation can be passed as it is.
    """
    pairs: list[tuple[str, object]] = []
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        value: str | None = None
        if arg in {"-c", "--config", "--enable", "--disable"} and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        elif arg.startswith("--config="):
            arg, value = "--config", arg.removeprefix("--config=")
        i += 1
        if value is None:
            continue
        if arg in {"--enable", "--disable"}:
            pairs.append((f"features.{value}", arg == "--enable"))
            continue
        key, eq, raw = value.partition("=")
        if not eq or not key.strip():
            continue
        try:
            parsed: object = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = raw.strip()
        pairs.append((key.strip(), parsed))
    return tuple(pairs)


def _oss_base_url(provider: str, environ: Mapping[str, str]) -> str:
    """The URL Codex uses for the built-in ``ollama``/``lmstudio`` provider."""
    base_url = environ.get("CODEX_OSS_BASE_URL", "")
    if base_url.strip():
        return base_url
    port = _OSS_DEFAULT_PORTS[provider]
    raw = environ.get("CODEX_OSS_PORT", "")
    digits = raw.removeprefix("+")
    if digits.isascii() and digits.isdigit() and int(digits) <= 65535:
        port = int(digits)
    return f"http://localhost:{port}/v1"


def _judge(provider: str, base_url: str, environ: Mapping[str, str]) -> ProviderVerdict:
    """The verdict for a provider known to post to ``base_url``."""
    where = f"provider `{provider}` sends prompts to {base_url}"
    problem = _url_problem(base_url) or _proxy_problem(base_url, environ)
    if problem is not None:
        return ProviderVerdict(provider, base_url, False, f"{where}, {problem}")
    return ProviderVerdict(provider, base_url, True, f"{where}, a loopback address")


def resolve_provider(
    codex_home: Path,
    environ: Mapping[str, str],
    overrides: Sequence[tuple[str, object]] = (),
) -> ProviderVerdict:
    """Where ``codex exec`` would send prompts with this home, environment and ``-c`` overrides.

    ``environ`` is the environment the Codex child gets; ``overrides`` are the (dotted key,
    TOML value) pairs passed as ``-c``. ``local`` is True only for a loopback destination that is
    reached without a proxy; see the module docstring for the rules.
    """
    try:
        config = _load_config(codex_home, overrides)
    except _BrokenConfig as exc:
        return ProviderVerdict(exc.provider, None, False, exc.reason)
    provider = config.provider
    table = config.providers.get(provider)
    configured = table.get("base_url") if table is not None else None
    if provider == "openai":
        if config.openai_base_url is not None:
            return _judge(provider, config.openai_base_url, environ)
        return ProviderVerdict(
            provider,
            _OPENAI_DEFAULT_URL,
            False,
            f"built-in provider `openai` sends prompts to {_OPENAI_DEFAULT_URL}, "
            "which is not a loopback address",
        )
    if provider in _OSS_DEFAULT_PORTS:
        return _judge(provider, _oss_base_url(provider, environ), environ)
    if provider in CLOUD_PROVIDER_IDS:
        return ProviderVerdict(
            provider,
            configured if isinstance(configured, str) else None,
            False,
            f"built-in provider `{provider}` is a cloud service and is never treated as local",
        )
    if table is None:
        return ProviderVerdict(
            provider,
            None,
            False,
            f"provider `{provider}` is neither built in nor defined under `model_providers`",
        )
    if not isinstance(configured, str):
        return ProviderVerdict(
            provider,
            None,
            False,
            f"provider `{provider}` has no `base_url`, so Codex sends prompts to the OpenAI API",
        )
    return _judge(provider, configured, environ)


def provider_env_keys(
    codex_home: Path, overrides: Sequence[tuple[str, object]] = ()
) -> frozenset[str]:
    """Names of the `env_key` variables of every provider in the config (for the child's
    environment allowlist); empty on a broken config (one Codex would refuse to load)."""
    try:
        config = _load_config(codex_home, overrides)
    except _BrokenConfig:
        return frozenset()
    keys = (table.get("env_key") for table in config.providers.values())
    return frozenset(key for key in keys if isinstance(key, str) and key)


_FileState = tuple[object, ...]


class LocalOnlyPolicy:
    """Re-resolves when config.toml changes (stat: mtime_ns, size, inode; missing counts as a state).

    ``verdict()`` costs one ``os.stat`` while the file is unchanged. The stat is taken before the
    file is read, so a change made during a read is seen by the next call. An in-place rewrite
    that keeps size, inode and timestamps (same clock tick) is not noticed. ``environ`` and
    ``overrides`` are copied when the policy is made.
    """

    def __init__(
        self,
        codex_home: Path,
        environ: Mapping[str, str],
        overrides: Sequence[tuple[str, object]] = (),
    ) -> None:
        self._codex_home = codex_home
        self._path = codex_home / CONFIG_FILE_NAME
        self._environ = dict(environ)
        self._overrides = tuple(overrides)
        self._state: _FileState | None = None
        self._verdict: ProviderVerdict | None = None

    @property
    def overrides(self) -> tuple[tuple[str, object], ...]:
        """The ``-c`` overrides the verdict takes into account."""
        return self._overrides

    def with_overrides(self, extra: Sequence[tuple[str, object]]) -> LocalOnlyPolicy:
        """This policy with ``extra`` applied after its own overrides (``self`` if already so)."""
        extra = tuple(extra)
        if not extra or self._overrides[-len(extra) :] == extra:
            return self
        return LocalOnlyPolicy(self._codex_home, self._environ, (*self._overrides, *extra))

    def _file_state(self) -> _FileState:
        try:
            st = os.stat(self._path)
        except FileNotFoundError:
            return ("missing",)
        except OSError as exc:
            return ("error", type(exc).__name__, exc.errno)
        return ("file", st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def verdict(self) -> ProviderVerdict:
        """The current verdict, re-resolved only if config.toml's stat changed."""
        state = self._file_state()
        if self._verdict is None or state != self._state:
            self._verdict = resolve_provider(self._codex_home, self._environ, self._overrides)
            self._state = state
        return self._verdict
