"""The websocket endpoint: handshake policy, then a reader loop feeding the session."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bokeh.util.token import get_token_payload
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from .. import protocol
from ..connection import Connection
from ..contexts import SessionCreationError
from ..exceptions import SessionLimitError
from ..handshake import Accept, Reject, check_handshake
from ..protocol import CloseCode, ProtocolViolation, Receiver
from ..requests import SessionRequest, request_payload

if TYPE_CHECKING:
    from ..contexts import AppContext
    from ..server import AppServer
    from ..session import ServerSession

__all__ = ["dispatch", "no_such_app", "websocket_endpoint"]

log = logging.getLogger("app_server.ws")

VIOLATION_DRAIN = 5.0  # seconds replies to earlier, valid messages may take before the close


async def _refuse(websocket: WebSocket, reject: Reject) -> None:
    """Answer the handshake with an HTTP error where the server can, else close with 1008."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(reject.reason, reject.status))
    else:
        await websocket.close(CloseCode.POLICY_VIOLATION, reject.reason[:120])


async def _open_session(
    server: AppServer, context: AppContext, websocket: WebSocket, accept: Accept
) -> ServerSession | Reject:
    payload = get_token_payload(accept.token)
    user = await server.auth.user(websocket)
    if server.auth.enabled and user is None:
        return Reject(403, "log in before opening this application")
    if user is not None and payload.get("user") not in (None, user):
        return Reject(403, "this token was issued to another user")
    if context.owner(accept.session_id) not in (None, user or payload.get("user")):
        return Reject(403, "this session belongs to another user")
    if accept.expired and accept.session_id not in context.sessions:
        return Reject(
            403,
            "the token has expired and its session is gone; reload the page, or raise "
            "--session-token-expiration",
        )
    # a page's token carries its request; a client's token may not: then the websocket's own
    # query, cookies and headers stand in, as in Bokeh
    request = SessionRequest.from_payload(
        websocket, {**request_payload(websocket, server.settings), **payload}
    )
    return await context.create_session_if_needed(accept.session_id, accept.token, request)


async def websocket_endpoint(
    websocket: WebSocket, *, server: AppServer, context: AppContext
) -> None:
    headers = websocket.headers
    decision = check_handshake(
        origin=headers.get("origin"),
        host=server.public_host(websocket),
        subprotocols=websocket.scope.get("subprotocols", []),
        settings=server.settings,
    )
    try:
        opened = (
            await _open_session(server, context, websocket, decision)
            if isinstance(decision, Accept)
            else decision
        )
    except SessionLimitError as exc:
        opened = Reject(exc.status, str(exc))
    except SessionCreationError as exc:
        # the app code failed: say so in the close reason, which BokehJS logs
        await websocket.accept(subprotocol="bokeh")
        await websocket.close(CloseCode.INTERNAL_ERROR, str(exc).splitlines()[0][:120])
        return
    if isinstance(opened, Reject):
        server.metrics.websocket_refused += 1
        log.warning("app %s: refused a websocket: %s", context.name, opened.reason)
        await _refuse(websocket, opened)
        return

    session = opened
    await websocket.accept(subprotocol="bokeh")
    connection = Connection(websocket, session, server.settings.outbound_queue_size, server.metrics)
    session.subscribe(connection)
    server.connections.add(connection)
    server.metrics.websocket_opened += 1
    log.info(
        "app %s, session %s: websocket opened", context.name, session.id, extra=session.log_extra
    )
    connection.send(protocol.encode(protocol.make_message(protocol.ACK)))

    async def detach(close_code: int | None) -> None:
        """Release the session's side of the connection, once (at close, or when dropped)."""
        if connection.detached:
            return
        connection.detached = True
        server.connections.discard(connection)
        server.metrics.websocket_closed += 1
        session.unsubscribe(connection)
        await connection.close()
        await session.notify_connection_lost()
        server.session_disconnected(context, session)
        log.info(
            "app %s, session %s: websocket closed (code %s)",
            context.name,
            session.id,
            close_code,
            extra=session.log_extra,
        )

    connection.on_drop = detach
    close_code: int | None = None
    try:
        close_code = await _read(connection, Receiver(server.settings.websocket_max_message_size))
    except Exception:
        log.exception(
            "session %s: the websocket reader failed", session.id, extra=session.log_extra
        )
        close_code = CloseCode.INTERNAL_ERROR
        await connection.close(close_code, "internal error")
    finally:
        await detach(close_code)


async def no_such_app(websocket: WebSocket) -> None:
    """A websocket to a path with no app: 404, so clients can say "check the app path"."""
    log.warning("refused a websocket to %s: no application there", websocket.url.path)
    await _refuse(websocket, Reject(404, f"no Bokeh application at {websocket.url.path}"))


async def _read(connection: Connection, receiver: Receiver) -> int | None:
    """Feed frames to the session until the socket closes; the close code, when known."""
    websocket, metrics = connection.websocket, connection.metrics
    while True:
        event = await websocket.receive()
        if event["type"] == "websocket.disconnect":
            return event.get("code")
        frame = event.get("text")
        if frame is None:
            frame = event.get("bytes") or b""
        metrics.bytes_in += len(frame)
        result = receiver.receive_frame(frame)
        if result is None:
            continue
        metrics.messages_in += 1
        if isinstance(result, ProtocolViolation):
            log.warning(
                "session %s: closing the websocket: %s",
                connection.session.id,
                result.reason,
                extra=connection.session.log_extra,
            )
            await connection.close(result.code, result.reason, drain=VIOLATION_DRAIN)
            return int(result.code)
        await dispatch(connection, result)


async def dispatch(connection: Connection, message: protocol.Message) -> None:
    """Handle one message; a failure is logged and answered with ERROR, never raised."""
    session = connection.session
    msgtype = message.msgtype
    log.debug(
        "session %s: received %s %s", session.id, msgtype, message.msgid, extra=session.log_extra
    )
    try:
        if msgtype == protocol.PATCH_DOC:
            await session.patch(connection, message)
        elif msgtype == protocol.PULL_DOC_REQ:
            await session.pull(connection, message)
        elif msgtype == protocol.PUSH_DOC:
            await session.push(connection, message)
        elif msgtype == protocol.SERVER_INFO_REQ:
            connection.send(protocol.encode(protocol.server_info_reply(message.msgid)))
        else:
            log.warning(
                "session %s: unexpected message type %r",
                session.id,
                msgtype,
                extra=session.log_extra,
            )
            text = f"the server does not accept {msgtype!r} messages"
            connection.send(protocol.encode(protocol.error(message.msgid, text)))
    except Exception as exc:
        log.exception(
            "session %s: handling %s failed", session.id, msgtype, extra=session.log_extra
        )
        text = f"{msgtype} failed: {type(exc).__name__}: {exc}"
        connection.send(protocol.encode(protocol.error(message.msgid, text)))
