"""The ASGI connection the app runs each HTTP request in: quart-trio's, with the end of a
response that closes its connection (``Connection: close``, as a 408 sets it) sent shielded
from cancellation.

Why: when a response ends while the request body is still unread (a 408 after the body
timeout), Hypercorn closes the connection from inside that last send. Quart-trio's own message
task sees Hypercorn's ``http.disconnect`` at that very moment and cancels the request's
nursery, which aborted the close half-way: the socket stayed open and the client that sent
nothing held it for ever. Shielded, the close completes. Other responses are left as they
were: a response cut by a shutdown must stay cut (no complete answer after the graceful
timeout).
"""

from __future__ import annotations

import trio
from hypercorn.typing import ASGISendCallable, ASGISendEvent
from quart.wrappers import Request
from quart_trio.asgi import TrioASGIHTTPConnection


class ClosingHTTPConnection(TrioASGIHTTPConnection):
    """``TrioASGIHTTPConnection`` that sends the end of a ``Connection: close`` response
    shielded."""

    async def handle_request(  # type: ignore[override]
        self, nursery: trio.Nursery, request: Request, send: ASGISendCallable
    ) -> None:
        closing = False

        async def send_closing_end_shielded(message: ASGISendEvent) -> None:
            nonlocal closing
            if message["type"] == "http.response.start":
                closing = any(
                    name.lower() == b"connection" and value.lower() == b"close"
                    for name, value in message.get("headers", ())
                )
            if (
                closing
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                with trio.CancelScope(shield=True):
                    await send(message)
            else:
                await send(message)

        await super().handle_request(nursery, request, send_closing_end_shielded)
