"""The websocket protocol ``app-server serve`` gives uvicorn: websockets' sans-I/O core below,
ASGI above, in place of uvicorn's own ``websockets-sansio`` protocol, which it follows.

What it does that uvicorn's does not:

- It holds less for each open websocket (about 2 KB, ``python -m bench.breakdown``): its state
  is in slots, not a 35-key instance dict; received messages wait in a list, not an
  ``asyncio.Queue`` and ``Event`` (five deques, ~4 KB); the app's coroutine is the task itself,
  with no wrapper frame; the handshake's request and response are let go once used.
- A Bokeh message's frames (header, metadata, content, buffers) go out in one system call:
  the ``FRAMES`` extension (:mod:`app_server.extensions`) takes them in one ``websocket.send``,
  or with its ``write`` at once, with no send to await, when the transport takes them.
  Without compression, the frames are built here, at a fifth of websockets' cost.
- A close does not wait for a peer that never reads: the close frame goes at once, and the
  transport is aborted if the peer has not answered within ``close_timeout``, or a keepalive
  ping within ``--ws-ping-timeout``. uvicorn closes, which waits for the unread buffer to drain,
  so a stalled peer's buffer would be held until TCP gave up.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import struct
import weakref
from http import HTTPStatus
from typing import Any, cast
from urllib.parse import unquote

from uvicorn.config import Config
from uvicorn.protocols.utils import (
    ClientDisconnected,
    get_client_addr,
    get_local_addr,
    get_path_with_query_string,
    get_remote_addr,
    is_ssl,
)
from uvicorn.server import ServerState
from websockets import http11
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.version import version as websockets_version

from .extensions import FRAMES

__all__ = ["WEBSOCKET_CLOSE_TIMEOUT", "WebSocketProtocol"]

log = logging.getLogger("uvicorn.error")  # where uvicorn's websocket protocols log

WEBSOCKET_CLOSE_TIMEOUT = 5.0  # seconds a peer has to answer our close frame (Tornado's)
MAX_HEADER_LINE = 64 * 1024  # Tornado's (so Bokeh's) limit for a whole request head
# websockets < 17 decoded header values with surrogate escapes, later ones as ISO-8859-1
_HEADER_ENCODING = (
    ("latin-1", "strict") if websockets_version >= "17" else ("ascii", "surrogateescape")
)

_PHRASES = {status.value: status.phrase for status in HTTPStatus}
# one scope["asgi"] for every websocket, rather than a dict each; one scope["server"] for
# every websocket to the same local address (as many as the host has interfaces and ports)
_LOCAL_ADDRESSES: dict[tuple[str, int | None], tuple[str, int | None]] = {}
_ASGI = {version: {"version": version, "spec_version": "2.4"} for version in ("2.0", "3.0")}
_NO_OPTIONS: dict[str, Any] = {}  # an extension's (websocket.http.response), shared likewise
_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack


def unmasked_frames(frames: list[str | bytes]) -> list[bytes]:
    """Each frame as a whole, unmasked, uncompressed server frame (RFC 6455, 5.2): what
    websockets' ``send_text``/``send_binary`` write for a server without extensions, at a
    fifth of their cost (they build, check and serialize a ``Frame`` object each)."""
    out: list[bytes] = []
    for frame in frames:
        if isinstance(frame, str):
            data, first = frame.encode(), 0x81  # FIN, text
        else:
            data, first = frame, 0x82  # FIN, binary
        size = len(data)
        if size < 126:
            out.append(bytes((first, size)))
        elif size < 65536:
            out.append(_pack_16(first, 126, size))
        else:
            out.append(_pack_64(first, 127, size))
        out.append(data)
    return out


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class WebSocketProtocol(asyncio.Protocol):
    """One websocket, from the upgraded request to the closed transport."""

    __slots__ = (
        "__weakref__",  # leak tests watch for the protocol object
        "app",
        "app_state",
        "client",
        "close_sent",
        "close_timeout",
        "close_timer",
        "config",
        "conn",
        "disconnected",
        "fragment_is_text",
        "fragments",
        "handshake_complete",
        "handshake_initiated",
        "inbox",
        "initial_response",
        "keepalive",
        "loop",
        "pending_ping",
        "pong_timer",
        "read_paused",
        "receiving",
        "response",
        "scope",
        "server",
        "server_state",
        "transport",
        "writable",
        "write_waiter",
    )

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        extensions = []
        if config.ws_per_message_deflate:
            factory = ServerPerMessageDeflateFactory(
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
            extensions.append(factory)
        self.conn = ServerProtocol(extensions=extensions, max_size=config.ws_max_size, logger=log)
        self.scope: dict[str, Any] | None = None
        self.response: Response | None = None  # the handshake's 101, until the app accepts
        # what the app has not received yet: uvicorn stops reading after each message until
        # the app takes it, so this holds one or two
        self.inbox: list[dict[str, Any]] = []
        self.receiving: asyncio.Future[dict[str, Any]] | None = None  # the app, waiting
        self.writable = True  # False while the transport's buffer is over its high mark
        self.write_waiter: asyncio.Future[None] | None = None
        self.handshake_initiated = False
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.read_paused = False
        self.initial_response: tuple[int, list[tuple[str, str]], bytes] | None = None
        self.close_timer: asyncio.TimerHandle | None = None
        self.close_timeout = WEBSOCKET_CLOSE_TIMEOUT
        self.keepalive: _Keepalive | None = None  # while it waits for its next ping
        self.pong_timer: asyncio.TimerHandle | None = None  # while a ping waits for its pong
        self.pending_ping: bytes | None = None
        self.fragments: list[bytes] | None = None  # a fragmented message's frames so far
        self.fragment_is_text = False
        # websockets reads WEBSOCKETS_MAX_LINE_LENGTH (8 KiB) once, at import: a cookie or
        # token header longer than that could not open a websocket, where Bokeh takes up to
        # 64 KB. The request's whole head is bounded by the HTTP protocol before this parses it.
        if "WEBSOCKETS_MAX_LINE_LENGTH" not in os.environ:
            http11.MAX_LINE_LENGTH = max(http11.MAX_LINE_LENGTH, MAX_HEADER_LINE)

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.transport = cast(asyncio.Transport, transport)
        server = get_local_addr(self.transport)
        self.server = server if server is None else _LOCAL_ADDRESSES.setdefault(server, server)
        self.client = get_remote_addr(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_keepalive()
        code = 1005 if self.handshake_complete and self.initial_response is None else 1006
        self._deliver({"type": "websocket.disconnect", "code": code})
        self.server_state.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        self.resume_writing()  # a send waiting for a lost transport's buffer would wait forever
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        if exc is None:
            self.transport.close()

    def eof_received(self) -> None:
        pass

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        waiter, self.write_waiter = self.write_waiter, None
        _resolve(waiter)

    def data_received(self, data: bytes) -> None:
        conn = self.conn
        conn.receive_data(data)
        if conn.parser_exc is not None:
            self._fail_on_parser_error()
        elif conn.handshake_exc is not None and not self.handshake_initiated:
            self._refuse_bad_handshake()
        else:
            self._handle_events()

    def shutdown(self) -> None:
        """The server is stopping (uvicorn calls this on every connection it still has)."""
        self._stop_keepalive()
        if self.close_sent:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        if self.handshake_complete and self.initial_response is None:
            self._deliver({"type": "websocket.disconnect", "code": 1012})
            self.conn.send_close(1012)
            self._flush()
        else:
            self._send_500()
        self.transport.close()

    # -- incoming ----------------------------------------------------------------------

    def _handle_events(self) -> None:
        for event in self.conn.events_received():
            if isinstance(event, Request):
                self._handle_connect(event)
                continue
            assert isinstance(event, Frame)  # a server receives requests and frames only
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY or opcode is Opcode.CONT:
                self._handle_data(event)
            elif opcode is Opcode.PING:
                self._flush()  # websockets has queued the pong
            elif opcode is Opcode.PONG:
                self._handle_pong(event)
            elif opcode is Opcode.CLOSE:
                self._handle_close()

    def _handle_connect(self, request: Request) -> None:
        self.handshake_initiated = True
        response = self.conn.accept(request)
        if response.status_code != 101:
            self.handshake_complete = True
            self.close_sent = True
            self.conn.send_response(response)
            self._flush()
            self.transport.close()
            return
        self.response = response
        encoding, errors = _HEADER_ENCODING
        headers = [
            (key.encode("ascii"), value.encode(encoding, errors))
            for key, value in request.headers.raw_items()
        ]
        subprotocols = [
            token.strip()
            for header in request.headers.get_all("Sec-WebSocket-Protocol")
            for token in header.split(",")
        ]
        # the scope has the headers now. websockets' parser would keep the request, in its
        # generator's frame, for the connection's life: its frame parser goes on alone. It
        # has read nothing since the request (a client waits for the 101, RFC 6455 4.1; one
        # that does not only garbles its own frames).
        request.headers.clear()
        self.conn.parser = Protocol.parse(self.conn)
        next(self.conn.parser)
        raw_path, _, query_string = request.path.partition("?")
        root_path = self.config.root_path
        self.scope = {
            "type": "websocket",
            "asgi": _ASGI[self.config.asgi_version],
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(self.transport) else "ws",
            "server": self.server,
            "client": self.client,
            "root_path": root_path,
            "path": root_path + unquote(raw_path),
            "raw_path": root_path.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query_string.encode("ascii"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {
                "websocket.http.response": _NO_OPTIONS,
                FRAMES: {"write": self.write_frames},
            },
        }
        self.inbox.append({"type": "websocket.connect"})
        # the app's coroutine is the task: no wrapper frame held for the websocket's life
        task = self.loop.create_task(self.app(self.scope, self.receive, self.send))
        task.add_done_callback(self._app_done)
        self.server_state.tasks.add(task)

    def _handle_data(self, frame: Frame) -> None:
        # websockets' parser holds the last frame it parsed until the next one arrives, which
        # for an idle client may be never: it keeps the frame, not its data (an upload's MBs)
        payload, frame.data = bytes(frame.data), b""
        if frame.opcode is not Opcode.CONT:
            self.fragment_is_text = frame.opcode is Opcode.TEXT
            self.fragments = None
        if not frame.fin:
            if self.fragments is None:
                self.fragments = []
            self.fragments.append(payload)
            return
        if self.fragments is None:
            data = payload
        else:
            self.fragments.append(payload)
            data = b"".join(self.fragments)
            self.fragments = None
        if self.close_sent:
            # past the app's close: dropped, and reading goes on until the peer's close
            return
        if self.fragment_is_text:
            try:
                self._deliver({"type": "websocket.receive", "text": data.decode()})
            except UnicodeDecodeError:
                log.warning("%s - invalid UTF-8 in a text message", self._peer())
                self.conn.send_close(1007)
                self._fail_on_parser_error()
                return
        else:
            self._deliver({"type": "websocket.receive", "bytes": data})
        if self.inbox and not self.read_paused:  # the app was not waiting for it
            self.read_paused = True
            self.transport.pause_reading()

    def _handle_pong(self, frame: Frame) -> None:
        if self.pending_ping is None or bytes(frame.data) != self.pending_ping:
            return  # unsolicited, or an answer to an earlier ping
        self.pending_ping = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
            self._schedule_ping()

    def _handle_close(self) -> None:
        if self.close_sent:  # the peer answered our close: the closing handshake is complete
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
                self.transport.close()
            return
        if not self.transport.is_closing():
            received = self.conn.close_rcvd
            code = 1005 if received is None else received.code
            reason = "" if received is None else received.reason
            self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
            self._flush()  # websockets has queued the answering close frame
            self.transport.close()

    def _fail_on_parser_error(self) -> None:
        sent = self.conn.close_sent
        code = 1002 if sent is None else sent.code
        reason = "" if sent is None else sent.reason
        self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._flush()
        self.close_sent = True
        self.transport.close()

    def _refuse_bad_handshake(self) -> None:
        # websockets queues a 414 or 431 for a request over its limits, nothing otherwise
        self.handshake_complete = True
        self.close_sent = True
        output = b"".join(self.conn.data_to_send())
        if not output:
            text = "Failed to open a WebSocket connection: invalid request.\n"
            output = self.conn.reject(400, text).serialize()
        self.transport.write(output)
        self.transport.close()

    def _deliver(self, message: dict[str, Any]) -> None:
        self.inbox.append(message)
        waiter, self.receiving = self.receiving, None
        if waiter is not None and not waiter.done():  # done: the app's wait was cancelled
            waiter.set_result(self._take())

    def receive(self) -> asyncio.Future[dict[str, Any]]:
        """The next message, as a future rather than a coroutine: a websocket that waits for
        its next message holds no frame."""
        future = self.loop.create_future()
        if self.inbox:
            future.set_result(self._take())
        else:
            self.receiving = future
        return future

    def _take(self) -> dict[str, Any]:
        inbox = self.inbox
        message = inbox.pop(0)
        if self.read_paused and not inbox:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    # -- the app -----------------------------------------------------------------------

    def _app_done(self, task: asyncio.Task[Any]) -> None:
        self.server_state.tasks.discard(task)
        if task.cancelled():
            pass
        elif (exc := task.exception()) is not None:
            if not isinstance(exc, ClientDisconnected):
                log.error("Exception in ASGI application\n", exc_info=exc)
                self._send_500()
        elif not self.handshake_complete:
            log.error("ASGI callable returned without completing handshake.")
            self._send_500()
        elif (result := task.result()) is not None:
            log.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self.transport.close()

    def _send_500(self) -> None:
        if self.initial_response or self.handshake_complete:
            return
        self.conn.send_response(self.conn.reject(500, "Internal Server Error"))
        self._flush()

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send" and FRAMES in message:
            await self._send_frames(message[FRAMES])
            return
        # a close frame goes behind what the transport holds, without waiting for the peer
        # to read it; if the peer never does, the close timer aborts the transport
        if not self.writable and not (kind == "websocket.close" and self._open()):
            await self._wait_writable()
        if self.disconnected:
            raise ClientDisconnected()
        if not self.handshake_complete and self.initial_response is None:
            self._send_handshake(message)
        elif not self.close_sent and self.initial_response is None:
            try:
                self._send_open(message)
            except InvalidState:
                raise ClientDisconnected() from None
        elif self.initial_response is not None:
            self._send_denial_body(message)
        else:
            raise RuntimeError(
                f"Unexpected ASGI message '{kind}', after sending 'websocket.close'."
            )

    def _send_handshake(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        scope = cast(Any, self.scope)
        if kind == "websocket.accept":
            log.info(
                '%s - "WebSocket %s" [accepted]',
                get_client_addr(scope),
                get_path_with_query_string(scope),
            )
            response = cast(Response, self.response)
            self.response = None  # not read again: ~5 KB less for every open websocket
            headers = [
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in (
                    *self.server_state.default_headers,
                    *message.get("headers", []),
                )
            ]
            subprotocol = message.get("subprotocol")
            if subprotocol:
                headers.append(("Sec-WebSocket-Protocol", subprotocol))
            del response.headers["Date"]
            response.headers.update(headers)
            if not self.transport.is_closing():
                self.handshake_complete = True
                self.conn.send_response(response)
                self._flush()
                self._start_keepalive()
        elif kind == "websocket.close":
            self._deliver({"type": "websocket.disconnect", "code": 1006})
            log.info(
                '%s - "WebSocket %s" 403', get_client_addr(scope), get_path_with_query_string(scope)
            )
            self.response = None
            self.conn.send_response(self.conn.reject(HTTPStatus.FORBIDDEN, ""))
            self.close_sent = True
            self.handshake_complete = True
            self._flush()
            self.transport.close()
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code '{status}' in response.")
            log.info(
                '%s - "WebSocket %s" %d',
                get_client_addr(scope),
                get_path_with_query_string(scope),
                status,
            )
            self.response = None
            headers = [
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            ]
            self.initial_response = (status, headers, b"")
            self.handshake_complete = True
        else:
            raise RuntimeError(
                "Expected ASGI message 'websocket.accept', 'websocket.close' "
                f"or 'websocket.http.response.start' but got '{kind}'."
            )

    def _send_open(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            data = message.get("bytes")
            text = message.get("text")
            if data is not None:
                self._write([data])
            elif text is not None:
                self._write([text])
        elif kind == "websocket.close":
            if self.transport.is_closing():
                return
            code = message.get("code", 1000)
            reason = message.get("reason", "") or ""
            self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.conn.send_close(code, reason)
            self._flush()
            self.close_sent = True
            if self.read_paused:  # the peer's answering close must be read
                self.read_paused = False
                self.transport.resume_reading()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
        else:
            raise RuntimeError(
                f"Expected ASGI message 'websocket.send' or 'websocket.close', but got '{kind}'."
            )

    def _send_denial_body(self, message: dict[str, Any]) -> None:
        if message["type"] != "websocket.http.response.body":
            raise RuntimeError(
                f"Expected ASGI message 'websocket.http.response.body' but got '{message['type']}'."
            )
        status, headers, body = cast(
            tuple[int, list[tuple[str, str]], bytes], self.initial_response
        )
        body += message["body"]
        self.initial_response = (status, headers, body)
        if message.get("more_body", False):
            return
        response_headers = Headers(headers)
        response_headers.setdefault("Date", email.utils.formatdate(usegmt=True))
        response_headers.setdefault("Connection", "close")
        response_headers.setdefault("Content-Length", str(len(body)))
        response_headers.setdefault("Content-Type", "text/plain; charset=utf-8")
        phrase = _PHRASES.get(status, "")
        self._deliver({"type": "websocket.disconnect", "code": 1006})
        self.conn.send_response(Response(status, phrase, response_headers, body))
        self.close_sent = True
        self._flush()
        self.transport.close()

    # -- outgoing ----------------------------------------------------------------------

    def write_frames(self, frames: list[str | bytes]) -> bool:
        """Write one message's frames now, if the transport takes them at once (True); else
        write nothing (False), and the app sends them as usual, which waits or raises."""
        if not self.writable or self.disconnected or not self._open():
            return False
        try:
            self._write(frames)
        except InvalidState:
            return False
        return True

    async def _send_frames(self, frames: list[str | bytes]) -> None:
        if not self.writable:
            await self._wait_writable()
        if self.disconnected:
            raise ClientDisconnected()
        if not self._open():
            raise RuntimeError("frames sent outside an accepted, open websocket")
        try:
            self._write(frames)
        except InvalidState:
            raise ClientDisconnected() from None

    async def _wait_writable(self) -> None:
        while not self.writable:
            if self.write_waiter is None:
                self.write_waiter = self.loop.create_future()
            await asyncio.shield(self.write_waiter)

    def _open(self) -> bool:
        return self.handshake_complete and not self.close_sent and self.initial_response is None

    def _write(self, frames: list[str | bytes]) -> None:
        conn = self.conn
        if conn.extensions or conn.expect_continuation_frame or conn.state is not State.OPEN:
            # compressed (permessage-deflate), or not plainly open: websockets frames them
            for frame in frames:
                if isinstance(frame, str):
                    conn.send_text(frame.encode())
                else:
                    conn.send_binary(frame)
            self._flush()
            return
        written = conn.data_to_send()  # anything websockets has queued goes first
        written += unmasked_frames(frames)
        self.transport.write(b"".join(written))

    def _flush(self) -> None:
        """Write what websockets has queued (a handshake response, a pong, a close frame)."""
        output = self.conn.data_to_send()
        if output:
            self.transport.write(b"".join(output))

    # -- keepalive ---------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self.config.ws_ping_interval
        if interval is not None and interval > 0:
            self._schedule_ping()

    def _schedule_ping(self) -> None:
        self.keepalive = _keepalive_of(self.loop, self.config.ws_ping_interval or 0)
        self.keepalive.add(self)

    def _stop_keepalive(self) -> None:
        if self.keepalive is not None:
            self.keepalive.discard(self)
            self.keepalive = None
        if self.pong_timer is not None:
            self.pong_timer.cancel()
            self.pong_timer = None
        self.pending_ping = None

    def _send_ping(self) -> None:
        self.keepalive = None
        if self.close_sent or self.transport.is_closing():
            return
        # a random payload tells this ping's pong from an unsolicited or a late one
        self.pending_ping = struct.pack("!I", random.getrandbits(32))
        self.conn.send_ping(self.pending_ping)
        self._flush()
        timeout = self.config.ws_ping_timeout
        if timeout is not None:
            self.pong_timer = self.loop.call_later(timeout, self._keepalive_timeout)
        else:
            self._schedule_ping()

    def _keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping = None
        if self.close_sent or self.transport.is_closing():
            return
        log.debug("%s - websocket keepalive ping timeout", self._peer())
        self.conn.fail(1011, "keepalive ping timeout")
        self._flush()
        self.close_sent = True
        self.transport.abort()  # close() would wait for the unread buffer to drain

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"


class _Keepalive:
    """The keepalive pings of a loop's websockets, on one timer, where each had its own
    (a ``TimerHandle`` and a place in the loop's heap, ~0.5 KB): as every websocket waits the
    same interval, they come due in the order they were added, as a dict keeps them."""

    __slots__ = ("due", "interval", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.due: dict[WebSocketProtocol, float] = {}  # in the order they come due
        self.timer: asyncio.TimerHandle | None = None

    def add(self, protocol: WebSocketProtocol) -> None:
        """Ping ``protocol`` one interval from now."""
        self.due.pop(protocol, None)
        when = self.due[protocol] = self.loop.time() + self.interval
        if self.timer is None:
            self.timer = self.loop.call_at(when, self._fire)

    def discard(self, protocol: WebSocketProtocol) -> None:
        self.due.pop(protocol, None)

    def _fire(self) -> None:
        self.timer = None
        now, due = self.loop.time() + 0.001, self.due  # the loop may fire a timer that early
        while due:
            protocol, when = next(iter(due.items()))
            if when > now:
                self.timer = self.loop.call_at(when, self._fire)
                return
            del due[protocol]
            try:
                protocol._send_ping()
            except Exception:  # one broken connection does not stop the others' pings
                log.exception("%s - sending a keepalive ping failed", protocol._peer())


_keepalives: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Keepalive]] = (
    weakref.WeakKeyDictionary()
)


def _keepalive_of(loop: asyncio.AbstractEventLoop, interval: float) -> _Keepalive:
    by_interval = _keepalives.setdefault(loop, {})
    keepalive = by_interval.get(interval)
    if keepalive is None:
        keepalive = by_interval[interval] = _Keepalive(loop, interval)
    return keepalive
