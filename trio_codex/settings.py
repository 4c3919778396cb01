"""Server settings: read from the environment once, validated, frozen.

``Settings.from_env()`` is the only place an environment variable is read, and it reads only the
variables of ``SETTINGS`` (the table every other view derives from: the ``serve`` options, their
``--help``); reading any other name is an error. A bad value raises ``SettingsError`` whose
message names the variable and what is allowed, so the server refuses to start instead of
misbehaving later. ``CODEX_SANDBOX_MODE=danger-full-access`` without
``CODEX_ALLOW_DANGER_FULL_ACCESS=1`` is such an error: the double switch guards the effective
sandbox, not only request overrides.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final, Literal, TypeVar, get_args

SandboxMode = Literal["read-only", "workspace-write", "danger-full-access"]
SANDBOX_MODES: Final[tuple[str, ...]] = get_args(SandboxMode)

#: How Codex is run: ``codex exec --json`` (the whole answer at the end) or ``codex app-server``
#: (token deltas as they are generated, client tools); ``auto`` is app-server when the Codex CLI
#: is new enough for it, else exec, decided once at startup (``startup.resolve_backend``).
BackendName = Literal["auto", "exec", "app-server"]
BACKENDS: Final[tuple[str, ...]] = get_args(BackendName)

#: Where a chat completion shows Codex's reasoning summary (``CODEX_REASONING_DISPLAY``): nowhere,
#: in ``reasoning_content``, or in a ``<think>`` block before the content.
ReasoningDisplay = Literal["hidden", "field", "think"]
REASONING_DISPLAYS: Final[tuple[str, ...]] = get_args(ReasoningDisplay)

#: How log lines look (``LOG_FORMAT``): ``time LEVEL logger: message`` or one JSON object.
LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[str, ...]] = get_args(LogFormat)

#: Reasoning efforts accepted anywhere (the union of OpenAI's and Codex's names).
REASONING_EFFORTS: Final[tuple[str, ...]] = (
    "none",
    "minimal",
    "low",
    "medium",
    "high",
    "xhigh",
    "max",
    "ultra",
)

#: Shortest accepted TRIO_CODEX_RESPONSE_ID_SECRET: a shorter key could be guessed offline from
#: one response id.
MIN_SECRET_BYTES: Final = 32


@dataclasses.dataclass(frozen=True)
class SettingDoc:
    """One environment variable: its ``serve`` option, its default and its meaning in a line."""

    env: str
    option: str
    default: str
    meaning: str
    #: A boolean: the option given alone means ``1``.
    flag: bool = False


def _doc(env: str, option: str, default: str, meaning: str, *, flag: bool = False) -> SettingDoc:
    return SettingDoc(env, option, default, meaning, flag)


#: Every variable ``Settings.from_env`` reads, in the README's order.
SETTINGS: Final[tuple[SettingDoc, ...]] = (
    _doc(
        "PROXY_API_KEY",
        "--api-key",
        "unset (no auth)",
        "one key or a comma-separated list clients must send (Bearer or x-api-key)",
    ),
    _doc(
        "RATE_LIMIT_PER_MINUTE",
        "--rate-limit-per-minute",
        "0 (off)",
        "requests per key (per client address without auth) in any 60 s window",
    ),
    _doc(
        "CODEX_WORKDIR",
        "--workdir",
        "a new private directory",
        "the directory Codex works in (-C); must exist",
    ),
    _doc(
        "CODEX_SANDBOX_MODE",
        "--sandbox-mode",
        "read-only",
        "read-only, workspace-write or danger-full-access (that needs "
        "--allow-danger-full-access too)",
    ),
    _doc(
        "CODEX_REASONING_EFFORT",
        "--reasoning-effort",
        "Codex's default",
        "one of: " + ", ".join(REASONING_EFFORTS),
    ),
    _doc(
        "CODEX_LOCAL_ONLY",
        "--local-only",
        "0",
        "refuse every request unless Codex's provider is on this machine",
        flag=True,
    ),
    _doc(
        "CODEX_ALLOW_DANGER_FULL_ACCESS",
        "--allow-danger-full-access",
        "0",
        "allow danger-full-access, as the default or per request",
        flag=True,
    ),
    _doc("CODEX_TIMEOUT", "--timeout", "600", "seconds a run may take once it holds a slot"),
    _doc(
        "CODEX_MAX_PARALLEL_REQUESTS",
        "--max-parallel-requests",
        "4",
        "Codex processes running at once",
    ),
    _doc(
        "CODEX_QUEUE_TIMEOUT_SECONDS",
        "--queue-timeout",
        "30",
        "seconds a request may wait for a slot (0: never wait)",
    ),
    _doc("CODEX_PATH", "--codex-path", "codex on PATH", "the Codex CLI"),
    _doc(
        "CODEX_HOME",
        "--codex-home",
        "~/.codex",
        "Codex's home (config, credentials); created (private) when missing",
    ),
    _doc(
        "CODEX_IDLE_TIMEOUT",
        "--idle-timeout",
        "unset (off)",
        "end a run that prints no event for this many seconds (504)",
    ),
    _doc(
        "CODEX_SSE_KEEPALIVE_SECONDS",
        "--sse-keepalive",
        "5",
        "seconds between keep-alive comments on a silent stream",
    ),
    _doc(
        "CODEX_KILL_GRACE_SECONDS",
        "--kill-grace",
        "2",
        "SIGTERM-to-SIGKILL grace for a Codex process group",
    ),
    _doc(
        "MAX_REQUEST_BYTES",
        "--max-request-bytes",
        str(16 * 1024 * 1024),
        "largest request body (413 above it)",
    ),
    _doc(
        "CODEX_BODY_TIMEOUT_SECONDS",
        "--body-timeout",
        "60",
        "seconds the whole request body may take to arrive (408)",
    ),
    _doc(
        "CODEX_MAX_IMAGE_BYTES",
        "--max-image-bytes",
        str(20 * 1024 * 1024),
        "largest image, after decoding",
    ),
    _doc("CODEX_MAX_IMAGES", "--max-images", "16", "images per request (0: none)"),
    _doc(
        "CODEX_ALLOW_IMAGE_FETCH",
        "--allow-image-fetch",
        "0",
        "fetch http(s) image URLs (public addresses only)",
        flag=True,
    ),
    _doc(
        "CODEX_ENV_PASSTHROUGH",
        "--env-passthrough",
        "unset",
        "extra environment variable names passed to Codex (comma-separated)",
    ),
    _doc(
        "TRIO_CODEX_RESPONSE_ID_SECRET",
        "--response-id-secret",
        "random per process",
        f"key binding response ids to API keys (at least {MIN_SECRET_BYTES} bytes)",
    ),
    _doc(
        "CODEX_NETWORK_WAIT_SECONDS",
        "--network-wait",
        "30",
        "end a run whose Codex has waited this long for the network (503)",
    ),
    _doc(
        "CODEX_BACKEND",
        "--backend",
        "auto",
        "app-server (token streaming, client tools), exec (codex exec --json), or auto: "
        "app-server when the Codex CLI is new enough for it (0.169.0), else exec",
    ),
    _doc(
        "CODEX_WARM_SPARES",
        "--warm-spares",
        "1",
        "app-server children kept spawned, initialized and with a thread started ahead of "
        "requests (0: none)",
    ),
    _doc(
        "METRICS_REQUIRE_KEY",
        "--metrics-require-key",
        "0",
        "/metrics and the status page need an API key like the API",
        flag=True,
    ),
    _doc("LOG_FORMAT", "--log-format", "text", "text or json log lines"),
    _doc(
        "CODEX_REASONING_DISPLAY",
        "--reasoning-display",
        "hidden",
        "chat completions: where the reasoning summary goes: hidden, field or think",
    ),
    _doc(
        "CODEX_TOOL_RESULT_TIMEOUT",
        "--tool-result-timeout",
        "300",
        "seconds a turn that answered with tool calls waits for the results",
    ),
    _doc(
        "CODEX_PROGRESS",
        "--progress",
        "0",
        "show the commands Codex runs and the files it changes (x_codex.progress wins)",
        flag=True,
    ),
)

_DOCUMENTED: Final = frozenset(doc.env for doc in SETTINGS)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is invalid; the message names the variable."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the server is configured with. Immutable; build it with ``from_env``."""

    api_keys: tuple[str, ...] = ()
    rate_limit_per_minute: int = 0
    workdir: Path
    sandbox_mode: SandboxMode = "read-only"
    reasoning_effort: str | None = None
    local_only: bool = False
    allow_danger_full_access: bool = False
    timeout: float = 600.0
    max_parallel_requests: int = 4
    queue_timeout: float = 30.0
    codex_path: Path
    codex_home: Path
    #: Idle timeout: a run that prints no event for this long ends with 504 (None: off).
    idle_timeout: float | None = None
    #: Seconds between ``: keep-alive`` comments on a silent SSE stream.
    keepalive_interval: float = 5.0
    #: SIGTERM to SIGKILL grace for a Codex process group.
    kill_grace: float = 2.0
    #: Largest accepted request body, in bytes.
    max_body_bytes: int = 16 * 1024 * 1024
    #: Seconds the whole request body may take to arrive (408 ``request_timeout`` after).
    body_timeout: float = 60.0
    #: Largest accepted image, in bytes, after decoding.
    max_image_bytes: int = 20 * 1024 * 1024
    #: Most images in one request (0: none).
    max_images: int = 16
    #: Fetch http(s) image URLs (public addresses only). Off by default.
    allow_image_fetch: bool = False
    #: Extra environment variable names passed to the Codex child.
    env_passthrough: tuple[str, ...] = ()
    #: Secret used to bind response ids to API keys (random per process when unset).
    response_id_secret: bytes = b""
    #: A run whose Codex has waited this long for the network (and made no progress) ends, 503.
    network_wait: float = 30.0
    #: Which Codex subcommand runs a request (``CODEX_BACKEND``). ``auto`` becomes app-server
    #: or exec at startup (``startup.resolve_backend``: the Codex of the ``cli`` extra, PyPI
    #: 0.163.0, is older than app-server needs); until then, and for an embedder that builds
    #: Settings itself, it runs like exec.
    backend: BackendName = "auto"
    #: app-server children kept spawned and initialized ahead of requests (app-server only);
    #: one spare costs one idle Codex process and takes a trivial request from ~0.9 x to
    #: ~0.35 x of the ``codex exec`` floor (``python -m bench.bench --only backends``).
    warm_spares: int = 1
    #: ``/metrics`` and the status page need an API key (like the API) instead of being open.
    metrics_require_key: bool = False
    #: ``text`` or ``json`` log lines (``logs.configure_logging``).
    log_format: LogFormat = "text"
    #: Where chat completions show the reasoning summary (``x_codex.reasoning_display`` wins).
    reasoning_display: ReasoningDisplay = "hidden"
    #: How long a run waits for the client's result of a tool call (app-server only).
    tool_result_timeout: float = 300.0
    #: Show Codex's commands and file changes as they happen (``x_codex.progress`` wins).
    progress: bool = False

    def __post_init__(self) -> None:
        if self.sandbox_mode == "danger-full-access" and not self.allow_danger_full_access:
            raise SettingsError(
                "CODEX_SANDBOX_MODE=danger-full-access needs CODEX_ALLOW_DANGER_FULL_ACCESS=1 "
                "as well (the double switch); use read-only or workspace-write otherwise"
            )
        if not self.response_id_secret:
            object.__setattr__(self, "response_id_secret", os.urandom(32))

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, make_workdir: bool = True
    ) -> Settings:
        """Validate every variable; raise ``SettingsError`` naming the first bad one."""
        get = _Reader(os.environ if environ is None else environ)

        keys = tuple(k.strip() for k in get.raw("PROXY_API_KEY").split(",") if k.strip())
        workdir_raw = get.raw("CODEX_WORKDIR").strip()
        if workdir_raw:
            workdir = Path(workdir_raw).expanduser()
            if not workdir.is_dir():
                raise SettingsError(f"CODEX_WORKDIR: {workdir_raw!r} is not an existing directory")
            workdir = workdir.resolve()
        elif make_workdir:
            workdir = Path(tempfile.mkdtemp(prefix="trio-codex-work-"))
        else:
            workdir = Path(tempfile.gettempdir())

        codex_home_raw = get.raw("CODEX_HOME").strip()
        codex_home = Path(codex_home_raw).expanduser() if codex_home_raw else Path.home() / ".codex"
        # Codex refuses to start when its home is missing (it does not create one that is
        # passed explicitly, and the server always passes it).
        try:
            codex_home.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(f"CODEX_HOME: cannot create {str(codex_home)!r}: {exc}") from None

        secret = get.raw("TRIO_CODEX_RESPONSE_ID_SECRET").encode()
        if secret and len(secret) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"TRIO_CODEX_RESPONSE_ID_SECRET: {len(secret)} bytes is too short; use at least "
                f"{MIN_SECRET_BYTES} random bytes (python3 -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return cls(
            api_keys=keys,
            rate_limit_per_minute=get("RATE_LIMIT_PER_MINUTE", 0, _int(minimum=0)),
            workdir=workdir,
            sandbox_mode=get("CODEX_SANDBOX_MODE", "read-only", _choice(SANDBOX_MODES)),  # type: ignore[arg-type]
            reasoning_effort=get("CODEX_REASONING_EFFORT", None, _choice(REASONING_EFFORTS)),
            local_only=get("CODEX_LOCAL_ONLY", False, _bool),
            allow_danger_full_access=get("CODEX_ALLOW_DANGER_FULL_ACCESS", False, _bool),
            timeout=get("CODEX_TIMEOUT", 600.0, _seconds()),
            max_parallel_requests=get("CODEX_MAX_PARALLEL_REQUESTS", 4, _int(minimum=1)),
            queue_timeout=get("CODEX_QUEUE_TIMEOUT_SECONDS", 30.0, _seconds(allow_zero=True)),
            codex_path=get("CODEX_PATH", None, _executable) or _default_codex(),
            codex_home=codex_home,
            idle_timeout=get("CODEX_IDLE_TIMEOUT", None, _seconds()),
            keepalive_interval=get("CODEX_SSE_KEEPALIVE_SECONDS", 5.0, _seconds()),
            kill_grace=get("CODEX_KILL_GRACE_SECONDS", 2.0, _seconds(allow_zero=True)),
            max_body_bytes=get("MAX_REQUEST_BYTES", 16 * 1024 * 1024, _int(minimum=1024)),
            body_timeout=get("CODEX_BODY_TIMEOUT_SECONDS", 60.0, _seconds()),
            max_image_bytes=get("CODEX_MAX_IMAGE_BYTES", 20 * 1024 * 1024, _int(minimum=1)),
            max_images=get("CODEX_MAX_IMAGES", 16, _int(minimum=0)),
            allow_image_fetch=get("CODEX_ALLOW_IMAGE_FETCH", False, _bool),
            env_passthrough=tuple(
                n.strip() for n in get.raw("CODEX_ENV_PASSTHROUGH").split(",") if n.strip()
            ),
            response_id_secret=secret,
            network_wait=get("CODEX_NETWORK_WAIT_SECONDS", 30.0, _seconds()),
            backend=get("CODEX_BACKEND", "auto", _choice(BACKENDS)),  # type: ignore[arg-type]
            warm_spares=get("CODEX_WARM_SPARES", 1, _int(minimum=0)),
            metrics_require_key=get("METRICS_REQUIRE_KEY", False, _bool),
            log_format=get("LOG_FORMAT", "text", _choice(LOG_FORMATS)),  # type: ignore[arg-type]
            reasoning_display=get(
                "CODEX_REASONING_DISPLAY",
                "hidden",
                _choice(REASONING_DISPLAYS),  # type: ignore[arg-type]
            ),
            tool_result_timeout=get("CODEX_TOOL_RESULT_TIMEOUT", 300.0, _seconds()),
            progress=get("CODEX_PROGRESS", False, _bool),
        )


