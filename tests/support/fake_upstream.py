"""A fake OpenAI Responses upstream that the real Codex CLI can talk to.

Stdlib only.  Run it as a subprocess::

    python tests/support/fake_upstream.py --port 0 [--log FILE]

It binds ``127.0.0.1`` only; the first line on stdout is ``LISTENING 127.0.0.1:<port>``
(flushed), so a harness can start it with ``--port 0`` and read the port back.  Point a
Codex custom provider at ``http://127.0.0.1:<port>/v1`` (see ``tests/support/codex_cli.py``).

Endpoints
---------
``POST /v1/responses``
    Answers with a ``stream: true`` Server-Sent-Events stream (whatever the request's
    ``stream`` flag says): ``response.created``, ``response.in_progress``, then for the
    assistant message ``response.output_item.added``, ``response.content_part.added``,
    ``response.output_text.delta`` x N, ``response.output_text.done``,
    ``response.content_part.done``, ``response.output_item.done``, and finally
    ``response.completed`` whose ``response.usage`` is ``{input_tokens,
    input_tokens_details.cached_tokens, output_tokens,
    output_tokens_details.reasoning_tokens, total_tokens}``.  Any other path ending in
    ``/responses`` is treated the same.
``GET`` with ``Upgrade: websocket``
    ``426 Upgrade Required`` with an OpenAI-style error body (Codex then falls back to
    HTTP POST).
``GET /_fake/requests``
    The JSON list of logged requests, oldest first.  Each entry has ``method``,
    ``path``, ``headers`` (a dict), ``body`` (parsed JSON, or text when it is not JSON),
    and, for responses requests, ``directive`` (the parsed directive), ``mode`` and
    ``input_images`` (every ``input_image`` part of the input, in order).
``POST /_fake/clear``
    Empties the request log; answers ``{"cleared": <count>}``.
anything else
    ``404`` with an OpenAI-style error body (logged).

The control endpoints (``/_fake/...``) are not logged.  With ``--log FILE`` every logged
request is also appended to FILE as one JSON line.

Directive
---------
Behaviour is chosen per request by a directive in the **last user text** of the request
input (the last text part of the last ``role: "user"`` message, which is where Codex puts
the prompt)::

    [[fake:key=value;key=value]]

Pairs are separated by ``;``; keys and values are stripped of surrounding spaces; a value
cannot contain ``;`` or ``]]`` (give ``<key>_b64=<base64 of UTF-8>`` instead, e.g.
``reply_b64=...``).  Several directives in that text: the last one wins.  No directive
means ``mode=text`` with the defaults.  Directives in earlier turns (e.g. in the history of
a resumed conversation) are ignored.

Modes (``mode=``, default ``text``):

``text``
    Stream ``reply`` (default ``Hello from the fake upstream.``) as ``chunks`` deltas
    (default 1; the text is split into N nearly equal pieces), sleeping ``delay_ms``
    milliseconds (default 0) between deltas.
``echo``
    The reply is a compact JSON summary of the conversation received: a JSON array of
    ``[role, text]`` pairs (``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``)
    with one pair per text part of every ``user`` and ``assistant`` message in input
    order, for example ``[["user","first"],["assistant","Hi."],["user","again"]]``.
    Directives are removed from the texts and the texts are stripped; texts that are then
    empty are left out, and so are user texts that Codex injects as tagged blocks (a text
    that starts with ``<`` and ends with ``>``, such as ``<environment_context>...``
    or the ``<image ...>`` wrappers of ``-i`` images).  ``developer``/``system`` messages,
    reasoning items and tool items are not included.
``reasoning``
    A reasoning output item whose summary is one ``summary_text`` (``summary=``, default
    ``Thinking about the request.``; streamed with the ``reasoning_summary_*`` events),
    then the ``text`` message.
``json``
    The reply is JSON generated from the request's ``text.format.schema`` (what
    ``codex exec --output-schema`` sends): objects get every property in ``properties``
    (so all ``required`` ones), ``const`` and ``enum`` (first value) win, strings are
    ``"example"`` (padded to ``minLength``), integers/numbers respect
    ``minimum``/``exclusiveMinimum``/``maximum``, booleans are ``true``, arrays hold
    ``max(1, minItems)`` items of ``items``, ``anyOf``/``oneOf`` use the first branch and
    type lists the first non-null type.  Without a schema: ``{"answer": <reply>}``.
``error``
    HTTP ``status`` (default 500; any 4xx/5xx, typically 401 403 404 429 500 503) with an
    OpenAI error body ``{"error": {"message", "type", "param", "code"}}``.  ``code``
    defaults per status (401 ``invalid_api_key``, 403 ``unsupported_country_region_territory``,
    404 ``model_not_found``, 429 ``rate_limit_exceeded``, 500 ``server_error``, 503
    ``server_overloaded``), ``message=`` overrides the default message.  429 and 503
    carry ``Retry-After: <retry_after>`` (default 1).
``failed``
    HTTP 200 stream: ``response.created``, ``response.in_progress``, then
    ``response.failed`` with ``response.error = {"code": <code>, "message": <message>}``
    (``code`` default ``server_error``; e.g. ``context_length_exceeded``,
    ``insufficient_quota``, ``rate_limit_exceeded``).
``hang``
    Read the request and never send a status line; the connection is held until the
    client closes it or ``hold_s`` seconds (default 600) pass.
``stall``
    Send the 200 headers and ``response.created``, then nothing; the connection is held
    like ``hang``.

Client-defined tools (any mode that answers with text):

``call_tool=``
    Comma-separated names of client-defined function tools (tools a server registered as
    Codex dynamic tools). When the request offers some of them (top-level ``type:
    "function"`` tools) and its input does not end with a tool output, the answer is one
    ``function_call`` item per offered name, in offer order (several names = parallel calls),
    with arguments built from the tool's ``parameters`` schema (as ``json`` mode does) or
    ``call_args`` (a JSON object) when given.
A request whose input ends with a ``function_call_output`` item (the tool results, within the
same Codex turn) is answered with the text ``Tool finished. Output: <out> | <out>`` quoting
every output after the last message, in order, whatever the directive says.

Usage numbers in ``response.completed`` (all modes that complete):
``input_tokens=`` (default: characters of the JSON-encoded ``input`` / 4),
``output_tokens=`` (default: characters of the reply / 4, at least 1, plus the reasoning
tokens), ``cached_tokens=`` (default 0), ``reasoning_tokens=`` (default 0, in
``reasoning`` mode characters of the summary / 4); ``total_tokens`` is input + output.
A directive with an unknown key or mode, a non-integer count, delay or token number, or a
status outside 400..599 is answered with HTTP 400 (code ``bad_fake_directive``) naming
the problem, so a typo does not silently fall back to ``text``.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import select
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any

DIRECTIVE_RE = re.compile(r"\[\[fake:([^\]]*)\]\]")

DEFAULTS: dict[str, str] = {
    "mode": "text",
    "reply": "Hello from the fake upstream.",
    "chunks": "1",
    "delay_ms": "0",
    "summary": "Thinking about the request.",
    "status": "500",
    "code": "",
    "message": "",
    "retry_after": "1",
    "hold_s": "600",
    "input_tokens": "",
    "output_tokens": "",
    "cached_tokens": "",
    "reasoning_tokens": "",
    "call_tool": "",
    "call_args": "",
}
INTEGER_KEYS = frozenset(
    {
        "chunks",
        "delay_ms",
        "status",
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "reasoning_tokens",
    }
)
MODES = frozenset({"text", "echo", "reasoning", "json", "error", "failed", "hang", "stall"})

DEFAULT_ERROR_CODES: dict[int, str] = {
    401: "invalid_api_key",
    403: "unsupported_country_region_territory",
    404: "model_not_found",
    429: "rate_limit_exceeded",
    500: "server_error",
    503: "server_overloaded",
}
DEFAULT_ERROR_MESSAGES: dict[int, str] = {
    401: "Incorrect API key provided: fake.",
    403: "Country, region, or territory not supported.",
    404: "The requested model does not exist.",
    429: "Rate limit reached for fake-model.",
    500: "The server had an error while processing your request.",
    503: "Service unavailable.",
}


class DirectiveError(ValueError):
    """A directive names an unknown key or mode, or has a malformed value."""


# --------------------------------------------------------------------------- request log


class RequestLog:
    """Thread-safe in-memory list of logged requests, optionally mirrored to a JSONL file."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._file = file

    def add(self, entry: dict[str, Any]) -> None:
        """Append one entry (and one line to the log file, if any)."""
        with self._lock:
            self._entries.append(entry)
            if self._file is not None:
                self._file.write(json.dumps(entry, ensure_ascii=False) + "\n")
                self._file.flush()

    def snapshot(self) -> list[dict[str, Any]]:
        """Return a copy of the entries, oldest first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> int:
        """Remove every entry; return how many there were."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            return count


