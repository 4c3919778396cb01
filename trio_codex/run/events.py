"""Codex's JSONL event stream, parsed into typed events, and the accumulated outcome of a run.

Pure and sans-IO: ``parse_event`` turns one stdout line into a ``CodexEvent``; ``Transcript``
folds events into the answer text, the usage and the failure, and ``classify_failure`` maps a
Codex failure message to the HTTP status a client should see. Unknown event types and lines
that are not JSON are kept as ``UnknownEvent`` so a newer or noisier Codex never breaks a run.

``TextDelta`` has no ``codex exec`` source today (exec prints whole messages); it is the event a
token-streaming backend (``codex app-server``) produces, so the HTTP layer handles it already.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Final

from .tools import ToolCall


@dataclasses.dataclass(frozen=True)
class Usage:
    """Token counts of a turn, summed by Codex over every upstream request of the turn."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_output_tokens: int = 0
    #: Input tokens written to the upstream's prompt cache (``cache_write_input_tokens``).
    cache_write_input_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def since(self, baseline: Usage) -> Usage:
        """The part of this cumulative total after ``baseline``, each count clamped at 0."""

        def less(a: int, b: int) -> int:
            return max(0, a - b)

        return Usage(
            input_tokens=less(self.input_tokens, baseline.input_tokens),
            cached_input_tokens=less(self.cached_input_tokens, baseline.cached_input_tokens),
            output_tokens=less(self.output_tokens, baseline.output_tokens),
            reasoning_output_tokens=less(
                self.reasoning_output_tokens, baseline.reasoning_output_tokens
            ),
            cache_write_input_tokens=less(
                self.cache_write_input_tokens, baseline.cache_write_input_tokens
            ),
        )


@dataclasses.dataclass(frozen=True)
class ThreadStarted:
    thread_id: str


@dataclasses.dataclass(frozen=True)
class TurnStarted:
    #: Codex's id of the turn (``app-server`` reports it; ``codex exec --json`` does not).
    turn_id: str | None = None


@dataclasses.dataclass(frozen=True)
class TextDelta:
    """A fragment of an assistant message (token-streaming backends only)."""

    item_id: str
    delta: str


@dataclasses.dataclass(frozen=True)
class MessageCompleted:
    """A whole ``agent_message`` item: text the client should see."""

    item_id: str
    text: str


@dataclasses.dataclass(frozen=True)
class ReasoningCompleted:
    """A whole ``reasoning`` item (Codex's reasoning summary text)."""

    item_id: str
    text: str


@dataclasses.dataclass(frozen=True)
class ItemEvent:
    """Any other item lifecycle event: command_execution, file_change, web_search, error, ..."""

    phase: str  # "started" | "updated" | "completed"
    item_type: str
    item: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ToolCallStarted:
    """The model called a client tool (``codex app-server`` dynamic tools only)."""

    call: ToolCall


@dataclasses.dataclass(frozen=True)
class ToolCallWaiting:
    """The backend now waits for the client's result of ``call_id``; every ``ToolCallStarted``
    before this one belongs to the same model response (their results are asked one by one)."""

    call_id: str


@dataclasses.dataclass(frozen=True)
class TurnCompleted:
    usage: Usage


@dataclasses.dataclass(frozen=True)
class TurnFailed:
    message: str


@dataclasses.dataclass(frozen=True)
class ErrorEvent:
    """A top-level ``error`` line: a retry notice, or the final error before ``turn.failed``."""

    message: str


@dataclasses.dataclass(frozen=True)
class UnknownEvent:
    """A line of an unknown type, or one that is not a JSON object; kept, never fatal."""

    raw: str


CodexEvent = (
    ThreadStarted
    | TurnStarted
    | TextDelta
    | MessageCompleted
    | ReasoningCompleted
    | ItemEvent
    | ToolCallStarted
    | ToolCallWaiting
    | TurnCompleted
    | TurnFailed
    | ErrorEvent
    | UnknownEvent
)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def is_retry_notice(message: str) -> bool:
    """An ``error`` that is only progress: Codex is retrying, the turn goes on."""
    return message.startswith(("Reconnecting...", "Falling back from WebSockets"))


def is_answer_text(event: CodexEvent) -> bool:
    """``event`` carries text of the answer (a delta or a whole agent message)."""
    return (isinstance(event, TextDelta) and bool(event.delta)) or (
        isinstance(event, MessageCompleted) and bool(event.text)
    )


def is_network_wait(message: str) -> bool:
    """Codex cannot reach its provider at all (no network, DNS, proxy, firewall) and waits for
    it without end (CODEX_FACTS section 4)."""
    return message.startswith("Reconnecting... waiting for network")


