"""The ``codex app-server`` protocol as trio_codex speaks it: what to send, and what a turn's
notifications mean as ``CodexEvent`` s. Pure and sans-IO (``app_server.py`` does the IO).

Shapes are Codex CLI 0.169.0's, on the stable surface (``experimentalApi: false``), as measured in
APP_SERVER.md; ``PROTOCOL_PINS`` lists every method and field used here, and which of them are
experimental (tests/codex/test_protocol_pins.py checks them against the installed CLI's
``generate-json-schema``). Guarantees:

* every thread request says ``approvalPolicy: "never"`` and names the sandbox explicitly
  (app-server's defaults are ``on-request``, which blocks a turn for ever on an approval, and
  read-only); nothing from a request is sent but validated ``RunSpec`` fields;
* ``TurnMapper`` takes only the notifications of its own turn (a resumed thread replays the
  previous turn's usage) and produces the same events, with the same meaning, as
  ``codex exec --json`` through ``exec.parse_event``, plus ``TextDelta`` for each token delta:
  ``TurnCompleted.usage`` is the turn's usage on a new or forked thread and the thread's running
  total on a resumed one, exactly what ``codex exec`` / ``codex exec resume`` report (the
  Responses layer subtracts the thread's earlier total from the latter). A fork's ``total``
  starts from its source's total at the fork point (measured: 100 at turn 1, then 250 after a
  150-token branch turn), so a fork's own usage is the sum of its turn's ``last``;
* every request of the server gets an answer from ``server_request_reply``: approvals are
  declined, anything else is refused with JSON-RPC's "method not found", except
  ``item/tool/call`` in a run with client tools (``TOOL_CALL``), which the backend answers with
  the client's result (``tool_call_reply``);
* client tools are registered as ``dynamicTools`` at ``thread/start`` (the only place app-server
  takes them), which needs ``initialize`` with ``experimentalApi: true``: asked for only when the
  run has tools; a ``dynamicToolCall`` item that starts is a ``ToolCallStarted`` with the
  arguments as JSON text;
* ``fatal_config_warning`` recognises the warning app-server prints when it could not load
  ``config.toml`` and goes on **with the default provider** (``codex exec`` refuses to start
  then): a run must stop before its prompt is sent.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from ..run.events import (
    CodexEvent,
    ErrorEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ToolCallStarted,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from ..run.runner import RunSpec
from ..run.tools import ToolCall, ToolOutput, ToolSet
from .jsonrpc import METHOD_NOT_FOUND

#: ``clientInfo.name``: Codex sends it upstream as the ``originator`` header and at the start of
#: the ``User-Agent``.
CLIENT_NAME: Final = "trio_codex"

#: Notifications trio_codex has no use for (``capabilities.optOutNotificationMethods``).
OPT_OUT_NOTIFICATIONS: Final[tuple[str, ...]] = (
    "account/rateLimits/updated",
    "remoteControl/status/changed",
    "thread/status/changed",
    "thread/started",
    "item/reasoning/summaryPartAdded",
)

#: Approval requests and the answer that declines each (the v2 methods take ``decline``, the
#: legacy ones ``denied``; MCP elicitations ``decline``).
DECLINE: Final[Mapping[str, dict[str, Any]]] = {
    "item/commandExecution/requestApproval": {"decision": "decline"},
    "item/fileChange/requestApproval": {"decision": "decline"},
    "execCommandApproval": {"decision": "denied"},
    "applyPatchApproval": {"decision": "denied"},
    "mcpServer/elicitation/request": {"action": "decline"},
}

#: Item types that have events of their own (or are the prompt echoed back).
_OWN_EVENTS: Final = frozenset({"agentMessage", "reasoning", "userMessage"})
_INVALID_CONFIG: Final = "Invalid configuration"


#: The server request that asks for a client tool's result.
TOOL_CALL: Final = "item/tool/call"


@dataclasses.dataclass(frozen=True)
class ProtocolPin:
    """One method or field of the app-server protocol that this module sends or reads.

    A method: ``owner`` is the union it belongs to (``ClientRequest``, ``ClientNotification``,
    ``ServerRequest``, ``ServerNotification``) and ``shape`` is None. A field: ``owner`` is the
    schema definition (``ThreadForkParams``) and ``shape`` its value in short (``string``,
    ``boolean``, ``array<UserInput>``, a definition's name, ``any``; ``null`` left out).
    ``experimental``: only in ``codex app-server generate-json-schema --experimental``, so it
    works only after ``initialize`` with ``experimentalApi: true`` and may change without
    notice in any release.
    """

    owner: str
    name: str
    shape: str | None = None
    experimental: bool = False


#: Everything of the protocol this backend relies on (Codex CLI 0.169.0 and 0.171.0). The one
#: experimental part is ``dynamicTools`` (client tools); ``thread/fork`` with ``lastTurnId``
#: (branching) is stable.
PROTOCOL_PINS: Final[tuple[ProtocolPin, ...]] = (
    ProtocolPin("ClientRequest", "initialize"),
    ProtocolPin("ClientRequest", "thread/start"),
    ProtocolPin("ClientRequest", "thread/resume"),
    ProtocolPin("ClientRequest", "thread/fork"),
    ProtocolPin("ClientRequest", "turn/start"),
    ProtocolPin("ClientNotification", "initialized"),
    ProtocolPin("ServerRequest", "item/tool/call"),
    ProtocolPin("ServerRequest", "item/commandExecution/requestApproval"),
    ProtocolPin("ServerRequest", "item/fileChange/requestApproval"),
    ProtocolPin("ServerRequest", "execCommandApproval"),
    ProtocolPin("ServerRequest", "applyPatchApproval"),
    ProtocolPin("ServerRequest", "mcpServer/elicitation/request"),
    ProtocolPin("ServerNotification", "item/agentMessage/delta"),
    ProtocolPin("ServerNotification", "item/started"),
    ProtocolPin("ServerNotification", "item/completed"),
    ProtocolPin("ServerNotification", "thread/tokenUsage/updated"),
    ProtocolPin("ServerNotification", "error"),
    ProtocolPin("ServerNotification", "turn/completed"),
    ProtocolPin("ServerNotification", "configWarning"),
    ProtocolPin("InitializeParams", "clientInfo", "ClientInfo"),
    ProtocolPin("InitializeParams", "capabilities", "InitializeCapabilities"),
    ProtocolPin("InitializeCapabilities", "experimentalApi", "boolean"),
    ProtocolPin("InitializeCapabilities", "optOutNotificationMethods", "array<string>"),
    ProtocolPin("ThreadStartParams", "cwd", "string"),
    ProtocolPin("ThreadStartParams", "approvalPolicy", "AskForApproval"),
    ProtocolPin("ThreadStartParams", "sandbox", "SandboxMode"),
    ProtocolPin("ThreadStartParams", "model", "string"),
    ProtocolPin("ThreadStartParams", "config", "object"),
    ProtocolPin("ThreadStartParams", "ephemeral", "boolean"),
    ProtocolPin("ThreadStartParams", "dynamicTools", "array<DynamicToolSpec>", experimental=True),
    ProtocolPin("ThreadResumeParams", "threadId", "string"),
    ProtocolPin("ThreadResumeParams", "excludeTurns", "boolean"),
    ProtocolPin("ThreadResumeParams", "cwd", "string"),
    ProtocolPin("ThreadResumeParams", "approvalPolicy", "AskForApproval"),
    ProtocolPin("ThreadResumeParams", "sandbox", "SandboxMode"),
    ProtocolPin("ThreadResumeParams", "model", "string"),
    ProtocolPin("ThreadResumeParams", "config", "object"),
    ProtocolPin("ThreadForkParams", "threadId", "string"),
    ProtocolPin("ThreadForkParams", "lastTurnId", "string"),
    ProtocolPin("ThreadForkParams", "excludeTurns", "boolean"),
    ProtocolPin("ThreadForkParams", "ephemeral", "boolean"),
    ProtocolPin("ThreadForkParams", "cwd", "string"),
    ProtocolPin("ThreadForkParams", "approvalPolicy", "AskForApproval"),
    ProtocolPin("ThreadForkParams", "sandbox", "SandboxMode"),
    ProtocolPin("ThreadForkParams", "model", "string"),
    ProtocolPin("ThreadForkParams", "config", "object"),
    ProtocolPin("TurnStartParams", "threadId", "string"),
    ProtocolPin("TurnStartParams", "input", "array<UserInput>"),
    ProtocolPin("TurnStartParams", "summary", "ReasoningSummary"),
    ProtocolPin("TurnStartParams", "effort", "ReasoningEffort"),
    ProtocolPin("TurnStartParams", "outputSchema", "any"),
    ProtocolPin("DynamicToolSpec", "type", "string"),
    ProtocolPin("DynamicToolSpec", "name", "string"),
    ProtocolPin("DynamicToolSpec", "description", "string"),
    ProtocolPin("DynamicToolSpec", "inputSchema", "any"),
    ProtocolPin("DynamicToolCallParams", "callId", "string"),
    ProtocolPin("DynamicToolCallParams", "tool", "string"),
    ProtocolPin("DynamicToolCallParams", "arguments", "any"),
    ProtocolPin("DynamicToolCallResponse", "success", "boolean"),
    ProtocolPin(
        "DynamicToolCallResponse", "contentItems", "array<DynamicToolCallOutputContentItem>"
    ),
    ProtocolPin("ThreadStartResponse", "thread", "Thread"),
    ProtocolPin("ThreadResumeResponse", "thread", "Thread"),
    ProtocolPin("ThreadForkResponse", "thread", "Thread"),
    ProtocolPin("Thread", "id", "string"),
    ProtocolPin("TurnStartResponse", "turn", "Turn"),
    ProtocolPin("Turn", "id", "string"),
    ProtocolPin("Turn", "status", "TurnStatus"),
    ProtocolPin("Turn", "error", "TurnError"),
    ProtocolPin("AgentMessageDeltaNotification", "itemId", "string"),
    ProtocolPin("AgentMessageDeltaNotification", "delta", "string"),
    ProtocolPin("AgentMessageDeltaNotification", "turnId", "string"),
    ProtocolPin("ThreadTokenUsageUpdatedNotification", "turnId", "string"),
    ProtocolPin("ThreadTokenUsageUpdatedNotification", "tokenUsage", "ThreadTokenUsage"),
    ProtocolPin("ThreadTokenUsage", "last", "TokenUsageBreakdown"),
    ProtocolPin("ThreadTokenUsage", "total", "TokenUsageBreakdown"),
    ProtocolPin("TokenUsageBreakdown", "inputTokens", "integer"),
    ProtocolPin("TokenUsageBreakdown", "cachedInputTokens", "integer"),
    ProtocolPin("TokenUsageBreakdown", "cacheWriteInputTokens", "integer"),
    ProtocolPin("TokenUsageBreakdown", "outputTokens", "integer"),
    ProtocolPin("TokenUsageBreakdown", "reasoningOutputTokens", "integer"),
    ProtocolPin("ErrorNotification", "error", "TurnError"),
    ProtocolPin("ErrorNotification", "turnId", "string"),
    ProtocolPin("ErrorNotification", "willRetry", "boolean"),
    ProtocolPin("ConfigWarningNotification", "summary", "string"),
    ProtocolPin("ConfigWarningNotification", "details", "string"),
)

#: The experimental part of ``PROTOCOL_PINS``.
EXPERIMENTAL_PINS: Final = tuple(pin for pin in PROTOCOL_PINS if pin.experimental)


def initialize_params(version: str, *, experimental: bool = False) -> dict[str, Any]:
    """``initialize``; ``experimental`` (the experimental API) is needed for client tools."""
    return {
        "clientInfo": {"name": CLIENT_NAME, "title": None, "version": version},
        "capabilities": {
            "experimentalApi": experimental,
            "optOutNotificationMethods": list(OPT_OUT_NOTIFICATIONS),
        },
    }


def thread_request(spec: RunSpec, *, workdir: Path) -> tuple[str, dict[str, Any]]:
    """``("thread/start", params)`` for a new conversation, ``("thread/resume", params)`` to
    continue ``spec.resume_thread_id``, ``("thread/fork", params)`` to branch it at
    ``spec.fork_at_turn`` (a new persisted thread, so its own response can be continued; the
    history is not sent back)."""
    params: dict[str, Any] = {
        "cwd": os.fspath(workdir),
        "approvalPolicy": "never",
        "sandbox": spec.sandbox,
    }
    if spec.model is not None:
        params["model"] = spec.model
    if spec.network_access and spec.sandbox == "workspace-write":
        params["config"] = {"sandbox_workspace_write": {"network_access": True}}
    if spec.resume_thread_id is not None and spec.fork_at_turn is not None:
        return "thread/fork", {
            "threadId": spec.resume_thread_id,
            "lastTurnId": spec.fork_at_turn,
            "excludeTurns": True,
            "ephemeral": False,
            **params,
        }
    if spec.resume_thread_id is not None:
        return "thread/resume", {"threadId": spec.resume_thread_id, "excludeTurns": True, **params}
    start = {**params, "ephemeral": not spec.persist}
    if spec.tools:
        start["dynamicTools"] = dynamic_tools(spec.tools)
    return "thread/start", start


def dynamic_tools(tools: ToolSet) -> list[dict[str, Any]]:
    """The client's tools as ``thread/start.dynamicTools``."""
    return [
        {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "inputSchema": dict(tool.parameters),
        }
        for tool in tools.tools
    ]


def tool_call_id(params: Mapping[str, Any]) -> str:
    """The call id of an ``item/tool/call`` request ("" when it has none)."""
    return _str(params.get("callId"))


def tool_call_reply(output: ToolOutput) -> dict[str, Any]:
    """The answer to ``item/tool/call``: the client's text, then its images."""
    items: list[dict[str, Any]] = []
    if output.text or not output.images:
        items.append({"type": "inputText", "text": output.text})
    items += [{"type": "inputImage", "imageUrl": url} for url in output.images]
    return {"success": True, "contentItems": items}


def _tool_call(item: Mapping[str, Any]) -> ToolCall:
    arguments = item.get("arguments")
    text = (
        arguments
        if isinstance(arguments, str)
        else json.dumps(
            arguments if arguments is not None else {}, ensure_ascii=False, separators=(",", ":")
        )
    )
    return ToolCall(_str(item.get("id")), _str(item.get("tool")), text)


def turn_start_params(
    spec: RunSpec, thread_id: str, *, output_schema: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``turn/start``: the prompt, then one ``localImage`` per image file of the request."""
    items: list[dict[str, Any]] = [{"type": "text", "text": spec.prompt, "text_elements": []}]
    items += [{"type": "localImage", "path": os.fspath(path)} for path in spec.images]
    params: dict[str, Any] = {"threadId": thread_id, "input": items, "summary": "auto"}
    if spec.reasoning_effort is not None:
        params["effort"] = spec.reasoning_effort
    if output_schema is not None:
        params["outputSchema"] = dict(output_schema)
    return params


def thread_id_of(result: Mapping[str, Any]) -> str | None:
    """The thread id in a ``thread/start`` / ``thread/resume`` / ``thread/fork`` result (a fork's
    is the new thread's)."""
    thread = result.get("thread")
    tid = thread.get("id") if isinstance(thread, dict) else None
    return tid if isinstance(tid, str) and tid else None


def turn_id_of(result: Mapping[str, Any]) -> str | None:
    """The turn id in a ``turn/start`` result."""
    turn = result.get("turn")
    tid = turn.get("id") if isinstance(turn, dict) else None
    return tid if isinstance(tid, str) and tid else None


@dataclasses.dataclass(frozen=True)
class Reply:
    """The answer to one server request: a result, or a JSON-RPC error."""

    result: dict[str, Any] | None = None
    error_code: int = METHOD_NOT_FOUND
    error_message: str = ""


def server_request_reply(method: str) -> Reply:
    """Decline approvals; refuse everything else (no client tools yet)."""
    if method in DECLINE:
        return Reply(result=dict(DECLINE[method]))
    return Reply(error_message=f"{CLIENT_NAME} does not handle {method}")


def fatal_config_warning(method: str, params: Mapping[str, Any]) -> str | None:
    """The failure message when ``method``/``params`` say that ``config.toml`` was not loaded."""
    if method != "configWarning":
        return None
    summary = _str(params.get("summary"))
    if not summary.startswith(_INVALID_CONFIG):
        return None
    details = _str(params.get("details"))
    return (
        "Codex could not load its configuration"
        + (f" ({details})" if details else "")
        + "; the run was stopped before the prompt was sent"
    )


def parse_token_usage(data: object) -> Usage:
    """A ``TokenUsageBreakdown`` (``tokenUsage.last`` / ``.total``); bad counts read as 0."""
    if not isinstance(data, dict):
        return Usage()
    return Usage(
        input_tokens=_int(data.get("inputTokens")),
        cached_input_tokens=_int(data.get("cachedInputTokens")),
        output_tokens=_int(data.get("outputTokens")),
        reasoning_output_tokens=_int(data.get("reasoningOutputTokens")),
        cache_write_input_tokens=_int(data.get("cacheWriteInputTokens")),
    )


def add_usage(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        cached_input_tokens=a.cached_input_tokens + b.cached_input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        reasoning_output_tokens=a.reasoning_output_tokens + b.reasoning_output_tokens,
        cache_write_input_tokens=a.cache_write_input_tokens + b.cache_write_input_tokens,
    )


def item_type_name(app_server_type: str) -> str:
    """``commandExecution`` -> ``command_execution``: the item type as ``codex exec`` names it."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", app_server_type).lower()


class TurnMapper:
    """Folds the notifications of one turn into events; ``done`` once the turn has ended.

    ``cumulative``: the thread was resumed, so ``TurnCompleted.usage`` is the thread's running
    total (as ``codex exec resume`` reports it) rather than the turn's own usage.
    """

    def __init__(self, turn_id: str, *, cumulative: bool = False) -> None:
        self.turn_id = turn_id
        self.cumulative = cumulative
        self.done = False
        self.turn_usage = Usage()
        self.thread_total: Usage | None = None

    def _ours(self, params: Mapping[str, Any]) -> bool:
        turn_id = params.get("turnId")
        return turn_id is None or turn_id == self.turn_id

    def feed(self, method: str, params: Mapping[str, Any]) -> list[CodexEvent]:
        """The events one notification stands for (most stand for none)."""
        if self.done:
            return []
        if method == "item/agentMessage/delta":
            delta = _str(params.get("delta"))
            if not delta or not self._ours(params):
                return []
            return [TextDelta(_str(params.get("itemId")), delta)]
        if method in ("item/completed", "item/started"):
            return self._item(method.removeprefix("item/"), params)
        if method == "thread/tokenUsage/updated":
            self._usage(params)
            return []
        if method == "error":
            return self._error(params)
        if method == "turn/completed":
            return self._completed(params)
        return []

    def _item(self, phase: str, params: Mapping[str, Any]) -> list[CodexEvent]:
        item = params.get("item")
        if not isinstance(item, dict) or not self._ours(params):
            return []
        kind, item_id = _str(item.get("type")), _str(item.get("id"))
        if phase == "completed" and kind == "agentMessage":
            return [MessageCompleted(item_id, _str(item.get("text")))]
        if phase == "completed" and kind == "reasoning":
            summary = item.get("summary")
            parts = [p for p in summary if isinstance(p, str)] if isinstance(summary, list) else []
            text = "\n".join(parts)
            return [ReasoningCompleted(item_id, text)] if text else []
        if kind == "dynamicToolCall":
            return [ToolCallStarted(_tool_call(item))] if phase == "started" else []
        if kind in _OWN_EVENTS or not kind:
            return []
        return [ItemEvent(phase, item_type_name(kind), item)]

    def _usage(self, params: Mapping[str, Any]) -> None:
        if params.get("turnId") != self.turn_id:
            return  # another turn's (a resume replays the previous turn's usage first)
        usage = params.get("tokenUsage")
        if not isinstance(usage, dict):
            return
        self.turn_usage = add_usage(self.turn_usage, parse_token_usage(usage.get("last")))
        if isinstance(usage.get("total"), dict):
            self.thread_total = parse_token_usage(usage["total"])

    def _error(self, params: Mapping[str, Any]) -> list[CodexEvent]:
        if not self._ours(params):
            return []
        error = params.get("error")
        message = _str(error.get("message")) if isinstance(error, dict) else ""
        return [ErrorEvent(message)] if message else []

    def _completed(self, params: Mapping[str, Any]) -> list[CodexEvent]:
        turn = params.get("turn")
        if not isinstance(turn, dict) or turn.get("id") != self.turn_id:
            return []
        self.done = True
        status = turn.get("status")
        if status == "completed":
            usage = self.turn_usage
            if self.cumulative and self.thread_total is not None:
                usage = self.thread_total
            return [TurnCompleted(usage)]
        error = turn.get("error")
        message = _str(error.get("message")) if isinstance(error, dict) else ""
        if not message:
            message = (
                "Codex interrupted the turn"
                if status == "interrupted"
                else f"Codex ended the turn with status {status!r} and no message"
            )
        return [TurnFailed(message)]


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""
