"""The uvicorn protocol classes ``app-server serve`` runs, each bounded where uvicorn's are not.

- :class:`HttpProtocol` refuses a request whose line and headers exceed a limit with 431 as
  they arrive, as Tornado does at 64 KB. uvicorn's httptools protocol has no such limit and
  re-joins a long header chunk by chunk: one 96 MB header held the event loop for seconds.
- :class:`WebSocketProtocol` writes a Bokeh message's frames (header, metadata, content,
  buffers) with one system call where uvicorn makes one per frame: a ``websocket.send`` whose
  ``FRAMES`` key holds them all, which the app may send when the scope's extensions name
  ``FRAMES``. On loopback and under fan-out the calls were most of a pushed message's cost.
  When the transport is writable the extension's ``write`` does the same at once, with no
  ``send`` to await: no task, no coroutine, no trip through the app's middleware per message.
- :class:`WebSocketProtocol` also closes without waiting for a peer that never reads. uvicorn's
  close (and its keep-alive timeout) waits for the transport's buffer to drain, which a peer
  that stopped reading never lets happen, so what the buffer holds would be held until the TCP
  connection dies. Here the close frame goes at once and the transport is aborted when the
  peer has not answered it within ``close_timeout``.
- :class:`WebSocketProtocol` holds less for each open websocket: the handshake's headers are
  let go once the scope is built, and its inbox and writable flag are a list and a bool where
  uvicorn's ``asyncio.Queue`` and ``asyncio.Event`` hold five deques (~4 KB) between them.

A host running app_server under its own uvicorn gets both with
``--http app_server.transport:HttpProtocol --ws app_server.transport:WebSocketProtocol``;
``--h11-max-incomplete-event-size`` sets the header limit (64 KiB when unset).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets import http11
from websockets.exceptions import InvalidState
from websockets.http11 import Request
from websockets.protocol import State

from .extensions import FRAMES

__all__ = ["DEFAULT_MAX_HEADER_SIZE", "HttpProtocol", "WebSocketProtocol"]

log = logging.getLogger("app_server.transport")

DEFAULT_MAX_HEADER_SIZE = 64 * 1024  # Tornado's (so Bokeh's) limit
WEBSOCKET_CLOSE_TIMEOUT = 5.0  # seconds a peer has to answer our close frame (Tornado's)

_HEAD_END = b"\r\n\r\n"


class HttpProtocol(HttpToolsProtocol):
    """httptools' protocol, refusing a request head over the limit before it is parsed whole."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_head = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_SIZE
        self._in_head = True  # between requests, bytes belong to the next request's head
        self._head_bytes = 0
        self._tail = b""  # the end of the last chunk, where a split "\r\n\r\n" may begin

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail = True, 0, b""
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._head_bytes + len(data) > self.max_head and not self._head_ends_in(data):
                self._refuse_head()
                return
            self._head_bytes += len(data)
            self._tail = data[-3:]
        super().data_received(data)

    def _head_ends_in(self, data: bytes) -> bool:
        """Whether the head ends within the limit, somewhere in ``data``."""
        end = (self._tail + data).find(_HEAD_END)
        return end >= 0 and self._head_bytes - len(self._tail) + end + 4 <= self.max_head

    def _refuse_head(self) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.warning(
            "%s: request line and headers over %d bytes; answered 431", client, self.max_head
        )
        body = f"Request line and headers are over {self.max_head} bytes.\n".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self._in_head = False  # nothing more is read: the connection is closing
        self.transport.close()


class _Inbox:
    """What uvicorn uses of an unbounded ``asyncio.Queue`` (one reader, the app's ``receive``),
    without its three deques and Event: uvicorn stops reading after each message until the app
    takes it, so this holds a message or two."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """What uvicorn uses of an ``asyncio.Event`` (``set``, ``clear``, ``is_set``, ``wait``),
    with its list of waiters made only when someone waits."""

    __slots__ = ("_on", "_waiters")

    def __init__(self) -> None:
        self._on = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._on

    def set(self) -> None:
        self._on = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._on = False

    async def wait(self) -> None:
        if self._on:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack


def _unmasked_frames(frames: list[str | bytes]) -> list[bytes]:
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


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, whose close cannot hang on a peer that never reads."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()
        self.close_timeout = WEBSOCKET_CLOSE_TIMEOUT
        # websockets reads WEBSOCKETS_MAX_LINE_LENGTH (8 KiB) once, at import: a cookie or
        # token header longer than that could not open a websocket, where Bokeh takes up to
        # 64 KB. The request's whole head is bounded by HttpProtocol before this parses it.
        if "WEBSOCKETS_MAX_LINE_LENGTH" not in os.environ:
            http11.MAX_LINE_LENGTH = max(http11.MAX_LINE_LENGTH, DEFAULT_MAX_HEADER_SIZE)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # the scope has the headers now: websockets' parser keeps the request (in its
        # generator's frame) for the connection's life, and uvicorn keeps it as self.request
        event.headers.clear()
        del self.request
        if self.response.status_code == 101:  # the app has not run yet: it will see this
            self.scope["extensions"][FRAMES] = {"write": self.write_frames}

    async def send(self, message: Any) -> None:
        frames = message.get(FRAMES)
        if frames is not None and message["type"] == "websocket.send":
            await self._send_frames(frames)
            return
        closing = message["type"] == "websocket.close" and self.handshake_complete
        if closing and not self.close_sent and self.initial_response is None:
            # the close frame goes behind what the transport holds, without waiting for the
            # peer to read it; if the peer never does, the close timer below aborts
            self.writable.set()
        await super().send(message)
        if message["type"] == "websocket.accept" and hasattr(self, "response"):
            # the handshake's response, headers and all, is not read again (nor its request,
            # let go at handle_connect): ~5 KB less for every open websocket
            del self.response
        if closing and self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def write_frames(self, frames: list[str | bytes]) -> bool:
        """Write one message's frames now, if the transport takes them at once (True); else
        write nothing (False), and the app sends them as usual, which waits or raises."""
        if not self.writable.is_set() or self.disconnected or not self._open():
            return False
        try:
            self._write(frames)
        except InvalidState:
            return False
        return True

    async def _send_frames(self, frames: list[str | bytes]) -> None:
        await self.writable.wait()
        if self.disconnected:
            raise ClientDisconnected()
        if not self._open():
            raise RuntimeError("frames sent outside an accepted, open websocket")
        try:
            self._write(frames)
        except InvalidState:
            raise ClientDisconnected() from None

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
            self.transport.write(b"".join(conn.data_to_send()))
            return
        written = conn.data_to_send()  # anything websockets has queued goes first
        written += _unmasked_frames(frames)
        self.transport.write(b"".join(written))

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.transport.abort()  # close() would wait for the unread buffer to drain