# --------------------------------------------------------------------------- request inspection


def _message_texts(item: dict[str, Any]) -> list[str]:
    """The text parts of one input message (a string ``content`` counts as one part)."""
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        part["text"]
        for part in content
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The input items that are messages (have a ``role``); a string input is one user message."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    if not isinstance(raw, list):
        return []
    return [item for item in raw if isinstance(item, dict) and isinstance(item.get("role"), str)]


def last_user_text(body: dict[str, Any]) -> str:
    """The last text part of the last user message in the request input ("" if none)."""
    for item in reversed(_messages(body)):
        if item["role"] == "user":
            texts = _message_texts(item)
            if texts:
                return texts[-1]
    return ""


def input_images(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``input_image`` part of the request input, in order."""
    return [
        part
        for item in _messages(body)
        if isinstance(item.get("content"), list)
        for part in item["content"]
        if isinstance(part, dict) and part.get("type") == "input_image"
    ]


def parse_directive(text: str) -> dict[str, str]:
    """Parse the last ``[[fake:...]]`` directive in ``text`` into a dict (empty if none).

    ``<key>_b64`` values are base64-decoded into ``<key>``.  Raises ``DirectiveError`` for
    unknown keys, an unknown ``mode``, malformed pairs and invalid base64.
    """
    found = DIRECTIVE_RE.findall(text)
    if not found:
        return {}
    result: dict[str, str] = {}
    for pair in found[-1].split(";"):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep:
            raise DirectiveError(f"directive pair without '=': {pair.strip()!r}")
        if key.endswith("_b64"):
            key = key.removesuffix("_b64")
            try:
                value = base64.b64decode(value.strip(), validate=True).decode("utf-8")
            except ValueError as exc:
                raise DirectiveError(f"bad base64 for {key}_b64: {exc}") from exc
        else:
            value = value.strip()
        if key not in DEFAULTS:
            raise DirectiveError(f"unknown directive key {key!r}")
        result[key] = value
    if result.get("mode", "text") not in MODES:
        raise DirectiveError(f"unknown mode {result['mode']!r}")
    for key in INTEGER_KEYS & result.keys():
        if not result[key].isdecimal():
            raise DirectiveError(f"{key} must be a non-negative integer, not {result[key]!r}")
    if not 400 <= int(result.get("status", "500")) <= 599:
        raise DirectiveError(f"status must be 400..599, not {result['status']!r}")
    try:
        float(result.get("hold_s", "0"))
    except ValueError as exc:
        raise DirectiveError(f"hold_s must be a number, not {result['hold_s']!r}") from exc
    return result


def offered_function_tools(body: dict[str, Any], names: str) -> list[dict[str, Any]]:
    """The request's top-level function tools named in ``names`` (comma-separated), in offer
    order; none when ``names`` is empty."""
    wanted = {n.strip() for n in names.split(",") if n.strip()}
    tools = body.get("tools")
    if not wanted or not isinstance(tools, list):
        return []
    return [
        t
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and t.get("name") in wanted
    ]


def trailing_tool_outputs(body: dict[str, Any]) -> list[str]:
    """The texts of the ``function_call_output`` items after the last message, in order;
    none unless the input ends with one (calls and outputs may interleave)."""
    items = body.get("input")
    if not isinstance(items, list) or not items:
        return []
    last = items[-1]
    if not isinstance(last, dict) or last.get("type") != "function_call_output":
        return []
    outputs: list[str] = []
    for item in reversed(items):
        if not isinstance(item, dict) or "role" in item:
            break
        if item.get("type") != "function_call_output":
            continue
        out = item.get("output")
        if isinstance(out, list):
            out = " ".join(str(p.get("text", "")) for p in out if isinstance(p, dict))
        outputs.append(str(out)[:2000])
    return outputs[::-1]


def echo_summary(body: dict[str, Any]) -> str:
    """The ``echo`` reply: ``[[role, text], ...]`` for user/assistant texts (see module doc)."""
    pairs: list[list[str]] = []
    for item in _messages(body):
        role = item["role"]
        if role not in {"user", "assistant"}:
            continue
        for raw in _message_texts(item):
            text = DIRECTIVE_RE.sub("", raw).strip()
            if not text:
                continue
            if role == "user" and text.startswith("<") and text.endswith(">"):
                continue
            pairs.append([role, text])
    return json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))


def example_from_schema(schema: Any, depth: int = 0) -> Any:
    """A value that satisfies a simple JSON schema (see the ``json`` mode in the module doc)."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return example_from_schema(schema[key][0], depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        result = {name: example_from_schema(sub, depth + 1) for name, sub in properties.items()}
        for name in schema.get("required") or []:
            result.setdefault(name, "example")
        return result
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_from_schema(schema.get("items", {}), depth + 1) for _ in range(count)]
    if kind in {"integer", "number"}:
        value: float = 1
        if "minimum" in schema:
            value = max(value, schema["minimum"])
        if "exclusiveMinimum" in schema:
            value = max(value, schema["exclusiveMinimum"] + 1)
        if "maximum" in schema:
            value = min(value, schema["maximum"])
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "example".ljust(int(schema.get("minLength", 0)), "x")


