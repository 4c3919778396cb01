"""What Codex does, as lines a person reads: the commands it runs and the files it changes.

``progress_note(event)`` turns an ``ItemEvent`` of either backend into one short note, or None
for items that are not progress (and for a ``file_change`` still in progress: it is told once
applied). ``codex exec --json`` names fields in snake_case (``command_execution``,
``exit_code``, ``in_progress``), ``codex app-server`` in camelCase (``commandExecution`` mapped
to ``command_execution`` by the backend, ``exitCode``, ``inProgress``); both are read.

The notes go where the reasoning summary goes (``x_codex.progress``): a chat completion's
``reasoning_content`` or ``<think>`` block, a Responses ``reasoning`` item's ``summary_text``.
Not Responses ``shell_call`` / ``apply_patch_call`` items: those are calls the client is to
run and answer (``shell_call_output``), so an agent SDK would run Codex's commands a second
time, and a client that sends its output back as input would be refused. Pure.
"""

from __future__ import annotations

from typing import Any, Final

from ..run.events import ItemEvent
from .schemas import XCodex

#: Longest command shown; the rest is cut with an ellipsis.
MAX_COMMAND_CHARS: Final = 300


def _get(item: dict[str, Any], *names: str) -> object:
    for name in names:
        if name in item:
            return item[name]
    return None


def _command(item: dict[str, Any]) -> str:
    command = _get(item, "command")
    if isinstance(command, list):
        command = " ".join(str(part) for part in command)
    text = " ".join(str(command or "").split())  # one line
    if len(text) > MAX_COMMAND_CHARS:
        text = text[: MAX_COMMAND_CHARS - 1] + "…"
    return text.replace("`", "'")


def _status(item: dict[str, Any]) -> str:
    status = _get(item, "status")
    return status.replace("inProgress", "in_progress") if isinstance(status, str) else ""


def _changes(item: dict[str, Any]) -> list[str]:
    changes = _get(item, "changes")
    out = []
    for change in changes if isinstance(changes, list) else []:
        if not isinstance(change, dict) or not isinstance(change.get("path"), str):
            continue
        kind = change.get("kind")
        if isinstance(kind, dict):  # app-server: {"type": "add"} / {"type": "update", ...}
            kind = kind.get("type")
        out.append(f"{kind} {change['path']}" if isinstance(kind, str) and kind else change["path"])
    return out


def progress_note(event: ItemEvent) -> str | None:
    """The note for ``event``, or None when it is not a command or an applied file change."""
    item = event.item
    if event.item_type == "command_execution":
        command = _command(item)
        if not command:
            return None
        if event.phase == "started":
            return f"Running `{command}`"
        if event.phase != "completed":
            return None
        code = _get(item, "exit_code", "exitCode")
        status = _status(item)
        if isinstance(code, int) and not isinstance(code, bool):
            return f"`{command}` exited with {code}"
        return f"`{command}` ended ({status or 'no exit code'})"
    if event.item_type == "file_change" and event.phase == "completed":
        changes = _changes(item)
        if not changes:
            return None
        status = _status(item)
        verb = "Changed" if status in ("completed", "") else f"Not changed ({status})"
        return f"{verb}: " + ", ".join(changes)
    return None


def wants_progress(x_codex: XCodex | None, default: bool) -> bool:
    """``x_codex.progress`` when the request says, else the operator's ``CODEX_PROGRESS``."""
    if x_codex is not None and x_codex.progress is not None:
        return x_codex.progress
    return default