@dataclasses.dataclass(frozen=True)
class Failure:
    """A failed run as the client sees it."""

    status: int
    code: str | None
    message: str


_FAILURE_RULES: Final[tuple[tuple[re.Pattern[str], int, str | None], ...]] = (
    (
        re.compile(r"\b401\b|Unauthorized|Incorrect API key|invalid[_ ]api[_ ]key", re.I),
        401,
        "invalid_api_key",
    ),
    (re.compile(r"Quota exceeded|insufficient[_ ]quota|billing", re.I), 429, "insufficient_quota"),
    (re.compile(r"\b429\b|rate limit|Too Many Requests", re.I), 429, "rate_limit_exceeded"),
    (
        re.compile(
            r"context window|context[_ ]length|maximum length|input_too_large|too long", re.I
        ),
        400,
        "context_length_exceeded",
    ),
    (
        re.compile(r"model_not_found|model .{0,80}(does not exist|not found)|\b404\b", re.I),
        404,
        "model_not_found",
    ),
    (re.compile(r"\b403\b|Forbidden", re.I), 403, "permission_denied"),
)


def classify_failure(message: str) -> Failure:
    """Map a Codex failure text to a status: 401, 429, 400 (context), 404 (model), else 502."""
    for pattern, status, code in _FAILURE_RULES:
        if pattern.search(message):
            return Failure(status, code, message)
    return Failure(502, "upstream_error", message)


@dataclasses.dataclass
class Transcript:
    """Everything a run produced, folded from its events in order."""

    thread_id: str | None = None
    turn_id: str | None = None
    messages: list[str] = dataclasses.field(default_factory=list)
    reasoning: list[str] = dataclasses.field(default_factory=list)
    usage: Usage | None = None
    failure_message: str | None = None
    last_error: str | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    #: Client tool calls the model made, in order.
    tool_calls: list[ToolCall] = dataclasses.field(default_factory=list)
    _partial: dict[str, str] = dataclasses.field(default_factory=dict)

    def feed(self, event: CodexEvent) -> None:
        match event:
            case ThreadStarted(thread_id=thread_id):
                self.thread_id = thread_id
            case TurnStarted(turn_id=turn_id) if turn_id is not None:
                self.turn_id = turn_id
            case TextDelta(item_id=item_id, delta=delta):
                self._partial[item_id] = self._partial.get(item_id, "") + delta
            case MessageCompleted(item_id=item_id, text=text):
                self._partial.pop(item_id, None)
                self.messages.append(text)
            case ReasoningCompleted(text=text):
                self.reasoning.append(text)
            case TurnCompleted(usage=usage):
                self.usage = usage
            case TurnFailed(message=message):
                self.failure_message = message
            case ErrorEvent(message=message):
                if not is_retry_notice(message):
                    self.last_error = message
            case ToolCallStarted(call=call):
                self.tool_calls.append(call)
            case ItemEvent(phase="completed", item_type="error", item=item):
                self.warnings.append(_str(item.get("message")))
            case _:
                pass

    @property
    def text(self) -> str:
        """The answer: every agent message in order, separated by a blank line."""
        return "\n\n".join([*self.messages, *self._partial.values()])

    @property
    def final_text(self) -> str:
        """The last agent message (what structured output parses)."""
        if self._partial:
            return list(self._partial.values())[-1]
        return self.messages[-1] if self.messages else ""

    @property
    def completed(self) -> bool:
        return self.usage is not None and self.failure_message is None

    @property
    def has_answer(self) -> bool:
        """An agent message arrived (whole, or as deltas): there is something to answer with."""
        return bool(self.messages or self._partial)

    def failure(self, exit_code: int | None, stderr: str = "") -> Failure | None:
        """Why this run failed, or None when it succeeded (``turn.completed`` with at least one
        agent message, and exit 0). A completed turn without any agent message is a 502: an
        empty answer is never a success (structured output, whose answer is the last message,
        included)."""
        if self.failure_message is not None:
            return classify_failure(self.failure_message)
        if self.completed and exit_code in (0, None):
            if not self.has_answer:
                return Failure(
                    502,
                    "upstream_error",
                    "Codex completed the turn without an answer (it printed no agent message)",
                )
            return None
        detail = self.last_error or _last_error_line(stderr)
        if detail:
            return classify_failure(detail)
        if exit_code not in (0, None):
            return Failure(502, "upstream_error", f"Codex exited with status {exit_code}")
        return Failure(502, "upstream_error", "Codex ended without completing the turn")


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("Error", "error:")) or " ERROR " in ln:
            return ln
    return lines[-1] if lines else ""
