"""A minimal RFC 6455 websocket client that can send any frame, and the Bokeh framing on top.

No library sends what a fuzzer needs: reserved bits, unmasked frames, invalid UTF-8, lying
lengths of fragments, close frames with invalid codes. :class:`RawWebSocket` writes frames
byte by byte and reads every frame the server sends, so a test sees the exact close code, valid
or not. It assembles the server's Bokeh messages with :class:`fuzz.framing.Framing`, so it
depends on nothing of app_server. The fuzzer and the test suite (``tests/test_ws_violations.py``,
``tests/test_load.py``, ``tests/test_security_compare.py``) share it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fuzz.framing import BokehMessage, Framing, Outgoing, Violation, encode

__all__ = [
    "BINARY",
    "CLOSE",
    "CONTINUATION",
    "PING",
    "PONG",
    "TEXT",
    "VALID_CLOSE_CODES",
    "Closed",
    "HandshakeRefused",
    "RawWebSocket",
    "WireFrame",
    "binary",
    "bokeh_frames",
    "dumps",
    "encode_frame",
    "fetch_token",
    "find_model",
    "message_frames",
    "open_raw",
    "text",
]

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# RFC 6455 section 7.4: codes a close frame may carry (1004 is reserved; 1005, 1006 and 1015
# must never be sent), plus the registered 1012-1014 and the application range 3000-4999
VALID_CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)})

TOKEN = re.compile(r'"token":\s*"([^"]+)"')


@dataclass(frozen=True)
class WireFrame:
    """One websocket frame as sent; ``violation`` is the close code it must earn, if any."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0
    masked: bool = True
    violation: int | None = None


def text(value: str | bytes) -> WireFrame:
    return WireFrame(TEXT, value.encode() if isinstance(value, str) else value)


def binary(value: bytes) -> WireFrame:
    return WireFrame(BINARY, value)


def _mask(data: bytes, key: bytes) -> bytes:
    if not data:
        return data
    n = len(data)
    keystream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(keystream, "big")).to_bytes(n, "big")


def encode_frame(frame: WireFrame) -> bytes:
    head = bytearray([(0x80 if frame.fin else 0) | (frame.rsv << 4) | frame.opcode])
    n, mask_bit = len(frame.payload), 0x80 if frame.masked else 0
    if n < 126:
        head.append(mask_bit | n)
    elif n < 1 << 16:
        head.append(mask_bit | 126)
        head += n.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += n.to_bytes(8, "big")
    if not frame.masked:
        return bytes(head) + frame.payload
    key = os.urandom(4)
    return bytes(head) + key + _mask(frame.payload, key)


class HandshakeRefused(Exception):
    def __init__(self, status: int, body: str, headers: dict[str, str]) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status, self.body, self.headers = status, body, headers


@dataclass(frozen=True)
class Closed:
    """How a connection ended: ``clean`` means a close frame arrived (``code`` may be None)."""

    code: int | None
    reason: str
    clean: bool

    def describe(self) -> str:
        if not self.clean:
            return "dropped without a close frame"
        return f"close {self.code}" + (f" {self.reason!r}" if self.reason else "")


