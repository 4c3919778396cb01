"""Reading a request body, and writing an error response.

``read_json_body`` reads a JSON object with a byte limit that holds for chunked uploads too
(413 as soon as the bytes received pass it), a time limit that holds for a client that goes
silent (408 after ``CODEX_BODY_TIMEOUT_SECONDS``) and a nesting limit checked before parsing
(400); ``error_response`` writes an OpenAI error envelope with its status and headers."""

from __future__ import annotations

import array
import itertools
import json
import math
import re

import trio
from quart import Response, request

from ..errors import InvalidRequestError, PayloadTooLargeError, RequestTimeoutError, ServiceError

#: Nesting deeper than this is refused before ``json.loads`` could hit the recursion limit.
MAX_JSON_DEPTH = 64


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


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not a JSON value (RFC 8259)")


async def read_json_body(max_bytes: int) -> object:
    """The request body as JSON; 413 past ``max_bytes`` (counted as it arrives, chunked too),
    408 ``request_timeout`` when the whole body has not arrived within the app's
    ``BODY_TIMEOUT`` (``create_app`` sets it from ``CODEX_BODY_TIMEOUT_SECONDS``), 400 for anything that is not JSON (``NaN`` and
    ``Infinity`` included)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise PayloadTooLargeError(
            f"The request body is {length} bytes; the limit is {max_bytes}.", param=None
        )
    timeout = request.body_timeout
    buf = bytearray()
    with trio.move_on_after(math.inf if timeout is None else timeout) as deadline:
        async for chunk in request.body:
            buf += chunk
            if len(buf) > max_bytes:
                raise PayloadTooLargeError(
                    f"The request body is larger than the limit of {max_bytes} bytes.",
                    param=None,
                )
    if deadline.cancelled_caught:
        raise RequestTimeoutError(
            f"The request body did not arrive within {timeout:g} seconds "
            f"({len(buf)} bytes received).",
            param=None,
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
        # escapes the depth check above does not read. NaN and Infinity are not JSON either:
        # accepted, they would be echoed back as invalid JSON.
        return json.loads(buf.decode("utf-8"), parse_constant=_not_json)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
