"""app_server's uvicorn protocol classes, driven through a recording transport (no sockets)."""

from __future__ import annotations

import asyncio
import base64
import gc
import os
from typing import Any, TypeVar

from uvicorn.config import Config
from uvicorn.server import ServerState
from websockets.datastructures import Headers

from app_server.extensions import FRAMES
from app_server.transport import HttpProtocol, WebSocketProtocol


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 5006)}.get(name)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def handshake(path: str = "/ws", extra: str = "") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


P = TypeVar("P", HttpProtocol, WebSocketProtocol)


def connected(protocol_class: type[P], app: Any, **config: Any) -> tuple[P, RecordingTransport]:
    """An instance of one of app_server's uvicorn protocol classes, connected to a recording
    transport, serving ``app`` with uvicorn's ``config``."""
    uvicorn_config = Config(app=app, log_level="warning", **config)
    uvicorn_config.load()
    protocol = protocol_class(config=uvicorn_config, server_state=ServerState(), app_state={})
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return protocol, transport


def websocket_protocol(app: Any) -> tuple[WebSocketProtocol, RecordingTransport]:
    return connected(WebSocketProtocol, app, ws_ping_interval=None)


async def test_a_message_s_frames_go_out_in_one_write() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["extensions"] = scope["extensions"]
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", FRAMES: ['{"msgtype":"ACK"}', "{}", "{}"]})
        await asyncio.sleep(1)

    protocol, transport = websocket_protocol(app)
    protocol.data_received(handshake())
    await asyncio.sleep(0.05)
    assert FRAMES in seen["extensions"]
    assert protocol.response is None, "the handshake response is let go once sent"
    handshake_reply, message = transport.writes
    assert handshake_reply.startswith(b"HTTP/1.1 101")
    assert message == b"\x81\x11" + b'{"msgtype":"ACK"}' + b"\x81\x02{}" + b"\x81\x02{}", (
        "three unmasked text frames in one write"
    )


async def test_frames_are_written_at_once_while_the_transport_takes_them() -> None:
    results: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        write = scope["extensions"][FRAMES]["write"]
        await receive()
        results.append(write(["before accept"]))
        await send({"type": "websocket.accept"})
        results.append(write(['{"msgtype":"OK"}', "{}", "{}"]))
        protocol.pause_writing()  # the transport's buffer is full: nothing is written now
        results.append(write(["held back"]))
        protocol.resume_writing()
        await send({"type": "websocket.close", "code": 1000})
        results.append(write(["after the close"]))

    protocol, transport = websocket_protocol(app)
    protocol.data_received(handshake())
    await asyncio.sleep(0.05)
    assert results == [False, True, False, False]
    handshake_reply, message, close = transport.writes
    assert handshake_reply.startswith(b"HTTP/1.1 101")
    assert message == b"\x81\x10" + b'{"msgtype":"OK"}' + b"\x81\x02{}" + b"\x81\x02{}"
    assert close.startswith(b"\x88")


async def test_an_open_websocket_holds_no_handshake_headers_and_still_flows() -> None:
    events: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        events.append(dict(scope["headers"])[b"Cookie"])
        await receive()
        await send({"type": "websocket.accept"})
        events.append(await receive())
        protocol.pause_writing()  # a send waits until the transport takes data again
        sent = asyncio.ensure_future(send({"type": "websocket.send", "text": "pong"}))
        await asyncio.sleep(0.01)
        events.append(sent.done())
        protocol.resume_writing()
        await sent
        await asyncio.sleep(1)

    protocol, transport = websocket_protocol(app)
    protocol.data_received(handshake(extra="Cookie: secret=handshake-only\r\n"))
    await asyncio.sleep(0.01)
    protocol.data_received(b"\x81\x84\x00\x00\x00\x00ping")  # a masked text frame
    await asyncio.sleep(0.05)
    assert events == [
        b"secret=handshake-only",
        {"type": "websocket.receive", "text": "ping"},
        False,
    ]
    assert transport.writes[-1] == b"\x81\x04pong"
    gc.collect()
    held = [h for h in gc.get_objects() if isinstance(h, Headers) and "Cookie" in h]
    assert not held, "the scope has the headers: websockets' and uvicorn's copies are let go"


async def test_a_close_the_peer_never_answers_aborts_the_transport() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        protocol.pause_writing()  # the peer stopped reading: the buffer is full
        await send({"type": "websocket.close", "code": 1008})

    protocol, transport = websocket_protocol(app)
    protocol.close_timeout = 0.1
    protocol.data_received(handshake())
    await asyncio.sleep(0.3)
    assert transport.writes[-1].startswith(b"\x88"), "the close frame went without waiting"
    assert transport.aborted, "the unanswered close aborted the transport"


def http_protocol(app: Any) -> tuple[HttpProtocol, RecordingTransport]:
    return connected(HttpProtocol, app, h11_max_incomplete_event_size=1024)


async def test_a_request_head_over_the_limit_gets_431_before_it_is_parsed() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("no request may reach the app")

    protocol, transport = http_protocol(app)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 600)
    assert not transport.writes
    protocol.data_received(b"y" * 600)
    assert transport.writes[0].startswith(b"HTTP/1.1 431 ")
    assert transport.closed


async def test_a_request_head_that_ends_within_the_limit_is_served() -> None:
    requests: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        requests.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    protocol, transport = http_protocol(app)
    head = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"y" * 900 + b"\r\n\r\n"
    protocol.data_received(head[:500])
    protocol.data_received(head[500:] + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.05)
    assert requests == ["/a", "/b"]
    assert not any(w.startswith(b"HTTP/1.1 431") for w in transport.writes)


def test_frames_are_those_websockets_writes_for_a_server_without_extensions() -> None:
    from websockets.protocol import Protocol, Side, State

    from app_server.websocket import unmasked_frames

    frames: list[str | bytes] = []
    for size in (0, 1, 125, 126, 127, 65535, 65536, 70000):
        frames += ["é" * (size // 2) + "x" * (size % 2), bytes(range(256)) * (size // 256)]
    reference = Protocol(Side.SERVER, state=State.OPEN)
    for frame in frames:
        if isinstance(frame, str):
            reference.send_text(frame.encode())
        else:
            reference.send_binary(frame)
    assert b"".join(unmasked_frames(frames)) == b"".join(reference.data_to_send())