class RawWebSocket:
    """A minimal RFC 6455 client: any frame out, every frame in, Bokeh messages assembled."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framing = Framing()
        self.closed: Closed | None = None
        self._fragments: list[bytes] = []
        self._opcode = TEXT

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str,
        subprotocols: Sequence[str] = (),
        *,
        origin: str | None = None,
        headers: Sequence[str] = (),
        rcvbuf: int | None = None,
        source: str | None = None,
        timeout: float = 15.0,
    ) -> RawWebSocket:
        """Open a websocket to 127.0.0.1:``port``; :class:`HandshakeRefused` if not a 101."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # a small receive window: the server's data backs up sooner
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:  # another loopback address (127.0.0.2, ...): another client to the server
            sock.bind((source, 0))
        sock.setblocking(False)
        try:
            await asyncio.wait_for(
                asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)), timeout
            )
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
        if origin is not None:
            lines.append(f"Origin: {origin}")
        lines += headers
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            response_headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            if status == 101:
                return cls(reader, writer)
            length = response_headers.get("content-length")
            if length is not None:
                body = await asyncio.wait_for(reader.readexactly(int(length)), timeout)
            else:
                body = await asyncio.wait_for(reader.read(1 << 16), timeout)
        except BaseException:
            writer.close()
            raise
        writer.close()
        raise HandshakeRefused(status, body.decode(errors="replace"), response_headers)

    async def send_frames(self, frames: Iterable[WireFrame]) -> None:
        """Write frames; a server that already hung up is not an error here."""
        try:
            for frame in frames:
                if self.writer.is_closing():
                    return  # the server hung up
                self.writer.write(encode_frame(frame))
                if self.writer.transport.get_write_buffer_size() > 1 << 20:
                    await self.writer.drain()
            await self.writer.drain()
        except (ConnectionError, RuntimeError):
            pass

    async def send_message(self, message: Outgoing) -> None:
        await self.send_frames(message_frames(message))

    async def _read_frame(self) -> tuple[int, bool, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        key = await self.reader.readexactly(4) if b1 & 0x80 else None
        payload = await self.reader.readexactly(length)
        return b0 & 0x0F, bool(b0 & 0x80), _mask(payload, key) if key else payload

    async def receive(self, timeout: float = 15.0) -> BokehMessage | Closed:
        """The next whole Bokeh message, or how the connection ended."""
        if self.closed is not None:
            return self.closed
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"nothing from the server in {timeout}s")
            try:
                opcode, fin, payload = await asyncio.wait_for(self._read_frame(), remaining)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.closed = Closed(None, "", clean=False)
                self.abort()
                return self.closed
            if opcode == PING:
                await self.send_frames([WireFrame(PONG, payload)])
                continue
            if opcode == PONG:
                continue
            if opcode == CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                self.closed = Closed(code, payload[2:].decode(errors="replace"), clean=True)
                await self.send_frames([WireFrame(CLOSE, payload[:2])])  # the closing handshake
                self.writer.close()
                return self.closed
            if opcode != CONTINUATION:
                self._opcode, self._fragments = opcode, []
            self._fragments.append(payload)
            if not fin:
                continue
            data = b"".join(self._fragments)
            result = self.framing.feed(data.decode() if self._opcode == TEXT else data)
            if isinstance(result, Violation):
                raise AssertionError(f"the server sent a malformed message: {result.reason}")
            if result is not None:
                return result

    async def receive_message(self, timeout: float = 15.0) -> BokehMessage:
        result = await self.receive(timeout)
        if isinstance(result, Closed):
            raise AssertionError(f"the server closed the connection: {result.describe()}")
        return result

    async def request(self, message: Outgoing, timeout: float = 15.0) -> BokehMessage:
        """Send ``message`` and return its reply, skipping other messages."""
        await self.send_message(message)
        deadline = time.monotonic() + timeout
        while True:
            reply = await self.receive_message(max(0.1, deadline - time.monotonic()))
            if reply.reqid == message.header["msgid"]:
                return reply

    async def close(self, code: int = 1000, timeout: float = 10.0) -> Closed:
        """Start (or finish) the closing handshake and wait for the server's close frame."""
        if self.closed is None:
            await self.send_frames([WireFrame(CLOSE, code.to_bytes(2, "big"))])
            deadline = time.monotonic() + timeout
            while self.closed is None and time.monotonic() < deadline:
                try:
                    await self.receive(max(0.1, deadline - time.monotonic()))
                except TimeoutError:
                    break
        self.abort()
        return self.closed or Closed(None, "", clean=False)

    def abort(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


def dumps(value: Any) -> str:
    """JSON as a careless client writes it: NaN and Infinity allowed, lone surrogates escaped."""
    return json.dumps(value, separators=(",", ":"), allow_nan=True)


def bokeh_frames(
    header: Any, metadata: Any = None, content: Any = None, buffers: Sequence[bytes] = ()
) -> list[WireFrame]:
    """The frames of a message from parts that may be anything (the header's ``num_buffers``
    is left as it is: a fuzz case may lie about it)."""
    frames = [text(dumps(header)), text(dumps({} if metadata is None else metadata))]
    frames.append(text(dumps({} if content is None else content)))
    for n, payload in enumerate(buffers):
        frames += [text(dumps({"id": f"b{n}"})), binary(payload)]
    return frames


def message_frames(message: Outgoing) -> list[WireFrame]:
    """The frames of a well-formed message (a :class:`BokehMessage` or app_server's)."""
    return [text(f) if isinstance(f, str) else binary(f) for f in encode(message)]


class _HasPort(Protocol):
    @property
    def port(self) -> int: ...


def fetch_token(page_url: str) -> str:
    """Load an app page as a browser would and take the session token from it."""
    html = urllib.request.urlopen(page_url, timeout=10).read().decode()
    match = TOKEN.search(html)
    if not match:
        raise AssertionError(f"no session token in the page at {page_url}")
    return match.group(1)


async def open_raw(server: _HasPort, token: str, app: str = "/demo") -> RawWebSocket:
    """A Bokeh connection: handshake, then the server's ACK."""
    socket_ = await RawWebSocket.connect(server.port, f"{app}/ws", ["bokeh", token])
    first = await socket_.receive_message()
    if first.msgtype != "ACK":
        raise AssertionError(f"expected ACK first, got {first.msgtype}")
    return socket_


def find_model(doc_json: Any, *, name: str | None = None, kind: str | None = None) -> str:
    """The id of the model called ``name`` (or of the first of type ``kind``) in a document."""
    stack = [doc_json]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "object" and "id" in node:
                attributes = node.get("attributes") or {}
                if (name is not None and attributes.get("name") == name) or (
                    kind is not None and node.get("name") == kind
                ):
                    return str(node["id"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(f"no model {name or kind} in the document")
