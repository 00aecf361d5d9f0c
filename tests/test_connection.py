"""A connection's life: every way it ends goes through the same release.

Each test serves an app with uvicorn in the test's own event loop, so that the server's
registry, the session and the metrics can be read between two steps of a real websocket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import os
import socket
import struct
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bokeh.document import Document
from bokeh.models import Div
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app_server import create_app, protocol
from app_server.connection import Connection, ConnectionState
from app_server.contexts import AppContext
from app_server.extensions import FRAMES
from app_server.server import AppServer
from app_server.tokens import new_session_id, new_token
from app_server.transport import WebSocketProtocol
from tests.servers import uvicorn_in_loop
from tests.wsclient import BokehSocket


def hello(doc: Document) -> None:
    doc.add_root(Div(text="hello", name="div"))


def echo(doc: Document) -> None:
    """A change of the first div's text sets the second's: a reply with a change in it."""
    source, echoed = Div(text="", name="source"), Div(text="", name="echoed")
    source.on_change("text", lambda attr, old, new: setattr(echoed, "text", new))
    doc.add_root(source)
    doc.add_root(echoed)


def streaming(doc: Document) -> None:
    """Pushes ~100 KB every 5 ms: a client that stops reading falls behind quickly."""
    div = Div(text="", name="div")
    chunk = "x" * 100_000
    doc.add_root(div)
    doc.add_periodic_callback(lambda: setattr(div, "text", chunk + str(time.monotonic())), 5)


@dataclass
class Served:
    app: Starlette
    url: str

    @property
    def server(self) -> AppServer:
        return self.app.state.server  # type: ignore[no-any-return]

    @property
    def context(self) -> AppContext:
        return self.server.contexts["/app"]

    def token(self) -> str:
        settings = self.server.settings
        return new_token(new_session_id(settings), settings).text

    async def open(self, **kwargs: object) -> tuple[ClientConnection, Connection]:
        """A websocket as BokehJS opens it, and the server's side of it, acknowledged."""
        ws = await connect(self.url, subprotocols=["bokeh", self.token()], **kwargs)  # type: ignore[list-item, arg-type]
        socket = BokehSocket(ws)
        assert (await socket.receive()).msgtype == protocol.ACK
        (connection,) = self.server.connections
        return ws, connection


@contextlib.asynccontextmanager
async def serving(
    app_code: Callable[[Document], None], ws: Any = "websockets-sansio", **options: object
) -> AsyncIterator[Served]:
    app = create_app({"/app": app_code}, **options)
    async with uvicorn_in_loop(app, ws=ws) as port:
        yield Served(app, f"ws://127.0.0.1:{port}/app/ws")


async def until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def assert_released(served: Served, connection: Connection, code: int) -> None:
    """What every end releases: the registry, the session's side, the metrics, one log line."""
    await until(lambda: connection.state is ConnectionState.CLOSED)
    assert connection not in served.server.connections
    assert connection not in connection.session.connections
    assert connection.close_code == code
    assert served.server.metrics.websocket_closed == served.server.metrics.websocket_opened == 1
    assert connection.backlog == 0


async def close_code(ws: ClientConnection) -> int | None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.recv()
    return ws.close_code


async def test_a_client_close_releases_the_connection_and_later_its_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "app_server")
    async with serving(hello, disconnected_session_lifetime=100) as served:
        ws, connection = await served.open()
        session = connection.session
        await ws.close()
        await assert_released(served, connection, 1000)
        assert f"session {session.id}: websocket closed (code 1000)" in caplog.text
        await until(lambda: session.destroyed)  # after the reconnect grace period
        assert served.context.sessions == {}


async def test_a_reconnect_within_the_grace_period_keeps_the_session() -> None:
    async with serving(hello, disconnected_session_lifetime=300) as served:
        token = served.token()
        first = await connect(served.url, subprotocols=["bokeh", token])  # type: ignore[list-item]
        await first.recv()
        (session,) = served.context.sessions.values()
        await first.close()
        await until(lambda: not served.server.connections)
        second = await connect(served.url, subprotocols=["bokeh", token])  # type: ignore[list-item]
        await second.recv()
        await asyncio.sleep(0.5)
        assert not session.destroyed and list(served.context.sessions.values()) == [session]
        await second.close()


async def test_a_server_shutdown_closes_with_1001_and_releases() -> None:
    async with serving(hello) as served:
        ws, connection = await served.open()
        await served.server.drain()
        assert await close_code(ws) == 1001
        await assert_released(served, connection, 1001)


async def test_a_protocol_violation_closes_with_its_code_and_releases() -> None:
    async with serving(hello) as served:
        ws, connection = await served.open()
        await ws.send("this is not a Bokeh message header")
        code = await close_code(ws)
        assert code is not None and code != 1000
        await assert_released(served, connection, code)