def split_text(text: str, count: int) -> list[str]:
    """Split ``text`` into ``count`` nearly equal pieces (fewer if the text is shorter)."""
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    pieces: list[str] = []
    start = 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def usage_for(
    body: dict[str, Any], text: str, knobs: dict[str, str], reasoning_text: str = ""
) -> dict[str, Any]:
    """The ``usage`` object of ``response.completed`` (see the module doc for defaults)."""

    def number(key: str, default: int) -> int:
        return int(knobs[key]) if knobs[key] else default

    reasoning = number("reasoning_tokens", len(reasoning_text) // 4)
    input_tokens = number("input_tokens", len(json.dumps(body.get("input", ""))) // 4)
    output_tokens = number("output_tokens", max(1, len(text) // 4) + reasoning)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": number("cached_tokens", 0)},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": input_tokens + output_tokens,
    }


# --------------------------------------------------------------------------- HTTP handler


class Handler(BaseHTTPRequestHandler):
    """Routes requests; one instance per connection (``ThreadingHTTPServer``)."""

    protocol_version = "HTTP/1.1"
    server_version = "fake-upstream/1"
    server: FakeUpstreamServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence the default access log on stderr (the request log replaces it)."""

    # ---- plumbing

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _log(self, body: Any, **extra: Any) -> None:
        self.server.request_log.add(
            {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers.items()),
                "body": body,
                **extra,
            }
        )

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _send_error(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        if status == 429:
            kind = "insufficient_quota" if code == "insufficient_quota" else "requests"
        elif status < 500:
            kind = "invalid_request_error"
        else:
            kind = "server_error"
        error = {"message": message, "type": kind, "param": None, "code": code}
        self._send_json(status, {"error": error}, headers)

    def _hold(self, seconds: float) -> None:
        """Keep the connection open until the client closes it or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(remaining, 1.0))
            if readable and not self.connection.recv(65536):
                break
        self.close_connection = True

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex[:16])
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self._sequence = 0

    def _event(self, event: dict[str, Any]) -> None:
        event = {**event, "sequence_number": self._sequence}
        self._sequence += 1
        self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        self.wfile.flush()

    # ---- routes

    def do_GET(self) -> None:
        """WebSocket upgrades get 426, ``/_fake/requests`` the log, anything else 404."""
        path = self.path.partition("?")[0]
        if self.headers.get("Upgrade", "").lower() == "websocket":
            self._log(None)
            self._send_error(426, "websocket_not_supported", "The fake upstream has no WebSockets.")
        elif path == "/_fake/requests":
            self._send_json(200, self.server.request_log.snapshot())
        else:
            self._log(None)
            self._send_error(404, "not_found", f"No route for GET {path}.")

    def do_POST(self) -> None:
        """``/_fake/clear``, ``.../responses``, or 404."""
        body = self._read_body()
        path = self.path.partition("?")[0]
        if path == "/_fake/clear":
            self._send_json(200, {"cleared": self.server.request_log.clear()})
            return
        if not path.endswith("/responses"):
            self._log(body)
            self._send_error(404, "not_found", f"No route for POST {path}.")
            return
        if not isinstance(body, dict):
            self._log(body)
            self._send_error(400, "invalid_json", "The request body is not a JSON object.")
            return
        try:
            directive = parse_directive(last_user_text(body))
        except DirectiveError as exc:
            self._log(body, directive=None, mode=None, input_images=input_images(body))
            self._send_error(400, "bad_fake_directive", str(exc))
            return
        knobs = {**DEFAULTS, **directive}
        self._log(body, directive=directive, mode=knobs["mode"], input_images=input_images(body))
        try:
            self._respond(body, knobs)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ---- /v1/responses

    def _respond(self, body: dict[str, Any], knobs: dict[str, str]) -> None:
        mode = knobs["mode"]
        if mode == "error":
            status = int(knobs["status"])
            headers = {"Retry-After": knobs["retry_after"]} if status in {429, 503} else None
            self._send_error(
                status,
                knobs["code"] or DEFAULT_ERROR_CODES.get(status, "fake_error"),
                knobs["message"] or DEFAULT_ERROR_MESSAGES.get(status, f"Fake error {status}."),
                headers,
            )
            return
        if mode == "hang":
            self._hold(float(knobs["hold_s"]))
            return

        response_id = "resp_" + uuid.uuid4().hex[:16]
        model = str(body.get("model", "fake-model"))

        def response(status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "response",
                "created_at": int(time.time()),
                "status": status,
                "model": model,
                "output": output,
                **extra,
            }

        self._start_stream()
        self._event({"type": "response.created", "response": response("in_progress", [])})
        if mode == "stall":
            self._hold(float(knobs["hold_s"]))
            return
        self._event({"type": "response.in_progress", "response": response("in_progress", [])})
        if mode == "failed":
            code = knobs["code"] or "server_error"
            error = {"code": code, "message": knobs["message"] or f"Fake failure: {code}."}
            self._event(
                {"type": "response.failed", "response": response("failed", [], error=error)}
            )
            return

        output: list[dict[str, Any]] = []
        results = trailing_tool_outputs(body)
        calls = offered_function_tools(body, knobs["call_tool"])
        if results or calls:
            if results:
                text = "Tool finished. Output: " + " | ".join(results)
                output.append(self._stream_message(text, 0, knobs))
            else:
                args = json.loads(knobs["call_args"]) if knobs["call_args"] else None
                for tool in calls:
                    schema = tool.get("parameters") or {}
                    arguments = args if args is not None else example_from_schema(schema) or {}
                    output.append(self._stream_function_call(tool["name"], arguments, len(output)))
                text = ""
            self._event(
                {
                    "type": "response.completed",
                    "response": response("completed", output, usage=usage_for(body, text, knobs)),
                }
            )
            return
        summary = ""
        if mode == "reasoning":
            summary = knobs["summary"]
            output.append(self._stream_reasoning(summary, 0))
        if mode == "echo":
            text = echo_summary(body)
        elif mode == "json":
            text_format = (body.get("text") or {}).get("format") or {}
            schema = text_format.get("schema") if isinstance(text_format, dict) else None
            if isinstance(schema, dict):
                text = json.dumps(example_from_schema(schema))
            else:
                text = json.dumps({"answer": knobs["reply"]})
        else:
            text = knobs["reply"]
        output.append(self._stream_message(text, len(output), knobs))
        usage = usage_for(body, text, knobs, summary)
        self._event(
            {
                "type": "response.completed",
                "response": response("completed", output, usage=usage),
            }
        )

    def _stream_function_call(self, name: str, args: Any, index: int) -> dict[str, Any]:
        """A ``function_call`` item for a client-defined tool, with its argument events."""
        call_id = "call_" + uuid.uuid4().hex[:16]
        item_id = "fc_" + uuid.uuid4().hex[:16]
        arguments = json.dumps(args)
        added = {
            "type": "function_call",
            "id": item_id,
            "call_id": call_id,
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        self._event({"type": "response.output_item.added", "output_index": index, "item": added})
        where = {"item_id": item_id, "output_index": index}
        self._event({"type": "response.function_call_arguments.delta", **where, "delta": arguments})
        self._event(
            {"type": "response.function_call_arguments.done", **where, "arguments": arguments}
        )
        item = {**added, "arguments": arguments, "status": "completed"}
        self._event({"type": "response.output_item.done", "output_index": index, "item": item})
        return item

    def _stream_message(self, text: str, index: int, knobs: dict[str, str]) -> dict[str, Any]:
        item_id = "msg_" + uuid.uuid4().hex[:16]
        empty = {"type": "output_text", "text": "", "annotations": []}
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        self._event(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {
                    "type": "message",
                    "id": item_id,
                    "role": "assistant",
                    "status": "in_progress",
                    "content": [],
                },
            }
        )
        self._event({"type": "response.content_part.added", **where, "part": empty})
        delay = int(knobs["delay_ms"]) / 1000
        for number, piece in enumerate(split_text(text, int(knobs["chunks"]))):
            if number and delay:
                time.sleep(delay)
            self._event(
                {
                    "type": "response.output_text.delta",
                    **where,
                    "delta": piece,
                    "logprobs": [],
                }
            )
        part = {"type": "output_text", "text": text, "annotations": []}
        self._event({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
        self._event({"type": "response.content_part.done", **where, "part": part})
        item = {
            "type": "message",
            "id": item_id,
            "role": "assistant",
            "status": "completed",
            "content": [part],
        }
        self._event({"type": "response.output_item.done", "output_index": index, "item": item})
        return item

    def _stream_reasoning(self, text: str, index: int) -> dict[str, Any]:
        item_id = "rs_" + uuid.uuid4().hex[:16]
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        part = {"type": "summary_text", "text": text}
        self._event(
            {
                "type": "response.output_item.added",
                "output_index": index,
                "item": {"type": "reasoning", "id": item_id, "summary": []},
            }
        )
        self._event(
            {
                "type": "response.reasoning_summary_part.added",
                **where,
                "part": {"type": "summary_text", "text": ""},
            }
        )
        self._event({"type": "response.reasoning_summary_text.delta", **where, "delta": text})
        self._event({"type": "response.reasoning_summary_text.done", **where, "text": text})
        self._event({"type": "response.reasoning_summary_part.done", **where, "part": part})
        item = {"type": "reasoning", "id": item_id, "summary": [part]}
        self._event({"type": "response.output_item.done", "output_index": index, "item": item})
        return item


class FakeUpstreamServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on 127.0.0.1 with a ``request_log``; threads are daemons."""

    daemon_threads = True

    def __init__(self, port: int, request_log: RequestLog) -> None:
        self.request_log = request_log
        super().__init__(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, print ``LISTENING 127.0.0.1:<port>`` and serve until killed."""
    parser = argparse.ArgumentParser(description="Fake OpenAI Responses upstream for Codex.")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--log", help="also append each logged request to this JSONL file")
    args = parser.parse_args(argv)
    log_file = open(args.log, "a", encoding="utf-8") if args.log else None  # noqa: SIM115
    server = FakeUpstreamServer(args.port, RequestLog(log_file))
    print(f"LISTENING 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        if log_file is not None:
            log_file.close()


if __name__ == "__main__":
    main()
