"""The uvicorn protocol classes ``app-server serve`` runs, each bounded where uvicorn's are not.

- :class:`HttpProtocol` refuses a request whose line and headers exceed a limit with 431 as
  they arrive, as Tornado does at 64 KB. uvicorn's httptools protocol has no such limit and
  re-joins a long header chunk by chunk: one 96 MB header held the event loop for seconds.
- :class:`WebSocketProtocol` (:mod:`app_server.websocket`) holds less for each open
  websocket, writes a Bokeh message's frames with one system call, and closes without waiting
  for a peer that never reads.

A host running app_server under its own uvicorn gets both with
``--http app_server.transport:HttpProtocol --ws app_server.transport:WebSocketProtocol``;
``--h11-max-incomplete-event-size`` sets the header limit (64 KiB when unset).
"""

from __future__ import annotations

import logging
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .websocket import MAX_HEADER_LINE, WebSocketProtocol

__all__ = ["DEFAULT_MAX_HEADER_SIZE", "HttpProtocol", "WebSocketProtocol"]

log = logging.getLogger("app_server.transport")

DEFAULT_MAX_HEADER_SIZE = MAX_HEADER_LINE  # Tornado's (so Bokeh's) limit

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