async def test_a_discarded_session_ends_its_connections_with_1001() -> None:
    async with serving(hello) as served:
        ws, connection = await served.open()
        await served.context.discard_session(connection.session)
        assert await close_code(ws) == 1001
        assert ws.close_reason == "the session expired"
        await assert_released(served, connection, 1001)


def masked_frame(payload: str) -> bytes:
    """One client-to-server text frame (RFC 6455: clients mask what they send)."""
    data, mask = payload.encode(), os.urandom(4)
    length = len(data)
    head = bytes([0x81, 0x80 | length]) if length < 126 else struct.pack("!BBH", 0x81, 0xFE, length)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def open_never_reading(served: Served) -> asyncio.StreamWriter:
    """A websocket whose client asks for the document, then never reads again."""
    host, port = served.url.removeprefix("ws://").split("/")[0].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /app/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: bokeh, {served.token()}\r\n\r\n".encode()
    )
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
    for frame in protocol.encode(protocol.make_message(protocol.PULL_DOC_REQ)):
        assert isinstance(frame, str)
        writer.write(masked_frame(frame))
    return writer


async def test_a_client_that_stops_reading_is_dropped_and_released_at_once() -> None:
    async with serving(streaming, outbound_queue_size=8) as served:
        writer = await open_never_reading(served)
        await until(lambda: len(served.server.connections) == 1)
        (connection,) = served.server.connections
        await until(lambda: connection.state is ConnectionState.CLOSED, timeout=30)
        await assert_released(served, connection, 1008)
        assert served.server.metrics.slow_clients_dropped == 1
        writer.transport.abort()


class CountingTransport:
    """Stands in front of the real transport (uvloop's) and keeps what was written."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_a_request_s_replies_go_out_in_one_write(compression: str | None) -> None:
    """The changes a PATCH-DOC's callbacks make and its OK: one system call, not two, framed
    by app_server or (compressed) by websockets."""
    async with serving(echo, ws=WebSocketProtocol) as served:
        ws, connection = await served.open(compression=compression)
        assert bool(ws.protocol.extensions) == (compression is not None)
        socket = BokehSocket(ws)
        await socket.send(protocol.make_message(protocol.PULL_DOC_REQ))
        pulled = await socket.receive()
        source = next(
            m for m in pulled.content["doc"]["roots"] if m["attributes"]["name"] == "source"
        )
        transport_protocol = connection.websocket.scope["extensions"][FRAMES]["write"].__self__
        counting = transport_protocol.transport = CountingTransport(transport_protocol.transport)
        event = {"kind": "ModelChanged", "model": {"id": source["id"]}, "attr": "text"}
        patch = protocol.make_message(protocol.PATCH_DOC, {"events": [{**event, "new": "hi"}]})
        await socket.send(patch)
        change, ok = await socket.receive(), await socket.receive()
        assert change.msgtype == protocol.PATCH_DOC and change.content["events"][0]["new"] == "hi"
        assert ok.msgtype == protocol.OK and ok.reqid == patch.msgid
        assert len(counting.writes) == 1, "the change and the OK in one write"
        await ws.close()


async def test_an_open_websocket_holds_no_handshake_headers_under_app_server_s_transport() -> None:
    """Admission reads the headers and the token's subprotocol once; then they are let go."""
    for ws_class, released in ((WebSocketProtocol, True), ("websockets-sansio", False)):
        async with serving(hello, ws=ws_class) as served:
            ws, connection = await served.open(additional_headers={"Cookie": "big=" + "x" * 4000})
            request = connection.session.document.session_context.request
            assert request.cookies["big"] == "x" * 4000, "the app still has what it was sent"
            scope = connection.websocket.scope
            assert (scope["headers"] == [] and scope["subprotocols"] == []) == released
            await ws.close()


async def test_closed_websockets_leave_no_connection_or_protocol_behind() -> None:
    """What a websocket holds (its Connection, app_server's uvicorn protocol object, the
    session) is garbage once it has closed and its session is discarded."""
    async with serving(hello, ws=WebSocketProtocol, disconnected_session_lifetime=50) as served:
        refs: list[weakref.ref[object]] = []
        for _ in range(5):
            ws, connection = await served.open()
            write = connection.websocket.scope["extensions"][FRAMES]["write"]
            refs += [weakref.ref(connection), weakref.ref(write.__self__)]
            refs.append(weakref.ref(connection.session))
            del connection, write
            await ws.close()
            await until(lambda: not served.server.connections)
        await until(lambda: not served.context.sessions)
        await asyncio.sleep(0.1)
        gc.collect()
        alive = [ref() for ref in refs if ref() is not None]
        assert alive == [], alive
