"""HTTP plumbing shared by every API route: the request record and its log line, error
responses, and reading a JSON body with a byte limit that holds for chunked uploads too."""

from __future__ import annotations

import array
import dataclasses
import itertools
import json
import logging
import re

import trio
from quart import Response, request
from quart_trio import QuartTrio

from ..errors import InvalidRequestError, PayloadTooLargeError, ServiceError
from ..run.events import Transcript
from ..run.runner import RunHandle

log = logging.getLogger("trio_codex")

#: Nesting deeper than this is refused before ``json.loads`` could hit the recursion limit.
MAX_JSON_DEPTH = 64


def app_nursery(app: QuartTrio) -> trio.Nursery:
    """The lifespan nursery quart-trio opens while the app is serving (runs live there)."""
    return app.nursery


@dataclasses.dataclass
class RequestRecord:
    """What the per-request log line reports."""

    request_id: str
    method: str
    path: str
    started: float
    model: str | None = None
    status: int | None = None
    code: str | None = None
    stream: bool = False
    queue_wait: float | None = None
    run_time: float | None = None
    exit_code: int | None = None
    tokens: int | None = None
    logged: bool = False
    #: The line waits for a detached run to exit (see ``emit_when_run_ends``).
    deferred: bool = False

    def from_run(self, handle: RunHandle, transcript: Transcript | None) -> None:
        self.queue_wait = handle.queue_wait
        if handle.started:
            # A detached run may still be exiting: report how long it had run so far.
            done = handle.done.is_set()
            self.run_time = handle.run_time if done else trio.current_time() - handle.began
        else:
            self.run_time = None
        self.exit_code = handle.exit.exit_code
        if transcript is not None and transcript.usage is not None:
            self.tokens = transcript.usage.total_tokens

    def defer_until_run_ends(
        self, handle: RunHandle, transcript: Transcript | None, nursery: trio.Nursery
    ) -> bool:
        """Record the run. If it was detached while Codex is still exiting, log the line once
        it has ended (so the line has Codex's exit code) and return True."""
        self.from_run(handle, transcript)
        if not handle.detached or handle.done.is_set():
            return False
        self.deferred = True

        async def emit_later() -> None:
            await handle.done.wait()
            self.from_run(handle, transcript)
            self.emit()

        nursery.start_soon(emit_later)
        return True

    def emit(self) -> None:
        if self.logged:
            return
        self.logged = True
        duration = trio.current_time() - self.started

        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.3f}"

        log.info(
            "request id=%s method=%s path=%s model=%s status=%s%s stream=%s queue_wait=%s "
            "run_time=%s exit=%s tokens=%s duration=%.3f",
            self.request_id,
            self.method,
            self.path,
            self.model or "-",
            self.status,
            f" code={self.code}" if self.code else "",
            int(self.stream),
            fmt(self.queue_wait),
            fmt(self.run_time),
            "-" if self.exit_code is None else self.exit_code,
            "-" if self.tokens is None else self.tokens,
            duration,
        )


def error_response(error: ServiceError) -> Response:
    response = Response(
        json.dumps(error.envelope()), status=error.status_code, content_type="application/json"
    )
    response.headers.update(error.headers())
    if error.status_code == 429 and error.code == "insufficient_quota":
        response.headers["x-should-retry"] = "false"
    return response


#: A JSON string once every escape pair that could hide a quote is gone (see ``_json_depth_ok``).
_JSON_STRING = re.compile(rb'"[^"]*"')
#: Every byte but the four brackets (deleted), and the brackets as signed steps (+1 / -1).
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _json_depth_ok(raw: bytes, limit: int) -> bool:
    """False if ``raw`` nests arrays/objects deeper than ``limit`` (brackets inside strings
    do not count). Exact for valid JSON; for invalid JSON it may answer either way, and the
    parser refuses that anyway. Runs at C speed (~0.2 s for 16 MiB of the worst shapes), so a
    big body cannot hold the event loop the way a byte-by-byte Python loop would (~2 s)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return True
    # In a valid JSON text a backslash only occurs in strings and starts a two-byte escape:
    # drop escaped backslashes first, then escaped quotes; what is left of every string is
    # '"[^"]*"'.
    text = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    steps = _JSON_STRING.sub(b"", text).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(itertools.accumulate(array.array("b", steps)), default=0) <= limit


async def read_json_body(max_bytes: int) -> object:
    """The request body as JSON; 413 past ``max_bytes`` (counted as it arrives, chunked too),
    400 for anything that is not JSON."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLargeError(
            f"The request body is {length} bytes; the limit is {max_bytes}.", param=None
        )
    buf = bytearray()
    async for chunk in request.body:
        buf += chunk
        if len(buf) > max_bytes:
            raise PayloadTooLargeError(
                f"The request body is larger than the limit of {max_bytes} bytes.", param=None
            )
    if not buf.strip():
        raise InvalidRequestError(
            "The request body is empty; send a JSON object.", code="invalid_json"
        )
    if not _json_depth_ok(bytes(buf), MAX_JSON_DEPTH):
        raise InvalidRequestError(
            f"The request body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
        )
    try:
        # UTF-8 only (RFC 8259): json.loads would also detect UTF-16/32 from bytes, whose
        # escapes the depth check above does not read.
        return json.loads(buf.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
