"""The websocket endpoint: admission, the session, then the connection runs its course."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from ..admission import Refusal, Refuse, token_from_subprotocols
from ..connection import Connection
from ..contexts import SessionCreationError
from ..protocol import CloseCode, close_reason
from ..requests import request_payload
from ..tokens import read_token
from .sessions import admit, open_session

if TYPE_CHECKING:
    from ..contexts import AppContext
    from ..server import AppServer

__all__ = ["no_such_app", "websocket_endpoint"]

log = logging.getLogger("app_server.ws")

BAD_SUBPROTOCOLS = "a Bokeh websocket must offer two subprotocols: 'bokeh' and the session token"


async def _refuse(websocket: WebSocket, refusal: Refuse) -> None:
    """Answer the handshake with an HTTP error where the server can, else close it."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(refusal.reason, refusal.status))
    else:
        await websocket.close(refusal.close_code, close_reason(refusal.reason))


async def websocket_endpoint(
    websocket: WebSocket, *, server: AppServer, context: AppContext
) -> None:
    if server.draining:
        await websocket.close(CloseCode.GOING_AWAY, "shutting down")
        return
    with server.arrival() as arrival:  # a drain lets it pull its document before the 1001
        connection = await _connect(websocket, server, context)
        if connection is not None:
            arrival.connection = connection
            await connection.run()


async def _connect(
    websocket: WebSocket, server: AppServer, context: AppContext
) -> Connection | None:
    """The admitted websocket's connection to its session, or None once it is refused.

    Its own coroutine, so that what admission reads (the token, the request's headers) is
    let go before the connection runs, rather than held in a frame for the websocket's life.
    """
    text = token_from_subprotocols(websocket.scope.get("subprotocols", []))
    token = None if text is None else read_token(text, server.settings)
    decision = await admit(
        server,
        context,
        websocket,
        token,
        websocket=True,
        problem=BAD_SUBPROTOCOLS if text is None else None,
    )
    if isinstance(decision, Refuse):
        server.metrics.websocket_refused += 1
        log.warning("app %s: refused a websocket: %s", context.name, decision.reason)
        await _refuse(websocket, decision)
        return None
    assert decision.token is not None  # a websocket always presents a token
    try:
        payload = request_payload(websocket, server.settings)
        session = await open_session(context, websocket, decision.token, payload)
    except SessionCreationError as exc:
        # the app code failed: say so in the close reason, which BokehJS logs
        await websocket.accept(subprotocol="bokeh")
        await websocket.close(CloseCode.INTERNAL_ERROR, close_reason(str(exc).splitlines()[0]))
        return None
    settings = server.settings
    return Connection(
        websocket,
        session,
        context,
        queue_size=settings.outbound_queue_size,
        queue_bytes=settings.outbound_queue_bytes,
        max_message_size=settings.websocket_max_message_size,
        metrics=server.metrics,
        registry=server.connections,
    )


async def no_such_app(websocket: WebSocket) -> None:
    """A websocket to a path with no app: 404, so clients can say "check the app path"."""
    log.warning("refused a websocket to %s: no application there", websocket.url.path)
    reason = f"no Bokeh application at {websocket.url.path}"
    await _refuse(websocket, Refuse(Refusal.NO_SUCH_APP, reason))