class _Reader:
    """Reads the variables of ``SETTINGS`` only: a new one must be documented to be read."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def raw(self, name: str) -> str:
        """The value of ``name`` as set ("" when unset)."""
        if name not in _DOCUMENTED:
            raise AssertionError(f"{name} is read but not documented in settings.SETTINGS")
        return self._env.get(name) or ""

    def __call__(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        raw = self.raw(name)
        if raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except SettingsError as exc:
            raise SettingsError(f"{name}: {exc}") from None


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise SettingsError(f"{raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off")


def _int(*, minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{raw!r} is not an integer") from None
        if value < minimum:
            raise SettingsError(f"{value} is below the minimum of {minimum}")
        return value

    return parse


def _seconds(*, allow_zero: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{raw!r} is not a number of seconds") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            bound = ">= 0" if allow_zero else "> 0"
            raise SettingsError(f"{raw!r} must be a finite number of seconds {bound}")
        return value

    return parse


def _choice(allowed: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise SettingsError(f"{raw!r} is not one of: {', '.join(allowed)}")
        return raw

    return parse


def _executable(raw: str) -> Path:
    found = shutil.which(os.path.expanduser(raw))
    if found is None:
        raise SettingsError(
            f"{raw!r} is not an executable file or a command on PATH; "
            "install the Codex CLI (pip install 'trio-codex[cli]', or "
            "npm install -g @openai/codex) or set CODEX_PATH"
        )
    return Path(found).absolute()


def _default_codex() -> Path:
    """``codex`` on PATH, else the binary of the ``cli`` extra: a Codex the user installed wins."""
    try:
        return _executable("codex")
    except SettingsError as exc:
        bundled = bundled_codex()
        if bundled is not None:
            return bundled
        raise SettingsError(f"CODEX_PATH: {exc}") from None


def bundled_codex() -> Path | None:
    """The native Codex of ``openai-codex-cli-bin`` (``pip install 'trio-codex[cli]'``), or None
    when that package is not installed or lacks an executable binary."""
    try:
        module = importlib.import_module("codex_cli_bin")
        path = Path(module.bundled_codex_path())
    except (ImportError, AttributeError, OSError):
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None
