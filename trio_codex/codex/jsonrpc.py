"""One client connection speaking JSON-RPC over JSON lines (``codex app-server``'s stdio transport).

The wire, as Codex 0.169.0 speaks it (APP_SERVER.md section 1.1): one JSON object per line in each
direction, no ``"jsonrpc"`` member; requests ``{"id","method","params"}``, notifications
``{"method","params"}``, answers ``{"id","result"}`` or ``{"id","error":{"code","message"}}``. The
peer sends requests of its own, numbered from 0 like ours.

``RpcConnection`` writes to a send stream; ``serve(lines)`` (run it in a task) reads the peer's
lines until they end. Guarantees:

* a message that has a ``method`` is a notification or a request of the peer, never an answer,
  even when its ``id`` equals one of ours; answers are routed to the request waiting for that id
  (an answer nobody waits for any more is dropped);
* every write and every wait for an answer is bounded by ``timeout``; ``wait`` raises ``RpcError`` when the peer answers
  with an error, and ``ProtocolError`` on a missed deadline, the end of the peer's output, or a
  broken stream;
* a line that is not a JSON object, or an object that is neither a request, a notification nor
  an answer, breaks the connection: ``error`` is set, every waiting request raises it, and
  ``incoming`` ends (a peer that breaks the framing once cannot be trusted with the rest);
* notifications and the peer's requests reach ``incoming`` in the order they were read, with
  back-pressure: while ``incoming`` is full the lines are not read, so a peer cannot make this
  side buffer without bound;
* writes are serialized, one whole line at a time; a peer that stopped reading raises
  ``ProtocolError``, not a stream error.

Knows nothing about processes, Codex's methods or trio_codex's events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import AsyncIterable
from typing import Any, Final

import trio

log = logging.getLogger("trio_codex.codex.jsonrpc")

RequestId = int | str

#: Messages from the peer buffered in ``incoming`` before reading pauses.
INCOMING_BUFFER: Final = 256
#: JSON-RPC's "method not found".
METHOD_NOT_FOUND: Final = -32601


class ProtocolError(Exception):
    """The peer broke the protocol, stopped answering in time, or went away."""


class RpcError(Exception):
    """The peer answered a request with a JSON-RPC error."""

    def __init__(self, method: str, code: object, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.method = method
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class Notification:
    method: str
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ServerRequest:
    """A request the peer sent us: it waits for ``respond`` / ``respond_error`` with ``id``."""

    id: RequestId
    method: str
    params: dict[str, Any]


Incoming = Notification | ServerRequest


class Pending:
    """A request that was sent and waits for its answer (``RpcConnection.wait``)."""

    def __init__(self, request_id: int, method: str) -> None:
        self.id = request_id
        self.method = method
        self.answered = trio.Event()
        self.result: dict[str, Any] | None = None
        self.error: Exception | None = None

    def settle(self, result: dict[str, Any] | None, error: Exception | None) -> None:
        if not self.answered.is_set():
            self.result, self.error = result, error
            self.answered.set()


class RpcConnection:
    """The client side of one connection; see the module docstring for the guarantees."""

    def __init__(self, send: trio.abc.SendStream, *, peer: str = "peer", timeout: float) -> None:
        self._send = send
        self._peer = peer
        self._timeout = timeout
        self._write_lock = trio.Lock()
        self._next_id = 0
        self._waiting: dict[RequestId, Pending] = {}
        self._incoming_send, self.incoming = trio.open_memory_channel[Incoming](INCOMING_BUFFER)
        #: Why the connection is broken (a malformed line); None while it is sound or after
        #: a clean end of the peer's output.
        self.error: ProtocolError | None = None
        #: The peer's output has ended (EOF or broken); nothing more will arrive.
        self.closed = False

    # ------------------------------------------------------------------ writing

    async def _write(self, message: dict[str, Any]) -> None:
        # ASCII escapes: any str encodes, and a line never contains a raw newline.
        line = json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n"
        with trio.move_on_after(self._timeout):
            async with self._write_lock:
                try:
                    await self._send.send_all(line)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise ProtocolError(f"{self._peer} stopped reading its input") from None
                return
        raise ProtocolError(f"{self._peer} did not read its input within {self._timeout:g} s")

    async def send_request(self, method: str, params: dict[str, Any] | None = None) -> Pending:
        """Send a request; its answer is awaited with ``wait`` (so requests can be pipelined)."""
        if self.error is not None:
            raise self.error
        pending = Pending(self._next_id, method)
        self._next_id += 1
        self._waiting[pending.id] = pending
        message: dict[str, Any] = {"id": pending.id, "method": method}
        if params is not None:
            message["params"] = params
        if self.closed:
            pending.settle(None, self._ended_error(method))
            return pending
        try:
            await self._write(message)
        except BaseException:
            self._waiting.pop(pending.id, None)
            raise
        return pending

    async def wait(self, pending: Pending) -> dict[str, Any]:
        """The result of ``pending``; raises ``RpcError`` or ``ProtocolError`` (see module)."""
        try:
            with trio.move_on_after(self._timeout):
                await pending.answered.wait()
            if not pending.answered.is_set():
                raise ProtocolError(
                    f"{self._peer} did not answer {pending.method} within {self._timeout:g} s"
                )
        finally:
            self._waiting.pop(pending.id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result or {}

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a request and wait for its result."""
        return await self.wait(await self.send_request(method, params))

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"method": method}
        if params is not None:
            message["params"] = params
        await self._write(message)

    async def respond(self, request_id: RequestId, result: dict[str, Any]) -> None:
        await self._write({"id": request_id, "result": result})

    async def respond_error(self, request_id: RequestId, code: int, message: str) -> None:
        await self._write({"id": request_id, "error": {"code": code, "message": message}})

    async def close_input(self) -> None:
        """Close the stream to the peer (for ``codex app-server``: the way to end it)."""
        async with self._write_lock:
            await self._send.aclose()

    # ------------------------------------------------------------------ reading

    async def serve(self, lines: AsyncIterable[bytes]) -> None:
        """Read the peer's lines until they end; the peer's faults never raise here, they set
        ``error``. ``incoming`` is closed on the way out."""
        try:
            async for line in lines:
                if not line.strip():
                    continue
                message = self._parse(line)
                if self.error is not None:
                    return
                if message is not None:
                    await self._dispatch(message)
        finally:
            self.closed = True
            for pending in list(self._waiting.values()):
                pending.settle(None, self.error or self._ended_error(pending.method))
            self._incoming_send.close()

    def _ended_error(self, method: str) -> ProtocolError:
        return ProtocolError(f"{self._peer} closed its output before answering {method}")

    def _break(self, why: str, line: bytes) -> None:
        log.warning("%s broke the protocol: %s: %.200r", self._peer, why, line)
        self.error = ProtocolError(f"{self._peer} broke the protocol: {why}")

    def _parse(self, line: bytes) -> dict[str, Any] | None:
        """The message on ``line``; None when it is to be skipped or broke the connection."""
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):
            self._break(f"an output line of {len(line)} bytes is not JSON", line)
            return None
        if not isinstance(message, dict):
            self._break("an output line is not a JSON object", line)
            return None
        method, request_id = message.get("method"), message.get("id")
        valid_id = _is_request_id(request_id)
        if method is None and request_id is None and "error" in message:
            # An error about no request of ours (JSON-RPC's answer to an unparsable line).
            log.warning("%s reported an error: %.300r", self._peer, message["error"])
            return None
        if method is None and not (valid_id and ("result" in message or "error" in message)):
            self._break("an output line is neither a request, a notification nor an answer", line)
            return None
        if method is not None and (
            not isinstance(method, str) or ("id" in message and not valid_id)
        ):
            self._break("an output line has an invalid method or id", line)
            return None
        return message

    async def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            self._settle_answer(message)
            return
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        incoming: Incoming = (
            ServerRequest(message["id"], method, params)
            if "id" in message
            else Notification(method, params)
        )
        # BrokenResourceError: nobody listens any more (the run is ending): drop it.
        with contextlib.suppress(trio.BrokenResourceError):
            await self._incoming_send.send(incoming)

    def _settle_answer(self, message: dict[str, Any]) -> None:
        pending = self._waiting.get(message["id"])
        if pending is None:
            log.debug("%s answered request %r, which nobody waits for", self._peer, message["id"])
            return
        if "error" in message:
            error = message["error"]
            error = error if isinstance(error, dict) else {}
            text = error.get("message")
            pending.settle(
                None,
                RpcError(
                    pending.method,
                    error.get("code"),
                    text if isinstance(text, str) else "(no message)",
                ),
            )
        else:
            result = message.get("result")
            pending.settle(result if isinstance(result, dict) else {}, None)


def _is_request_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
